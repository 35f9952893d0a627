//! dlt's `oauth2_client_credentials`: a token from `access_token_url` (a form POST with
//! `grant_type=client_credentials`, `client_id`, `client_secret` and
//! `access_token_request_data`), sent as `Authorization: Bearer <token>`. With
//! `client_auth_method = "client_secret_basic"` the client id and secret go in an
//! `Authorization: Basic` header of the token request instead of its form.
//!
//! The token is cached and refreshed shortly before it expires (its `expires_in`, else
//! `default_token_expiration`); `client` also drops it and fetches a new one once when the
//! API answers 401. The token, the client id and the client secret are [`Secret`]s: they
//! never reach a log line, an error message or `Debug` output.

use std::fmt;
use std::time::{Duration, Instant};

use common::config::ClientAuthMethod;
use common::redact::redact_text;
use common::secret::Secret;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;
use url::form_urlencoded;

use crate::client::{error_chain, excerpt};

/// Refresh this long before a token expires (at most; a short-lived token is refreshed when
/// 90% of its life has passed).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A cached access token and when to stop using it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub refresh_at: Instant,
}

impl Token {
    /// A token obtained at `obtained` that lives `lifetime`.
    pub fn new(value: Secret, obtained: Instant, lifetime: Duration) -> Self {
        Self {
            value,
            refresh_at: refresh_at(obtained, lifetime),
        }
    }

    /// Whether the token may still be sent at `now` without refreshing it first.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// How long before the end of a `lifetime` a token is refreshed.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    REFRESH_MARGIN.min(lifetime / 10)
}

/// When a token obtained at `obtained` that lives `lifetime` is refreshed.
pub fn refresh_at(obtained: Instant, lifetime: Duration) -> Instant {
    obtained + (lifetime - refresh_margin(lifetime))
}

/// A token's lifetime from the response's `expires_in` (seconds, a number or a numeric
/// string), else `default`.
pub fn lifetime(expires_in: Option<&Value>, default: Duration) -> Duration {
    let seconds = match expires_in {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(default)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the OAuth2 token endpoint {url} answered HTTP {status}: {excerpt}")]
    Status {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("the OAuth2 token endpoint {url} could not be reached: {message}")]
    Transport {
        url: String,
        message: String,
        retryable: bool,
    },
    #[error("the OAuth2 token response from {url} is unusable: {message}")]
    BadResponse { url: String, message: String },
}

impl TokenError {
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a transport failure may pass on a new attempt (statuses are the retry
    /// policy's call).
    pub fn transport_retryable(&self) -> bool {
        matches!(
            self,
            TokenError::Transport {
                retryable: true,
                ..
            }
        )
    }
}

/// The token source for one client: its settings and the cached token.
pub struct OAuth2ClientCredentials {
    token_url: Url,
    client_id: Secret,
    client_secret: Secret,
    /// Extra form fields (`scope`, `audience`, ...).
    extra: Vec<(String, String)>,
    default_lifetime: Duration,
    /// Where the token request puts the client id and secret.
    method: ClientAuthMethod,
    cached: Mutex<Option<Token>>,
}

impl fmt::Debug for OAuth2ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("extra", &self.extra)
            .field("default_lifetime", &self.default_lifetime)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl OAuth2ClientCredentials {
    pub fn new(
        token_url: Url,
        client_id: Secret,
        client_secret: Secret,
        extra: Vec<(String, String)>,
        default_lifetime: Duration,
        method: ClientAuthMethod,
    ) -> Self {
        Self {
            token_url,
            client_id,
            client_secret,
            extra,
            default_lifetime,
            method,
            cached: Mutex::new(None),
        }
    }

    /// The values to keep out of every log line and message (the token changes: callers
    /// redact the one they used as well).
    pub fn secrets(&self) -> Vec<Secret> {
        vec![self.client_id.clone(), self.client_secret.clone()]
    }

    /// A fresh token: the cached one, or a new one from the token endpoint. Concurrent
    /// callers wait for one fetch.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Secret, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(Instant::now())) {
            return Ok(token.value.clone());
        }
        let obtained = Instant::now();
        let (value, lifetime) = self.fetch(http).await?;
        tracing::info!(
            token_url = %self.token_url,
            expires_in_secs = lifetime.as_secs_f64(),
            "fetched an OAuth2 access token"
        );
        let token = Token::new(value, obtained, lifetime);
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Forgets `used` (the API refused it) unless another caller already replaced it.
    pub async fn invalidate(&self, used: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == used) {
            *cached = None;
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Duration), TokenError> {
        let url = self.token_url.to_string();
        let mut form = form_urlencoded::Serializer::new(String::new());
        let _ = form.append_pair("grant_type", "client_credentials");
        if self.method == ClientAuthMethod::ClientSecretPost {
            let _ = form
                .append_pair("client_id", self.client_id.expose())
                .append_pair("client_secret", self.client_secret.expose());
        }
        for (k, v) in &self.extra {
            let _ = form.append_pair(k, v);
        }
        let transport = |e: reqwest::Error| TokenError::Transport {
            url: url.clone(),
            retryable: e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            message: self.redact(&error_chain(&e.without_url())),
        };
        let mut request = http
            .post(self.token_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if self.method == ClientAuthMethod::ClientSecretBasic {
            // `id:secret` as they are, base64-encoded (as `requests` and dlt's documented
            // subclass send them); reqwest marks the header sensitive.
            request =
                request.basic_auth(self.client_id.expose(), Some(self.client_secret.expose()));
        }
        let response = request
            .body(form.finish())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(TokenError::Status {
                url,
                status: status.as_u16(),
                excerpt: self.redact(&excerpt(&bytes)),
            });
        }
        // The body holds the token: no excerpt of it goes into a message.
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| TokenError::BadResponse {
            url: url.clone(),
            message: format!("not JSON ({} bytes, {:?} error)", bytes.len(), e.classify()),
        })?;
        let Some(token) = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(TokenError::BadResponse {
                url,
                message: "no non-empty string `access_token`".into(),
            });
        };
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(TokenError::BadResponse {
                url,
                message: "the `access_token` cannot be sent in an HTTP header".into(),
            });
        }
        Ok((
            Secret::new(token),
            lifetime(body.get("expires_in"), self.default_lifetime),
        ))
    }

    fn redact(&self, text: &str) -> String {
        redact_text(text, &[&self.client_id, &self.client_secret])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn lifetime_comes_from_expires_in_else_the_default() {
        let default = Duration::from_secs(77);
        assert_eq!(lifetime(Some(&json!(3600)), default), HOUR);
        assert_eq!(
            lifetime(Some(&json!("120")), default),
            Duration::from_secs(120)
        );
        assert_eq!(
            lifetime(Some(&json!(1.5)), default),
            Duration::from_millis(1500)
        );
        assert_eq!(lifetime(Some(&json!(0)), default), Duration::ZERO);
        for unusable in [
            json!(-5),
            json!("soon"),
            json!(null),
            json!({"s": 1}),
            json!(true),
        ] {
            assert_eq!(lifetime(Some(&unusable), default), default, "{unusable}");
        }
        assert_eq!(lifetime(None, default), default);
    }

    #[test]
    fn refresh_comes_a_minute_early_or_at_nine_tenths_of_a_short_life() {
        assert_eq!(refresh_margin(HOUR), REFRESH_MARGIN);
        assert_eq!(refresh_margin(Duration::from_secs(600)), REFRESH_MARGIN);
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);

        let t0 = Instant::now();
        let token = Token::new(Secret::new("t"), t0, HOUR);
        assert!(token.is_fresh(t0));
        assert!(token.is_fresh(t0 + Duration::from_secs(3539)));
        assert!(!token.is_fresh(t0 + Duration::from_secs(3540)));
        assert!(!token.is_fresh(t0 + HOUR));

        let short = Token::new(Secret::new("t"), t0, Duration::from_secs(2));
        assert!(short.is_fresh(t0 + Duration::from_millis(1799)));
        assert!(!short.is_fresh(t0 + Duration::from_millis(1800)));
        // A token without a life is never reused.
        assert!(!Token::new(Secret::new("t"), t0, Duration::ZERO).is_fresh(t0));
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let oauth = OAuth2ClientCredentials::new(
            Url::parse("https://auth.example/token").unwrap(),
            Secret::new("client-id-5e1"),
            Secret::new("client-secret-9a2"),
            vec![("scope".into(), "read".into())],
            HOUR,
            ClientAuthMethod::ClientSecretBasic,
        );
        let token = Token::new(Secret::new("token-77f"), Instant::now(), HOUR);
        let text = format!("{oauth:?} {oauth:#?} {token:?}");
        for secret in ["client-id-5e1", "client-secret-9a2", "token-77f"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("https://auth.example/token") && text.contains("scope"));
        assert_eq!(
            oauth.redact("bad client client-id-5e1 / client-secret-9a2"),
            "bad client *** / ***"
        );
    }

    /// The token request a server receives, by client auth method: its `Authorization`
    /// header (if any) and its form body.
    async fn token_request(method: ClientAuthMethod) -> (Option<String>, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let text = loop {
                let n = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length || n == 0 {
                        break text;
                    }
                }
            };
            let answer = br#"{"access_token":"tok-1","expires_in":60}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                answer.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(answer).await.unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            (head.to_owned(), body.to_owned())
        });
        let oauth = OAuth2ClientCredentials::new(
            url,
            Secret::new("client-id-5e1"),
            Secret::new("client-secret-9a2"),
            vec![("scope".into(), "read".into())],
            HOUR,
            method,
        );
        let token = oauth.token(&reqwest::Client::new()).await.unwrap();
        assert_eq!(token.expose(), "tok-1");
        let (head, body) = server.await.unwrap();
        let authorization = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_owned())
        });
        (authorization, body)
    }

    #[tokio::test]
    async fn client_secret_basic_sends_the_client_in_the_header_and_post_in_the_form() {
        let (authorization, body) = token_request(ClientAuthMethod::ClientSecretBasic).await;
        // base64("client-id-5e1:client-secret-9a2")
        assert_eq!(
            authorization.as_deref(),
            Some("Basic Y2xpZW50LWlkLTVlMTpjbGllbnQtc2VjcmV0LTlhMg==")
        );
        assert_eq!(body, "grant_type=client_credentials&scope=read");

        let (authorization, body) = token_request(ClientAuthMethod::ClientSecretPost).await;
        assert_eq!(authorization, None);
        assert_eq!(
            body,
            "grant_type=client_credentials&client_id=client-id-5e1&\
             client_secret=client-secret-9a2&scope=read"
        );
    }
}
