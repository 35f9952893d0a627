//! The HTTP side: one request with auth applied, retried by the policy from
//! `common::retry` with `backon`. Every URL and message that leaves this module has the
//! secrets redacted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use backon::Retryable;
use common::config::ResponseAction;
use common::json::tape::Tape;
use common::redact::{redact_text, redact_url};
use common::retry::RetryPolicy;
use common::secret::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::adaptive_limit::AdaptiveLimit;
use crate::auth::OAuth2ClientCredentials;
use crate::auth::oauth2::TokenError;

/// The requests-per-second bucket every request of a client waits on (`client.max_requests_per_second`).
type RateLimiter = governor::DefaultDirectRateLimiter;

/// How credentials go on each request. `OAuth2` sends a bearer token it fetches (and
/// refreshes) with client credentials.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Query { name: String, value: Secret },
    Header { name: HeaderName, value: Secret },
    Cookie { name: String, value: Secret },
    Bearer(Secret),
    Basic { username: String, password: Secret },
    OAuth2(Arc<OAuth2ClientCredentials>),
}

impl Auth {
    fn secrets(&self) -> Vec<Secret> {
        match self {
            Auth::None => vec![],
            Auth::Query { value, .. }
            | Auth::Header { value, .. }
            | Auth::Cookie { value, .. }
            | Auth::Bearer(value) => {
                vec![value.clone()]
            }
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::OAuth2(oauth) => oauth.secrets(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
        })
    }
}

/// dlt's `data`, as `requests` sends it: a table is a form
/// (`application/x-www-form-urlencoded`, a list repeating its key), a string the body as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataBody {
    Form(Vec<(String, String)>),
    Raw(String),
}

/// One request: the endpoint's path, its params plus the paginator's, and a JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub json: Option<Value>,
    /// The endpoint's own headers (dlt's endpoint `headers`), over the client's.
    pub headers: Vec<(String, String)>,
    /// dlt's `data`: a form or raw body (instead of `json`).
    pub data: Option<DataBody>,
    /// dlt's `response_actions`: a response one of them ignores comes back with
    /// [`Response::ignored`] set (after the retries a retryable status gets).
    pub response_actions: Vec<ResponseAction>,
}

#[derive(Debug)]
pub struct Response {
    /// The request's URL without the auth query parameter (links resolve against it).
    pub url: Url,
    pub headers: HeaderMap,
    /// The body, unless it was asked for flat ([`HttpClient::fetch_page`]): then `null`.
    pub body: Value,
    /// The body parsed flat, when asked for ([`HttpClient::fetch_page`]).
    pub tape: Option<Tape>,
    pub bytes: usize,
    /// Retries this request needed (attempts - 1), and the statuses that caused them.
    pub retries: u32,
    pub retry_statuses: Vec<u16>,
    /// The status of a response that a `response_actions` entry ignores (its body is then
    /// `null`): an empty page that ends the paging.
    pub ignored: Option<u16>,
}

/// A response's body as one attempt parsed it.
enum Body {
    Value(Value),
    Flat(Tape),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{method} {url}: HTTP {status} after {attempts} attempt(s): {excerpt}")]
    Status {
        method: Method,
        url: String,
        status: u16,
        excerpt: String,
        attempts: u32,
        retryable: bool,
        retry_after: Option<Duration>,
        /// A `response_actions` entry ignores this response once the retries are spent.
        ignored: bool,
    },
    #[error("{method} {url}: {message} after {attempts} attempt(s)")]
    Transport {
        method: Method,
        url: String,
        message: String,
        attempts: u32,
        retryable: bool,
    },
    #[error(
        "{method} {url}: the response is not JSON ({message}; {content_type}, {bytes} bytes): {excerpt}"
    )]
    NotJson {
        method: Method,
        url: String,
        message: String,
        /// `content-type <value>`, or `no content-type`.
        content_type: String,
        bytes: usize,
        excerpt: String,
    },
    #[error(
        "{method} {url}: the response body is larger than {limit} bytes (client.max_response_bytes; raise it to accept answers this large)"
    )]
    TooLarge {
        method: Method,
        url: String,
        limit: u64,
    },
    #[error("bad request URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("{method} {url}: no OAuth2 token after {attempts} attempt(s): {error}")]
    Token {
        method: Method,
        url: String,
        error: TokenError,
        attempts: u32,
        retryable: bool,
    },
}

impl FetchError {
    fn retryable(&self) -> bool {
        match self {
            FetchError::Status { retryable, .. }
            | FetchError::Transport { retryable, .. }
            | FetchError::Token { retryable, .. } => *retryable,
            FetchError::NotJson { .. }
            | FetchError::TooLarge { .. }
            | FetchError::BadUrl { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            FetchError::Token { error, .. } => error.status(),
            _ => None,
        }
    }

    fn set_attempts(mut self, n: u32) -> Self {
        match &mut self {
            FetchError::Status { attempts, .. }
            | FetchError::Transport { attempts, .. }
            | FetchError::Token { attempts, .. } => *attempts = n,
            FetchError::NotJson { .. }
            | FetchError::TooLarge { .. }
            | FetchError::BadUrl { .. } => {}
        }
        self
    }
}

pub struct HttpClient {
    http: reqwest::Client,
    base_url: String,
    auth: Auth,
    headers: HeaderMap,
    policy: RetryPolicy,
    secrets: Vec<Secret>,
    secret_params: Vec<String>,
    /// Shared by the clients [`HttpClient::with_auth`] makes: one limit for all requests.
    rate: Option<Arc<RateLimiter>>,
    timeout: Duration,
    /// `base_url`'s host and `client.trusted_hosts`: where next links and redirects may
    /// lead with the credentials.
    trusted_hosts: Vec<String>,
    max_pages: u64,
    /// The largest body an answer may have, decompressed (`client.max_response_bytes`).
    max_response_bytes: u64,
}

/// How much of an error response body goes into the error message.
const EXCERPT_CHARS: usize = 200;
/// Redirects followed for one request (reqwest's default).
const MAX_REDIRECTS: usize = 10;
/// The UTF-8 byte order mark some APIs put before their JSON (serde_json refuses it;
/// Python's `requests`, which dlt uses, skips it).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl HttpClient {
    pub fn new(
        base_url: &str,
        auth: Auth,
        headers: HeaderMap,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let trusted_hosts: Vec<String> = Url::parse(base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .into_iter()
            .collect();
        let credentials = !matches!(auth, Auth::None);
        let http = http_client(timeout, credentials.then(|| trusted_hosts.clone()))?;
        let secrets = auth.secrets();
        let secret_params = match &auth {
            Auth::Query { name, .. } => vec![name.clone()],
            _ => vec![],
        };
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth,
            headers,
            policy,
            secrets,
            secret_params,
            rate: None,
            timeout,
            trusted_hosts,
            max_pages: common::config::DEFAULT_MAX_PAGES,
            max_response_bytes: common::config::DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// A client for the same API with other credentials (an endpoint's own `auth`): the
    /// same settings, trusted hosts and rate limit (shared: all requests count against
    /// it), its own connection pool and redirect policy (which depends on credentials).
    pub fn with_auth(&self, auth: Auth) -> Result<Self, reqwest::Error> {
        let credentials = !matches!(auth, Auth::None);
        let http = http_client(
            self.timeout,
            credentials.then(|| self.trusted_hosts.clone()),
        )?;
        let secrets = auth.secrets();
        let secret_params = match &auth {
            Auth::Query { name, .. } => vec![name.clone()],
            _ => vec![],
        };
        Ok(Self {
            http,
            base_url: self.base_url.clone(),
            auth,
            headers: self.headers.clone(),
            policy: self.policy.clone(),
            secrets,
            secret_params,
            rate: self.rate.clone(),
            timeout: self.timeout,
            trusted_hosts: self.trusted_hosts.clone(),
            max_pages: self.max_pages,
            max_response_bytes: self.max_response_bytes,
        })
    }

    /// The secret values this client's own auth holds (not the tokens it fetches).
    pub fn own_secrets(&self) -> Vec<Secret> {
        self.auth.secrets()
    }

    /// Also keeps `secrets` (other clients' credentials) out of every message and URL this
    /// client shows.
    pub fn redact_also(&mut self, secrets: &[Secret]) {
        for secret in secrets {
            if !self.secrets.contains(secret) {
                self.secrets.push(secret.clone());
            }
        }
    }

    /// Lets next links and redirects lead to `hosts` (`client.trusted_hosts`) with the
    /// credentials, besides `base_url`'s host.
    pub fn with_trusted_hosts(mut self, hosts: &[String]) -> Result<Self, reqwest::Error> {
        self.trusted_hosts
            .extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
        let credentials = self.has_credentials();
        self.http = http_client(
            self.timeout,
            credentials.then(|| self.trusted_hosts.clone()),
        )?;
        Ok(self)
    }

    /// Stops one paging of an endpoint after `max_pages` pages (`client.max_pages`).
    pub fn with_max_pages(mut self, max_pages: u64) -> Self {
        self.max_pages = max_pages.max(1);
        self
    }

    /// Fails a request whose body is larger than `bytes` once decompressed
    /// (`client.max_response_bytes`): memory stays bounded whatever an API sends.
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes.max(1);
        self
    }

    /// The most pages one paging of an endpoint may take.
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Whether requests carry credentials (`client.auth`, or the endpoint's `auth`).
    pub fn has_credentials(&self) -> bool {
        !matches!(self.auth, Auth::None)
    }

    /// Whether a next link may lead to `url` from an endpoint whose own URL is
    /// `endpoint`: without credentials always; with them only to `endpoint`'s host,
    /// `base_url`'s and `client.trusted_hosts`.
    pub fn may_follow(&self, url: &Url, endpoint: Option<&Url>) -> bool {
        if !self.has_credentials() {
            return true;
        }
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        self.trusted_hosts.contains(&host)
            || endpoint
                .and_then(Url::host_str)
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
    }

    /// Sends at most `per_second` requests a second (every attempt counts, retries too),
    /// spaced evenly: a token bucket of one token refilled every `1 / per_second` seconds,
    /// shared by everything using this client. `per_second` must be positive and finite
    /// (the config checks it); anything else leaves the client unlimited.
    pub fn with_rate_limit(mut self, per_second: f64) -> Self {
        self.rate = rate_quota(per_second).map(|q| Arc::new(RateLimiter::direct(q)));
        self
    }

    /// The request's URL as it may be logged: the query-string secret replaced by `***`.
    pub fn display_url(&self, req: &Request) -> String {
        match self.url(req) {
            Ok(url) => self.redact(&url),
            Err(e) => e.to_string(),
        }
    }

    /// The request's URL: the endpoint's path (or a whole URL, as a next link gives) with
    /// the request's params; without the auth query parameter.
    pub fn public_url(&self, req: &Request) -> Result<Url, FetchError> {
        let joined = if req.path.starts_with("http://") || req.path.starts_with("https://") {
            req.path.clone()
        } else {
            format!("{}/{}", self.base_url, req.path.trim_start_matches('/'))
        };
        let mut url = Url::parse(&joined).map_err(|e| FetchError::BadUrl {
            url: redact_text(&joined, &self.secret_refs()),
            message: e.to_string(),
        })?;
        // A next link may echo the auth parameter: it is set once, below, from the secret.
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !self.secret_params.iter().any(|p| p == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if !kept.is_empty() || !req.params.is_empty() {
            let mut query = url.query_pairs_mut();
            let _ = query.clear();
            for (k, v) in kept.iter().chain(&req.params) {
                let _ = query.append_pair(k, v);
            }
        } else {
            url.set_query(None);
        }
        Ok(url)
    }

    fn url(&self, req: &Request) -> Result<Url, FetchError> {
        let mut url = self.public_url(req)?;
        if let Auth::Query { name, value } = &self.auth {
            let _ = url.query_pairs_mut().append_pair(name, value.expose());
        }
        Ok(url)
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact_text(&self, text: &str) -> String {
        redact_text(text, &self.secret_refs())
    }

    fn secret_refs(&self) -> Vec<&Secret> {
        self.secrets.iter().collect()
    }

    fn redact(&self, url: &Url) -> String {
        let params: Vec<&str> = self.secret_params.iter().map(String::as_str).collect();
        redact_text(&redact_url(url, &params), &self.secret_refs())
    }

    /// Sends `req`, retrying as the policy says; the error of the last attempt otherwise.
    /// With OAuth2, a 401 from the API drops the token it refused, and the request is sent
    /// once more with a new one.
    pub async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        self.fetch_limited(req, None).await
    }

    /// As [`HttpClient::fetch`], each attempt holding a slot of `limit` while in flight and
    /// reporting to it whether the API answered 429 Too Many Requests.
    pub async fn fetch_limited(
        &self,
        req: &Request,
        limit: Option<&AdaptiveLimit>,
    ) -> Result<Response, FetchError> {
        self.fetch_parsed(req, limit, false).await
    }

    /// As [`HttpClient::fetch_limited`], with the body parsed flat into [`Response::tape`]
    /// (a page of records, read without a `Value` tree).
    pub async fn fetch_page(
        &self,
        req: &Request,
        limit: Option<&AdaptiveLimit>,
    ) -> Result<Response, FetchError> {
        self.fetch_parsed(req, limit, true).await
    }

    async fn fetch_parsed(
        &self,
        req: &Request,
        limit: Option<&AdaptiveLimit>,
        flat: bool,
    ) -> Result<Response, FetchError> {
        let used = Mutex::new(None);
        let result = self.fetch_with_retries(req, &used, limit, flat).await;
        let Auth::OAuth2(oauth) = &self.auth else {
            return result;
        };
        match result {
            Err(FetchError::Status { status: 401, .. }) => {
                let used = used.into_inner().unwrap_or_else(PoisonError::into_inner);
                if let Some(token) = used {
                    oauth.invalidate(&token).await;
                }
                tracing::info!(
                    url = %self.display_url(req),
                    "the API refused the OAuth2 token (HTTP 401); fetching a new one and retrying once"
                );
                self.fetch_with_retries(req, &Mutex::new(None), limit, flat)
                    .await
            }
            other => other,
        }
    }

    /// `used` receives the OAuth2 token each attempt sent.
    async fn fetch_with_retries(
        &self,
        req: &Request,
        used: &Mutex<Option<Secret>>,
        limit: Option<&AdaptiveLimit>,
        flat: bool,
    ) -> Result<Response, FetchError> {
        let url = self.url(req)?;
        let shown = self.redact(&url);
        let mut retry_statuses = Vec::new();
        let result = (|| self.paced_attempt(req, &url, &shown, used, limit, flat))
            .retry(self.policy.backoff())
            .when(FetchError::retryable)
            .adjust(|e, backoff| backoff.map(|d| e.retry_after().unwrap_or(d)))
            .notify(|e, wait| {
                retry_statuses.push(e.status().unwrap_or(0));
                crate::metrics::retrying(e.status().unwrap_or(0));
                tracing::warn!(url = %shown, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
            })
            .await;
        let retries = retry_statuses.len() as u32;
        let (body, bytes, headers, ignored) = match result {
            Ok((body, bytes, headers, ignored)) => (body, bytes, headers, ignored),
            Err(FetchError::Status {
                status,
                ignored: true,
                ..
            }) => (Body::Value(Value::Null), 0, HeaderMap::new(), Some(status)),
            Err(e) => return Err(e.set_attempts(retries + 1)),
        };
        crate::metrics::response_read(bytes);
        if let Some(status) = ignored {
            tracing::info!(url = %shown, status, "response ignored (response_actions)");
        }
        let (body, tape) = match body {
            Body::Value(value) => (value, None),
            Body::Flat(tape) => (Value::Null, Some(tape)),
        };
        Ok(Response {
            url: self.public_url(req)?,
            headers,
            body,
            tape,
            bytes,
            retries,
            retry_statuses,
            ignored,
        })
    }

    /// One attempt within the limits: a slot of `limit`, then a token of the rate limit.
    /// A 429 lowers `limit`; a successful answer counts towards raising it again.
    async fn paced_attempt(
        &self,
        req: &Request,
        url: &Url,
        shown: &str,
        used: &Mutex<Option<Secret>>,
        limit: Option<&AdaptiveLimit>,
        flat: bool,
    ) -> Result<(Body, usize, HeaderMap, Option<u16>), FetchError> {
        let permit = match limit {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        let result = self.attempt(req, url, shown, used, flat).await;
        if let Err(FetchError::Status { status: 429, .. }) = &result {
            crate::metrics::throttled();
        }
        let Some(permit) = permit else {
            return result;
        };
        match &result {
            Err(FetchError::Status { status: 429, .. }) => {
                if let Some(change) = permit.throttled() {
                    tracing::warn!(
                        url = %shown,
                        from = change.from,
                        to = change.to,
                        "HTTP 429 Too Many Requests: lowering the page concurrency from {} to {}",
                        change.from,
                        change.to
                    );
                }
            }
            Ok(_) => {
                if let Some(change) = permit.success() {
                    tracing::debug!(
                        from = change.from,
                        to = change.to,
                        "raising the page concurrency"
                    );
                }
            }
            // Neither a step down nor up: a 5xx, a transport error or a refused token.
            Err(_) => drop(permit),
        }
        result
    }

    async fn attempt(
        &self,
        req: &Request,
        url: &Url,
        shown: &str,
        used: &Mutex<Option<Secret>>,
        flat: bool,
    ) -> Result<(Body, usize, HeaderMap, Option<u16>), FetchError> {
        let token = match &self.auth {
            Auth::OAuth2(oauth) => {
                let token = oauth.token(&self.http).await.map_err(|error| {
                    let retryable = error.transport_retryable()
                        || error
                            .status()
                            .is_some_and(|s| self.policy.is_retryable_status(s));
                    FetchError::Token {
                        method: req.method,
                        url: shown.to_owned(),
                        error,
                        attempts: 1,
                        retryable,
                    }
                })?;
                *used.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
                Some(token)
            }
            _ => None,
        };
        // The secrets to keep out of this attempt's messages: the configured ones and the
        // token it sends.
        let secrets: Vec<&Secret> = self.secrets.iter().chain(&token).collect();
        let mut builder = match req.method {
            Method::Get => self.http.get(url.clone()),
            Method::Post => self.http.post(url.clone()),
        }
        .headers(self.headers.clone());
        // The endpoint's headers replace the client's of the same name; auth comes last, as
        // in dlt.
        let mut endpoint_headers = HeaderMap::new();
        for (name, value) in &req.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    let _ = endpoint_headers.insert(name, value);
                }
                // reqwest refuses it when the request is sent, naming the problem.
                _ => builder = builder.header(name.as_str(), value.as_str()),
            }
        }
        builder = builder.headers(endpoint_headers);
        builder = match &self.auth {
            Auth::None | Auth::Query { .. } => builder,
            Auth::Header { name, value } => builder.header(name, secret_header(value)),
            Auth::Cookie { name, value } => builder.header(
                reqwest::header::COOKIE,
                secret_header_text(&format!("{name}={}", value.expose())),
            ),
            Auth::Bearer(token) => builder.header(
                reqwest::header::AUTHORIZATION,
                secret_header_text(&format!("Bearer {}", token.expose())),
            ),
            Auth::Basic { username, password } => {
                builder.basic_auth(username, Some(password.expose()))
            }
            Auth::OAuth2(_) => match &token {
                Some(token) => builder.header(
                    reqwest::header::AUTHORIZATION,
                    secret_header_text(&format!("Bearer {}", token.expose())),
                ),
                None => builder,
            },
        };
        if let Some(body) = &req.json {
            builder = builder.json(body);
        }
        match &req.data {
            Some(DataBody::Form(fields)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    let _ = form.append_pair(k, v);
                }
                builder = builder
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.finish());
            }
            Some(DataBody::Raw(text)) => builder = builder.body(text.clone()),
            None => {}
        }
        let transport = |e: reqwest::Error| FetchError::Transport {
            method: req.method,
            url: shown.to_owned(),
            retryable: e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            message: redact_text(&error_chain(&e.without_url()), &secrets),
            attempts: 1,
        };
        let response = builder.send().await.map_err(transport)?;
        // A body cut short (the connection closed before Content-Length or the last chunk,
        // a compressed stream that ends early) is a transport failure: retried.
        let body_err = |e: reqwest::Error| FetchError::Transport {
            method: req.method,
            url: shown.to_owned(),
            retryable: true,
            message: format!(
                "reading the response body: {}",
                redact_text(&error_chain(&e.without_url()), &secrets)
            ),
            attempts: 1,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.policy.retry_after(v, SystemTime::now()));
        let headers = response.headers().clone();
        let bytes = self
            .read_body(response, req.method, shown, body_err)
            .await?;
        let retryable = self.policy.is_retryable_status(status.as_u16());
        let ignored = req
            .response_actions
            .iter()
            .any(|a| a.matches(status.as_u16(), &bytes));
        // A retryable status is retried first; `ignored` applies once the retries are spent.
        if ignored && (status.is_success() || !retryable) {
            return Ok((
                Body::Value(Value::Null),
                bytes.len(),
                headers,
                Some(status.as_u16()),
            ));
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                method: req.method,
                url: shown.to_owned(),
                status: status.as_u16(),
                excerpt: redact_text(&excerpt(&bytes), &secrets),
                attempts: 1,
                retryable,
                retry_after,
                ignored,
            });
        }
        let len = bytes.len();
        let json = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
        let not_json = |e: serde_json::Error, blank: bool, excerpt: String| FetchError::NotJson {
            method: req.method,
            url: shown.to_owned(),
            message: if blank {
                "the body is empty".to_owned()
            } else {
                e.to_string()
            },
            content_type: headers
                .get(reqwest::header::CONTENT_TYPE)
                .map_or("no content-type".to_owned(), |v| {
                    format!("content-type {}", self::excerpt(v.as_bytes()))
                }),
            bytes: len,
            excerpt: redact_text(&excerpt, &secrets),
        };
        let body = if flat {
            // The tape takes the body; what an error shows of it is kept first.
            let blank = json.iter().all(u8::is_ascii_whitespace);
            let shown_excerpt = excerpt(&bytes);
            let mut bytes = bytes;
            if bytes.starts_with(UTF8_BOM) {
                let _ = bytes.drain(..UTF8_BOM.len());
            }
            Body::Flat(Tape::parse(bytes).map_err(|e| not_json(e, blank, shown_excerpt))?)
        } else {
            Body::Value(common::json::from_slice(json).map_err(|e| {
                not_json(e, json.iter().all(u8::is_ascii_whitespace), excerpt(&bytes))
            })?)
        };
        Ok((body, len, headers, None))
    }

    /// The response's body, decompressed, read chunk by chunk: one larger than
    /// `max_response_bytes` (declared or as it arrives) fails without being read further.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        method: Method,
        shown: &str,
        body_err: impl Fn(reqwest::Error) -> FetchError,
    ) -> Result<Vec<u8>, FetchError> {
        let limit = self.max_response_bytes;
        let too_large = || FetchError::TooLarge {
            method,
            url: shown.to_owned(),
            limit,
        };
        let declared = response.content_length().unwrap_or(0);
        if declared > limit {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(&body_err)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The reqwest client: `timeout` for each attempt (headers and body), and with credentials
/// (`trusted` set) redirects only to those hosts or the request's own. reqwest drops the
/// `Authorization` and `Cookie` headers on a redirect to another host, but not an API key
/// in a header of another name.
fn http_client(
    timeout: Duration,
    trusted: Option<Vec<String>>,
) -> Result<reqwest::Client, reqwest::Error> {
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!(
                "more than {MAX_REDIRECTS} redirects (a redirect loop?)"
            ));
        }
        let Some(trusted) = &trusted else {
            return attempt.follow();
        };
        let to = attempt.url().host_str().map(str::to_ascii_lowercase);
        let from = attempt.previous().first().and_then(Url::host_str);
        match to {
            Some(to)
                if trusted.contains(&to) || from.is_some_and(|f| f.eq_ignore_ascii_case(&to)) =>
            {
                attempt.follow()
            }
            to => {
                let to = to.unwrap_or_default();
                attempt.error(format!(
                    "the API redirected to host `{to}`; the credentials are sent only to \
                     base_url's host and client.trusted_hosts (add `{to}` there to follow it)"
                ))
            }
        }
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(policy)
        .user_agent(concat!(
            "rest-pipeline-extractor/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

/// One request every `1 / per_second` seconds, no burst; `None` unless positive and finite.
fn rate_quota(per_second: f64) -> Option<governor::Quota> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return None;
    }
    governor::Quota::with_period(Duration::try_from_secs_f64(1.0 / per_second).ok()?)
}

fn secret_header(value: &Secret) -> HeaderValue {
    secret_header_text(value.expose())
}

fn secret_header_text(text: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// The error and its sources on one line (reqwest's top-level message alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a response body, for an error message: text only. A body that is not
/// UTF-8 text (an undecoded compressed body, an image) is shown as `<N bytes of binary>`.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    // Judge by the start: a body cut in the middle of a character is still text.
    let head = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            // Only the last character is cut off.
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return format!("<{} bytes of binary>", bytes.len()),
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return format!("<{} bytes of binary>", bytes.len());
    }
    // One line whatever the body's layout (an HTML page, pretty-printed JSON): the error is
    // one log line, and a body cannot write lines of its own into the log.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if head.len() < bytes.len() => format!("{text}…"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A bare HTTP server answering `{}` after 30 ms, or 429 with `Retry-After: 0` at once
    /// when more than `max` requests are in flight. Returns its URL and its counters:
    /// (requests, refused).
    async fn throttling_server(max: u64) -> (String, Arc<[AtomicU64; 2]>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let in_flight = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&counters);
        drop(tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (c, in_flight) = (Arc::clone(&c), Arc::clone(&in_flight));
                drop(tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let _ = c[0].fetch_add(1, Ordering::SeqCst);
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    let answer: &[u8] = if now > max {
                        let _ = c[1].fetch_add(1, Ordering::SeqCst);
                        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    } else {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    };
                    let _ = in_flight.fetch_sub(1, Ordering::SeqCst);
                    let _ = socket.write_all(answer).await;
                    let _ = socket.shutdown().await;
                }));
            }
        }));
        (url, counters)
    }

    fn client(url: &str) -> HttpClient {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        HttpClient::new(
            url,
            Auth::None,
            HeaderMap::new(),
            Duration::from_secs(5),
            policy,
        )
        .unwrap()
    }

    /// A bare HTTP server answering every request with `head` then `body`, as given.
    async fn raw_server(head: String, body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (head, body) = (head.clone(), body.clone());
                drop(tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                }));
            }
        }));
        url
    }

    fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path: path.into(),
            params: vec![],
            json: None,
            headers: Vec::new(),
            data: None,
            response_actions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_body_over_max_response_bytes_fails_naming_the_url_and_the_key() {
        let records = format!("[{}]", vec!["{\"id\": 1}"; 200].join(","));
        let n = records.len();
        assert!(n > 2000);
        // Declared by Content-Length, and sent in chunks without a length.
        let declared = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
        );
        let mut chunked = Vec::new();
        for part in records.as_bytes().chunks(500) {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let streamed = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_owned();
        for (head, body) in [
            (declared, records.clone().into_bytes()),
            (streamed, chunked),
        ] {
            let url = raw_server(head, body).await;
            let tight = client(&url).with_max_response_bytes(1000);
            let e = tight
                .fetch_limited(&get("/items"), None)
                .await
                .err()
                .unwrap();
            assert!(
                matches!(e, FetchError::TooLarge { limit: 1000, .. }),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains(&format!("GET {url}/items"))
                    && text.contains("larger than 1000 bytes (client.max_response_bytes"),
                "{text}"
            );
            // At the limit, the same answer is read whole.
            let exact = client(&url).with_max_response_bytes(n as u64);
            let page = exact.fetch_limited(&get("/items"), None).await.unwrap();
            assert_eq!(page.body.as_array().map(Vec::len), Some(200));
        }
    }

    #[tokio::test]
    async fn a_429_from_the_retry_loop_lowers_the_limit_and_every_request_succeeds() {
        let (url, counters) = throttling_server(3).await;
        let client = client(&url);
        let limit = AdaptiveLimit::new(8, 10);
        let req = Request {
            method: Method::Get,
            path: "/items".into(),
            params: vec![],
            json: None,
            headers: Vec::new(),
            data: None,
            response_actions: Vec::new(),
        };
        let results =
            futures::future::join_all((0..40).map(|_| client.fetch_limited(&req, Some(&limit))))
                .await;
        let retries: u32 = results.iter().map(|r| r.as_ref().unwrap().retries).sum();
        let [requests, refused] = &*counters;
        let refused = refused.load(Ordering::SeqCst);
        assert!(refused > 0, "the server never refused");
        assert_eq!(u64::from(retries), refused, "every 429 was retried");
        assert_eq!(requests.load(Ordering::SeqCst), 40 + refused);
        let stats = limit.stats();
        assert_eq!(stats.throttled, refused, "every 429 reached the limit");
        assert!(stats.decreases >= 1 && stats.lowest <= 4, "{stats:?}");
        // At a steady 8 in flight, 5 of every 8 attempts would be refused.
        assert!(
            refused * 4 < 40 + refused,
            "{refused} refusals for 40 requests: the limit did not adapt"
        );
    }

    #[test]
    fn excerpts_are_text_only() {
        assert_eq!(excerpt(b"  {\"error\": \"x\"} \n"), "{\"error\": \"x\"}");
        // A gzip body nobody decoded.
        let gzip = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56,
        ];
        assert_eq!(excerpt(&gzip), "<12 bytes of binary>");
        // Valid UTF-8 with control characters is binary too; tabs and newlines are text.
        assert_eq!(excerpt(b"ab\x00cd"), "<5 bytes of binary>");
        // Whitespace of any kind is one space: the excerpt is one line.
        assert_eq!(excerpt(b"a\tb\r\n\n  c"), "a b c");
        // A BOM is dropped; a long body is cut, also in the middle of a character.
        assert_eq!(excerpt("\u{feff}[1]".as_bytes()), "[1]");
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        let mut split = "x".repeat(10).into_bytes();
        split.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(excerpt(&split), "x".repeat(10));
    }

    #[test]
    fn next_links_and_redirects_keep_the_credentials_home() {
        let url = |u: &str| Url::parse(u).unwrap();
        let keyed = HttpClient::new(
            "http://api.example.com/v1",
            Auth::Bearer(Secret::new("t")),
            HeaderMap::new(),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap()
        .with_trusted_hosts(&["CDN.example.com".to_owned()])
        .unwrap();
        assert!(keyed.may_follow(&url("https://api.example.com/v1/x?p=2"), None));
        assert!(keyed.may_follow(&url("http://cdn.example.com/x"), None));
        assert!(!keyed.may_follow(&url("http://evil.example.org/x"), None));
        // The endpoint's own host (an absolute path in the config) is trusted.
        let endpoint = url("http://other.example.net/items");
        assert!(keyed.may_follow(&url("http://other.example.net/items?p=2"), Some(&endpoint)));
        // Without credentials there is nothing to leak.
        let open = client("http://api.example.com");
        assert!(!open.has_credentials());
        assert!(open.may_follow(&url("http://evil.example.org/x"), None));
        assert_eq!(open.max_pages(), common::config::DEFAULT_MAX_PAGES);
        assert_eq!(open.with_max_pages(0).max_pages(), 1);
    }

    /// An endpoint's own auth: a client with its credentials that shares the rate limit.
    #[test]
    fn a_client_with_other_credentials_shares_the_rate_limit() {
        let open = client("http://api.example.com").with_rate_limit(10.0);
        let keyed = open.with_auth(Auth::Bearer(Secret::new("t-1"))).unwrap();
        assert!(keyed.has_credentials() && !open.has_credentials());
        let (a, b) = (open.rate.as_ref().unwrap(), keyed.rate.as_ref().unwrap());
        assert!(Arc::ptr_eq(a, b), "one limit for all requests");
        assert_eq!(keyed.own_secrets(), vec![Secret::new("t-1")]);
        assert_eq!(open.redact_text("t-1"), "t-1");
        let mut open = open;
        open.redact_also(&keyed.own_secrets());
        assert_eq!(open.redact_text("x t-1"), "x ***");
    }

    #[test]
    fn rate_quota_spaces_requests_evenly() {
        let q = rate_quota(20.0).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_millis(50));
        assert_eq!(q.burst_size().get(), 1, "no burst: evenly spaced");
        assert_eq!(
            rate_quota(0.5).unwrap().replenish_interval(),
            Duration::from_secs(2)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            assert!(rate_quota(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_rate_limit_delays_every_request_after_the_first() {
        let client = HttpClient::new(
            "http://127.0.0.1:9",
            Auth::None,
            HeaderMap::new(),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap()
        .with_rate_limit(100.0);
        let rate = client.rate.as_ref().unwrap();
        let started = Instant::now();
        for _ in 0..11 {
            rate.until_ready().await;
        }
        // The first goes at once, then one every 10 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(95),
            "{:?}",
            started.elapsed()
        );
    }
}
