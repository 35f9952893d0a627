//! dlt's `client.auth`, tagged by `type`: `api_key`, `bearer`, `http_basic` and
//! `oauth2_client_credentials` (a table with a `token` and no `type` is a bearer token, as in
//! dlt). The extractor's `auth/` turns each into requests.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::Deserializer;
use serde::de::{MapAccess, Visitor};

use super::raw::Tagged;
use crate::secret::SecretRef;

/// dlt's `client.auth`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    ApiKey(ApiKeyAuth),
    Bearer(BearerAuth),
    HttpBasic(HttpBasicAuth),
    OAuth2ClientCredentials(OAuth2ClientCredentialsAuth),
}

impl AuthConfig {
    /// The `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::ApiKey(_) => "api_key",
            AuthConfig::Bearer(_) => "bearer",
            AuthConfig::HttpBasic(_) => "http_basic",
            AuthConfig::OAuth2ClientCredentials(_) => "oauth2_client_credentials",
        }
    }
}

/// `{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// The header, query parameter or cookie that carries the key (dlt's default).
    #[serde(default = "default_api_key_name")]
    pub name: String,
    pub api_key: SecretRef,
    #[serde(default)]
    pub location: ApiKeyLocation,
}

fn default_api_key_name() -> String {
    "Authorization".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    /// Also dlt's `param`.
    #[serde(alias = "param")]
    Query,
    Cookie,
}

/// `{ type = "bearer", token = { secret = "token" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    pub token: SecretRef,
}

/// `{ type = "http_basic", username = "u", password = { secret = "password" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBasicAuth {
    pub username: String,
    pub password: SecretRef,
}

/// dlt's `OAuth2ClientCredentials`: a token from `access_token_url` (a form POST with
/// `grant_type=client_credentials`, `client_id`, `client_secret` and
/// `access_token_request_data`), sent as `Authorization: Bearer <token>`.
///
/// `{ type = "oauth2_client_credentials", access_token_url = "https://auth/token",
///    client_id = { secret = "client_id" }, client_secret = { secret = "client_secret" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentialsAuth {
    /// An absolute `http(s)` URL.
    pub access_token_url: String,
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
    /// Extra form fields of the token request (`scope`, `audience`, ...).
    #[serde(default)]
    pub access_token_request_data: BTreeMap<String, String>,
    /// Seconds a token lives when the token response has no `expires_in`.
    #[serde(default = "default_token_expiration")]
    pub default_token_expiration: u64,
    /// How the token request carries the client id and secret (not a key of dlt 1.31).
    #[serde(default)]
    pub client_auth_method: ClientAuthMethod,
}

/// How an OAuth2 token request authenticates the client (RFC 6749 2.3.1), under the name
/// dlt's open proposal gives the key (dlt-hub/dlt#4206): dlt 1.31 only posts them in the
/// form, and its docs subclass `OAuth2ClientCredentials` in Python for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// `client_id` and `client_secret` in the form body, as dlt 1.31 sends them.
    #[default]
    ClientSecretPost,
    /// `Authorization: Basic base64(client_id:client_secret)`; the form carries neither.
    ClientSecretBasic,
}

impl ClientAuthMethod {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
        }
    }
}

/// dlt's `default_token_expiration`.
pub const DEFAULT_TOKEN_EXPIRATION: u64 = 3600;

fn default_token_expiration() -> u64 {
    DEFAULT_TOKEN_EXPIRATION
}

const AUTH_TYPES: &[&str] = &[
    "api_key",
    "bearer",
    "http_basic",
    "oauth2_client_credentials",
];

impl<'de> Deserialize<'de> for AuthConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;

        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = AuthConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an auth table with a `type`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AuthConfig, A::Error> {
                // As dlt: a table with a `token` and no `type` is a bearer token.
                let tagged = Tagged::read_or(map, "bearer", "token")?;
                match tagged.tag.as_str() {
                    "api_key" => tagged.variant().map(AuthConfig::ApiKey),
                    "bearer" => tagged.variant().map(AuthConfig::Bearer),
                    "http_basic" => tagged.variant().map(AuthConfig::HttpBasic),
                    "oauth2_client_credentials" => {
                        tagged.variant().map(AuthConfig::OAuth2ClientCredentials)
                    }
                    _ => Err(tagged.unknown("auth", AUTH_TYPES)),
                }
            }
        }

        deserializer.deserialize_any(AuthVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn api_key_location_param_is_the_query() {
        // dlt's `location = "param"` puts the key in the query, as `"query"` does.
        let config = toml(&with("").replace(
            "base_url",
            "auth = { type = \"api_key\", name = \"k\", api_key = { secret = \"s\" }, \
             location = \"param\" }\nbase_url",
        ))
        .unwrap();
        let Some(AuthConfig::ApiKey(a)) = &config.client.auth else {
            panic!("api_key: {config:#?}")
        };
        assert_eq!(a.location, ApiKeyLocation::Query);
    }

    #[test]
    fn oauth2_client_credentials() {
        let auth = |a: &str| -> Result<PipelineConfig, ConfigError> {
            toml(&with("").replace("base_url", &format!("auth = {a}\nbase_url")))
        };
        let config = auth(
            "{ type = \"oauth2_client_credentials\", access_token_url = \"https://auth/token\", \
             client_id = { secret = \"cid\" }, client_secret = { secret = \"cs\" }, \
             access_token_request_data = { scope = \"read\" }, default_token_expiration = 60 }",
        )
        .unwrap();
        assert_eq!(
            config.client.auth,
            Some(AuthConfig::OAuth2ClientCredentials(
                OAuth2ClientCredentialsAuth {
                    access_token_url: "https://auth/token".into(),
                    client_id: SecretRef::new("cid"),
                    client_secret: SecretRef::new("cs"),
                    access_token_request_data: BTreeMap::from([(
                        "scope".to_owned(),
                        "read".to_owned()
                    )]),
                    default_token_expiration: 60,
                    client_auth_method: ClientAuthMethod::ClientSecretPost,
                }
            ))
        );
        assert_eq!(
            config.secret_refs(),
            vec![
                ("client.auth.client_id", &SecretRef::new("cid")),
                ("client.auth.client_secret", &SecretRef::new("cs")),
            ]
        );
        let minimal = auth(
            "{ type = \"oauth2_client_credentials\", access_token_url = \"http://a/t\", \
             client_id = { secret = \"cid\" }, client_secret = { secret = \"cs\" } }",
        )
        .unwrap();
        let Some(AuthConfig::OAuth2ClientCredentials(a)) = &minimal.client.auth else {
            panic!("oauth2: {minimal:#?}")
        };
        assert_eq!(a.default_token_expiration, DEFAULT_TOKEN_EXPIRATION);
        assert!(a.access_token_request_data.is_empty());
        assert_eq!(a.client_auth_method, ClientAuthMethod::ClientSecretPost);
        let basic = auth(
            "{ type = \"oauth2_client_credentials\", access_token_url = \"http://a/t\", \
             client_id = { secret = \"cid\" }, client_secret = { secret = \"cs\" }, \
             client_auth_method = \"client_secret_basic\" }",
        )
        .unwrap();
        let Some(AuthConfig::OAuth2ClientCredentials(b)) = &basic.client.auth else {
            panic!("oauth2: {basic:#?}")
        };
        assert_eq!(b.client_auth_method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(b.client_auth_method.as_str(), "client_secret_basic");
        assert_eq!(
            minimal.client.auth.as_ref().map(AuthConfig::kind),
            Some("oauth2_client_credentials")
        );

        let o = "type = \"oauth2_client_credentials\", client_id = { secret = \"cid\" }";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{{ {o}, client_secret = {{ secret = \"cs\" }} }}"),
                "client.auth: missing field `access_token_url`",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", client_secret = \"literal\" }}"
                ),
                "client.auth.client_secret: a secret value must not be written",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"/token\", client_secret = {{ secret = \"cs\" }} }}"
                ),
                "client.auth.access_token_url: `/token` is not a URL",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, default_token_expiration = 0 }}"
                ),
                "client.auth.default_token_expiration: must be a positive number",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, token_url = \"x\" }}"
                ),
                "client.auth.token_url: unknown field `token_url`",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, \
                     access_token_request_data = {{ client_secret = \"x\" }} }}"
                ),
                "client.auth.access_token_request_data.client_secret: `client_secret` comes from",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, \
                     access_token_request_data = {{ scope = [1] }} }}"
                ),
                "client.auth.access_token_request_data.scope: invalid type",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, client_auth_method = \"basic\" }}"
                ),
                "client.auth.client_auth_method: unknown variant `basic`, expected \
                 `client_secret_post` or `client_secret_basic`",
            ),
            (
                "{ type = \"oauth2\" }".to_owned(),
                "client.auth.type: unknown or unsupported auth type `oauth2`, expected one of: \
                 api_key, bearer, http_basic, oauth2_client_credentials",
            ),
        ];
        for (text, needle) in cases {
            let e = err(auth(&text));
            assert!(e.contains(needle), "{text}: {needle:?} not in {e:?}");
        }
    }

    #[test]
    fn auth_forms() {
        let auth = |a: &str| -> AuthConfig {
            toml(&with("").replace("base_url", &format!("auth = {a}\nbase_url")))
                .unwrap()
                .client
                .auth
                .unwrap()
        };
        assert_eq!(
            auth("{ type = \"api_key\", api_key = { secret = \"k\" } }"),
            AuthConfig::ApiKey(ApiKeyAuth {
                name: "Authorization".into(),
                api_key: SecretRef::new("k"),
                location: ApiKeyLocation::Header,
            })
        );
        let bearer = auth("{ type = \"bearer\", token = { secret = \"t\" } }");
        assert_eq!(bearer.kind(), "bearer");
        let basic =
            auth("{ type = \"http_basic\", username = \"u\", password = { secret = \"p\" } }");
        assert_eq!(
            basic,
            AuthConfig::HttpBasic(HttpBasicAuth {
                username: "u".into(),
                password: SecretRef::new("p"),
            })
        );
    }

    /// dlt's endpoint `auth`: the endpoint's own over `client.auth`, merged whole from
    /// `resource_defaults`, `null` (JSON, YAML) for none; checked with its key path.
    #[test]
    fn endpoint_auth() {
        let text = r#"
[client]
base_url = "https://api.example.com"
auth = { type = "api_key", name = "k", api_key = { secret = "key" }, location = "query" }

[resource_defaults]
primary_key = "id"
endpoint = { auth = { type = "bearer", token = { secret = "default_token" } } }

[[resources]]
name = "defaulted"

[[resources]]
name = "own"
endpoint = { auth = { type = "http_basic", username = "u", password = { secret = "pw" } } }
"#;
        let config = toml(text).unwrap();
        let bearer = AuthConfig::Bearer(BearerAuth {
            token: SecretRef::new("default_token"),
        });
        assert_eq!(config.resources[0].endpoint.auth, EndpointAuth::Own(bearer));
        let EndpointAuth::Own(own) = &config.resources[1].endpoint.auth else {
            panic!("{config:#?}")
        };
        assert_eq!(own.kind(), "http_basic");
        assert_eq!(
            config.resources[1]
                .endpoint
                .auth
                .resolve(config.client.auth.as_ref())
                .map(AuthConfig::kind),
            Some("http_basic")
        );
        assert_eq!(
            EndpointAuth::Client
                .resolve(config.client.auth.as_ref())
                .map(AuthConfig::kind),
            Some("api_key")
        );
        assert_eq!(
            EndpointAuth::NoAuth.resolve(config.client.auth.as_ref()),
            None
        );

        // `null` is no auth, also over resource_defaults'; a resource without the key gets
        // the client's.
        let json = r#"{"client": {"base_url": "https://a",
            "auth": {"type": "bearer", "token": {"secret": "t"}}},
            "resource_defaults": {"primary_key": "id",
                "endpoint": {"auth": {"type": "bearer", "token": {"secret": "d"}}}},
            "resources": [{"name": "open", "endpoint": {"auth": null}},
                          {"name": "plain", "endpoint": {"path": "x"}}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        assert_eq!(config.resources[0].endpoint.auth, EndpointAuth::NoAuth);
        assert!(matches!(
            config.resources[1].endpoint.auth,
            EndpointAuth::Own(AuthConfig::Bearer(_))
        ));
        let yaml = "client: {base_url: 'https://a', auth: {token: {secret: t}}}\n\
                    resources:\n  - name: open\n    endpoint: {path: x, auth: null}\n";
        let config = parse(yaml, Format::Yaml, "p.yaml").unwrap();
        assert_eq!(config.resources[0].endpoint.auth, EndpointAuth::NoAuth);
        let json = r#"{"client": {"base_url": "https://a"},
            "resources": [{"name": "r", "endpoint": {"path": "x"}}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        assert_eq!(config.resources[0].endpoint.auth, EndpointAuth::Client);

        let cases = [
            (
                "endpoint = { auth = { type = \"oauth\" } }",
                "resources[0].endpoint.auth.type: unknown or unsupported auth type `oauth`",
            ),
            (
                "endpoint = { auth = { type = \"api_key\", name = \"\", api_key = { secret = \"k\" } } }",
                "resources[0].endpoint.auth.name: must not be empty",
            ),
            (
                "endpoint = { auth = { type = \"bearer\", token = \"literal\" } }",
                "resources[0].endpoint.auth.token: a secret value must not be written",
            ),
            (
                "endpoint = { auth = { type = \"oauth2_client_credentials\", \
                 access_token_url = \"/t\", client_id = { secret = \"i\" }, \
                 client_secret = { secret = \"s\" } } }",
                "resources[0].endpoint.auth.access_token_url: `/t` is not a URL",
            ),
        ];
        for (endpoint, needle) in cases {
            let text = format!(
                "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n{endpoint}\n"
            );
            let e = err(toml(&text));
            assert!(e.contains(needle), "{endpoint}: {needle:?} not in {e:?}");
        }
        let e = err(toml(
            "[client]\nbase_url = \"https://a\"\n[resource_defaults]\n\
             endpoint = { auth = { type = \"http_basic\", username = \"\", \
             password = { secret = \"p\" } } }\n[[resources]]\nname = \"r\"\n",
        ));
        assert!(
            e.contains("resource_defaults.endpoint.auth.username: must not be empty"),
            "{e}"
        );
    }
}
