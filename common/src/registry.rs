//! The Confluent-compatible schema registry client settings, from `[schema_registry]`.

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::config::PipelineConfig;
use crate::secret::{SecretError, SecretResolver};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("schema_registry.url {url}: {message}")]
    Client { url: String, message: String },
}

/// `None` without a configured registry (values then use Avro single-object encoding).
pub fn settings(
    cfg: &PipelineConfig,
    secrets: &SecretResolver,
) -> Result<Option<SrSettings>, RegistryError> {
    let Some(reg) = &cfg.schema_registry else {
        return Ok(None);
    };
    let url = reg.url.as_str().trim_end_matches('/').to_owned();
    let mut builder = SrSettings::new_builder(url.clone());
    if let Some(user) = &reg.username {
        let password = match &reg.password {
            Some(p) => Some(secrets.resolve("schema_registry.password", p)?),
            None => None,
        };
        let _ = builder.set_basic_authorization(user, password.as_ref().map(|p| p.expose()));
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| RegistryError::Client {
            url,
            message: e.to_string(),
        })
}
