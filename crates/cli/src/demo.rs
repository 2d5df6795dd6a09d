//! `scr demo`: the real server on embedded SQLite files, seeded once with synthetic data, with a
//! working token and example requests printed before it starts.

use std::path::{Path, PathBuf};

use clap::Args;

use scr_server::config::Config;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's databases and configuration (created on first run).
    #[arg(long, default_value = "demo-data")]
    pub data: PathBuf,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the MLLP listener for HL7 v2 feeds.
    #[arg(long, default_value_t = 2575)]
    pub mllp_port: u16,
    /// Random patients besides the fixtures, on first run.
    #[arg(long, default_value_t = 1000)]
    pub patients: usize,
    /// Create and seed the data folder, print the banner, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

/// Where the shipped ValueSets are: beside the working directory in a checkout, or beside the
/// sources this binary was built from.
fn profiles_dir() -> PathBuf {
    let here = PathBuf::from("fhir-profiles");
    if here.join("ValueSet-scr-sensitive-codes.json").exists() {
        return std::fs::canonicalize(&here).unwrap_or(here);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fhir-profiles")
}

/// Where a configuration's databases are.
pub(crate) struct DataUrls {
    pub store: String,
    pub gp: String,
    pub social_care: String,
}

impl DataUrls {
    /// SQLite files in `data`.
    pub(crate) fn sqlite(data: &Path) -> DataUrls {
        let d = data.display();
        DataUrls {
            store: format!("sqlite://{d}/scr.db"),
            gp: format!("sqlite://{d}/gp.db"),
            social_care: format!("sqlite://{d}/social-care-dudley.db"),
        }
    }
}

/// The demo's checkpoint file: it belongs to the store it was written for, so a fresh store
/// starts without it.
pub(crate) const CHECKPOINT_FILE: &str = "audit-checkpoints.jsonl";

fn demo_config(data: &Path, port: u16, mllp_port: u16) -> String {
    config_text(data, &DataUrls::sqlite(data), port, mllp_port)
}

/// The configuration of the demo and of `scr generate`: databases at `urls`, the token signing
/// key in `data`, the development issuer trusted.
pub(crate) fn config_text(data: &Path, urls: &DataUrls, port: u16, mllp_port: u16) -> String {
    let d = data.display();
    let DataUrls {
        store,
        gp,
        social_care,
    } = urls;
    let p = profiles_dir();
    let e = p.join("../examples/dev-issuer");
    let e = std::fs::canonicalize(&e).unwrap_or(e);
    let (p, e) = (p.display(), e.display());
    format!(
        r#"# Written by `scr demo` or `scr generate`. Every key is described in docs/configuration.md.
[server]
bind = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}/fhir"
workers = 2
source_timeout_ms = 2000

[store]
url = "{store}"

[auth]
# The development issuer's key is public: never enable this outside a demo or a test.
dev_issuer = true
# The SMART Backend Services token endpoint ({{base_url}}/auth/token) signs with this key,
# created on first start.
signing_key_file = "{d}/token-signing-key.pem"

# A development backend client (its key is public, in examples/dev-issuer/):
# cargo run -- token assertion, then POST it to the token endpoint.
[[auth.clients]]
client_id = "dev-backend-client"
org = "RXK"
jwks_file = "{e}/dev-client-jwks.json"
scopes = ["system/*.rs"]

[[sources.gp]]
name = "gp"
url = "{gp}"

[[sources.social_care]]
name = "sc-dudley"
council = "LA-DUD"
council_name = "Dudley Council"
url = "{social_care}"

[mllp]
# HL7 v2 over MLLP from the trusts' integration engines.
bind = "127.0.0.1:{mllp_port}"
# Each facility (MSH-4) may send only from these addresses; add [mllp.tls] for mutual TLS.
[[mllp.senders]]
facility = "RXK"
addresses = ["127.0.0.1", "::1"]
[[mllp.senders]]
facility = "TAJ"
addresses = ["127.0.0.1", "::1"]

[hl7]
sensitive_services = ["GUM", "FERT"]

# Accepted sending facilities (MSH-4). Times sent without an offset are the facility's local
# time; local codes (coding system L) are kept in the facility's local code system
# (https://scr.example.nhs.uk/CodeSystem/local-<ODS> unless local_code_system is set).
[hl7.facilities.RXK]
time_zone = "Europe/London"

[hl7.facilities.TAJ]
time_zone = "Europe/London"

[audit]
# Signed checkpoints of the audit chain's head (docs/audit.md): the key is created on first
# start. In production keep both outside the database's reach, the file on append-only storage.
checkpoint_key_file = "{d}/audit-checkpoint-key.pem"
checkpoint_file = "{d}/{CHECKPOINT_FILE}"
checkpoint_interval_seconds = 60

[policy]
sensitive_valuesets = ["{p}/ValueSet-scr-sensitive-codes.json"]
objection_valueset = "{p}/ValueSet-scr-objection-codes.json"
consent_valueset = "{p}/ValueSet-scr-consent-codes.json"
"#
    )
}

pub fn run(args: DemoArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let data =
        std::fs::canonicalize(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let config_path = data.join("scr.toml");
    let seeded_marker = data.join(".seeded");
    if !seeded_marker.exists() {
        for f in ["scr.db", "gp.db", "social-care-dudley.db", CHECKPOINT_FILE] {
            let _ = std::fs::remove_file(data.join(f));
        }
        std::fs::write(&config_path, demo_config(&data, args.port, args.mllp_port))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        println!("Creating the demo data in {} (once)...", data.display());
        crate::seed::seed(&config, args.patients, 2026)?;
        std::fs::write(&seeded_marker, "seeded\n").map_err(|e| e.to_string())?;
    }
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let state = scr_server::AppState::build(&config).map_err(|e| e.to_string())?;
    let report = state.report_unmatched_rows();
    print_banner(&config)?;
    if !args.no_serve {
        crate::mllp::spawn(&config, &state.store)?;
        crate::checkpoints::spawn(&config, &state.store)?;
    }
    if args.no_serve {
        let _ = report.join();
        return Ok(());
    }
    actix_web::rt::System::new()
        .block_on(scr_server::serve(config, state))
        .map_err(|e| format!("server stopped: {e}"))
}

fn print_banner(config: &Config) -> Result<(), String> {
    let base = &config.server.base_url;
    let mllp = config.mllp.bind.as_deref().unwrap_or("not configured");
    let token = crate::token::demo_token(base, "RXK", "R8000", 12 * 3600)?;
    println!(
        r#"
Shared care record demo: FHIR R4 at {base}
HL7 v2 feeds (MLLP): {mllp}

A clinician at the acute trust RXK (role R8000, valid 12 hours):
  export TOKEN={token}

Try:
  curl -s {base}/metadata
  curl -s -H "Authorization: Bearer $TOKEN" "{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"
  curl -s -H "Authorization: Bearer $TOKEN" "{base}/Patient/9990000018/\$everything"
  curl -s -H "Authorization: Bearer $TOKEN" "{base}/Observation?patient=9990000018&category=laboratory&_count=5"
  curl -s -H "Authorization: Bearer $TOKEN" "{base}/Flag?patient=9990000018&status=active"

Other callers (from the checkout):
  cargo run -q -- token staff --org M85001 --role R8000 --aud {base}            # GP clinician
  cargo run -q -- token patient --nhs 9990000018 --aud {base}                   # the patient (NHS login P9)
  cargo run -q -- token staff --org LA-DUD --role R8014 --sub sw-dud-0001 --aud {base}   # social worker
"#
    );
    Ok(())
}
