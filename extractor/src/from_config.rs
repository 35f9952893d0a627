//! Turns the validated config into the running parts: the resources to run, the HTTP client
//! with its secret resolved, each endpoint's request plan and paginator, the schema
//! registry's settings. Pure apart from reading secrets.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::config::{
    self, ApiKeyLocation, AuthConfig, ClientConfig, PipelineConfig, ResourceConfig,
};
use common::secret::{SecretError, SecretResolver};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{Map, Value};

use crate::auth::OAuth2ClientCredentials;
use crate::client::{Auth, DataBody, HttpClient, Method, Request};
use crate::jsonpath::{DataSelector, Selector, SelectorError};
use crate::paginate::cursor::{CursorTarget, set_path};
use crate::paginate::{
    AutoPaginator, CursorPaginator, HeaderCursorPaginator, HeaderLinkPaginator, JsonLinkPaginator,
    NextRequest, OffsetPaginator, PageNumberPaginator, Paginator, Place,
};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("building the HTTP client: {0}")]
    Http(String),
    #[error("--resource {0:?}: no such resource in the config (it has: {1})")]
    UnknownResource(String, String),
    #[error("schema registry: {0}")]
    Registry(String),
}

/// The resources to run (all, or those named; each must exist), with their request plans.
pub fn select_resources<'a>(
    cfg: &'a PipelineConfig,
    names: &[String],
) -> Result<Vec<(&'a ResourceConfig, EndpointPlan)>, BuildError> {
    let known: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(BuildError::UnknownResource(
            unknown.clone(),
            known.join(", "),
        ));
    }
    cfg.resources
        .iter()
        .enumerate()
        .filter(|(_, r)| names.is_empty() || names.contains(&r.name))
        .map(|(i, r)| Ok((r, endpoint_plan(i, r)?)))
        .collect()
}

pub fn http_client(
    client: &ClientConfig,
    secrets: &SecretResolver,
) -> Result<HttpClient, BuildError> {
    let auth = match &client.auth {
        None => Auth::None,
        Some(AuthConfig::ApiKey(a)) => {
            let value = secrets.resolve("client.auth.api_key", &a.api_key)?;
            match a.location {
                ApiKeyLocation::Query => Auth::Query {
                    name: a.name.clone(),
                    value,
                },
                ApiKeyLocation::Header => Auth::Header {
                    name: HeaderName::from_str(&a.name).map_err(|e| BuildError::Invalid {
                        key: "client.auth.name".into(),
                        message: format!("`{}` is not a valid header name: {e}", a.name),
                    })?,
                    value,
                },
                ApiKeyLocation::Cookie => Auth::Cookie {
                    name: a.name.clone(),
                    value,
                },
            }
        }
        Some(AuthConfig::Bearer(b)) => {
            Auth::Bearer(secrets.resolve("client.auth.token", &b.token)?)
        }
        Some(AuthConfig::HttpBasic(b)) => Auth::Basic {
            username: b.username.clone(),
            password: secrets.resolve("client.auth.password", &b.password)?,
        },
        Some(AuthConfig::OAuth2ClientCredentials(o)) => {
            let token_url =
                url::Url::parse(&o.access_token_url).map_err(|e| BuildError::Invalid {
                    key: "client.auth.access_token_url".into(),
                    message: format!("not a URL: {e}"),
                })?;
            Auth::OAuth2(Arc::new(OAuth2ClientCredentials::new(
                token_url,
                secrets.resolve("client.auth.client_id", &o.client_id)?,
                secrets.resolve("client.auth.client_secret", &o.client_secret)?,
                o.access_token_request_data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Duration::from_secs(o.default_token_expiration),
                o.client_auth_method,
            )))
        }
    };
    if let Some(bad) = auth_header_problem(&auth) {
        return Err(BuildError::Invalid {
            key: bad.into(),
            message: "the secret's value cannot be sent in an HTTP header (control characters)"
                .into(),
        });
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &client.headers {
        let invalid = |message: String| BuildError::Invalid {
            key: format!("client.headers.{k}"),
            message,
        };
        let name = HeaderName::from_str(k)
            .map_err(|e| invalid(format!("not a valid header name: {e}")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|e| invalid(format!("not a valid header value: {e}")))?;
        let _ = headers.insert(name, value);
    }
    let http = HttpClient::new(
        client.base_url.as_str(),
        auth,
        headers,
        client.timeout,
        client.retry.clone(),
    )
    .and_then(|http| http.with_trusted_hosts(&client.trusted_hosts))
    .map_err(|e| BuildError::Http(e.to_string()))?
    .with_max_pages(client.max_pages);
    Ok(match client.max_requests_per_second {
        Some(rps) => http.with_rate_limit(rps),
        None => http,
    })
}

/// Which auth key holds a secret that no header can carry.
fn auth_header_problem(auth: &Auth) -> Option<&'static str> {
    let ok = |s: &str| HeaderValue::from_str(s).is_ok();
    match auth {
        Auth::Header { value, .. } if !ok(value.expose()) => Some("client.auth.api_key"),
        Auth::Cookie { value, .. } if !ok(value.expose()) => Some("client.auth.api_key"),
        Auth::Bearer(token) if !ok(token.expose()) => Some("client.auth.token"),
        _ => None,
    }
}

/// The request side of one resource, ready to page.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    pub method: Method,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub json: Option<Value>,
    /// The endpoint's own headers (dlt's endpoint `headers`).
    pub headers: Vec<(String, String)>,
    /// dlt's `data` (its texts may hold placeholders until filled).
    pub data: Option<DataBody>,
    pub selector: Option<DataSelector>,
    pub paginator: Paginator,
    pub response_actions: Vec<config::ResponseAction>,
}

impl EndpointPlan {
    /// Sets the JSON body, also the one a `cursor_body_path` paginator puts its cursor into.
    pub fn set_json(&mut self, json: Option<Value>) {
        if let Paginator::Cursor(CursorPaginator {
            target: CursorTarget::Body { body, .. },
            ..
        }) = &mut self.paginator
        {
            body.clone_from(&json);
        }
        self.json = json;
    }

    /// The request for the paginator's `step`, as a run sends it.
    pub fn request(&self, step: NextRequest) -> Request {
        self.template().request(step)
    }

    /// What every page's request starts from.
    pub fn template(&self) -> RequestTemplate<'_> {
        RequestTemplate {
            method: self.method,
            path: &self.path,
            params: &self.params,
            json: self.json.as_ref(),
            headers: &self.headers,
            data: self.data.as_ref(),
            response_actions: &self.response_actions,
        }
    }
}

/// An endpoint's request without the paginator's part: what each page's request is made
/// from (borrowed, so the paginator can be used mutably beside it).
#[derive(Debug, Clone, Copy)]
pub struct RequestTemplate<'a> {
    pub method: Method,
    pub path: &'a str,
    pub params: &'a [(String, String)],
    pub json: Option<&'a Value>,
    pub headers: &'a [(String, String)],
    pub data: Option<&'a DataBody>,
    pub response_actions: &'a [config::ResponseAction],
}

impl RequestTemplate<'_> {
    /// The request for the paginator's `step`: its params replace the endpoint's of the
    /// same name, a next link replaces path and params, a JSON body the endpoint's body.
    pub fn request(&self, step: NextRequest) -> Request {
        let base = Request {
            method: self.method,
            path: self.path.to_owned(),
            params: self.params.to_vec(),
            json: self.json.cloned(),
            headers: self.headers.to_vec(),
            data: self.data.cloned(),
            response_actions: self.response_actions.to_vec(),
        };
        match step {
            NextRequest::Params(page_params) => Request {
                params: self.with_params(page_params),
                ..base
            },
            NextRequest::Fields { params, body } => {
                // dlt's `*_body_path`: set in the endpoint's body (`{}` when it has none),
                // after its placeholders were filled.
                let mut json = base
                    .json
                    .clone()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                for (path, value) in body {
                    set_path(&mut json, &path, value);
                }
                Request {
                    params: self.with_params(params),
                    json: Some(json),
                    ..base
                }
            }
            NextRequest::Url(url) => Request {
                path: url.to_string(),
                params: Vec::new(),
                ..base
            },
            NextRequest::Json(body) => Request {
                json: Some(body),
                ..base
            },
        }
    }
}

impl RequestTemplate<'_> {
    /// The endpoint's params with the paginator's: those replace the endpoint's of the same
    /// name.
    fn with_params(&self, page_params: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| !page_params.iter().any(|(p, _)| p == k))
            .cloned()
            .collect();
        params.extend(page_params);
        params
    }
}

/// A param value as dlt sends it (Python's `str()` through `requests`): a string as is, a
/// number as written, a boolean `True` or `False`.
pub fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        other => other.to_string(),
    }
}

/// `index` is the resource's position in `resources`, for error messages.
pub fn endpoint_plan(index: usize, resource: &ResourceConfig) -> Result<EndpointPlan, BuildError> {
    let ep = &resource.endpoint;
    let key = |k: &str| format!("resources[{index}].endpoint.{k}");
    let params = ep
        .params
        .iter()
        .flat_map(|(k, v)| match v {
            // A list is the param repeated, as `requests` sends it (`ids=1&ids=2`).
            Value::Array(items) => items.iter().map(|i| (k.clone(), param_text(i))).collect(),
            other => vec![(k.clone(), param_text(other))],
        })
        .collect();
    let selector = ep
        .data_selector
        .as_deref()
        .map(|s| DataSelector::parse(&key("data_selector"), s, ep.allow_null_data))
        .transpose()?;
    let selector_at =
        |k: &str, text: &str| Selector::parse(&key(k), text).map(|s| (text.to_owned(), s));
    let paginator =
        match &ep.paginator {
            config::Paginator::SinglePage => Paginator::SinglePage,
            config::Paginator::Auto => Paginator::Auto(AutoPaginator::default()),
            config::Paginator::Offset(p) => Paginator::Offset(OffsetPaginator {
                limit: p.limit,
                offset: p.offset,
                offset_at: Place::from_config(p.offset_place()),
                limit_at: Place::from_config(p.limit_place()),
                total_path: p
                    .total_path
                    .as_deref()
                    .map(|t| selector_at("paginator.total_path", t))
                    .transpose()?,
                maximum_offset: p.maximum_offset,
                stop_after_empty_page: p.stop_after_empty_page,
                has_more_path: p
                    .has_more_path
                    .as_deref()
                    .map(|t| selector_at("paginator.has_more_path", t))
                    .transpose()?,
            }),
            config::Paginator::PageNumber(p) => Paginator::PageNumber(PageNumberPaginator {
                base_page: p.base_page,
                page: p.page.unwrap_or(p.base_page),
                page_at: Place::from_config(p.page_place()),
                total_path: p
                    .total_path
                    .as_deref()
                    .map(|t| selector_at("paginator.total_path", t))
                    .transpose()?,
                maximum_page: p.maximum_page,
                stop_after_empty_page: p.stop_after_empty_page,
                has_more_path: p
                    .has_more_path
                    .as_deref()
                    .map(|t| selector_at("paginator.has_more_path", t))
                    .transpose()?,
            }),
            config::Paginator::JsonLink(p) => Paginator::JsonLink(JsonLinkPaginator::new(
                selector_at("paginator.next_url_path", &p.next_url_path)?,
            )),
            config::Paginator::HeaderLink(p) => {
                Paginator::HeaderLink(HeaderLinkPaginator::new(p.links_next_key.clone()))
            }
            config::Paginator::Cursor(p) => {
                let target = match &p.cursor_body_path {
                    Some(path) => CursorTarget::Body {
                        path: path.split('.').map(str::to_owned).collect(),
                        body: ep.json.clone(),
                    },
                    None => CursorTarget::Param(
                        p.cursor_param
                            .clone()
                            .unwrap_or_else(|| "cursor".to_owned()),
                    ),
                };
                let mut cursor = CursorPaginator::new(
                    selector_at("paginator.cursor_path", &p.cursor_path)?,
                    target,
                );
                cursor.stop_after_empty_page = p.stop_after_empty_page;
                cursor.has_more_path = p
                    .has_more_path
                    .as_deref()
                    .map(|t| selector_at("paginator.has_more_path", t))
                    .transpose()?;
                Paginator::Cursor(cursor)
            }
            config::Paginator::HeaderCursor(p) => Paginator::HeaderCursor(
                HeaderCursorPaginator::new(p.cursor_key.clone(), p.cursor_param.clone()),
            ),
        };
    Ok(EndpointPlan {
        method: match ep.method {
            config::Method::Get => Method::Get,
            config::Method::Post => Method::Post,
        },
        path: ep.path.clone(),
        params,
        json: ep.json.clone(),
        headers: ep
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        data: ep.data.as_ref().map(|data| match data {
            Value::Object(fields) => DataBody::Form(
                fields
                    .iter()
                    .flat_map(|(k, v)| match v {
                        Value::Array(items) => {
                            items.iter().map(|i| (k.clone(), param_text(i))).collect()
                        }
                        other => vec![(k.clone(), param_text(other))],
                    })
                    .collect(),
            ),
            other => DataBody::Raw(param_text(other)),
        }),
        selector,
        paginator,
        response_actions: ep.response_actions.clone(),
    })
}

/// The registry client when `schema_registry.url` is configured.
pub fn schema_registry(
    cfg: &PipelineConfig,
    secrets: &SecretResolver,
) -> Result<Option<SrSettings>, BuildError> {
    common::registry::settings(cfg, secrets).map_err(|e| BuildError::Registry(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_sent_as_dlt_sends_them() {
        // What `requests` (dlt's client) makes of `{"a": True, "b": 1.5, "n": 7}`:
        // `a=True&b=1.5&n=7`.
        for (value, text) in [
            (json!(true), "True"),
            (json!(false), "False"),
            (json!(1.5), "1.5"),
            (json!(7), "7"),
            (json!("x y"), "x y"),
        ] {
            assert_eq!(param_text(&value), text);
        }
    }

    #[test]
    fn each_page_request_starts_from_the_endpoint_request() {
        let params = vec![
            ("page".to_owned(), "1".to_owned()),
            ("sort".to_owned(), "id".to_owned()),
        ];
        let body = json!({"filter": "all"});
        let template = RequestTemplate {
            method: Method::Post,
            path: "/items",
            params: &params,
            json: Some(&body),
            headers: &[],
            data: None,
            response_actions: &[],
        };
        // The paginator's params replace the endpoint's of the same name.
        let req = template.request(NextRequest::Params(vec![(
            "page".to_owned(),
            "2".to_owned(),
        )]));
        assert_eq!((req.method, req.path.as_str()), (Method::Post, "/items"));
        assert_eq!(
            req.params,
            vec![
                ("sort".to_owned(), "id".to_owned()),
                ("page".to_owned(), "2".to_owned()),
            ]
        );
        assert_eq!(req.json, Some(body.clone()));
        // A next link replaces the path and the params.
        let link = url::Url::parse("http://h/items?page=3").unwrap();
        let req = template.request(NextRequest::Url(link));
        assert_eq!(req.path, "http://h/items?page=3");
        assert!(req.params.is_empty());
        // A JSON body replaces the endpoint's; the params stay.
        let req = template.request(NextRequest::Json(json!({"cursor": "c"})));
        assert_eq!(req.json, Some(json!({"cursor": "c"})));
        assert_eq!(req.params, params);
        // Body fields are set in the endpoint's body, params as params (dlt's
        // `offset_body_path` with the limit left in the query).
        let req = template.request(NextRequest::Fields {
            params: vec![("limit".to_owned(), "5".to_owned())],
            body: vec![(vec!["paging".to_owned(), "offset".to_owned()], json!(10))],
        });
        assert_eq!(
            req.json,
            Some(json!({"filter": "all", "paging": {"offset": 10}}))
        );
        assert_eq!(
            req.params.last(),
            Some(&("limit".to_owned(), "5".to_owned()))
        );
        let bare = RequestTemplate {
            json: None,
            ..template
        };
        let req = bare.request(NextRequest::Fields {
            params: vec![],
            body: vec![(vec!["page".to_owned()], json!(2))],
        });
        assert_eq!(req.json, Some(json!({"page": 2})));
    }
}
