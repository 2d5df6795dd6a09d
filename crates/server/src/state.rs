//! Everything a request needs, built once from the configuration at start-up.

use std::sync::Arc;
use std::time::Duration;

use scr_auth::{Issuer, Jwks, Verifier};
use scr_source::Source;

use crate::config::Config;

pub struct AppState {
    pub base_url: String,
    pub sources: Vec<Arc<dyn Source>>,
    pub verifier: Verifier,
    pub policy: scr_policy::PolicyConfig,
    pub source_timeout: Duration,
    pub store: scr_store::Store,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("the store at store.url cannot be opened: {source}")]
    Store { source: scr_store::StoreError },
    #[error("source {name}: {source}")]
    Source {
        name: String,
        source: scr_db::DbError,
    },
}

fn config_error(key: impl Into<String>, message: impl Into<String>) -> StartupError {
    StartupError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// Codes of one ValueSet file, by code only (systems differ between sources for the same list).
pub fn valueset_codes(path: &std::path::Path, key: &str) -> Result<Vec<String>, StartupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(key, format!("cannot read {}: {e}", path.display())))?;
    let codes = scr_fhir::valueset::codes(&text)
        .map_err(|e| config_error(key, format!("{}: {e}", path.display())))?;
    Ok(codes.into_iter().map(|(_, code)| code).collect())
}

/// The codes the configuration's ValueSets name: (sensitive, objection, consent).
pub fn policy_codes(
    config: &Config,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), StartupError> {
    let mut sensitive = Vec::new();
    for (i, p) in config.policy.sensitive_valuesets.iter().enumerate() {
        sensitive.extend(valueset_codes(
            p,
            &format!("policy.sensitive_valuesets[{i}]"),
        )?);
    }
    let objection = valueset_codes(
        &config.policy.objection_valueset,
        "policy.objection_valueset",
    )?;
    let consent = valueset_codes(&config.policy.consent_valueset, "policy.consent_valueset")?;
    Ok((sensitive, objection, consent))
}

pub fn verifier(config: &Config) -> Result<Verifier, StartupError> {
    let mut issuers = Vec::new();
    if config.auth.dev_issuer {
        log::warn!(
            "the DEVELOPMENT token issuer is trusted (auth.dev_issuer = true): never in production"
        );
        issuers.push(
            scr_auth::dev::dev_issuer()
                .map_err(|e| config_error("auth.dev_issuer", e.to_string()))?,
        );
    }
    for (i, issuer) in config.auth.issuers.iter().enumerate() {
        let key = format!("auth.issuers[{i}].jwks_file");
        let text = std::fs::read_to_string(&issuer.jwks_file).map_err(|e| {
            config_error(
                &key,
                format!("cannot read {}: {e}", issuer.jwks_file.display()),
            )
        })?;
        let jwks = Jwks::from_json(&text).map_err(|e| config_error(&key, e.to_string()))?;
        issuers.push(Issuer {
            iss: issuer.iss.clone(),
            jwks,
        });
    }
    Ok(Verifier::new(
        issuers,
        config.server.base_url.clone(),
        config.auth.leeway_seconds,
    ))
}

impl AppState {
    pub fn build(config: &Config) -> Result<AppState, StartupError> {
        let (sensitive, objection, consent) = policy_codes(config)?;
        let store = scr_store::Store::open(&config.store.url, config.store.pool_size)
            .map_err(|source| StartupError::Store { source })?;
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        for g in &config.sources.gp {
            let options = scr_db::PoolOptions {
                max_size: g.pool_size,
                read_only: true,
                ..Default::default()
            };
            let pool = scr_db::open_pool(&g.name, &g.url, &options).map_err(|source| {
                StartupError::Source {
                    name: g.name.clone(),
                    source,
                }
            })?;
            let codes = scr_source_gp::GpCodes {
                objection: objection.clone(),
                consent: consent.clone(),
                sensitive: sensitive.clone(),
            };
            sources.push(Arc::new(scr_source_gp::GpSource::new(
                g.name.clone(),
                pool,
                codes,
            )));
        }
        sources.push(Arc::new(scr_source_hl7v2::Hl7Source::new(
            config.sources.hl7_name.clone(),
            store.pool().clone(),
        )));
        for s in &config.sources.social_care {
            let options = scr_db::PoolOptions {
                max_size: s.pool_size,
                read_only: true,
                ..Default::default()
            };
            let pool = scr_db::open_pool(&s.name, &s.url, &options).map_err(|source| {
                StartupError::Source {
                    name: s.name.clone(),
                    source,
                }
            })?;
            sources.push(Arc::new(scr_source_social_care::SocialCareSource::new(
                s.name.clone(),
                s.council.clone(),
                s.council_name.clone(),
                pool,
            )));
        }
        Ok(AppState {
            base_url: config.server.base_url.clone(),
            sources,
            verifier: verifier(config)?,
            policy: config.policy_config(),
            source_timeout: Duration::from_millis(config.server.source_timeout_ms),
            store,
        })
    }

    pub fn source(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.sources.iter().find(|s| s.name() == name)
    }

    /// Logs, without identifiable data, how many native rows each source could not match.
    pub fn report_unmatched_rows(&self) {
        for s in &self.sources {
            match s.match_report() {
                Ok(r) if r.rows_without_valid_nhs_number > 0 => log::warn!(
                    "source {}: {} of {} patient rows have no valid NHS number and are not matched to anyone",
                    s.name(),
                    r.rows_without_valid_nhs_number,
                    r.rows_checked
                ),
                Ok(r) => log::info!("source {}: all {} patient rows have a valid NHS number", s.name(), r.rows_checked),
                Err(e) => log::warn!("source {}: match report unavailable: {e}", s.name()),
            }
        }
    }
}
