//! What both binaries do at their edge the same way: logging and stop signals.

use crate::config::{PipelineConfig, SchemaRegistryConfig};

/// Logs to stderr through `tracing`: human-readable (coloured only when stderr is a
/// terminal, so piped and container logs stay plain text), or one JSON object per line.
/// `RUST_LOG` filters (default `info`).
pub fn init_logging(json: bool) {
    init_logging_to(json, std::io::stderr);
}

/// As [`init_logging`], writing through `writer` (which should end on stderr, e.g. past the
/// extractor's progress bars).
pub fn init_logging_to<W>(json: bool, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn stop_signal() {
    {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop signal received: finishing the current batch");
    }
}

/// An error and its causes on one line, `: `-separated, each said once: a cause whose
/// text is already part of the line (an error that prints its source in its own message
/// and also returns it from `source()`, as many libraries' errors do) is left out. What
/// both binaries print on failure (`loader: error: …`).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("--schema-registry-url / SCHEMA_REGISTRY_URL: `{0}` is not a URL: {1}")]
    RegistryUrl(String, url::ParseError),
    #[error(
        "kafka.\"bootstrap.servers\" is not set: set it in the config's [kafka] table, with --brokers, \
         or with KAFKA_BOOTSTRAP_SERVERS"
    )]
    NoBrokers,
}

/// Applies the command line's (or environment's) broker list and registry URL over the
/// config's, and checks the result names brokers.
pub fn apply_overrides(
    cfg: &mut PipelineConfig,
    brokers: Option<&str>,
    registry_url: Option<&str>,
) -> Result<(), OverrideError> {
    if let Some(b) = brokers.filter(|b| !b.trim().is_empty()) {
        let _ = cfg
            .kafka
            .insert("bootstrap.servers".into(), b.trim().to_owned());
    }
    if let Some(u) = registry_url.filter(|u| !u.trim().is_empty()) {
        let url =
            url::Url::parse(u.trim()).map_err(|e| OverrideError::RegistryUrl(u.to_owned(), e))?;
        match &mut cfg.schema_registry {
            Some(reg) => reg.url = url,
            None => {
                cfg.schema_registry = Some(SchemaRegistryConfig {
                    url,
                    username: None,
                    password: None,
                });
            }
        }
    }
    for (name, value) in kafka_env(std::env::vars()) {
        let _ = cfg.kafka.insert(name, value);
    }
    if !cfg.kafka.contains_key("bootstrap.servers") {
        return Err(OverrideError::NoBrokers);
    }
    Ok(())
}

/// The prefix of environment variables that set librdkafka properties: `RDKAFKA_SASL_PASSWORD`
/// sets `sasl.password` (after the prefix, lowercased, `_` → `.`, and `__` → `_` for the
/// few names with an underscore). They override the config's `[kafka]` table, so a
/// container gets its credentials without writing them into a file.
pub const KAFKA_ENV_PREFIX: &str = "RDKAFKA_";

/// The librdkafka properties set by `vars` (see [`KAFKA_ENV_PREFIX`]).
pub fn kafka_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(KAFKA_ENV_PREFIX)?;
            if rest.is_empty() {
                return None;
            }
            let name = rest
                .to_ascii_lowercase()
                .replace("__", "\u{0}")
                .replace('_', ".")
                .replace('\u{0}', "_");
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_settings_come_from_the_environment() {
        let vars = [
            ("RDKAFKA_SASL_PASSWORD", "s3cret"),
            ("RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("RDKAFKA_SSL_ENGINE__ID", "x"),
            ("RDKAFKA_", "ignored"),
            ("KAFKA_BOOTSTRAP_SERVERS", "not ours"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            kafka_env(vars),
            [
                ("sasl.password".to_owned(), "s3cret".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("ssl.engine_id".to_owned(), "x".to_owned()),
            ]
        );
    }

    /// An error that prints its cause and also returns it from `source()`.
    #[derive(Debug, thiserror::Error)]
    #[error("committing the batch transaction: {0}")]
    struct Repeats(#[source] std::io::Error);

    /// An error that names its place and leaves the cause to `source()`.
    #[derive(Debug, thiserror::Error)]
    #[error("resource `r`")]
    struct Place(#[source] Repeats);

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let full = || std::io::Error::other("database or disk is full");
        assert_eq!(
            error_chain(&Repeats(full())),
            "committing the batch transaction: database or disk is full"
        );
        let nested = Place(Repeats(full()));
        assert_eq!(
            error_chain(&nested),
            "resource `r`: committing the batch transaction: database or disk is full"
        );
        // What `{:#}` would print: the cause twice.
        let anyhow_like = format!("{}: {}", nested.0, nested.0.0);
        assert_eq!(anyhow_like.matches("database or disk is full").count(), 2);
    }
}
