//! The one typed configuration: a TOML file, then `SCR_*` environment overrides, validated before
//! anything starts. A bad value stops the program with a message naming the key. Every key is
//! documented in `docs/configuration.md`; `examples/scr.toml` shows them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use scr_policy::Profile;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `SCR_*` variables in the environment that name no setting: warned about at start, never
    /// fatal (Kubernetes injects `SCR_SERVICE_HOST` for a service named `scr`). Names only:
    /// their values may be anything.
    #[serde(skip)]
    pub unknown_env: Vec<String>,
    pub server: ServerConfig,
    pub store: StoreConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub hl7: Hl7Config,
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default)]
    pub mllp: MllpConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[log]`: how log lines are written (the level is `SCR_LOG`, env_logger's filter syntax).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`: one JSON object per line (docs/operations.md).
    #[serde(default)]
    pub format: crate::logging::LogFormat,
}

/// How alerts from sources that do not categorise them (the GP replica) are classified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// A FHIR ValueSet file (SNOMED CT codes) per alert category code (`safeguarding`,
    /// `severe-allergy-condition`, `communication-support`, `treatment-restriction`,
    /// `end-of-life-wishes`, `other`). A category not named uses the ValueSet shipped in
    /// `fhir-profiles/ValueSet-scr-alert-{category}.json`, built into the binary.
    #[serde(default)]
    pub category_valuesets: BTreeMap<String, PathBuf>,
}

/// `[audit]`: signed checkpoints of the audit chain, kept outside the database (docs/audit.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// PEM Ed25519 private key checkpoints are signed with; created on first use if missing.
    pub checkpoint_key_file: Option<PathBuf>,
    /// The append-only file of signed checkpoints (one JSON line each).
    pub checkpoint_file: Option<PathBuf>,
    /// How often the server checkpoints the chain's head (when it grew).
    #[serde(default = "default_checkpoint_interval_seconds")]
    pub checkpoint_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_key_file: None,
            checkpoint_file: None,
            checkpoint_interval_seconds: default_checkpoint_interval_seconds(),
        }
    }
}

impl AuditConfig {
    /// The key and the file, when checkpoints are configured.
    pub fn checkpoints(&self) -> Option<(&Path, &Path)> {
        match (&self.checkpoint_key_file, &self.checkpoint_file) {
            (Some(key), Some(file)) => Some((key, file)),
            _ => None,
        }
    }
}

fn default_checkpoint_interval_seconds() -> u64 {
    60
}

/// The MLLP listener for hospital HL7 v2 feeds; served by `scr serve` when `bind` is set, or
/// alone by `scr mllp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpConfig {
    pub bind: Option<String>,
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// From the first byte of a message to its last: a slower sender is disconnected.
    #[serde(default = "default_message_timeout_seconds")]
    pub message_timeout_seconds: u64,
    /// Unresolved quarantined messages kept per connection identity; beyond it `AR`, not kept.
    #[serde(default = "default_quarantine_cap_per_sender")]
    pub quarantine_cap_per_sender: u64,
    /// Which facilities (MSH-4) may send from where. Required when `bind` is set.
    #[serde(default)]
    pub senders: Vec<MllpSenderConfig>,
    /// Mutual TLS for the listener: the client certificate identifies the facility.
    pub tls: Option<MllpTlsConfig>,
}

/// One `[[mllp.senders]]` entry: a sending facility bound to where it connects from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpSenderConfig {
    /// MSH-4, the facility's ODS code; must be one of `hl7.facilities`.
    pub facility: String,
    /// Peer addresses or CIDR blocks (`10.20.0.0/16`). May be empty only with mutual TLS.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The client certificate's subject common name under mutual TLS; the facility code when
    /// not set.
    pub certificate: Option<String>,
}

/// `[mllp.tls]`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpTlsConfig {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// Certificate authorities whose client certificates are accepted.
    pub client_ca: PathBuf,
}

impl Default for MllpConfig {
    fn default() -> Self {
        MllpConfig {
            bind: None,
            max_message_bytes: default_max_message_bytes(),
            idle_timeout_seconds: default_idle_timeout_seconds(),
            max_connections: default_max_connections(),
            message_timeout_seconds: default_message_timeout_seconds(),
            quarantine_cap_per_sender: default_quarantine_cap_per_sender(),
            senders: Vec::new(),
            tls: None,
        }
    }
}

fn default_message_timeout_seconds() -> u64 {
    30
}
fn default_quarantine_cap_per_sender() -> u64 {
    10_000
}

fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_idle_timeout_seconds() -> u64 {
    60
}
fn default_max_connections() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// The server's public FHIR base URL, also the `aud` every token must carry.
    pub base_url: String,
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Threads per worker for blocking work (source queries, the store, audit commits). Each
    /// keeps its own allocator heap: unbounded, 32 connections grew the server to 130 threads
    /// and 400 MB.
    #[serde(default = "default_blocking_threads")]
    pub blocking_threads: usize,
    /// How long one source may take before the response goes without it.
    #[serde(default = "default_source_timeout_ms")]
    pub source_timeout_ms: u64,
    /// PEM files for HTTPS; both or neither.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Refused requests (401, 403) per client address per minute before 429.
    #[serde(default = "default_refusals_per_minute")]
    pub refusals_per_minute: u32,
    /// Browser origins (`https://viewer.example.nhs.uk`) whose apps may call the API
    /// cross-origin (CORS). None by default: no browser app elsewhere may.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Serve the example SMART viewer app (`examples/smart-app/`, embedded in the binary) at
    /// `/apps/viewer/`. For demos.
    #[serde(default)]
    pub viewer_app: bool,
    /// One overall deadline per request (ms): a request not answered by then is a 503 with
    /// `Retry-After` and no data (the audit, if it was being written, may still land).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Serve Prometheus metrics at `GET /metrics` (outside `/fhir`, no token: counts by
    /// interaction, status and source name, never patient data; docs/operations.md).
    #[serde(default = "default_true")]
    pub metrics: bool,
}

fn default_true() -> bool {
    true
}

fn default_request_timeout_ms() -> u64 {
    15000
}

fn default_refusals_per_minute() -> u32 {
    120
}

fn default_exchanges_per_minute() -> u32 {
    3_000
}

fn default_authorize_requests_per_minute() -> u32 {
    60
}

fn default_token_requests_per_minute() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://...`: the facade's own database.
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// PostgreSQL: the store's server cancels a statement running longer (ms).
    #[serde(default = "default_store_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a store statement waiting longer for a lock gives up (ms).
    #[serde(default = "default_store_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    /// SQLite: the longest a store statement waits for another connection's lock (ms).
    #[serde(default = "default_store_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// The longest a request waits for a store connection from the pool (ms).
    #[serde(default = "default_store_checkout_timeout_ms")]
    pub checkout_timeout_ms: u64,
}

fn default_store_statement_timeout_ms() -> u64 {
    5000
}
fn default_store_lock_timeout_ms() -> u64 {
    2000
}
fn default_store_busy_timeout_ms() -> u64 {
    5000
}
fn default_store_checkout_timeout_ms() -> u64 {
    3000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Trust the shipped development issuer. Never in production.
    #[serde(default)]
    pub dev_issuer: bool,
    /// Serve the development OpenID Connect provider at `{origin}/dev-idp` (anyone may sign in
    /// as any demo user). Refused unless `dev_issuer` is on too. Never in production.
    #[serde(default)]
    pub dev_identity_provider: bool,
    /// The client secret the development provider accepts.
    #[serde(default = "default_dev_identity_provider_secret")]
    pub dev_identity_provider_secret: String,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: i64,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// PEM private key the SMART Backend Services token endpoint signs access tokens with.
    /// Set: the endpoint is served at `{base_url}/auth/token` (the key is created, RSA 2048, if
    /// the file does not exist). Unset: no token endpoint.
    pub signing_key_file: Option<PathBuf>,
    /// Lifetime of access tokens the token endpoint mints.
    #[serde(default = "default_access_token_seconds")]
    pub access_token_seconds: i64,
    /// Backend clients registered for the token endpoint.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Token requests per client and address per minute before 429.
    #[serde(default = "default_token_requests_per_minute")]
    pub token_requests_per_minute: u32,
    /// Token exchanges per neighbouring record (the actor token's `iss`, unverified) and
    /// address per minute (docs/federation.md).
    #[serde(default = "default_exchanges_per_minute")]
    pub exchanges_per_minute: u32,
    /// `GET /auth/authorize` requests per client address per minute before 429; one address
    /// may hold ten minutes' worth of sign-ins in progress at once (docs/smart-apps.md).
    #[serde(default = "default_authorize_requests_per_minute")]
    pub authorize_requests_per_minute: u32,
    /// Neighbouring shared care records allowed to exchange tokens for their users here
    /// (RFC 8693, docs/federation.md).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Upstream OpenID Connect providers users of SMART apps sign in at (docs/smart-apps.md).
    #[serde(default)]
    pub login: Vec<LoginConfig>,
    /// SMART apps registered for App Launch (authorization code with PKCE).
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The absolute lifetime of an app's refresh tokens (one sign-in), seconds.
    #[serde(default = "default_refresh_token_seconds")]
    pub refresh_token_seconds: i64,
}

fn default_refresh_token_seconds() -> i64 {
    12 * 3600
}

/// One `[[auth.login]]` entry: an OpenID Connect provider (CIS2-shaped for staff, NHS
/// login-shaped for patients) where this server is a registered client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// How apps name it (`[[auth.apps]].login`).
    pub name: String,
    /// Its issuer: discovery at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// This server's client id and secret there.
    pub client_id: String,
    pub client_secret: String,
    /// The caller kinds its users may be: `staff`, `patient`.
    pub caller_kinds: Vec<String>,
    /// The organisations (ODS codes) its staff may act for; unset: any.
    pub organisations: Option<Vec<String>>,
    /// How long to wait for it, milliseconds.
    #[serde(default = "default_login_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_login_timeout_ms() -> u64 {
    5000
}

/// One `[[auth.apps]]` entry: a SMART app users launch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: String,
    /// A public app (a browser app) has no secret and proves itself by PKCE; a confidential
    /// one authenticates at the token endpoint with this secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The most it may be granted.
    pub scopes: Vec<String>,
    /// The `[[auth.login]]` provider its users sign in at.
    pub login: String,
}

/// One `[[auth.peers]]` entry: a neighbouring shared care record that may read records here
/// for its users by token exchange at the token endpoint (docs/federation.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// How this server names the neighbour (its audit trail, `scr_federation.peer`).
    pub name: String,
    /// `iss` of the neighbour's actor and subject tokens.
    pub client_id: String,
    /// The neighbour's public keys (JWKS): both its tokens verify against them.
    pub jwks_file: PathBuf,
    /// Whether the relationships it asserts for its users count here (R-FED-3).
    #[serde(default)]
    pub trust_relationships: bool,
    /// The most an exchanged token may carry (`user/` scopes).
    #[serde(default = "default_peer_scopes")]
    pub scopes: Vec<String>,
}

fn default_dev_identity_provider_secret() -> String {
    scr_dev_idp::DEFAULT_SECRET.to_owned()
}

fn default_peer_scopes() -> Vec<String> {
    vec![scr_auth::token_endpoint::DEFAULT_PEER_SCOPE.to_owned()]
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            dev_issuer: false,
            dev_identity_provider: false,
            dev_identity_provider_secret: default_dev_identity_provider_secret(),
            leeway_seconds: default_leeway(),
            issuers: Vec::new(),
            signing_key_file: None,
            access_token_seconds: default_access_token_seconds(),
            clients: Vec::new(),
            token_requests_per_minute: default_token_requests_per_minute(),
            exchanges_per_minute: default_exchanges_per_minute(),
            authorize_requests_per_minute: default_authorize_requests_per_minute(),
            peers: Vec::new(),
            login: Vec::new(),
            apps: Vec::new(),
            refresh_token_seconds: default_refresh_token_seconds(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// The client's organisation (ODS code): what it reads, it reads for this organisation.
    pub org: String,
    /// The client's public keys (JWKS), which verify its assertions.
    pub jwks_file: PathBuf,
    /// The `system/` scopes it may be granted.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub iss: String,
    /// A JWKS file with the issuer's public keys.
    pub jwks_file: PathBuf,
    /// The caller kinds its tokens may be: `staff`, `patient`, `system`. Required: an NHS
    /// login issuer vouches for patients, not for staff.
    pub caller_kinds: Vec<String>,
    /// The organisations (ODS codes) its staff and system tokens may name; unset: any (a
    /// national issuer such as CIS2).
    pub organisations: Option<Vec<String>>,
    /// The longest token lifetime (`exp - iat`) accepted from it.
    #[serde(default = "default_max_token_lifetime_seconds")]
    pub max_token_lifetime_seconds: i64,
}

fn default_max_token_lifetime_seconds() -> i64 {
    3600
}

impl IssuerConfig {
    /// The caller kinds, checked (`key` names the entry in errors).
    pub fn kinds(&self, key: &str) -> Result<Vec<scr_auth::CallerKind>, ConfigError> {
        if self.caller_kinds.is_empty() {
            return Err(invalid(
                key,
                "name the caller kinds this issuer vouches for: staff, patient, system",
            ));
        }
        self.caller_kinds
            .iter()
            .map(|k| match k.as_str() {
                "staff" => Ok(scr_auth::CallerKind::Staff),
                "patient" => Ok(scr_auth::CallerKind::Patient),
                "system" => Ok(scr_auth::CallerKind::System),
                other => Err(invalid(
                    key,
                    format!("'{other}' is not staff, patient or system"),
                )),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub gp: Vec<GpSourceConfig>,
    #[serde(default)]
    pub social_care: Vec<SocialCareSourceConfig>,
    /// The name under which records received over HL7 v2 are served (ids start `{name}.`).
    #[serde(default = "default_hl7_name")]
    pub hl7_name: String,
    /// Neighbouring shared care records read live over FHIR (`docs/federation.md`).
    #[serde(default)]
    pub peer: Vec<PeerSourceConfig>,
}

/// How the facade authenticates at a neighbouring record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuthKind {
    /// RFC 8693 token exchange on behalf of the end user: a neighbouring `scr`.
    Exchange,
    /// A system token (SMART Backend Services): a plain FHIR server.
    ClientCredentials,
    /// No token.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSourceConfig {
    /// The label on everything from the neighbour, and its records' id prefix.
    pub name: String,
    pub base_url: String,
    pub auth: PeerAuthKind,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// Our private key (PEM, EC P-384 or RSA) for the assertions we sign.
    pub key_file: Option<PathBuf>,
    pub key_id: Option<String>,
    #[serde(default = "default_peer_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_peer_max_concurrent")]
    pub max_concurrent: usize,
    /// PEM trust anchors for the neighbour's TLS, besides the system's.
    pub ca_file: Option<PathBuf>,
}

fn default_peer_timeout_ms() -> u64 {
    3_000
}

fn default_peer_max_concurrent() -> usize {
    8
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            gp: Vec::new(),
            social_care: Vec::new(),
            hl7_name: default_hl7_name(),
            peer: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpSourceConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocialCareSourceConfig {
    pub name: String,
    /// The council's organisation code, e.g. `LA-DUD` (the replica does not hold it).
    pub council: String,
    pub council_name: String,
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    /// Sending facilities (MSH-4 ODS codes) whose messages are accepted: a list of ODS codes
    /// (`["RXK", "TAJ"]`), or a table of them with each one's settings
    /// (`[hl7.facilities.RXK] time_zone = "Europe/London"`). Read by [`Hl7Config::facilities`].
    #[serde(default, rename = "facilities")]
    facilities_raw: Option<toml::Value>,
    /// Hospital service codes (PV1-10, OBR-24) whose records never leave the trust (R-SENS-2).
    #[serde(default = "default_sensitive_services")]
    pub sensitive_services: Vec<String>,
}

impl Default for Hl7Config {
    fn default() -> Self {
        Hl7Config {
            facilities_raw: None,
            sensitive_services: default_sensitive_services(),
        }
    }
}

/// The settings a facility may have under `[hl7.facilities.<ODS>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FacilitySettings {
    time_zone: Option<String>,
    local_code_system: Option<String>,
}

impl Hl7Config {
    /// The accepted sending facilities with their settings, defaults filled in: local times in
    /// Europe/London, local codes in `https://scr.example.nhs.uk/CodeSystem/local-{ODS}`. An error
    /// names the key at fault.
    pub fn facilities(&self) -> Result<Vec<scr_hl7_ingest::ingest::Facility>, ConfigError> {
        use scr_hl7_ingest::ingest::Facility;
        let key = "hl7.facilities";
        let check_ods = |ods: &str, key: &str| {
            let ods = ods.trim();
            if ods.is_empty() || !ods.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Err(invalid(
                    key,
                    format!("'{ods}' is not an ODS code (letters and digits)"),
                ))
            } else {
                Ok(())
            }
        };
        let mut out: Vec<Facility> = Vec::new();
        match &self.facilities_raw {
            None => {}
            Some(toml::Value::Array(codes)) => {
                for (i, code) in codes.iter().enumerate() {
                    let k = format!("{key}[{i}]");
                    let ods = code.as_str().ok_or_else(|| {
                        invalid(&k, "must be an ODS code in quotes, e.g. \"RXK\"")
                    })?;
                    check_ods(ods, &k)?;
                    out.push(Facility::new(ods));
                }
            }
            Some(toml::Value::Table(table)) => {
                for (ods, settings) in table {
                    let k = format!("{key}.{ods}");
                    check_ods(ods, &k)?;
                    let settings: FacilitySettings = settings
                        .clone()
                        .try_into()
                        .map_err(|e: toml::de::Error| invalid(&k, e.message().to_owned()))?;
                    let mut facility = Facility::new(ods);
                    if let Some(zone) = &settings.time_zone {
                        facility.time_zone = scr_fhir::zone::by_name(zone)
                            .map_err(|m| invalid(&format!("{k}.time_zone"), m))?;
                    }
                    if let Some(system) = &settings.local_code_system {
                        let system = system.trim();
                        let absolute = ["http://", "https://", "urn:"]
                            .iter()
                            .any(|p| system.starts_with(p));
                        if !absolute || system.contains(char::is_whitespace) {
                            return Err(invalid(
                                &format!("{k}.local_code_system"),
                                format!(
                                    "'{system}' must be an absolute URI (https://... or urn:...)"
                                ),
                            ));
                        }
                        facility.local_code_system = system.to_owned();
                    }
                    out.push(facility);
                }
            }
            Some(_) => {
                return Err(invalid(
                    key,
                    "must be a list of ODS codes or a table of [hl7.facilities.<ODS>] settings",
                ))
            }
        }
        for (i, f) in out.iter().enumerate() {
            if out[..i].iter().any(|g| g.ods == f.ods) {
                return Err(invalid(key, format!("'{}' is listed twice", f.ods)));
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// National RBAC job role code to access profile.
    #[serde(default = "default_role_profiles")]
    pub role_profiles: BTreeMap<String, Profile>,
    #[serde(default = "default_view_only")]
    pub view_only_orgs: Vec<String>,
    /// Days after discharge that a hospital visit is still a legitimate relationship (R-LR-2).
    #[serde(default = "default_visit_window_days")]
    pub visit_window_days: i64,
    /// Hours a self-claimed (break-glass) relationship lasts (R-LR-4).
    #[serde(default = "default_break_glass_hours")]
    pub break_glass_hours: i64,
    /// FHIR ValueSet files (JSON) whose codes are sensitive (R-SENS-1), objections and consents.
    #[serde(default = "default_sensitive_valuesets")]
    pub sensitive_valuesets: Vec<PathBuf>,
    #[serde(default = "default_objection_valueset")]
    pub objection_valueset: PathBuf,
    #[serde(default = "default_consent_valueset")]
    pub consent_valueset: PathBuf,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            role_profiles: default_role_profiles(),
            view_only_orgs: default_view_only(),
            visit_window_days: default_visit_window_days(),
            break_glass_hours: default_break_glass_hours(),
            sensitive_valuesets: default_sensitive_valuesets(),
            objection_valueset: default_objection_valueset(),
            consent_valueset: default_consent_valueset(),
        }
    }
}

fn default_workers() -> usize {
    2
}
fn default_blocking_threads() -> usize {
    16
}
fn default_source_timeout_ms() -> u64 {
    2000
}
fn default_pool_size() -> u32 {
    8
}
fn default_leeway() -> i64 {
    60
}
fn default_access_token_seconds() -> i64 {
    300
}
fn default_hl7_name() -> String {
    "hl7".into()
}
fn default_sensitive_services() -> Vec<String> {
    vec!["GUM".into(), "FERT".into()]
}
fn default_role_profiles() -> BTreeMap<String, Profile> {
    scr_policy::PolicyConfig::default().role_profiles
}
fn default_view_only() -> Vec<String> {
    scr_policy::PolicyConfig::default().view_only_orgs
}
fn default_visit_window_days() -> i64 {
    scr_policy::PolicyConfig::default().visit_window_days
}
fn default_break_glass_hours() -> i64 {
    scr_policy::PolicyConfig::default().break_glass_hours
}
fn default_sensitive_valuesets() -> Vec<PathBuf> {
    vec![PathBuf::from(
        "fhir-profiles/ValueSet-scr-sensitive-codes.json",
    )]
}
fn default_objection_valueset() -> PathBuf {
    PathBuf::from("fhir-profiles/ValueSet-scr-objection-codes.json")
}
fn default_consent_valueset() -> PathBuf {
    PathBuf::from("fhir-profiles/ValueSet-scr-consent-codes.json")
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The documented overrides (`SCR_*` variable, key), one per scalar key, derived from the types
/// above (`crate::config_env`), for `docs/configuration.md` and `scr --help`.
pub fn override_variables() -> Vec<(String, String)> {
    crate::config_env::overrides()
        .iter()
        .map(|o| (o.variable.clone(), o.key.clone()))
        .collect()
}

/// Applies the `SCR_*` overrides in `env` to the parsed file; returns the table and the `SCR_*`
/// variables that name no setting (for a warning). A value of the wrong kind is an error naming
/// the variable.
pub(crate) fn apply_env(
    mut table: toml::Table,
    env: &[(String, String)],
) -> Result<(toml::Table, Vec<String>), ConfigError> {
    use crate::config_env::{overrides, Kind};
    let mut unknown_env = Vec::new();
    for (var, value) in env {
        let Some(o) = overrides().iter().find(|o| &o.variable == var) else {
            if var.starts_with("SCR_") && !matches!(var.as_str(), "SCR_CONFIG" | "SCR_LOG") {
                unknown_env.push(var.clone());
            }
            continue;
        };
        let key = &o.key;
        let parsed = match o.kind {
            Kind::Text => toml::Value::String(value.clone()),
            Kind::Integer => toml::Value::Integer(value.trim().parse().map_err(|_| {
                invalid(
                    var,
                    format!("expected a whole number for {key}, got '{value}'"),
                )
            })?),
            Kind::Boolean => toml::Value::Boolean(match value.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(invalid(
                        var,
                        format!("expected true or false for {key}, got '{value}'"),
                    ))
                }
            }),
        };
        // Walk (creating) the tables down to the key's own.
        let parts: Vec<&str> = key.split('.').collect();
        let Some((field, sections)) = parts.split_last() else {
            continue;
        };
        let mut at = &mut table;
        for (depth, section) in sections.iter().enumerate() {
            let entry = at
                .entry((*section).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(invalid(&sections[..=depth].join("."), "must be a table")),
            };
        }
        at.insert((*field).to_owned(), parsed);
    }
    Ok((table, unknown_env))
}

impl Config {
    /// Reads `path`, applies the environment, and validates. Relative paths in the file are
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SCR_"))
            .collect();
        let mut config = Config::from_toml(&text, &env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        crate::logging::set_format(config.log.format);
        for var in &config.unknown_env {
            log::warn!("{var} names no setting and is ignored; see docs/configuration.md");
        }
        Ok(config)
    }

    /// Parses TOML text with the given environment overrides and validates the result.
    pub fn from_toml(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: String::new(),
                message: e.message().to_owned(),
            })?;
        let (table, unknown_env) = apply_env(table, env)?;
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: String::new(),
                    message: e.message().to_owned(),
                })?;
        config.validate()?;
        config.unknown_env = unknown_env;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.exists() {
                let candidate = base.join(&*p);
                if candidate.exists() {
                    *p = candidate;
                }
            }
        };
        for i in &mut self.auth.issuers {
            fix(&mut i.jwks_file);
        }
        for c in &mut self.auth.clients {
            fix(&mut c.jwks_file);
        }
        for v in &mut self.policy.sensitive_valuesets {
            fix(v);
        }
        for v in self.alerts.category_valuesets.values_mut() {
            fix(v);
        }
        for p in &mut self.sources.peer {
            for f in [&mut p.key_file, &mut p.ca_file].into_iter().flatten() {
                fix(f);
            }
        }
        fix(&mut self.policy.objection_valueset);
        fix(&mut self.policy.consent_valueset);
    }

    /// `[[sources.peer]]`: names that cannot clash with another source's ids, URLs, and the
    /// client registration every authenticated kind needs.
    fn validate_peer_sources(&self) -> Result<(), ConfigError> {
        let mut names: Vec<&str> = self
            .sources
            .gp
            .iter()
            .map(|g| g.name.as_str())
            .chain(self.sources.social_care.iter().map(|s| s.name.as_str()))
            .chain([self.sources.hl7_name.as_str(), "scr"])
            .collect();
        for (i, p) in self.sources.peer.iter().enumerate() {
            let key = |k: &str| format!("sources.peer[{i}].{k}");
            let good_name = !p.name.is_empty()
                && p.name.len() <= 32
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !good_name {
                return Err(invalid(
                    &key("name"),
                    "must be 1 to 32 letters, digits or '-': it prefixes the neighbour's record ids",
                ));
            }
            if names.contains(&p.name.as_str()) {
                return Err(invalid(
                    &key("name"),
                    format!("'{}' is already the name of another source", p.name),
                ));
            }
            names.push(&p.name);
            let url_ok = |u: &str| {
                (u.starts_with("http://") || u.starts_with("https://")) && !u.ends_with('/')
            };
            if !url_ok(&p.base_url) {
                return Err(invalid(
                    &key("base_url"),
                    "must be an http(s) URL without a trailing slash",
                ));
            }
            if p.timeout_ms == 0 {
                return Err(invalid(&key("timeout_ms"), "must be above 0"));
            }
            if p.max_concurrent == 0 || p.max_concurrent > 256 {
                return Err(invalid(&key("max_concurrent"), "must be between 1 and 256"));
            }
            if p.auth != PeerAuthKind::None {
                if !p.token_url.as_deref().is_some_and(url_ok) {
                    return Err(invalid(
                        &key("token_url"),
                        "the neighbour's token endpoint (an http(s) URL) is required unless auth = \"none\"",
                    ));
                }
                for (k, v) in [("client_id", &p.client_id), ("key_id", &p.key_id)] {
                    if v.as_deref().is_none_or(str::is_empty) {
                        return Err(invalid(&key(k), "is required unless auth = \"none\""));
                    }
                }
                if p.key_file.is_none() {
                    return Err(invalid(
                        &key("key_file"),
                        "is required unless auth = \"none\"",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.bind",
                format!(
                    "'{}' is not an address such as 127.0.0.1:8080",
                    self.server.bind
                ),
            ));
        }
        let base = &self.server.base_url;
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.ends_with('/') {
            return Err(invalid(
                "server.base_url",
                format!("'{base}' must be an http(s) URL without a trailing slash"),
            ));
        }
        if self.server.workers == 0 || self.server.workers > 64 {
            return Err(invalid("server.workers", "must be between 1 and 64"));
        }
        if self.server.blocking_threads == 0 || self.server.blocking_threads > 512 {
            return Err(invalid(
                "server.blocking_threads",
                "must be between 1 and 512",
            ));
        }
        for (i, origin) in self.server.cors_origins.iter().enumerate() {
            // An origin: scheme and host (and port), no path, no wildcard.
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/') || r.contains('*')) {
                return Err(invalid(
                    &format!("server.cors_origins[{i}]"),
                    format!("'{origin}' is not an origin such as https://viewer.example.nhs.uk (no path, no wildcard)"),
                ));
            }
        }
        if self.server.refusals_per_minute == 0 {
            return Err(invalid("server.refusals_per_minute", "must be above 0"));
        }
        if self.auth.token_requests_per_minute == 0 {
            return Err(invalid("auth.token_requests_per_minute", "must be above 0"));
        }
        if self.auth.exchanges_per_minute == 0 {
            return Err(invalid("auth.exchanges_per_minute", "must be above 0"));
        }
        if self.auth.authorize_requests_per_minute == 0 {
            return Err(invalid(
                "auth.authorize_requests_per_minute",
                "must be above 0",
            ));
        }
        for (key, value) in [
            (
                "store.statement_timeout_ms",
                self.store.statement_timeout_ms,
            ),
            ("store.lock_timeout_ms", self.store.lock_timeout_ms),
            ("store.busy_timeout_ms", self.store.busy_timeout_ms),
            ("store.checkout_timeout_ms", self.store.checkout_timeout_ms),
        ] {
            if !(1..=600_000).contains(&value) {
                return Err(invalid(key, "must be between 1 and 600000"));
            }
        }
        if self.server.request_timeout_ms <= self.server.source_timeout_ms
            || self.server.request_timeout_ms > 600_000
        {
            return Err(invalid(
                "server.request_timeout_ms",
                "must be above server.source_timeout_ms and at most 600000",
            ));
        }
        if self.server.source_timeout_ms == 0 {
            return Err(invalid("server.source_timeout_ms", "must be above 0"));
        }
        if self.server.tls_certificate.is_some() != self.server.tls_private_key.is_some() {
            return Err(invalid(
                "server.tls_certificate",
                "tls_certificate and tls_private_key go together",
            ));
        }
        for (i, issuer) in self.auth.issuers.iter().enumerate() {
            issuer.kinds(&format!("auth.issuers[{i}].caller_kinds"))?;
            if issuer.max_token_lifetime_seconds <= 0 {
                return Err(invalid(
                    &format!("auth.issuers[{i}].max_token_lifetime_seconds"),
                    "must be above 0",
                ));
            }
            if issuer.organisations.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    &format!("auth.issuers[{i}].organisations"),
                    "an empty list allows no one: leave it out to allow any organisation",
                ));
            }
        }
        self.validate_peer_sources()?;
        if let Some(bind) = &self.mllp.bind {
            if bind.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    "mllp.bind",
                    format!("'{bind}' is not an address such as 127.0.0.1:2575"),
                ));
            }
        }
        if self.mllp.max_message_bytes < 1024 {
            return Err(invalid("mllp.max_message_bytes", "must be at least 1024"));
        }
        if self.mllp.idle_timeout_seconds == 0 || self.mllp.max_connections == 0 {
            return Err(invalid(
                "mllp",
                "idle_timeout_seconds and max_connections must be above 0",
            ));
        }
        if self.mllp.message_timeout_seconds == 0 {
            return Err(invalid("mllp.message_timeout_seconds", "must be above 0"));
        }
        if self.mllp.quarantine_cap_per_sender == 0 {
            return Err(invalid("mllp.quarantine_cap_per_sender", "must be above 0"));
        }
        if self.mllp.bind.is_some() && self.mllp.senders.is_empty() {
            return Err(invalid(
                "mllp.senders",
                "mllp.bind is set but no [[mllp.senders]] are: say which facility may send from which addresses",
            ));
        }
        let facilities = self.hl7.facilities()?;
        for (i, sender) in self.mllp.senders.iter().enumerate() {
            if !facilities
                .iter()
                .any(|f| f.ods.eq_ignore_ascii_case(&sender.facility))
            {
                return Err(invalid(
                    &format!("mllp.senders[{i}].facility"),
                    format!("'{}' is not one of hl7.facilities", sender.facility),
                ));
            }
            if sender.addresses.is_empty() && self.mllp.tls.is_none() {
                return Err(invalid(
                    &format!("mllp.senders[{i}].addresses"),
                    "at least one address or CIDR block is needed without [mllp.tls]",
                ));
            }
            for a in &sender.addresses {
                a.parse::<scr_hl7_ingest::senders::AddressRange>()
                    .map_err(|e| invalid(&format!("mllp.senders[{i}].addresses"), e))?;
            }
        }
        if self.audit.checkpoint_key_file.is_some() != self.audit.checkpoint_file.is_some() {
            return Err(invalid(
                "audit.checkpoint_file",
                "checkpoint_key_file and checkpoint_file go together",
            ));
        }
        if self.audit.checkpoint_key_file.is_some()
            && self.audit.checkpoint_key_file == self.audit.checkpoint_file
        {
            return Err(invalid(
                "audit.checkpoint_file",
                "must not be the checkpoint key file",
            ));
        }
        if !(1..=86_400).contains(&self.audit.checkpoint_interval_seconds) {
            return Err(invalid(
                "audit.checkpoint_interval_seconds",
                "must be between 1 and 86400",
            ));
        }
        if self.store.pool_size == 0 {
            return Err(invalid("store.pool_size", "must be above 0"));
        }
        self.hl7.facilities()?;
        for category in self.alerts.category_valuesets.keys() {
            if scr_fhir::alerts::AlertCategory::from_code(category).is_none() {
                return Err(invalid(
                    &format!("alerts.category_valuesets.{category}"),
                    "not an alert category: safeguarding, severe-allergy-condition, communication-support, treatment-restriction, end-of-life-wishes or other",
                ));
            }
        }
        scr_db::classify_url("store.url", &self.store.url)
            .map_err(|e| invalid("store.url", e.to_string()))?;
        let mut names = vec![self.sources.hl7_name.clone()];
        for (i, g) in self.sources.gp.iter().enumerate() {
            scr_db::classify_url(&g.name, &g.url)
                .map_err(|e| invalid(&format!("sources.gp[{i}].url"), e.to_string()))?;
            names.push(g.name.clone());
        }
        for (i, s) in self.sources.social_care.iter().enumerate() {
            scr_db::classify_url(&s.name, &s.url)
                .map_err(|e| invalid(&format!("sources.social_care[{i}].url"), e.to_string()))?;
            names.push(s.name.clone());
        }
        for n in &names {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(invalid("sources", format!("source name '{n}' must be letters, digits and '-' (it prefixes resource ids)")));
            }
        }
        if names.iter().any(|n| n == scr_record::own_flags::NAME) {
            return Err(invalid(
                "sources",
                format!(
                    "the source name '{}' is the shared care record's own",
                    scr_record::own_flags::NAME
                ),
            ));
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(invalid("sources", "source names must be unique"));
        }
        for (i, c) in self.auth.clients.iter().enumerate() {
            if c.scopes.iter().any(|sc| !sc.starts_with("system/")) {
                return Err(invalid(
                    &format!("auth.clients[{i}].scopes"),
                    "backend clients may be granted system/ scopes only",
                ));
            }
        }
        self.validate_peers()?;
        self.validate_apps()?;
        if !self.auth.clients.is_empty() && self.auth.signing_key_file.is_none() {
            return Err(invalid(
                "auth.signing_key_file",
                "clients are registered but the token endpoint has no signing key",
            ));
        }
        if !(60..=3600).contains(&self.auth.access_token_seconds) {
            return Err(invalid(
                "auth.access_token_seconds",
                "must be between 60 and 3600",
            ));
        }
        if self.auth.dev_identity_provider && !self.auth.dev_issuer {
            return Err(invalid(
                "auth.dev_identity_provider",
                "the development identity provider needs auth.dev_issuer = true (demos and tests only)",
            ));
        }
        if self.auth.dev_identity_provider && self.auth.dev_identity_provider_secret.is_empty() {
            return Err(invalid(
                "auth.dev_identity_provider_secret",
                "must not be empty",
            ));
        }
        if !self.auth.dev_issuer
            && self.auth.issuers.is_empty()
            && self.auth.signing_key_file.is_none()
        {
            return Err(invalid(
                "auth.issuers",
                "no token issuer is configured: every request would be refused",
            ));
        }
        Ok(())
    }

    /// `[[auth.login]]` and `[[auth.apps]]`: a token endpoint to sign with, unique names, known
    /// providers, absolute redirect URIs (https, or http on the loopback interface), scopes.
    fn validate_apps(&self) -> Result<(), ConfigError> {
        let (login, apps) = (&self.auth.login, &self.auth.apps);
        if !apps.is_empty() && self.auth.signing_key_file.is_none() {
            return Err(invalid(
                "auth.signing_key_file",
                "apps are configured but the token endpoint that signs their tokens has no signing key",
            ));
        }
        if !(60..=30 * 24 * 3600).contains(&self.auth.refresh_token_seconds) {
            return Err(invalid(
                "auth.refresh_token_seconds",
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        let url_ok = |u: &str| {
            u.starts_with("https://")
                || u.starts_with("http://127.0.0.1")
                || u.starts_with("http://localhost")
                || u.starts_with("http://[::1]")
        };
        for (i, l) in login.iter().enumerate() {
            let key = |k: &str| format!("auth.login[{i}].{k}");
            if l.name.is_empty() || login[..i].iter().any(|m| m.name == l.name) {
                return Err(invalid(&key("name"), "must be given and unique"));
            }
            if !url_ok(&l.issuer) {
                return Err(invalid(
                    &key("issuer"),
                    "must be an https URL (http only on the loopback interface)",
                ));
            }
            if l.client_id.is_empty() {
                return Err(invalid(&key("client_id"), "must be given"));
            }
            for kind in &l.caller_kinds {
                if !["staff", "patient"].contains(&kind.as_str()) {
                    return Err(invalid(
                        &key("caller_kinds"),
                        format!("'{kind}' is not staff or patient"),
                    ));
                }
            }
            if l.caller_kinds.is_empty() {
                return Err(invalid(&key("caller_kinds"), "name staff, patient or both"));
            }
            if !(100..=60_000).contains(&l.timeout_ms) {
                return Err(invalid(&key("timeout_ms"), "must be between 100 and 60000"));
            }
        }
        for (i, a) in apps.iter().enumerate() {
            let key = |k: &str| format!("auth.apps[{i}].{k}");
            if a.client_id.is_empty()
                || a.client_id.len() > 256
                || !a.client_id.bytes().all(|b| b.is_ascii_graphic())
                || apps[..i].iter().any(|b| b.client_id == a.client_id)
                || self.auth.clients.iter().any(|c| c.client_id == a.client_id)
            {
                return Err(invalid(
                    &key("client_id"),
                    "must be 1 to 256 visible ASCII characters, unique among apps and backend clients",
                ));
            }
            if a.redirect_uris.is_empty() {
                return Err(invalid(&key("redirect_uris"), "name at least one"));
            }
            if let Some(bad) = a
                .redirect_uris
                .iter()
                .find(|u| !url_ok(u) || u.contains('#'))
            {
                return Err(invalid(
                    &key("redirect_uris"),
                    format!("'{bad}' is not an https URL (http only on the loopback interface) without a fragment"),
                ));
            }
            if !login.iter().any(|l| l.name == a.login) {
                return Err(invalid(
                    &key("login"),
                    format!("'{}' names no [[auth.login]] provider", a.login),
                ));
            }
            if a.client_secret.as_deref().is_some_and(|s| s.len() < 16) {
                return Err(invalid(
                    &key("client_secret"),
                    "must be at least 16 characters",
                ));
            }
            if let Some(bad) = a.scopes.iter().find(|s| s.starts_with("system/")) {
                return Err(invalid(
                    &key("scopes"),
                    format!("'{bad}': apps act for users, never as systems"),
                ));
            }
        }
        Ok(())
    }

    /// `[[auth.peers]]`: named, unique, distinct from the backend clients, `user/` scopes only,
    /// and a token endpoint to exchange at.
    fn validate_peers(&self) -> Result<(), ConfigError> {
        let peers = &self.auth.peers;
        if !peers.is_empty() && self.auth.signing_key_file.is_none() {
            return Err(invalid(
                "auth.signing_key_file",
                "peers are configured but the token endpoint they exchange tokens at has no signing key",
            ));
        }
        for (i, p) in peers.iter().enumerate() {
            let key = |k: &str| format!("auth.peers[{i}].{k}");
            let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if p.name.is_empty() || p.name.len() > 64 || !p.name.chars().all(name_ok) {
                return Err(invalid(
                    &key("name"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            if p.client_id.is_empty()
                || p.client_id.len() > 256
                || !p.client_id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(
                    &key("client_id"),
                    "must be 1 to 256 visible ASCII characters",
                ));
            }
            if peers[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    &key("name"),
                    format!("'{}' names another peer too", p.name),
                ));
            }
            if peers[..i].iter().any(|q| q.client_id == p.client_id)
                || self.auth.clients.iter().any(|c| c.client_id == p.client_id)
            {
                return Err(invalid(
                    &key("client_id"),
                    format!(
                        "'{}' is another peer's or backend client's client id",
                        p.client_id
                    ),
                ));
            }
            if p.scopes.is_empty() {
                return Err(invalid(
                    &key("scopes"),
                    "an empty list grants nothing: leave it out for user/*.rs",
                ));
            }
            if p.scopes.iter().any(|sc| !sc.starts_with("user/")) {
                return Err(invalid(
                    &key("scopes"),
                    "peers may be granted user/ scopes only: their users are staff",
                ));
            }
        }
        Ok(())
    }

    pub fn policy_config(&self) -> scr_policy::PolicyConfig {
        scr_policy::PolicyConfig {
            role_profiles: self.policy.role_profiles.clone(),
            view_only_orgs: self.policy.view_only_orgs.clone(),
            visit_window_days: self.policy.visit_window_days,
            break_glass_hours: self.policy.break_glass_hours,
            trusted_peers: self
                .auth
                .peers
                .iter()
                .filter(|p| p.trust_relationships)
                .map(|p| p.name.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
bind = "127.0.0.1:8080"
base_url = "http://127.0.0.1:8080/fhir"
[store]
url = "sqlite://scr.db"
[auth]
dev_issuer = true
"#;

    #[test]
    fn a_minimal_file_is_enough() -> Result<(), ConfigError> {
        let c = Config::from_toml(MINIMAL, &[])?;
        assert_eq!(c.store.pool_size, 8);
        assert_eq!(
            c.policy.role_profiles.get("R8000"),
            Some(&Profile::Clinical)
        );
        Ok(())
    }

    /// The development identity provider lets anyone sign in as anyone: only beside the
    /// development issuer, which is already demo-only.
    #[test]
    fn dev_identity_provider_is_refused_without_dev_issuer() -> Result<(), ConfigError> {
        let without = MINIMAL.replace("dev_issuer = true", "dev_identity_provider = true")
            + "signing_key_file = \"token-signing-key.pem\"\n";
        let err = Config::from_toml(&without, &[])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.dev_identity_provider"), "{err}");
        let with = MINIMAL.replace(
            "dev_issuer = true",
            "dev_issuer = true\ndev_identity_provider = true",
        );
        let c = Config::from_toml(&with, &[])?;
        assert!(c.auth.dev_identity_provider);
        assert_eq!(c.auth.dev_identity_provider_secret, "dev-only-secret");
        assert!(!Config::from_toml(MINIMAL, &[])?.auth.dev_identity_provider);
        Ok(())
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let env = vec![("SCR_STORE_POOL_SIZE".to_string(), "abc".to_string())];
        let err = Config::from_toml(MINIMAL, &env).unwrap_err().to_string();
        assert!(err.contains("SCR_STORE_POOL_SIZE"), "{err}");
    }

    #[test]
    fn unknown_scr_variables_are_named_for_a_warning_never_fatal() -> Result<(), ConfigError> {
        let env = vec![
            ("SCR_SERVICE_HOST".to_string(), "10.0.0.1".to_string()),
            ("SCR_SERVER_WORKERS".to_string(), "3".to_string()),
            ("SCR_LOG".to_string(), "info".to_string()),
        ];
        let c = Config::from_toml(MINIMAL, &env)?;
        assert_eq!(c.unknown_env, ["SCR_SERVICE_HOST"]);
        assert_eq!(c.server.workers, 3, "known variables still apply");
        Ok(())
    }

    #[test]
    fn environment_overrides_the_file() -> Result<(), ConfigError> {
        let env = vec![("SCR_SERVER_BIND".to_string(), "127.0.0.1:9999".to_string())];
        assert_eq!(
            Config::from_toml(MINIMAL, &env)?.server.bind,
            "127.0.0.1:9999"
        );
        Ok(())
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Config::from_toml(&format!("{MINIMAL}\ncolour = 1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn item1_an_mllp_listener_without_senders_does_not_start() {
        let text =
            format!("{MINIMAL}[hl7]\nfacilities = [\"RXK\"]\n[mllp]\nbind = \"127.0.0.1:2575\"\n");
        let err = Config::from_toml(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("mllp.senders"), "{err}");
        let bad_address =
            format!("{text}[[mllp.senders]]\nfacility = \"RXK\"\naddresses = [\"10.0.0.0/40\"]\n");
        let err = Config::from_toml(&bad_address, &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mllp.senders[0].addresses"), "{err}");
        let unknown =
            format!("{text}[[mllp.senders]]\nfacility = \"RYW\"\naddresses = [\"10.0.0.1\"]\n");
        let err = Config::from_toml(&unknown, &[]).unwrap_err().to_string();
        assert!(err.starts_with("mllp.senders[0].facility"), "{err}");
        let no_address = format!("{text}[[mllp.senders]]\nfacility = \"RXK\"\n");
        let err = Config::from_toml(&no_address, &[]).unwrap_err().to_string();
        assert!(err.starts_with("mllp.senders[0].addresses"), "{err}");
        let good =
            format!("{text}[[mllp.senders]]\nfacility = \"RXK\"\naddresses = [\"10.0.0.0/8\"]\n");
        assert!(Config::from_toml(&good, &[]).is_ok());
    }

    #[test]
    fn item9_a_list_of_facilities_still_works_with_the_defaults() -> Result<(), ConfigError> {
        let c = Config::from_toml(
            &format!("{MINIMAL}[hl7]\nfacilities = [\"RXK\", \"taj\"]\n"),
            &[],
        )?;
        let f = c.hl7.facilities()?;
        assert_eq!(
            f.iter().map(|f| f.ods.as_str()).collect::<Vec<_>>(),
            ["RXK", "TAJ"]
        );
        assert_eq!(f[0].time_zone.iana_name(), Some("Europe/London"));
        assert_eq!(
            f[1].local_code_system,
            "https://scr.example.nhs.uk/CodeSystem/local-TAJ"
        );
        assert!(Config::from_toml(MINIMAL, &[])?
            .hl7
            .facilities()?
            .is_empty());
        Ok(())
    }

    #[test]
    fn item9_facility_time_zone_and_item10_local_code_system_are_configured(
    ) -> Result<(), ConfigError> {
        let text = format!(
            "{MINIMAL}[hl7.facilities.RXK]\ntime_zone = \"Europe/London\"\nlocal_code_system = \"https://rxk.example.nhs.uk/CodeSystem/lab\"\n[hl7.facilities.XYZ]\ntime_zone = \"America/New_York\"\n[hl7.facilities.TAJ]\n"
        );
        let f = Config::from_toml(&text, &[])?.hl7.facilities()?;
        let by = |ods: &str| f.iter().find(|f| f.ods == ods).cloned();
        let rxk = by("RXK").ok_or_else(|| invalid("test", "no RXK"))?;
        assert_eq!(
            rxk.local_code_system,
            "https://rxk.example.nhs.uk/CodeSystem/lab"
        );
        let xyz = by("XYZ").ok_or_else(|| invalid("test", "no XYZ"))?;
        assert_eq!(xyz.time_zone.iana_name(), Some("America/New_York"));
        let taj = by("TAJ").ok_or_else(|| invalid("test", "no TAJ"))?;
        assert_eq!(taj.time_zone.iana_name(), Some("Europe/London"));
        Ok(())
    }

    #[test]
    fn item9_a_bad_time_zone_stops_start_up_naming_the_key() {
        let err = |extra: &str| {
            Config::from_toml(&format!("{MINIMAL}{extra}"), &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err("[hl7.facilities.RXK]\ntime_zone = \"Europe/Londres\"\n");
        assert!(e.starts_with("hl7.facilities.RXK.time_zone"), "{e}");
        let e = err("[hl7.facilities.RXK]\nlocal_code_system = \"lab codes\"\n");
        assert!(e.starts_with("hl7.facilities.RXK.local_code_system"), "{e}");
        let e = err("[hl7.facilities.RXK]\ntimezone = \"Europe/London\"\n");
        assert!(
            e.starts_with("hl7.facilities.RXK") && e.contains("timezone"),
            "{e}"
        );
        let e = err("[hl7]\nfacilities = [\"RXK\", 3]\n");
        assert!(e.starts_with("hl7.facilities[1]"), "{e}");
        let e = err("[hl7]\nfacilities = [\"RXK\", \"rxk\"]\n");
        assert!(e.starts_with("hl7.facilities"), "{e}");
    }

    #[test]
    fn item6_checkpoint_key_and_file_go_together_and_the_interval_is_bounded() {
        let key_only = format!("{MINIMAL}[audit]\ncheckpoint_key_file = \"k.pem\"\n");
        let err = Config::from_toml(&key_only, &[]).unwrap_err().to_string();
        assert!(err.starts_with("audit.checkpoint_file"), "{err}");
        let same = format!("{key_only}checkpoint_file = \"k.pem\"\n");
        let err = Config::from_toml(&same, &[]).unwrap_err().to_string();
        assert!(err.starts_with("audit.checkpoint_file"), "{err}");
        let both = format!("{key_only}checkpoint_file = \"c.jsonl\"\n");
        let c = Config::from_toml(&both, &[]).expect("both");
        assert_eq!(c.audit.checkpoint_interval_seconds, 60);
        assert!(c.audit.checkpoints().is_some());
        let zero = format!("{both}checkpoint_interval_seconds = 0\n");
        let err = Config::from_toml(&zero, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("audit.checkpoint_interval_seconds"),
            "{err}"
        );
        let none = Config::from_toml(MINIMAL, &[]).expect("minimal");
        assert!(none.audit.checkpoints().is_none());
    }

    #[test]
    fn r_fed_1_peers_are_configured_with_defaults_and_checked_naming_the_key() {
        let with_key = format!("{MINIMAL}signing_key_file = \"k.pem\"\n");
        let peer = "[[auth.peers]]\nname = \"BlackCountrySCR\"\nclient_id = \"scr-b\"\njwks_file = \"b.json\"\n";
        let c = Config::from_toml(&format!("{with_key}{peer}"), &[]).expect("a peer");
        assert_eq!(c.auth.peers[0].scopes, ["user/*.rs"]);
        assert!(!c.auth.peers[0].trust_relationships);
        assert!(c.policy_config().trusted_peers.is_empty());
        let trusted = format!("{with_key}{peer}trust_relationships = true\n");
        let c = Config::from_toml(&trusted, &[]).expect("a trusted peer");
        assert_eq!(c.policy_config().trusted_peers, ["BlackCountrySCR"]);
        let err = |text: String| {
            Config::from_toml(&text, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err(format!("{MINIMAL}{peer}"));
        assert!(e.starts_with("auth.signing_key_file"), "{e}");
        let e = err(format!("{with_key}{peer}scopes = [\"system/*.rs\"]\n"));
        assert!(e.starts_with("auth.peers[0].scopes"), "{e}");
        let e = err(format!("{with_key}{peer}scopes = []\n"));
        assert!(e.starts_with("auth.peers[0].scopes"), "{e}");
        let e = err(format!("{with_key}{peer}{peer}"));
        assert!(e.starts_with("auth.peers[1].name"), "{e}");
        let e = err(format!(
            "{with_key}{peer}{}",
            peer.replace("BlackCountrySCR", "Other")
        ));
        assert!(e.starts_with("auth.peers[1].client_id"), "{e}");
        let e = err(format!(
            "{with_key}{}",
            peer.replace("BlackCountrySCR", "a b")
        ));
        assert!(e.starts_with("auth.peers[0].name"), "{e}");
        let e = err(format!("{with_key}{peer}trusted = true\n"));
        assert!(e.contains("trusted"), "{e}");
    }

    #[test]
    fn the_docker_compose_configuration_is_valid() -> Result<(), ConfigError> {
        let c = Config::from_toml(include_str!("../../../docker/scr.toml"), &[])?;
        assert_eq!(c.server.bind, "0.0.0.0:8080");
        assert_eq!(c.mllp.bind.as_deref(), Some("0.0.0.0:2575"));
        assert!(c.server.metrics);
        Ok(())
    }

    #[test]
    fn the_production_example_is_valid() -> Result<(), ConfigError> {
        let c = Config::from_toml(include_str!("../../../examples/scr.toml"), &[])?;
        assert_eq!(c.log.format, crate::logging::LogFormat::Json);
        Ok(())
    }

    #[test]
    fn a_bad_url_names_the_key() {
        let text = MINIMAL.replace("sqlite://scr.db", "mysql://x/y");
        let err = Config::from_toml(&text, &[]).unwrap_err().to_string();
        assert!(err.starts_with("store.url"), "{err}");
    }
}
