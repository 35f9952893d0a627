//! dlt's `paginator`, tagged by `type` (or a bare string when every key has a default):
//! offset, page number, JSON link, header link, cursor, header cursor, single page and auto.
//! The extractor's `paginate/` holds what each one does; its checks are in
//! [`super::validate`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::raw::Tagged;

/// dlt's `paginator`, tagged by `type`. As in dlt, a type whose keys all have defaults may be
/// written as a bare string (`paginator = "json_link"`, `"auto"`, `"single_page"`).
/// Default (when neither the endpoint, `resource_defaults` nor `client` has one): single page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paginator {
    Offset(OffsetPaginator),
    PageNumber(PageNumberPaginator),
    JsonLink(JsonLinkPaginator),
    HeaderLink(HeaderLinkPaginator),
    /// `cursor`, also written `json_response_cursor`.
    Cursor(CursorPaginator),
    HeaderCursor(HeaderCursorPaginator),
    SinglePage,
    /// Detected from the first response, as dlt does when no paginator is given.
    Auto,
}

impl Paginator {
    /// The `type` as written in the config (the canonical name of an alias).
    pub fn kind(&self) -> &'static str {
        match self {
            Paginator::Offset(_) => "offset",
            Paginator::PageNumber(_) => "page_number",
            Paginator::JsonLink(_) => "json_link",
            Paginator::HeaderLink(_) => "header_link",
            Paginator::Cursor(_) => "cursor",
            Paginator::HeaderCursor(_) => "header_cursor",
            Paginator::SinglePage => "single_page",
            Paginator::Auto => "auto",
        }
    }
}

/// dlt's `PageNumberPaginator`: `?page=<n>`, then `n += 1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageNumberPaginator {
    /// The number of the API's first page (0 or 1, usually).
    #[serde(default)]
    pub base_page: u64,
    /// The page to start at; default `base_page`.
    #[serde(default)]
    pub page: Option<u64>,
    /// The query parameter that carries the page number: `page` (dlt's default) unless
    /// `page_body_path` is set; both set is an error, as in dlt.
    #[serde(default)]
    pub page_param: Option<String>,
    /// dlt's `page_body_path`: the dotted path in the JSON body (`paging.page`) that carries
    /// the page number instead of a query parameter (POST search APIs).
    #[serde(default)]
    pub page_body_path: Option<String>,
    /// JSONPath to the number of pages in a response; stops when the next page would be
    /// past it. Default `total`; `null` or `""` turns it off.
    #[serde(default = "default_total_path", deserialize_with = "empty_as_none")]
    pub total_path: Option<String>,
    /// Stops before requesting this page number or a later one.
    #[serde(default)]
    pub maximum_page: Option<u64>,
    /// Stops at the first page with no records.
    #[serde(default = "default_true")]
    pub stop_after_empty_page: bool,
    /// dlt's `has_more_path`: JSONPath to a boolean (or `"true"`/`"false"`, ...) in each
    /// response; `false` stops the paging, a response without it is an error.
    #[serde(default)]
    pub has_more_path: Option<String>,
}

/// dlt's `JSONLinkPaginator`: the next page's URL is in the response body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLinkPaginator {
    /// JSONPath to the next URL (absolute, or relative to the request's URL); stops when it
    /// is missing, `null` or empty.
    #[serde(default = "default_next")]
    pub next_url_path: String,
}

/// dlt's `HeaderLinkPaginator`: the next page's URL is in the `Link` header (RFC 8288).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderLinkPaginator {
    /// The `rel` of the next page's link.
    #[serde(default = "default_next")]
    pub links_next_key: String,
}

fn default_next() -> String {
    "next".to_owned()
}

/// dlt's `JSONResponseCursorPaginator`: a cursor from the response body, sent back as a
/// query parameter or, for a POST, inside the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorPaginator {
    /// JSONPath to the cursor in a response; stops when it is missing, `null` or empty.
    #[serde(default = "default_cursor_path")]
    pub cursor_path: String,
    /// The query parameter that carries the cursor; default `cursor` unless
    /// `cursor_body_path` is set.
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Dotted path in the JSON body that carries the cursor (`pagination.cursor`).
    #[serde(default)]
    pub cursor_body_path: Option<String>,
    /// Stops at the first page with no records (dlt's default: off).
    #[serde(default)]
    pub stop_after_empty_page: bool,
    /// As [`PageNumberPaginator::has_more_path`].
    #[serde(default)]
    pub has_more_path: Option<String>,
}

fn default_cursor_path() -> String {
    "cursors.next".to_owned()
}

/// dlt's `HeaderCursorPaginator`: a cursor from a response header, sent back as a query
/// parameter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCursorPaginator {
    /// The response header that carries the cursor; stops when it is missing or empty.
    #[serde(default = "default_next")]
    pub cursor_key: String,
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
}

fn default_cursor_param() -> String {
    "cursor".to_owned()
}

/// dlt's `OffsetPaginator`: `?offset=0&limit=100`, then `offset += limit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetPaginator {
    /// Records per page; required, > 0.
    pub limit: u64,
    #[serde(default)]
    pub offset: u64,
    /// The query parameter that carries the offset: `offset` (dlt's default) unless
    /// `offset_body_path` is set; both set is an error, as in dlt.
    #[serde(default)]
    pub offset_param: Option<String>,
    /// The query parameter that carries the limit: `limit` unless `limit_body_path` is set.
    #[serde(default)]
    pub limit_param: Option<String>,
    /// dlt's `offset_body_path`: the dotted path in the JSON body (`paging.offset`) that
    /// carries the offset instead of a query parameter (POST search APIs).
    #[serde(default)]
    pub offset_body_path: Option<String>,
    /// dlt's `limit_body_path`: the same for the limit.
    #[serde(default)]
    pub limit_body_path: Option<String>,
    /// JSONPath to the total record count in a response; stops when `offset >= total`.
    /// Default `total`; `null` or `""` turns it off.
    #[serde(default = "default_total_path", deserialize_with = "empty_as_none")]
    pub total_path: Option<String>,
    /// Stops before requesting an offset at or past this.
    #[serde(default)]
    pub maximum_offset: Option<u64>,
    /// Stops at the first page with no records.
    #[serde(default = "default_true")]
    pub stop_after_empty_page: bool,
    /// As [`PageNumberPaginator::has_more_path`].
    #[serde(default)]
    pub has_more_path: Option<String>,
}

/// dlt's `offset_param` when neither it nor `offset_body_path` is set.
pub const DEFAULT_OFFSET_PARAM: &str = "offset";
/// dlt's `limit_param` when neither it nor `limit_body_path` is set.
pub const DEFAULT_LIMIT_PARAM: &str = "limit";
/// dlt's `page_param` when neither it nor `page_body_path` is set.
pub const DEFAULT_PAGE_PARAM: &str = "page";

/// Where a paginator puts a value: a query parameter, or a dotted path into the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagePlace<'a> {
    Param(&'a str),
    Body(&'a str),
}

/// dlt's rule for a `*_param` / `*_body_path` pair: the body path when it is set, else the
/// param, else `default` (both set is a config error, see `validate`).
fn place<'a>(
    param: Option<&'a str>,
    body_path: Option<&'a str>,
    default: &'a str,
) -> PagePlace<'a> {
    match (body_path, param) {
        (Some(path), _) => PagePlace::Body(path),
        (None, Some(param)) => PagePlace::Param(param),
        (None, None) => PagePlace::Param(default),
    }
}

impl OffsetPaginator {
    /// Where the offset goes.
    pub fn offset_place(&self) -> PagePlace<'_> {
        place(
            self.offset_param.as_deref(),
            self.offset_body_path.as_deref(),
            DEFAULT_OFFSET_PARAM,
        )
    }

    /// Where the limit goes.
    pub fn limit_place(&self) -> PagePlace<'_> {
        place(
            self.limit_param.as_deref(),
            self.limit_body_path.as_deref(),
            DEFAULT_LIMIT_PARAM,
        )
    }
}

impl PageNumberPaginator {
    /// Where the page number goes.
    pub fn page_place(&self) -> PagePlace<'_> {
        place(
            self.page_param.as_deref(),
            self.page_body_path.as_deref(),
            DEFAULT_PAGE_PARAM,
        )
    }
}

fn default_total_path() -> Option<String> {
    Some("total".to_owned())
}

fn default_true() -> bool {
    true
}

fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

const PAGINATOR_TYPES: &[&str] = &[
    "offset",
    "page_number",
    "json_link",
    "header_link",
    "cursor",
    "json_response_cursor",
    "header_cursor",
    "single_page",
    "auto",
];

/// `{ type = "single_page" }` and `{ type = "auto" }`: no other keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl Tagged {
    /// The paginator this tag names, from the other entries.
    fn paginator<E: de::Error>(self) -> Result<Paginator, E> {
        match self.tag.as_str() {
            "offset" => self.variant().map(Paginator::Offset),
            "page_number" => self.variant().map(Paginator::PageNumber),
            // `json_response`: dlt's deprecated name of `json_link`.
            "json_link" | "json_response" => self.variant().map(Paginator::JsonLink),
            "header_link" => self.variant().map(Paginator::HeaderLink),
            "cursor" | "json_response_cursor" => self.variant().map(Paginator::Cursor),
            "header_cursor" => self.variant().map(Paginator::HeaderCursor),
            "single_page" => self.variant::<NoFields, _>().map(|_| Paginator::SinglePage),
            "auto" => self.variant::<NoFields, _>().map(|_| Paginator::Auto),
            _ => Err(self.unknown("paginator", PAGINATOR_TYPES)),
        }
    }
}

impl<'de> Deserialize<'de> for Paginator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PaginatorVisitor;

        impl<'de> Visitor<'de> for PaginatorVisitor {
            type Value = Paginator;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a paginator table with a `type`, or a paginator type such as \"auto\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Paginator, E> {
                match v {
                    "offset" => Err(E::custom(
                        "the offset paginator needs a `limit`: write \
                         `paginator = { type = \"offset\", limit = 100 }`",
                    )),
                    known if PAGINATOR_TYPES.contains(&known) => Tagged {
                        tag: known.to_owned(),
                        entries: Vec::new(),
                    }
                    .paginator(),
                    other => Err(E::custom(format!(
                        "unknown or unsupported paginator `{other}`, expected one of: {}",
                        PAGINATOR_TYPES.join(", ")
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Paginator, A::Error> {
                Tagged::read(map)?.paginator()
            }
        }

        deserializer.deserialize_any(PaginatorVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn paginator_forms() {
        let paginator = |p: &str| -> Paginator {
            toml(&with_endpoint(&format!("{{ paginator = {p} }}")))
                .unwrap()
                .resources[0]
                .endpoint
                .paginator
                .clone()
        };
        assert_eq!(paginator("\"single_page\""), Paginator::SinglePage);
        assert_eq!(
            paginator("{ type = \"single_page\" }"),
            Paginator::SinglePage
        );
        assert_eq!(
            paginator(
                "{ type = \"offset\", limit = 10, offset = 5, offset_param = \"skip\", \
                 limit_param = \"take\", total_path = \"meta.total\", maximum_offset = 1000, \
                 stop_after_empty_page = false }"
            ),
            Paginator::Offset(OffsetPaginator {
                limit: 10,
                offset: 5,
                offset_param: Some("skip".into()),
                limit_param: Some("take".into()),
                offset_body_path: None,
                limit_body_path: None,
                total_path: Some("meta.total".into()),
                maximum_offset: Some(1000),
                stop_after_empty_page: false,
                has_more_path: None,
            })
        );
        let Paginator::Offset(p) =
            paginator("{ type = \"offset\", limit = 10, total_path = \"\" }")
        else {
            panic!("offset")
        };
        assert_eq!(p.total_path, None);

        let json = r#"{"client": {"base_url": "https://a"}, "resources": [{"name": "r",
            "primary_key": "id",
            "endpoint": {"paginator": {"type": "offset", "limit": 3, "total_path": null}}}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        let Paginator::Offset(p) = &config.resources[0].endpoint.paginator else {
            panic!("offset")
        };
        assert_eq!(p.total_path, None);
        assert_eq!(p.limit, 3);

        let e = err(toml(&with_endpoint(
            "{ paginator = { type = \"single_page\", limit = 1 } }",
        )));
        assert!(
            e.contains("resources[0].endpoint.paginator.limit: unknown field `limit`"),
            "{e}"
        );
    }

    #[test]
    fn more_paginator_forms() {
        let paginator = |p: &str| -> Paginator {
            toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {p} }}"
            )))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .resources[0]
                .endpoint
                .paginator
                .clone()
        };
        let page_number_defaults = PageNumberPaginator {
            base_page: 0,
            page: None,
            page_param: None,
            page_body_path: None,
            total_path: Some("total".into()),
            maximum_page: None,
            stop_after_empty_page: true,
            has_more_path: None,
        };
        let cursor_defaults = CursorPaginator {
            cursor_path: "cursors.next".into(),
            cursor_param: None,
            cursor_body_path: None,
            stop_after_empty_page: false,
            has_more_path: None,
        };
        let cases: Vec<(&str, Paginator)> = vec![
            ("\"auto\"", Paginator::Auto),
            ("{ type = \"auto\" }", Paginator::Auto),
            (
                "\"page_number\"",
                Paginator::PageNumber(page_number_defaults.clone()),
            ),
            (
                "{ type = \"page_number\", base_page = 1, page = 2, page_param = \"p\", \
                 total_path = \"meta.pages\", maximum_page = 9, stop_after_empty_page = false, \
                 has_more_path = \"meta.more\" }",
                Paginator::PageNumber(PageNumberPaginator {
                    base_page: 1,
                    page: Some(2),
                    page_param: Some("p".into()),
                    page_body_path: None,
                    total_path: Some("meta.pages".into()),
                    maximum_page: Some(9),
                    stop_after_empty_page: false,
                    has_more_path: Some("meta.more".into()),
                }),
            ),
            (
                "{ type = \"page_number\", total_path = \"\" }",
                Paginator::PageNumber(PageNumberPaginator {
                    total_path: None,
                    ..page_number_defaults.clone()
                }),
            ),
            (
                "\"json_link\"",
                Paginator::JsonLink(JsonLinkPaginator {
                    next_url_path: "next".into(),
                }),
            ),
            (
                "{ type = \"json_response\", next_url_path = \"links.next\" }",
                Paginator::JsonLink(JsonLinkPaginator {
                    next_url_path: "links.next".into(),
                }),
            ),
            (
                "{ type = \"header_link\" }",
                Paginator::HeaderLink(HeaderLinkPaginator {
                    links_next_key: "next".into(),
                }),
            ),
            (
                "{ type = \"header_link\", links_next_key = \"nxt\" }",
                Paginator::HeaderLink(HeaderLinkPaginator {
                    links_next_key: "nxt".into(),
                }),
            ),
            ("\"cursor\"", Paginator::Cursor(cursor_defaults.clone())),
            (
                "{ type = \"json_response_cursor\", cursor_path = \"meta.next\", \
                 cursor_param = \"after\" }",
                Paginator::Cursor(CursorPaginator {
                    cursor_path: "meta.next".into(),
                    cursor_param: Some("after".into()),
                    ..cursor_defaults.clone()
                }),
            ),
            (
                "{ type = \"cursor\", stop_after_empty_page = true, has_more_path = \"more\" }",
                Paginator::Cursor(CursorPaginator {
                    stop_after_empty_page: true,
                    has_more_path: Some("more".into()),
                    ..cursor_defaults.clone()
                }),
            ),
            (
                "{ type = \"cursor\", cursor_body_path = \"page.cursor\" }",
                Paginator::Cursor(CursorPaginator {
                    cursor_body_path: Some("page.cursor".into()),
                    ..cursor_defaults.clone()
                }),
            ),
            (
                "\"header_cursor\"",
                Paginator::HeaderCursor(HeaderCursorPaginator {
                    cursor_key: "next".into(),
                    cursor_param: "cursor".into(),
                }),
            ),
            (
                "{ type = \"header_cursor\", cursor_key = \"X-Next\", cursor_param = \"c\" }",
                Paginator::HeaderCursor(HeaderCursorPaginator {
                    cursor_key: "X-Next".into(),
                    cursor_param: "c".into(),
                }),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(paginator(text), expected, "{text}");
        }
        assert_eq!(paginator("\"json_response_cursor\"").kind(), "cursor");

        // The same in JSON and YAML.
        let json = r#"{"client": {"base_url": "https://a", "paginator": "auto"},
            "resources": [{"name": "r", "primary_key": "id",
            "endpoint": {"paginator": {"type": "header_cursor", "cursor_key": "X-Next"}}},
            {"name": "s", "primary_key": "id"}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        assert_eq!(
            config.resources[0].endpoint.paginator.kind(),
            "header_cursor"
        );
        assert_eq!(config.resources[1].endpoint.paginator, Paginator::Auto);
        let yaml = "client: {base_url: 'https://a'}\nresources:\n  - name: r\n    \
                    primary_key: id\n    endpoint:\n      paginator:\n        \
                    type: json_link\n        next_url_path: links.next\n";
        let config = parse(yaml, Format::Yaml, "p.yaml").unwrap();
        assert_eq!(
            config.resources[0].endpoint.paginator,
            Paginator::JsonLink(JsonLinkPaginator {
                next_url_path: "links.next".into()
            })
        );
    }

    /// Table-driven: each bad paginator key fails with its key path.
    #[test]
    fn paginator_errors_name_the_key() {
        let at = "pipeline.toml: resources[0].endpoint.paginator";
        let cases: Vec<(&str, String)> = vec![
            (
                "{ type = \"page_number\", pages = 3 }",
                format!("{at}.pages: unknown field `pages`"),
            ),
            (
                "{ type = \"page_number\", base_page = -1 }",
                format!("{at}.base_page: "),
            ),
            (
                "{ type = \"page_number\", page_param = \"\" }",
                format!("{at}.page_param: must not be empty"),
            ),
            (
                "{ type = \"page_number\", base_page = 1, page = 0 }",
                format!("{at}.page: 0 is before base_page (1)"),
            ),
            (
                "{ type = \"page_number\", total_path = \"a[\" }",
                format!("{at}.total_path: `a[` is not a JSONPath"),
            ),
            (
                "{ type = \"page_number\", total_path = \"\", stop_after_empty_page = false }",
                format!("{at}: the paginator would never stop"),
            ),
            (
                "{ type = \"json_link\", next_url = \"x\" }",
                format!("{at}.next_url: unknown field `next_url`"),
            ),
            (
                "{ type = \"json_link\", next_url_path = \"[\" }",
                format!("{at}.next_url_path: `[` is not a JSONPath"),
            ),
            (
                "{ type = \"header_link\", links_next_key = \"\" }",
                format!("{at}.links_next_key: must not be empty"),
            ),
            (
                "{ type = \"header_link\", links_next_key = 5 }",
                format!("{at}.links_next_key: invalid type"),
            ),
            (
                "{ type = \"cursor\", cursor_param = \"c\", cursor_body_path = \"c\" }",
                format!("{at}.cursor_body_path: set either `cursor_param` or `cursor_body_path`"),
            ),
            (
                "{ type = \"cursor\", cursor_body_path = \"a..b\" }",
                format!("{at}.cursor_body_path: `a..b` is not a dotted path"),
            ),
            (
                "{ type = \"cursor\", cursor_path = \"\" }",
                format!("{at}.cursor_path: "),
            ),
            (
                "{ type = \"json_response_cursor\", cursor = \"x\" }",
                format!("{at}.cursor: unknown field `cursor`"),
            ),
            (
                "{ type = \"header_cursor\", cursor_key = \"\" }",
                format!("{at}.cursor_key: must not be empty"),
            ),
            (
                "{ type = \"header_cursor\", cursor_path = \"x\" }",
                format!("{at}.cursor_path: unknown field `cursor_path`"),
            ),
            (
                "{ type = \"auto\", limit = 1 }",
                format!("{at}.limit: unknown field `limit`"),
            ),
            (
                "{ type = \"autoo\" }",
                format!("{at}.type: unknown or unsupported paginator type `autoo`"),
            ),
            (
                "\"links\"",
                format!("{at}: unknown or unsupported paginator `links`"),
            ),
            (
                "\"offset\"",
                format!("{at}: the offset paginator needs a `limit`"),
            ),
        ];
        for (paginator, needle) in cases {
            let e = err(toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {paginator} }}"
            ))));
            assert!(e.contains(&needle), "{paginator}: {needle:?} not in {e:?}");
        }
        let e = err(toml(&with_endpoint(
            "{ paginator = { type = \"cursor\", cursor_body_path = \"cursor\" } }",
        )));
        assert!(
            e.contains("resources[0].endpoint.method: the paginator's `cursor_body_path`"),
            "{e}"
        );
    }

    /// dlt's `offset_body_path` / `limit_body_path` / `page_body_path`: where each value
    /// goes, and the errors (both forms of one value, not a dotted path, overlapping paths,
    /// not a POST, a `data` body).
    #[test]
    fn body_paths() {
        let paginator = |p: &str| -> Paginator {
            toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {p} }}"
            )))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .resources[0]
                .endpoint
                .paginator
                .clone()
        };
        let places = |p: &str| match paginator(p) {
            Paginator::Offset(p) => vec![
                format!("{:?}", p.offset_place()),
                format!("{:?}", p.limit_place()),
            ],
            Paginator::PageNumber(p) => vec![format!("{:?}", p.page_place())],
            other => panic!("{other:?}"),
        };
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (
                "{ type = \"offset\", limit = 5, offset_body_path = \"paging.offset\", \
                 limit_body_path = \"paging.limit\" }",
                vec!["Body(\"paging.offset\")", "Body(\"paging.limit\")"],
            ),
            // As in dlt each value has its own default: the offset in the body, the limit
            // in the query.
            (
                "{ type = \"offset\", limit = 5, offset_body_path = \"offset\" }",
                vec!["Body(\"offset\")", "Param(\"limit\")"],
            ),
            (
                "{ type = \"offset\", limit = 5, offset_param = \"skip\" }",
                vec!["Param(\"skip\")", "Param(\"limit\")"],
            ),
            (
                "{ type = \"page_number\", page_body_path = \"page.number\" }",
                vec!["Body(\"page.number\")"],
            ),
            ("\"page_number\"", vec!["Param(\"page\")"]),
        ];
        for (text, expected) in cases {
            assert_eq!(places(text), expected, "{text}");
        }

        let at = "pipeline.toml: resources[0].endpoint.paginator";
        let errors: Vec<(&str, String)> = vec![
            (
                "{ type = \"offset\", limit = 5, offset_param = \"o\", offset_body_path = \"o\" }",
                format!(
                    "{at}.offset_body_path: set either `offset_param` or `offset_body_path`, not both"
                ),
            ),
            (
                "{ type = \"offset\", limit = 5, limit_param = \"l\", limit_body_path = \"l\" }",
                format!(
                    "{at}.limit_body_path: set either `limit_param` or `limit_body_path`, not both"
                ),
            ),
            (
                "{ type = \"page_number\", page_param = \"p\", page_body_path = \"p\" }",
                format!(
                    "{at}.page_body_path: set either `page_param` or `page_body_path`, not both"
                ),
            ),
            (
                "{ type = \"offset\", limit = 5, offset_body_path = \"a..b\" }",
                format!(
                    "{at}.offset_body_path: `a..b` is not a dotted path such as `paging.offset`"
                ),
            ),
            (
                "{ type = \"page_number\", page_body_path = \"\" }",
                format!("{at}.page_body_path: `` is not a dotted path"),
            ),
            (
                "{ type = \"offset\", limit = 5, offset_body_path = \"paging\", \
                 limit_body_path = \"paging.limit\" }",
                format!("{at}.limit_body_path: `paging.limit` overlaps offset_body_path `paging`"),
            ),
            (
                "{ type = \"offset\", limit = 5, offset_body_path = \"p\", limit_body_path = \"p\" }",
                format!("{at}.limit_body_path: `p` overlaps offset_body_path `p`"),
            ),
            (
                "{ type = \"offset\", limit = 5, offset_param = \"\" }",
                format!("{at}.offset_param: must not be empty"),
            ),
            (
                "{ type = \"offset\", limit = 5, offset_param = \"x\", limit_param = \"x\" }",
                format!("{at}.limit_param: same as offset_param (`x`)"),
            ),
        ];
        for (text, needle) in errors {
            let e = err(toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {text} }}"
            ))));
            assert!(e.contains(&needle), "{text}: {needle:?} not in {e:?}");
        }
        let e = err(toml(&with_endpoint(
            "{ paginator = { type = \"page_number\", page_body_path = \"page\" } }",
        )));
        assert!(
            e.contains(
                "resources[0].endpoint.method: the paginator's `page_body_path` puts the page \
                 number in a JSON body: set `method = \"POST\"`"
            ),
            "{e}"
        );
        let e = err(toml(&with_endpoint(
            "{ method = \"POST\", data = { q = \"x\" }, \
             paginator = { type = \"offset\", limit = 5, limit_body_path = \"limit\" } }",
        )));
        assert!(
            e.contains(
                "resources[0].endpoint.data: the paginator's `limit_body_path` puts the limit"
            ),
            "{e}"
        );
    }
}
