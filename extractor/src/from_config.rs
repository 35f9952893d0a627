//! Turns the validated config into the running parts: the resources to run, the HTTP
//! clients (`client.auth`'s and each other endpoint `auth`'s) with their secrets resolved, each endpoint's request plan and paginator, the schema
//! registry's settings. Pure apart from reading secrets.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::config::{
    self, ApiKeyLocation, AuthConfig, ClientConfig, EndpointAuth, PipelineConfig, ResourceConfig,
};
use common::secret::{Secret, SecretError, SecretResolver};
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

/// The HTTP client of `client` with `client.auth`.
pub fn http_client(
    client: &ClientConfig,
    secrets: &SecretResolver,
) -> Result<HttpClient, BuildError> {
    let auth = auth("client.auth", client.auth.as_ref(), secrets)?;
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
    .with_max_pages(client.max_pages)
    .with_max_response_bytes(client.max_response_bytes);
    Ok(match client.max_requests_per_second {
        Some(rps) => http.with_rate_limit(rps),
        None => http,
    })
}

/// The HTTP clients of a config: `client.auth`'s, and one per other auth an endpoint has
/// (dlt's endpoint `auth`). Endpoints with equal auth configs share a client, and so its
/// OAuth2 token; all share the rate limit. Each client keeps every configured secret out
/// of what it shows.
pub struct HttpClients {
    /// The first is `client.auth`'s, with that config.
    clients: Vec<(Option<AuthConfig>, HttpClient)>,
    /// Resource name → index into `clients` (resources not here use the first).
    by_resource: HashMap<String, usize>,
}

impl HttpClients {
    /// The client of `resource`'s requests.
    pub fn for_resource(&self, resource: &str) -> &HttpClient {
        let index = self.by_resource.get(resource).copied().unwrap_or(0);
        &self.clients[index.min(self.clients.len() - 1)].1
    }

    /// How many distinct clients (auth configs) there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Never: there is always `client.auth`'s.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// [`HttpClients`] for `cfg`: its secrets resolved, each endpoint auth's under its key path
/// (`resources[1].endpoint.auth.token`).
pub fn http_clients(
    cfg: &PipelineConfig,
    secrets: &SecretResolver,
) -> Result<HttpClients, BuildError> {
    let default = http_client(&cfg.client, secrets)?;
    let mut clients = vec![(cfg.client.auth.clone(), default)];
    let mut by_resource = HashMap::new();
    for (i, resource) in cfg.resources.iter().enumerate() {
        if resource.endpoint.auth == EndpointAuth::Client {
            continue;
        }
        let wanted = resource.endpoint.auth.resolve(cfg.client.auth.as_ref());
        let index = match clients.iter().position(|(a, _)| a.as_ref() == wanted) {
            Some(index) => index,
            None => {
                let key = format!("resources[{i}].endpoint.auth");
                let client = clients[0]
                    .1
                    .with_auth(auth(&key, wanted, secrets)?)
                    .map_err(|e| BuildError::Http(e.to_string()))?;
                clients.push((wanted.cloned(), client));
                clients.len() - 1
            }
        };
        let _ = by_resource.insert(resource.name.clone(), index);
    }
    let all: Vec<Secret> = clients.iter().flat_map(|(_, c)| c.own_secrets()).collect();
    for (_, client) in &mut clients {
        client.redact_also(&all);
    }
    Ok(HttpClients {
        clients,
        by_resource,
    })
}

/// The credentials of `auth` (written at `key`: `client.auth`, or an endpoint's), its
/// secrets resolved.
fn auth(
    key: &str,
    auth: Option<&AuthConfig>,
    secrets: &SecretResolver,
) -> Result<Auth, BuildError> {
    let at = |k: &str| format!("{key}.{k}");
    let resolved = match auth {
        None => Auth::None,
        Some(AuthConfig::ApiKey(a)) => {
            let value = secrets.resolve(&at("api_key"), &a.api_key)?;
            match a.location {
                ApiKeyLocation::Query => Auth::Query {
                    name: a.name.clone(),
                    value,
                },
                ApiKeyLocation::Header => Auth::Header {
                    name: HeaderName::from_str(&a.name).map_err(|e| BuildError::Invalid {
                        key: at("name"),
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
        Some(AuthConfig::Bearer(b)) => Auth::Bearer(secrets.resolve(&at("token"), &b.token)?),
        Some(AuthConfig::HttpBasic(b)) => Auth::Basic {
            username: b.username.clone(),
            password: secrets.resolve(&at("password"), &b.password)?,
        },
        Some(AuthConfig::OAuth2ClientCredentials(o)) => {
            let token_url =
                url::Url::parse(&o.access_token_url).map_err(|e| BuildError::Invalid {
                    key: at("access_token_url"),
                    message: format!("not a URL: {e}"),
                })?;
            Auth::OAuth2(Arc::new(OAuth2ClientCredentials::new(
                token_url,
                secrets.resolve(&at("client_id"), &o.client_id)?,
                secrets.resolve(&at("client_secret"), &o.client_secret)?,
                o.access_token_request_data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Duration::from_secs(o.default_token_expiration),
                o.client_auth_method,
            )))
        }
    };
    if let Some(bad) = auth_header_problem(&resolved) {
        return Err(BuildError::Invalid {
            key: at(bad),
            message: "the secret's value cannot be sent in an HTTP header (control characters)"
                .into(),
        });
    }
    Ok(resolved)
}

/// Which auth key holds a secret that no header can carry.
fn auth_header_problem(auth: &Auth) -> Option<&'static str> {
    let ok = |s: &str| HeaderValue::from_str(s).is_ok();
    match auth {
        Auth::Header { value, .. } if !ok(value.expose()) => Some("api_key"),
        Auth::Cookie { value, .. } if !ok(value.expose()) => Some("api_key"),
        Auth::Bearer(token) if !ok(token.expose()) => Some("token"),
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

    /// dlt's endpoint `auth`: a resource with its own gets a client of its own, resources
    /// with equal auths share one (and so an OAuth2 token), the others use `client.auth`'s;
    /// every client redacts every configured secret; a missing secret names its key path.
    #[test]
    fn endpoint_auths_get_clients_of_their_own() {
        let file =
            std::env::temp_dir().join(format!("from-config-secrets-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "fc_test_query_key = \"query-s3cret-1\"\nfc_test_token = \"bearer-s3cret-2\"\n",
        )
        .unwrap();
        let secrets = SecretResolver::new(Some(file.clone()));
        let query_key = r#"{ type = "api_key", name = "key", api_key = { secret = "fc_test_query_key" }, location = "query" }"#;
        let bearer = r#"{ type = "bearer", token = { secret = "fc_test_token" } }"#;
        let text = format!(
            "[client]\nbase_url = \"http://api.example.com\"\nauth = {query_key}\n\
             [[resources]]\nname = \"plain\"\n\
             [[resources]]\nname = \"a\"\nendpoint = {{ auth = {bearer} }}\n\
             [[resources]]\nname = \"b\"\nendpoint = {{ auth = {bearer} }}\n\
             [[resources]]\nname = \"same\"\nendpoint = {{ auth = {query_key} }}\n"
        );
        let cfg = config::parse(&text, config::Format::Toml, "p.toml").unwrap();
        let clients = http_clients(&cfg, &secrets).unwrap();
        assert_eq!(clients.len(), 2, "client.auth's and one bearer client");
        let plain = clients.for_resource("plain");
        let a = clients.for_resource("a");
        assert!(std::ptr::eq(plain, clients.for_resource("same")));
        assert!(std::ptr::eq(a, clients.for_resource("b")));
        assert!(!std::ptr::eq(a, plain));
        let req = Request {
            method: Method::Get,
            path: "/x".into(),
            params: vec![],
            json: None,
            headers: vec![],
            data: None,
            response_actions: vec![],
        };
        // The query key goes only with client.auth's requests.
        assert_eq!(plain.display_url(&req), "http://api.example.com/x?key=***");
        assert_eq!(a.display_url(&req), "http://api.example.com/x");
        assert!(a.has_credentials() && plain.has_credentials());
        // Each client hides the other's secret too.
        for client in [plain, a] {
            assert_eq!(
                client.redact_text("query-s3cret-1 bearer-s3cret-2"),
                "*** ***"
            );
        }

        let missing = text.replace(
            "[[resources]]\nname = \"a\"\nendpoint = { auth = { type = \"bearer\", token = { secret = \"fc_test_token\" } } }",
            "[[resources]]\nname = \"a\"\nendpoint = { auth = { type = \"bearer\", token = { secret = \"fc_test_missing_71\" } } }",
        );
        assert_ne!(missing, text);
        let cfg = config::parse(&missing, config::Format::Toml, "p.toml").unwrap();
        let e = http_clients(&cfg, &secrets).err().unwrap().to_string();
        assert!(e.contains("resources[1].endpoint.auth.token"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let _ = std::fs::remove_file(&file);
    }
}
