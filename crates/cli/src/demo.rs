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
    /// Port of the neighbouring demo record (its data in `<data>/neighbour/`).
    #[arg(long, default_value_t = 8081)]
    pub neighbour_port: u16,
    /// Do not create, federate with or serve the neighbouring demo record. Decided when the data
    /// folder is first created: a folder created without the neighbour stays without it.
    #[arg(long)]
    pub no_neighbour: bool,
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
# The example SMART viewer app (examples/smart-app/) at http://127.0.0.1:{port}/apps/viewer/.
viewer_app = true

[store]
url = "{store}"

[auth]
# The development issuer's key is public: never enable this outside a demo or a test.
dev_issuer = true
# The development OpenID Connect provider at http://127.0.0.1:{port}/dev-idp: a sign-in page
# where anyone can be any demo user. Demos and tests only.
dev_identity_provider = true
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

# SMART App Launch (docs/smart-apps.md): users of the viewer app sign in at the development
# identity provider this server serves at /dev-idp (demo users, no passwords; never in production).
[[auth.login]]
name = "dev"
issuer = "http://127.0.0.1:{port}/dev-idp"
client_id = "scr"
client_secret = "dev-only-secret"
caller_kinds = ["staff", "patient"]

[[auth.apps]]
client_id = "scr-viewer"
login = "dev"
redirect_uris = ["http://127.0.0.1:{port}/apps/viewer/index.html"]
scopes = ["launch", "launch/patient", "openid", "fhirUser", "online_access", "offline_access", "patient/*.rs", "user/*.rs"]

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

/// How the home demo names its neighbouring record, and how the neighbour names home (labels on
/// records and in audit trails: letters, digits, '-').
pub const NEIGHBOUR_NAME: &str = "WMShCR";
pub const HOME_NAME: &str = "BCShCR";
/// The neighbour's one sending facility: an acute trust not known at home.
pub const NEIGHBOUR_TRUST: &str = "RRK";

/// What home's configuration adds to federate with the neighbour at `neighbour_base`, both ways.
fn home_federation(neighbour_base: &str) -> String {
    federation_text(
        NEIGHBOUR_NAME,
        "scr-demo-neighbour",
        neighbour_base,
        "scr-demo-home",
    )
}

/// `[[auth.peers]]` trusting `peer` (client `peer_client`) and `[[sources.peer]]` asking it at
/// `peer_base` as `our_client`, both with the development client key.
fn federation_text(peer: &str, peer_client: &str, peer_base: &str, our_client: &str) -> String {
    let e = profiles_dir().join("../examples/dev-issuer");
    let e = std::fs::canonicalize(&e).unwrap_or(e);
    let e = e.display();
    format!(
        r#"
# ---- Federation with the neighbouring demo record {peer} (docs/federation.md) ------------
# DEVELOPMENT ONLY: both sides sign with the development client key in examples/dev-issuer/,
# which is public. Never use it, or trust it, outside a demo or a test.

# {peer} may exchange tokens here (RFC 8693); the relationships it asserts count here.
[[auth.peers]]
name = "{peer}"
client_id = "{peer_client}"
jwks_file = "{e}/dev-client-jwks.json"
trust_relationships = true

# {peer}'s records, read live for each request and labelled with its name.
[[sources.peer]]
name = "{peer}"
base_url = "{peer_base}"
auth = "exchange"
token_url = "{peer_base}/auth/token"
client_id = "{our_client}"
key_file = "{e}/DEVELOPMENT-ONLY-client-es384.pem"
key_id = "scr-dev-client-es384-1"
timeout_ms = 5000
"#
    )
}

/// The neighbouring record's configuration: its own SQLite store in `data`, HL7 v2 from one
/// trust, no GP or social care replica, federated with home at `home_base`.
fn neighbour_config(data: &Path, port: u16, home_base: &str) -> String {
    let d = data.display();
    let p = profiles_dir();
    let p = p.display();
    let federation = federation_text(HOME_NAME, "scr-demo-home", home_base, "scr-demo-neighbour");
    format!(
        r#"# Written by `scr demo`: the neighbouring demo record ({NEIGHBOUR_NAME} as seen from home), with
# HL7 v2 from the acute trust {NEIGHBOUR_TRUST} only. Every key is described in docs/configuration.md.
[server]
bind = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}/fhir"
workers = 1
source_timeout_ms = 2000

[store]
url = "sqlite://{d}/scr.db"

[auth]
# The development issuer's key is public: never enable this outside a demo or a test.
dev_issuer = true
# The token endpoint signs the tokens it exchanges with this key, created on first start.
signing_key_file = "{d}/token-signing-key.pem"

[hl7]
sensitive_services = ["GUM", "FERT"]

[hl7.facilities.{NEIGHBOUR_TRUST}]
time_zone = "Europe/London"

[audit]
checkpoint_key_file = "{d}/audit-checkpoint-key.pem"
checkpoint_file = "{d}/{CHECKPOINT_FILE}"
checkpoint_interval_seconds = 60

[policy]
sensitive_valuesets = ["{p}/ValueSet-scr-sensitive-codes.json"]
objection_valueset = "{p}/ValueSet-scr-objection-codes.json"
consent_valueset = "{p}/ValueSet-scr-consent-codes.json"
{federation}"#
    )
}

/// What the neighbour's trust sent for Jane Smith: an inpatient stay (admission with an allergy,
/// discharge), a full blood count and a medication order during it, the stay ending nine days
/// before `now` (Unix seconds), so RRK's own clinicians have a relationship at the neighbour (R-LR-2)
/// when the demo is created. Local times (the facility's time zone).
fn neighbour_hl7(now: i64) -> String {
    let day = |days_ago: i64| {
        scr_fhir::build::instant_from_unix(now - days_ago * 86_400)
            .chars()
            .take(10)
            .filter(|c| *c != '-')
            .collect::<String>()
    };
    let (admitted, next_day, discharged) = (day(12), day(11), day(9));
    format!(
        "\
MSH|^~\\&|PAS|RRK|SCR|SCR|{admitted}101500||ADT^A01|RRK000000001|P|2.4\r\
EVN|A01|{admitted}101500\r\
PID|1||9990000018^^^NHS^NH~Q7654321^^^RRK^MR||SMITH^JANE^ANN^^MRS||19700102|F|||1 HIGH STREET^^WEST BROMWICH^^B70 1AA||07700900123\r\
PV1|1|I|WARD 12^BED 3^^RRK|||||||GEN|||||||||RRKV000001|||||||||||||||||||||||||{admitted}100000\r\
AL1|1|EA|300916003^Latex allergy^SCT|MO|Urticaria|{admitted}\r\n\
MSH|^~\\&|LAB|RRK|SCR|SCR|{next_day}090000||ORU^R01|RRK000000002|P|2.4\r\
PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F\r\
PV1|1|I|WARD 12^BED 3^^RRK|||||||GEN|||||||||RRKV000001\r\
OBR|1||RRKL0000001|FBC^Full blood count^L|||{next_day}080000|||||||||||||||||HM\r\
OBX|1|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||118|g/L|115-165|N|||F|||{next_day}083000\r\
OBX|2|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||11.8|10*9/L|4.0-11.0|H|||F|||{next_day}083000\r\n\
MSH|^~\\&|EPMA|RRK|SCR|SCR|{next_day}110000||RDE^O11|RRK000000003|P|2.4\r\
PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F\r\
PV1|1|I|WARD 12^BED 3^^RRK|||||||GEN|||||||||RRKV000001\r\
ORC|NW|RRKRX0000001|||||||{next_day}105500\r\
RXE|1|320000009^Simvastatin 40mg tablets^DMD|1||tablet||One tablet at night\r\
RXR|PO^Oral^HL70162\r\n\
MSH|^~\\&|PAS|RRK|SCR|SCR|{discharged}143000||ADT^A03|RRK000000004|P|2.4\r\
EVN|A03|{discharged}143000\r\
PID|1||9990000018^^^NHS^NH~Q7654321^^^RRK^MR||SMITH^JANE^ANN^^MRS||19700102|F|||1 HIGH STREET^^WEST BROMWICH^^B70 1AA||07700900123\r\
PV1|1|I|WARD 12^BED 3^^RRK|||||||GEN|||||||||RRKV000001|||||||||||||||||||||||||{admitted}100000|{discharged}143000\r\n"
    )
}

/// The configuration in `data`, created with `text` and seeded by `seed` the first time (until
/// the `.seeded` marker is written, a run starts again from `text`, removing the `stale` files
/// a failed run may have left).
fn create_once(
    data: &Path,
    stale: &[&str],
    text: impl FnOnce() -> String,
    seed: impl FnOnce(&Config) -> Result<(), String>,
) -> Result<Config, String> {
    let config_path = data.join("scr.toml");
    let seeded_marker = data.join(".seeded");
    if !seeded_marker.exists() {
        for f in stale {
            let _ = std::fs::remove_file(data.join(f));
        }
        std::fs::write(&config_path, text())
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        seed(&config)?;
        std::fs::write(&seeded_marker, "seeded\n").map_err(|e| e.to_string())?;
    }
    Config::load(&config_path).map_err(|e| e.to_string())
}

/// Creates (once) and loads the neighbouring record in `data`, federated with `home_base`.
fn neighbour(data: &Path, port: u16, home_base: &str) -> Result<Config, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let text = || neighbour_config(data, port, home_base);
    create_once(data, &["scr.db", CHECKPOINT_FILE], text, |config| {
        println!(
            "Creating the neighbouring record {NEIGHBOUR_NAME} in {} (once)...",
            data.display()
        );
        let store = scr_store::Store::open(&config.store.url, 2).map_err(|e| e.to_string())?;
        let cfg = crate::ingest::hl7_config(config)?;
        let messages = neighbour_hl7(scr_fhir::build::unix_now());
        let summary = crate::ingest::ingest_text(store.pool(), &cfg, &messages)?;
        println!("{NEIGHBOUR_NAME} HL7 from {NEIGHBOUR_TRUST}: {summary}");
        // Fail closed: a neighbour that silently lacks its records would make the demo lie.
        let sent = scr_hl7_ingest::ingest::split_messages(&messages).len();
        if summary.accepted != sent || summary.errors + summary.rejected != 0 {
            return Err(format!(
                "the neighbouring record's HL7 was not all accepted: {summary}"
            ));
        }
        Ok(())
    })
}

pub fn run(args: DemoArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let data =
        std::fs::canonicalize(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let text = || {
        let mut text = demo_config(&data, args.port, args.mllp_port);
        if !args.no_neighbour {
            text.push_str(&home_federation(&format!(
                "http://127.0.0.1:{}/fhir",
                args.neighbour_port
            )));
        }
        text
    };
    let stale = ["scr.db", "gp.db", "social-care-dudley.db", CHECKPOINT_FILE];
    let config = create_once(&data, &stale, text, |config| {
        println!("Creating the demo data in {} (once)...", data.display());
        crate::seed::seed(config, args.patients, 2026)
    })?;
    // The neighbour home federates with, if home's configuration names it.
    let federated = config.sources.peer.iter().any(|p| p.name == NEIGHBOUR_NAME);
    let neighbour = if args.no_neighbour || !federated {
        None
    } else {
        let config = neighbour(
            &data.join("neighbour"),
            args.neighbour_port,
            &config.server.base_url,
        )?;
        let state = scr_server::AppState::build(&config).map_err(|e| e.to_string())?;
        Some((config, state))
    };
    let state = scr_server::AppState::build(&config).map_err(|e| e.to_string())?;
    let report = state.report_unmatched_rows();
    print_banner(&config)?;
    if let Some((n, _)) = &neighbour {
        print_neighbour_banner(&config, n);
    } else if federated {
        println!(
            "The neighbouring record {NEIGHBOUR_NAME} is not started (--no-neighbour): \
             home answers with a warning that it is unavailable.\n"
        );
    }
    if !args.no_serve {
        crate::mllp::spawn(&config, &state.store)?;
        crate::checkpoints::spawn(&config, &state.store)?;
        if let Some((n, n_state)) = &neighbour {
            crate::checkpoints::spawn(n, &n_state.store)?;
        }
    }
    if args.no_serve {
        let _ = report.join();
        return Ok(());
    }
    actix_web::rt::System::new()
        .block_on(async move {
            match neighbour {
                // Both in one System: either failing (a port taken) stops the demo.
                Some((n, n_state)) => futures_util::future::try_join(
                    scr_server::serve(config, state),
                    scr_server::serve(n, n_state),
                )
                .await
                .map(|_| ()),
                None => scr_server::serve(config, state).await,
            }
        })
        .map_err(|e| format!("server stopped: {e}"))
}

fn print_neighbour_banner(home: &Config, neighbour: &Config) {
    let base = &home.server.base_url;
    let n_base = &neighbour.server.base_url;
    println!(
        r#"A neighbouring shared care record, {NEIGHBOUR_NAME}, runs beside it: FHIR R4 at {n_base}
(HL7 v2 from its acute trust {NEIGHBOUR_TRUST}; it calls this record {HOME_NAME}). The two are federated
both ways by token exchange with the development client key (development only). Jane Smith
stayed at {NEIGHBOUR_TRUST}: as the RXK clinician above, her record here includes {NEIGHBOUR_NAME}'s entries,
labelled (meta.tag https://scr.example.nhs.uk/CodeSystem/source-system|{NEIGHBOUR_NAME}, ids {NEIGHBOUR_NAME}.*):
  curl -s -H "Authorization: Bearer $TOKEN" "{base}/Patient/9990000018/\$everything" | grep -o '"{NEIGHBOUR_NAME}\.[^"]*"'
The other way, a clinician at {NEIGHBOUR_TRUST} asking {NEIGHBOUR_NAME} also gets this record's entries, labelled {HOME_NAME}:
  cargo run -q -- token staff --org {NEIGHBOUR_TRUST} --role R8000 --aud {n_base}
"#
    );
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
    if config.server.viewer_app {
        print_viewer_banner(base);
    }
    Ok(())
}

/// How to open the viewer app: a standalone launch, and an EHR launch as a host system does it.
fn print_viewer_banner(base: &str) {
    let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
    let app = format!("{origin}{}", scr_server::apps::VIEWER_PATH);
    println!(
        r#"SMART viewer app (examples/smart-app/), signing in at the development identity provider
{origin}/dev-idp (demo users: gp-asha, trust-ben, ambulance-cara, social-dan, gp-eve, patient-jane):
  Standalone launch (sign in, then choose a patient, e.g. NHS number 9990000018):
    {app}/launch.html?iss={base}
  EHR launch, as a host system does it (a backend token, a launch for a user, then open the app):
    ASSERTION=$(cargo run -q -- token assertion --aud {base}/auth/token)
    BACKEND=$(curl -s {base}/auth/token -d grant_type=client_credentials -d 'scope=system/*.rs' -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d client_assertion=$ASSERTION | grep -o '"access_token":"[^"]*' | cut -d'"' -f4)
    LAUNCH=$(curl -s {base}/auth/launch -H "Authorization: Bearer $BACKEND" -H 'Content-Type: application/json' -d '{{"patient":"9990000018","user":"gp-asha"}}' | grep -o '"launch":"[^"]*' | cut -d'"' -f4)
    open "{app}/launch.html?iss={base}&launch=$LAUNCH"     (sign in as gp-asha)
"#
    );
}
