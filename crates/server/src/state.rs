//! Everything a request needs, built once from the configuration at start-up.

use std::sync::Arc;
use std::time::Duration;

use scr_auth::{Issuer, Jwks, Verifier};
use scr_source::Source;

use crate::config::Config;

pub struct AppState {
    pub base_url: String,
    /// Opening records: the sources, the policy, the facts.
    pub records: scr_record::Records,
    pub verifier: Verifier,
    pub store: scr_store::Store,
    /// The SMART Backend Services token endpoint, when a signing key is configured.
    pub token_service: Option<scr_auth::token_endpoint::TokenService>,
    /// Limits on refused requests per address and token requests per client.
    pub throttle: std::sync::Arc<crate::throttle::Throttle>,
    /// The login providers users of SMART apps sign in at (`[[auth.login]]`), by name.
    pub logins: Vec<Arc<scr_login::LoginProvider>>,
    /// Sign-ins in progress, authorization codes and EHR launches.
    pub sessions: scr_login::Sessions,
    /// Whether `GET /metrics` is served (`server.metrics`).
    pub metrics: bool,
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

/// The alert ValueSets: the configured file of each category named under
/// `alerts.category_valuesets`, the shipped one of every other. An unreadable or invalid file, a
/// code in two categories, stops the server naming the key.
pub fn alert_codes(config: &Config) -> Result<scr_fhir::alerts::AlertCodes, StartupError> {
    use scr_fhir::alerts::{AlertCategory, AlertCodes, SHIPPED_VALUESETS};
    let mut texts: Vec<(AlertCategory, String)> = Vec::new();
    for (category, shipped) in SHIPPED_VALUESETS {
        let text = match config.alerts.category_valuesets.get(category.code()) {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                config_error(
                    format!("alerts.category_valuesets.{}", category.code()),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            None => shipped.to_owned(),
        };
        texts.push((category, text));
    }
    let sets: Vec<(AlertCategory, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
    let codes = AlertCodes::from_valuesets(&sets).map_err(|e| {
        let category = match &e {
            scr_fhir::alerts::AlertCodesError::ValueSet { category, .. }
            | scr_fhir::alerts::AlertCodesError::NoCodes { category }
            | scr_fhir::alerts::AlertCodesError::Ambiguous { category, .. } => *category,
            _ => "",
        };
        config_error(
            format!("alerts.category_valuesets.{category}"),
            e.to_string(),
        )
    })?;
    Ok(codes)
}

/// The codes the configuration's ValueSets name.
pub struct PolicyCodes {
    /// R-SENS-1: records coded with these never leave the organisation that holds them.
    pub sensitive: Vec<String>,
    /// R-OBJ-1: GP codes recording an objection.
    pub objection: Vec<String>,
    /// R-OBJ-5: GP codes recording consent, withdrawing an objection.
    pub consent: Vec<String>,
}

pub fn policy_codes(config: &Config) -> Result<PolicyCodes, StartupError> {
    let mut sensitive = Vec::new();
    for (i, p) in config.policy.sensitive_valuesets.iter().enumerate() {
        sensitive.extend(valueset_codes(
            p,
            &format!("policy.sensitive_valuesets[{i}]"),
        )?);
    }
    // Fail closed: without the sensitive value sets, R-SENS-1 could not tell a sensitive record
    // from any other, so the server does not start rather than let them leave.
    if sensitive.is_empty() {
        return Err(config_error(
            "policy.sensitive_valuesets",
            "no sensitive codes are loaded: R-SENS-1 cannot be enforced without them",
        ));
    }
    if config.hl7.sensitive_services.is_empty() {
        return Err(config_error(
            "hl7.sensitive_services",
            "no sensitive services are listed: R-SENS-2 cannot be enforced without them",
        ));
    }
    let objection = valueset_codes(
        &config.policy.objection_valueset,
        "policy.objection_valueset",
    )?;
    let consent = valueset_codes(&config.policy.consent_valueset, "policy.consent_valueset")?;
    Ok(PolicyCodes {
        sensitive,
        objection,
        consent,
    })
}

/// The token endpoint, if configured; its signing key is created on first start.
pub fn token_service(
    config: &Config,
) -> Result<Option<scr_auth::token_endpoint::TokenService>, StartupError> {
    use scr_auth::token_endpoint::{RegisteredClient, RegisteredPeer, TokenService};
    let Some(path) = &config.auth.signing_key_file else {
        return Ok(None);
    };
    let key = "auth.signing_key_file";
    if !path.exists() {
        let rsa =
            openssl::rsa::Rsa::generate(2048).map_err(|e| config_error(key, e.to_string()))?;
        let pem = openssl::pkey::PKey::from_rsa(rsa)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| config_error(key, e.to_string()))?;
        write_private(path, &pem)
            .map_err(|e| config_error(key, format!("cannot create {}: {e}", path.display())))?;
        log::info!(
            "created the token endpoint's signing key at {}",
            path.display()
        );
    }
    let pem = std::fs::read(path)
        .map_err(|e| config_error(key, format!("cannot read {}: {e}", path.display())))?;
    let mut clients = Vec::new();
    for (i, c) in config.auth.clients.iter().enumerate() {
        let k = format!("auth.clients[{i}].jwks_file");
        let text = std::fs::read_to_string(&c.jwks_file)
            .map_err(|e| config_error(&k, format!("cannot read {}: {e}", c.jwks_file.display())))?;
        let jwks = Jwks::from_json(&text).map_err(|e| config_error(&k, e.to_string()))?;
        clients.push(RegisteredClient {
            client_id: c.client_id.clone(),
            org: c.org.clone(),
            jwks,
            allowed_scopes: c.scopes.clone(),
        });
    }
    let mut peers = Vec::new();
    for (i, p) in config.auth.peers.iter().enumerate() {
        let k = format!("auth.peers[{i}].jwks_file");
        let text = std::fs::read_to_string(&p.jwks_file)
            .map_err(|e| config_error(&k, format!("cannot read {}: {e}", p.jwks_file.display())))?;
        let jwks = Jwks::from_json(&text).map_err(|e| config_error(&k, e.to_string()))?;
        peers.push(RegisteredPeer {
            name: p.name.clone(),
            client_id: p.client_id.clone(),
            jwks,
            allowed_scopes: p.scopes.clone(),
        });
    }
    let token_url = format!("{}/auth/token", config.server.base_url);
    TokenService::new(
        &config.server.base_url,
        &token_url,
        pem,
        config.auth.access_token_seconds,
        config.auth.leeway_seconds,
        clients,
    )
    .map(|service| {
        Some(
            service
                .with_peers(peers)
                .with_apps(apps(config), config.auth.refresh_token_seconds),
        )
    })
    .map_err(|e| config_error(key, e.to_string()))
}

/// The registered SMART apps (`[[auth.apps]]`).
fn apps(config: &Config) -> Vec<scr_auth::apps::RegisteredApp> {
    config
        .auth
        .apps
        .iter()
        .map(|a| scr_auth::apps::RegisteredApp {
            client_id: a.client_id.clone(),
            secret: a.client_secret.clone(),
            redirect_uris: a.redirect_uris.clone(),
            scopes: a.scopes.clone(),
            login: a.login.clone(),
        })
        .collect()
}

/// The login providers (`[[auth.login]]`).
pub fn logins(config: &Config) -> Result<Vec<Arc<scr_login::LoginProvider>>, StartupError> {
    config
        .auth
        .login
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let kinds = l
                .caller_kinds
                .iter()
                .map(|k| match k.as_str() {
                    "patient" => scr_auth::CallerKind::Patient,
                    _ => scr_auth::CallerKind::Staff,
                })
                .collect();
            scr_login::LoginProvider::new(scr_login::ProviderSettings {
                name: l.name.clone(),
                issuer: l.issuer.clone(),
                client_id: l.client_id.clone(),
                client_secret: l.client_secret.clone(),
                limits: scr_auth::IssuerLimits {
                    kinds,
                    organisations: l.organisations.clone(),
                    max_lifetime_seconds: 3600,
                    federation: false,
                },
                leeway_seconds: config.auth.leeway_seconds,
                timeout: Duration::from_millis(l.timeout_ms),
                jwks_refetch: Duration::from_secs(scr_login::JWKS_REFETCH_SECONDS),
            })
            .map(Arc::new)
            .map_err(|e| config_error(format!("auth.login[{i}]"), e))
        })
        .collect()
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

pub fn verifier(
    config: &Config,
    token_service: Option<&scr_auth::token_endpoint::TokenService>,
) -> Result<Verifier, StartupError> {
    let mut issuers = Vec::new();
    if let Some(ts) = token_service {
        issuers.push(
            ts.own_issuer()
                .map_err(|e| config_error("auth.signing_key_file", e.to_string()))?,
        );
    }
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
            limits: scr_auth::IssuerLimits {
                kinds: issuer
                    .kinds(&format!("auth.issuers[{i}].caller_kinds"))
                    .map_err(|e| {
                        config_error(format!("auth.issuers[{i}].caller_kinds"), e.to_string())
                    })?,
                organisations: issuer.organisations.clone(),
                max_lifetime_seconds: issuer.max_token_lifetime_seconds,
                // Federated callers come only from this server's own token endpoint.
                federation: false,
            },
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
        let (records, store) = records(config)?;
        let token_service = token_service(config)?;
        let sessions = scr_login::Sessions::new(
            store.clone(),
            config.auth.authorize_requests_per_minute.saturating_mul(10),
        );
        Ok(AppState {
            base_url: config.server.base_url.clone(),
            records,
            verifier: verifier(config, token_service.as_ref())?,
            store,
            token_service,
            throttle: std::sync::Arc::new(crate::throttle::Throttle::new(
                config.server.refusals_per_minute,
                config.auth.token_requests_per_minute,
                config.auth.exchanges_per_minute,
                config.auth.authorize_requests_per_minute,
            )),
            logins: logins(config)?,
            sessions,
            metrics: config.server.metrics,
        })
    }
}

/// The record service (sources, store, policy) from the configuration: all that opening a
/// record needs, without the token machinery (for `scr policy explain`).
pub fn records(config: &Config) -> Result<(scr_record::Records, scr_store::Store), StartupError> {
    let PolicyCodes {
        sensitive,
        objection,
        consent,
    } = policy_codes(config)?;
    let alerts = alert_codes(config)?;
    let ms = Duration::from_millis;
    let store_options = scr_db::PoolOptions {
        max_size: config.store.pool_size,
        connect_timeout: ms(config.store.checkout_timeout_ms),
        read_only: false,
        busy_timeout: ms(config.store.busy_timeout_ms),
        statement_timeout: Some(ms(config.store.statement_timeout_ms)),
        lock_timeout: Some(ms(config.store.lock_timeout_ms)),
    };
    let store = scr_store::Store::open_with(&config.store.url, store_options)
        .map_err(|source| StartupError::Store { source })?;
    let source_deadline = Duration::from_millis(config.server.source_timeout_ms);
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    for g in &config.sources.gp {
        let pool = replica_pool(&g.name, &g.url, g.pool_size, source_deadline)?;
        let codes = scr_source_gp::GpCodes {
            objection: objection.clone(),
            consent: consent.clone(),
            sensitive: sensitive.clone(),
            alerts: alerts.clone(),
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
        let pool = replica_pool(&s.name, &s.url, s.pool_size, source_deadline)?;
        sources.push(Arc::new(scr_source_social_care::SocialCareSource::new(
            s.name.clone(),
            s.council.clone(),
            s.council_name.clone(),
            pool,
        )));
    }
    let peers = config
        .sources
        .peer
        .iter()
        .enumerate()
        .map(|(i, p)| peer_source(i, p, &sensitive).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        scr_record::Records::new(
            sources,
            store.clone(),
            config.policy_config(),
            Duration::from_millis(config.server.source_timeout_ms),
        )
        .with_peers(peers),
        store,
    ))
}

/// A read-only pool on a provider's reporting replica.
///
/// Every wait on it is bounded by the source deadline: the pool checkout, and on PostgreSQL the
/// statement and lock waits, which the replica's server cancels itself, so a query abandoned at
/// the deadline does not keep running and keep its connection.
fn replica_pool(
    name: &str,
    url: &str,
    size: u32,
    deadline: Duration,
) -> Result<scr_db::DbPool, StartupError> {
    let options = scr_db::PoolOptions {
        max_size: size,
        read_only: true,
        connect_timeout: deadline,
        busy_timeout: deadline,
        statement_timeout: Some(deadline),
        lock_timeout: Some(deadline),
    };
    scr_db::open_pool(name, url, &options).map_err(|source| StartupError::Source {
        name: name.to_owned(),
        source,
    })
}

/// One neighbouring record from its `[[sources.peer]]` table (validated already): the key file
/// read and its algorithm chosen from its type.
fn peer_source(
    i: usize,
    p: &crate::config::PeerSourceConfig,
    sensitive: &[String],
) -> Result<scr_source_peer::PeerSource, StartupError> {
    use crate::config::PeerAuthKind;
    use scr_source_peer::{ClientKey, PeerAuth, PeerConfig};
    let key = |k: &str| format!("sources.peer[{i}].{k}");
    let read = |k: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| config_error(key(k), format!("{}: {e}", path.display())))
    };
    let client_key = || -> Result<ClientKey, StartupError> {
        let path = p.key_file.as_deref().unwrap_or(std::path::Path::new(""));
        let pem = read("key_file", path)?;
        let alg = match openssl::pkey::PKey::private_key_from_pem(&pem).map(|k| (k.id(), k.bits()))
        {
            Ok((openssl::pkey::Id::EC, 384)) => "ES384",
            Ok((openssl::pkey::Id::RSA, bits)) if bits >= 2048 => "RS384",
            _ => return Err(config_error(
                key("key_file"),
                "must be a PEM private key: EC P-384 (ES384) or RSA of 2048 bits or more (RS384)",
            )),
        };
        Ok(ClientKey {
            token_url: p.token_url.clone().unwrap_or_default(),
            client_id: p.client_id.clone().unwrap_or_default(),
            key_pem: pem,
            key_id: p.key_id.clone().unwrap_or_default(),
            alg,
        })
    };
    let auth = match p.auth {
        PeerAuthKind::None => PeerAuth::None,
        PeerAuthKind::ClientCredentials => PeerAuth::ClientCredentials(client_key()?),
        PeerAuthKind::Exchange => PeerAuth::Exchange(client_key()?),
    };
    let ca_pem = p
        .ca_file
        .as_deref()
        .map(|f| read("ca_file", f))
        .transpose()?;
    let config = PeerConfig {
        name: p.name.clone(),
        base_url: p.base_url.clone(),
        auth,
        timeout: Duration::from_millis(p.timeout_ms),
        max_concurrent: p.max_concurrent,
        ca_pem,
    };
    let sensitive = scr_source_peer::Sensitive::new(sensitive.iter().cloned());
    scr_source_peer::PeerSource::new(config, sensitive)
        .map_err(|e| config_error(key("ca_file"), e.to_string()))
}

impl AppState {
    /// Logs, without identifiable data, how many native rows each source could not match. On a
    /// thread of its own: it reads every patient row of every source, three seconds for a
    /// region of 909,000 people, and the server must answer within a second of starting.
    pub fn report_unmatched_rows(&self) -> std::thread::JoinHandle<()> {
        let sources = self.records.sources().to_vec();
        std::thread::spawn(move || report_unmatched_rows(&sources))
    }
}

fn report_unmatched_rows(sources: &[Arc<dyn Source>]) {
    for s in sources {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[server]
bind = "127.0.0.1:8080"
base_url = "http://127.0.0.1:8080/fhir"
[store]
url = "sqlite://scr.db"
[auth]
dev_issuer = true
{extra}
"#
        );
        Config::from_toml(&text, &[]).expect("config")
    }

    fn error_of(c: &Config) -> String {
        match policy_codes(c) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        }
    }

    #[test]
    fn r_sens_1_without_sensitive_codes_the_server_does_not_start() {
        let dir = std::env::temp_dir().join(format!("scr-vs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.json");
        std::fs::write(
            &empty,
            r#"{"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[]}]}}"#,
        )
        .expect("write");
        let c = config(&format!(
            "[policy]\nsensitive_valuesets = [\"{}\"]\n",
            empty.display()
        ));
        let err = error_of(&c);
        assert!(err.starts_with("policy.sensitive_valuesets"), "{err}");
        let c = config("[policy]\nsensitive_valuesets = []\n");
        assert!(error_of(&c).starts_with("policy.sensitive_valuesets"));
    }

    #[test]
    fn r_sens_2_without_sensitive_services_the_server_does_not_start() {
        let vs = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fhir-profiles/ValueSet-scr-sensitive-codes.json"
        );
        let c = config(&format!(
            "[hl7]\nsensitive_services = []\n[policy]\nsensitive_valuesets = [\"{vs}\"]\n"
        ));
        let err = error_of(&c);
        assert!(err.starts_with("hl7.sensitive_services"), "{err}");
    }

    #[test]
    fn item10_alert_valuesets_load_shipped_or_configured_and_fail_naming_the_key() {
        let shipped = alert_codes(&config("")).expect("shipped alert ValueSets");
        assert_eq!(
            shipped.classify(Some("716186003"), "No known allergies"),
            scr_fhir::alerts::AlertCategory::Other
        );
        let dir = std::env::temp_dir().join(format!("scr-alert-vs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let own = dir.join("own.json");
        std::fs::write(
            &own,
            r#"{"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"1234"}]}]}}"#,
        )
        .expect("write");
        let c = config(&format!(
            "[alerts.category_valuesets]\nsafeguarding = \"{}\"\n",
            own.display()
        ));
        let codes = alert_codes(&c).expect("configured alert ValueSet");
        assert_eq!(
            codes.classify(Some("1234"), "x"),
            scr_fhir::alerts::AlertCategory::Safeguarding
        );
        let missing = config("[alerts.category_valuesets]\nother = \"/nonexistent/vs.json\"\n");
        let err = alert_codes(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("alerts.category_valuesets.other"), "{err}");
        // The code is already in the shipped "other" ValueSet.
        std::fs::write(
            &own,
            r#"{"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"716186003"}]}]}}"#,
        )
        .expect("write");
        let err = alert_codes(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("alerts.category_valuesets."), "{err}");
        let text = "[server]\nbind = \"127.0.0.1:8080\"\nbase_url = \"http://127.0.0.1:8080/fhir\"\n[store]\nurl = \"sqlite://scr.db\"\n[auth]\ndev_issuer = true\n[alerts.category_valuesets]\nurgent = \"x.json\"\n";
        let err = Config::from_toml(text, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("alerts.category_valuesets.urgent"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
