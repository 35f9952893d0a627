//! `/v1/resource`'s pages behind each auth scheme the extractor speaks: a bearer token, the
//! key in a header or a cookie, HTTP basic (user `demo`, the key as password), and OAuth2
//! client credentials (`POST /oauth/token`, then tokens that expire or are revoked on
//! demand through `POST /admin/oauth`).
//!
//! Nothing here logs or echoes a credential: the request log holds paths and statuses only.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ApiError, AppState, LogEntry, Params, answer, lock, offset_page, param};
use crate::{DEFAULT_LIMIT, DEFAULT_OFFSET};

/// The HTTP basic user name.
pub const BASIC_USER: &str = "demo";
/// The OAuth2 client id the token endpoint accepts (the client secret is the API key).
pub const OAUTH_CLIENT_ID: &str = "demo-client";
/// The cookie that carries the key.
pub const KEY_COOKIE: &str = "api_key";
/// The header that carries the key.
pub const KEY_HEADER: &str = "x-api-key";
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;

/// The token endpoint's state and knobs.
#[derive(Debug)]
pub(crate) struct OAuth {
    lifetime_secs: u64,
    omit_expires_in: bool,
    /// Valid API requests left before every token issued so far is revoked.
    revoke_after_requests: Option<u64>,
    /// Live tokens and when each expires.
    tokens: HashMap<String, Instant>,
    issued: u64,
}

impl Default for OAuth {
    fn default() -> Self {
        Self {
            lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            omit_expires_in: false,
            revoke_after_requests: None,
            tokens: HashMap::new(),
            issued: 0,
        }
    }
}

impl OAuth {
    /// A new token and its lifetime in seconds.
    pub(crate) fn issue(&mut self, now: Instant) -> (String, u64) {
        self.issued += 1;
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let token = format!("demo-token-{}-{salt:08x}", self.issued);
        let expires = now + Duration::from_secs(self.lifetime_secs);
        self.tokens.retain(|_, at| *at > now);
        let _ = self.tokens.insert(token.clone(), expires);
        (token, self.lifetime_secs)
    }

    /// Whether `token` may call the API now; counts down a pending revocation.
    fn admit(&mut self, token: &str, now: Instant) -> bool {
        if self.tokens.get(token).is_none_or(|at| *at <= now) {
            return false;
        }
        match self.revoke_after_requests {
            Some(0) => {
                self.tokens.clear();
                self.revoke_after_requests = None;
                tracing::info!("tokens revoked");
                false
            }
            Some(n) => {
                self.revoke_after_requests = Some(n - 1);
                true
            }
            None => true,
        }
    }

    fn view(&self, now: Instant) -> OAuthView {
        OAuthView {
            token_lifetime_secs: self.lifetime_secs,
            omit_expires_in: self.omit_expires_in,
            revoke_after_requests: self.revoke_after_requests,
            live_tokens: self.tokens.values().filter(|at| **at > now).count(),
        }
    }
}

/// What `POST /admin/oauth` answers.
#[derive(Debug, Serialize)]
pub(crate) struct OAuthView {
    token_lifetime_secs: u64,
    omit_expires_in: bool,
    revoke_after_requests: Option<u64>,
    live_tokens: usize,
}

/// The body of `POST /admin/oauth`: each field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthPatch {
    /// `expires_in` of tokens issued from now on; they also stop working after it.
    token_lifetime_secs: Option<u64>,
    /// Leave `expires_in` out of token responses.
    omit_expires_in: Option<bool>,
    /// After this many more accepted API requests, revoke every token issued so far: the
    /// next request with one gets a 401.
    revoke_after_requests: Option<u64>,
    /// Revoke every token now.
    #[serde(default)]
    revoke_now: bool,
}

pub(crate) async fn post_oauth(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<OAuthView>, ApiError> {
    let patch: OAuthPatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let mut oauth = lock(&state.inner.oauth);
    oauth.lifetime_secs = patch.token_lifetime_secs.unwrap_or(oauth.lifetime_secs);
    oauth.omit_expires_in = patch.omit_expires_in.unwrap_or(oauth.omit_expires_in);
    if patch.revoke_after_requests.is_some() {
        oauth.revoke_after_requests = patch.revoke_after_requests;
    }
    if patch.revoke_now {
        oauth.tokens.clear();
    }
    let view = oauth.view(Instant::now());
    drop(oauth);
    tracing::info!(?view, "oauth settings changed");
    Ok(Json(view))
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token` (form body): `grant_type=client_credentials`, `client_id`,
/// `client_secret` → `{"access_token", "token_type", "expires_in"}`. Extra fields (`scope`,
/// ...) are accepted and ignored.
pub(crate) async fn post_token(
    State(state): State<AppState>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let _ = state.inner.token_requests.fetch_add(1, Ordering::Relaxed);
    let response = issue_token(&state, form).unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    tracing::debug!(status, "answered /oauth/token");
    state.log(LogEntry {
        endpoint: Some("/oauth/token"),
        offset: None,
        limit: None,
        since: None,
        status,
    });
    response
}

fn issue_token(
    state: &AppState,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(req) = form.map_err(|e| ApiError::BadBody(e.body_text()))?;
    if req.grant_type.as_deref() != Some("client_credentials") {
        return Err(ApiError::UnsupportedGrantType);
    }
    let client_ok = req.client_id.as_deref() == Some(OAUTH_CLIENT_ID)
        && req
            .client_secret
            .as_deref()
            .is_some_and(|s| state.inner.api_key.matches(s));
    if !client_ok {
        return Err(ApiError::InvalidClient);
    }
    let mut oauth = lock(&state.inner.oauth);
    let (token, lifetime) = oauth.issue(Instant::now());
    let omit = oauth.omit_expires_in;
    drop(oauth);
    let mut body = json!({ "access_token": token, "token_type": "Bearer" });
    if !omit {
        body["expires_in"] = json!(lifetime);
    }
    Ok(Json(body).into_response())
}

/// Which credential a protected endpoint checks.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    Bearer,
    Header,
    Cookie,
    Basic,
    OAuth2,
}

impl Scheme {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "bearer" => Scheme::Bearer,
            "header" => Scheme::Header,
            "cookie" => Scheme::Cookie,
            "basic" => Scheme::Basic,
            "oauth2" => Scheme::OAuth2,
            _ => return None,
        })
    }

    fn endpoint(self) -> &'static str {
        match self {
            Scheme::Bearer => "/v1/auth/bearer",
            Scheme::Header => "/v1/auth/header",
            Scheme::Cookie => "/v1/auth/cookie",
            Scheme::Basic => "/v1/auth/basic",
            Scheme::OAuth2 => "/v1/auth/oauth2",
        }
    }

    fn check(self, state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        let key = &state.inner.api_key;
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = || {
            text(header::AUTHORIZATION).and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
        };
        let ok = match self {
            Scheme::Bearer => bearer().is_some_and(|t| key.matches(t)),
            Scheme::Header => {
                text(header::HeaderName::from_static(KEY_HEADER)).is_some_and(|v| key.matches(v))
            }
            Scheme::Cookie => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(name, value)| name == KEY_COOKIE && key.matches(value)),
            Scheme::Basic => text(header::AUTHORIZATION).is_some_and(|v| {
                v.split_once(' ').is_some_and(|(scheme, creds)| {
                    scheme.eq_ignore_ascii_case("basic")
                        && creds.trim() == base64(format!("{BASIC_USER}:{}", key.0).as_bytes())
                })
            }),
            Scheme::OAuth2 => {
                return match bearer() {
                    Some(t) if lock(&state.inner.oauth).admit(t, Instant::now()) => Ok(()),
                    _ => Err(ApiError::InvalidToken),
                };
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::InvalidApiKey)
        }
    }
}

/// `GET /v1/auth/<scheme>?offset&limit`: `/v1/resource`'s pages behind `scheme`.
pub(crate) async fn protected(
    Path(scheme): Path<String>,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Some(scheme) = Scheme::parse(&scheme) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let params = query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery);
    let (offset, limit) = match &params {
        Ok(p) => (
            param(p, "offset", DEFAULT_OFFSET).ok(),
            param(p, "limit", DEFAULT_LIMIT).ok(),
        ),
        Err(_) => (None, None),
    };
    let entry = LogEntry {
        endpoint: Some(scheme.endpoint()),
        offset,
        limit,
        since: None,
        status: 0,
    };
    answer(&state, entry, || {
        let params = params?;
        scheme.check(&state, &headers)?;
        offset_page(&state, &params)
    })
    .await
}

/// Standard base64 with padding (RFC 4648), for comparing HTTP basic credentials.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn tokens_expire_and_revocation_counts_down() {
        let now = Instant::now();
        let mut oauth = OAuth {
            lifetime_secs: 10,
            ..OAuth::default()
        };
        let (a, lifetime) = oauth.issue(now);
        assert_eq!(lifetime, 10);
        assert!(oauth.admit(&a, now + Duration::from_secs(9)));
        assert!(!oauth.admit(&a, now + Duration::from_secs(10)));
        assert!(!oauth.admit("demo-token-forged", now));

        oauth.revoke_after_requests = Some(1);
        assert!(oauth.admit(&a, now));
        assert!(!oauth.admit(&a, now), "revoked after one more request");
        assert!(!oauth.admit(&a, now), "stays revoked");
        let (b, _) = oauth.issue(now);
        assert_ne!(a, b);
        assert!(oauth.admit(&b, now), "a new token works");
    }
}
