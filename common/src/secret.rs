//! Secrets: the config names them (`api_key = { secret = "api_key" }`), never holds them.
//!
//! A [`SecretRef`] is what the config file says; a [`SecretResolver`] turns it into a
//! [`Secret`] by looking, in order, at the env var `<NAME>` (the name upper-cased, every
//! character that is not a letter or digit replaced by `_`), at dlt's `SOURCES__<NAME>`, and at
//! a dlt-style secrets file (`.dlt/secrets.toml`: the name at top level or under `[sources]`).
//! A [`Secret`] prints as `***`; [`Secret::expose`] is the only way to read it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// What `Debug` and `Display` print instead of a secret value.
pub const MASK: &str = "***";

/// Where dlt keeps its secrets, relative to the working directory.
pub const DEFAULT_SECRETS_FILE: &str = ".dlt/secrets.toml";

/// A secret value. Prints as `***`; not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: only for the HTTP layer that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A reference to a secret, written `{ secret = "name" }` in the config.
///
/// A bare string where a secret belongs is rejected: the value must not be in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub secret: String,
}

impl SecretRef {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            secret: name.into(),
        }
    }
}

/// The message for a secret written in the config file itself.
pub(crate) const LITERAL_SECRET: &str = "a secret value must not be written in the config file: \
     write `{ secret = \"<name>\" }` instead (e.g. `api_key = { secret = \"api_key\" }`) and \
     provide the value in the env var <NAME> or SOURCES__<NAME>, or in the secrets file";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            secret: String,
        }

        struct SecretRefVisitor;

        impl<'de> Visitor<'de> for SecretRefVisitor {
            type Value = SecretRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference `{ secret = \"<name>\" }`")
            }

            fn visit_str<E: de::Error>(self, _value: &str) -> Result<SecretRef, E> {
                // The value is not echoed: it is the secret.
                Err(E::custom(LITERAL_SECRET))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
                let fields = Fields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if fields.secret.trim().is_empty() {
                    return Err(de::Error::custom("the secret name must not be empty"));
                }
                Ok(SecretRef {
                    secret: fields.secret,
                })
            }
        }

        deserializer.deserialize_any(SecretRefVisitor)
    }
}

/// The env var that holds secret `name`: upper-cased, non-alphanumerics replaced by `_`.
pub fn env_var_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret \"{name}\" for {key_path} not found; looked in {}",
        places.join(", ")
    )]
    NotFound {
        key_path: String,
        name: String,
        /// Each place looked, e.g. `env var API_KEY`; never a value.
        places: Vec<String>,
    },
    #[error("secret \"{name}\" for {key_path}: {problem}")]
    Unusable {
        key_path: String,
        name: String,
        /// Why the place that has it cannot be used (not a string, ...); never a value.
        problem: String,
    },
    #[error("secrets file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// Finds secret values for [`SecretRef`]s: env vars first, then the secrets file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretResolver {
    secrets_file: Option<PathBuf>,
}

impl SecretResolver {
    /// `secrets_file`: a dlt-style `secrets.toml`; `None` looks in env vars only.
    pub fn new(secrets_file: Option<PathBuf>) -> Self {
        Self { secrets_file }
    }

    /// Env vars, then dlt's default file [`DEFAULT_SECRETS_FILE`] (if it exists).
    pub fn with_default_file() -> Self {
        Self::new(Some(PathBuf::from(DEFAULT_SECRETS_FILE)))
    }

    pub fn secrets_file(&self) -> Option<&Path> {
        self.secrets_file.as_deref()
    }

    /// Resolves `secret` from the process environment and the secrets file. `key_path` is
    /// where the config refers to it (`client.auth.api_key`), for the error message.
    pub fn resolve(&self, key_path: &str, secret: &SecretRef) -> Result<Secret, SecretError> {
        self.resolve_with(key_path, secret, |name| std::env::var(name).ok())
    }

    /// [`Self::resolve`] with `env` standing in for the process environment.
    pub fn resolve_with(
        &self,
        key_path: &str,
        secret: &SecretRef,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secret, SecretError> {
        let name = secret.secret.as_str();
        let var = env_var_name(name);
        let mut places = Vec::new();
        for var in [var.clone(), format!("SOURCES__{var}")] {
            match env(&var) {
                Some(value) if !value.is_empty() => return Ok(Secret(value)),
                Some(_) => places.push(format!("env var {var} (set but empty)")),
                None => places.push(format!("env var {var}")),
            }
        }
        if let Some(path) = &self.secrets_file {
            let keys = format!("keys `{name}` and `sources.{name}`");
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    if let Some(value) = lookup_file(path, &text, key_path, name)? {
                        return Ok(value);
                    }
                    places.push(format!("file {} ({keys})", path.display()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    places.push(format!("file {} (does not exist)", path.display()));
                }
                Err(e) => {
                    return Err(SecretError::File {
                        path: path.clone(),
                        message: format!("cannot read: {e}"),
                    });
                }
            }
        }
        Err(SecretError::NotFound {
            key_path: key_path.to_owned(),
            name: name.to_owned(),
            places,
        })
    }
}

/// `name` at the top level of the secrets file, else under `[sources]`.
fn lookup_file(
    path: &Path,
    text: &str,
    key_path: &str,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| SecretError::File {
        path: path.to_owned(),
        // `message()` only: the error's `Display` quotes the offending line, which may
        // hold a secret.
        message: format!("not valid TOML: {}", toml_error_summary(text, &e)),
    })?;
    let found = match table.get(name) {
        Some(value) => Some((name.to_owned(), value)),
        None => table
            .get("sources")
            .and_then(toml::Value::as_table)
            .and_then(|sources| sources.get(name))
            .map(|value| (format!("sources.{name}"), value)),
    };
    match found {
        None => Ok(None),
        Some((_, toml::Value::String(value))) if !value.is_empty() => {
            Ok(Some(Secret(value.clone())))
        }
        Some((key, value)) => Err(SecretError::Unusable {
            key_path: key_path.to_owned(),
            name: name.to_owned(),
            problem: format!(
                "key `{key}` in {} is {}, expected a non-empty string",
                path.display(),
                describe_toml(value)
            ),
        }),
    }
}

fn describe_toml(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "an empty string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// A TOML error's message and line, without the quoted source line.
pub(crate) fn toml_error_summary(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug)]
    #[allow(dead_code)] // read through `Debug` only
    struct Holder {
        name: &'static str,
        key: Secret,
    }

    #[test]
    fn secret_prints_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let holder = Holder {
            name: "x",
            key: s.clone(),
        };
        let debug = format!("{holder:?}");
        assert!(debug.contains("***"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!format!("{holder:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_name("api_key"), "API_KEY");
        assert_eq!(env_var_name("my-api.key"), "MY_API_KEY");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn resolution_order_env_then_sources_then_file() {
        let (_dir, path) = file("api_key = \"from-file\"\n");
        let resolver = SecretResolver::new(Some(path));
        let r = SecretRef::new("api_key");
        let key = "client.auth.api_key";

        let both = env(&[("API_KEY", "plain"), ("SOURCES__API_KEY", "dlt")]);
        assert_eq!(
            resolver.resolve_with(key, &r, both).unwrap().expose(),
            "plain"
        );

        let dlt = env(&[("SOURCES__API_KEY", "dlt")]);
        assert_eq!(resolver.resolve_with(key, &r, dlt).unwrap().expose(), "dlt");

        let none = env(&[]);
        assert_eq!(
            resolver.resolve_with(key, &r, none).unwrap().expose(),
            "from-file"
        );
    }

    #[test]
    fn file_sources_table() {
        let (_dir, path) = file("[sources]\napi_key = \"under-sources\"\n");
        let resolver = SecretResolver::new(Some(path));
        let secret = resolver
            .resolve_with("k", &SecretRef::new("api_key"), env(&[]))
            .unwrap();
        assert_eq!(secret.expose(), "under-sources");
    }

    #[test]
    fn missing_secret_lists_places_and_no_value() {
        let (_dir, path) = file("other = \"do-not-print\"\n[sources]\nx = \"nor-this\"\n");
        let resolver = SecretResolver::new(Some(path.clone()));
        let err = resolver
            .resolve_with(
                "client.auth.api_key",
                &SecretRef::new("api_key"),
                env(&[("UNRELATED", "value-not-shown")]),
            )
            .unwrap_err()
            .to_string();
        for needle in [
            "client.auth.api_key",
            "\"api_key\"",
            "env var API_KEY",
            "env var SOURCES__API_KEY",
            &path.display().to_string(),
        ] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
        for value in ["do-not-print", "nor-this", "value-not-shown"] {
            assert!(!err.contains(value), "{err}");
        }
    }

    #[test]
    fn missing_file_and_no_file() {
        let resolver = SecretResolver::new(Some(PathBuf::from("/nonexistent/secrets.toml")));
        let err = resolver
            .resolve_with("k", &SecretRef::new("t"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");

        let err = SecretResolver::new(None)
            .resolve_with("k", &SecretRef::new("t"), env(&[("T", "")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("env var T (set but empty)"), "{err}");
        assert!(!err.contains("file"), "{err}");
    }

    #[test]
    fn bad_file_does_not_echo_values() {
        let (_dir, path) = file("api_key = \"s3cret\" junk\n");
        let err = SecretResolver::new(Some(path))
            .resolve_with("k", &SecretRef::new("api_key"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid TOML"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");

        let (_dir, path) = file("api_key = 42\n");
        let err = SecretResolver::new(Some(path))
            .resolve_with("k", &SecretRef::new("api_key"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is an integer"), "{err}");
        assert!(!err.contains("42"), "{err}");
    }

    #[test]
    fn secret_ref_deserializes_from_table_only() {
        let r: SecretRef = serde_json::from_str(r#"{"secret": "api_key"}"#).unwrap();
        assert_eq!(r, SecretRef::new("api_key"));

        let err = serde_json::from_str::<SecretRef>(r#""literal-value""#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not be written"), "{err}");
        assert!(!err.contains("literal-value"), "{err}");

        let err = serde_json::from_str::<SecretRef>(r#"{"secrett": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `secrett`"), "{err}");
    }
}
