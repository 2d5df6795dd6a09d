//! Starts the real `scr` binary on a free loopback port against real databases, and talks
//! HTTP/1.1 to it over TCP. One seeded server per backend is shared by the tests of this binary;
//! it exits when the test process does (its stdin closes).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_scr");

pub struct Server {
    pub name: &'static str,
    pub base: String,
    pub port: u16,
    pub dir: PathBuf,
    /// The facade's own database, for tests that inspect or tamper with the audit trail.
    pub store_url: String,
    /// The MLLP listener's port.
    pub mllp_port: u16,
    _child: Mutex<Child>,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; every FHIR resource in it is checked against R4 (and dumped for the
    /// independent Python validator when `FHIR_DUMP_DIR` names a folder).
    pub fn json(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        check_r4(&v);
        v
    }

    /// The OperationOutcome's first issue code.
    pub fn issue_code(&self) -> String {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
        v["issue"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn check_r4(v: &Value) {
    if v.get("resourceType").is_none() {
        return;
    }
    if let Err(e) = scr_fhir::conformance::check(v) {
        panic!("not valid R4: {e}\n{v:#}");
    }
    if let Ok(dir) = std::env::var("FHIR_DUMP_DIR") {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            Path::new(&dir).join(format!("{}-{n}.json", std::process::id())),
            v.to_string(),
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("blackbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("SCR_LOG", "warn")
        .output()
        .expect("run scr");
    assert!(
        out.status.success(),
        "scr {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Server {
    /// Starts `scr serve` with `config` and waits until it answers.
    pub fn start(
        name: &'static str,
        dir: PathBuf,
        port: u16,
        config: &Path,
        store_url: String,
        mllp_port: u16,
    ) -> Server {
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = Command::new(BIN)
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--exit-on-stdin-close",
            ])
            .env("SCR_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start scr serve");
        let server = Server {
            name,
            base: format!("http://127.0.0.1:{port}/fhir"),
            port,
            dir,
            store_url,
            mllp_port,
            _child: Mutex::new(child),
        };
        for _ in 0..300 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            let exited = server._child.lock().unwrap().try_wait().ok().flatten();
            if exited.is_some() && server.log().contains("Address already in use") {
                // A port chosen free was taken meanwhile (loopback clients use the same
                // ephemeral range): move the server to other ports and start it again.
                let text = std::fs::read_to_string(config).expect("config");
                let (new_port, new_mllp) = (free_port(), free_port());
                let mut text = text.replace(
                    &format!("127.0.0.1:{port}"),
                    &format!("127.0.0.1:{new_port}"),
                );
                if mllp_port != 0 {
                    text = text.replace(
                        &format!("127.0.0.1:{mllp_port}\""),
                        &format!("127.0.0.1:{new_mllp}\""),
                    );
                }
                std::fs::write(config, text).expect("config");
                let mllp = if mllp_port == 0 { 0 } else { new_mllp };
                let Server { dir, store_url, .. } = server;
                return Server::start(name, dir, new_port, config, store_url, mllp);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "scr serve ({}) did not start: {}",
            server.name,
            server.log()
        );
    }

    /// A server some other command started as `child` (already answering on `port`), for a test
    /// that runs the binary its own way; [`Server::stop`] ends it.
    pub fn adopt(name: &'static str, dir: PathBuf, port: u16, child: Child) -> Server {
        Server {
            name,
            base: format!("http://127.0.0.1:{port}/fhir"),
            port,
            store_url: format!("sqlite://{}/scr.db", dir.display()),
            dir,
            mllp_port: 0,
            _child: Mutex::new(child),
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&self) -> bool {
        let mut child = self._child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten().is_some()
    }

    /// Kills the process if it still runs and reaps it; never panics (for `Drop`).
    pub fn stop(&self) {
        let mut child = self._child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server process with SIGKILL, as a power cut or the OOM killer would.
    pub fn kill(&self) {
        let mut child = self._child.lock().unwrap();
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Starts the same server again (same configuration, ports and data).
    pub fn restart(&self) -> Server {
        let config = self.dir.join("scr.toml");
        Server::start(
            self.name,
            self.dir.clone(),
            self.port,
            &config,
            self.store_url.clone(),
            self.mllp_port,
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `scr demo --no-serve` seeds SQLite files and writes the config; then serve it.
    fn sqlite() -> Server {
        Server::sqlite_named("sqlite", 40)
    }

    /// A SQLite server of its own, for a test that breaks something on purpose.
    pub fn sqlite_named(name: &'static str, patients: usize) -> Server {
        Server::sqlite_prepared(name, patients, |_| {})
    }

    /// [`Server::sqlite_named`], with `prepare` run on the data folder after it is seeded and
    /// before the server starts.
    pub fn sqlite_prepared(
        name: &'static str,
        patients: usize,
        prepare: impl FnOnce(&Path),
    ) -> Server {
        let dir = scratch(name);
        let port = free_port();
        let mllp_port = free_port();
        let d = dir.to_str().unwrap().to_owned();
        let (p, n, m) = (
            port.to_string(),
            patients.to_string(),
            mllp_port.to_string(),
        );
        let args = [
            "demo",
            "--data",
            &d,
            "--port",
            &p,
            "--patients",
            &n,
            "--mllp-port",
            &m,
            "--no-serve",
            "--no-neighbour",
        ];
        run(&args);
        lift_request_limits(&dir.join("scr.toml"));
        prepare(&dir);
        let config = dir.join("scr.toml");
        let store = format!("sqlite://{}/scr.db", dir.display());
        Server::start(name, dir, port, &config, store, mllp_port)
    }

    /// Three fresh PostgreSQL databases (GP, social care, store), seeded by `scr seed`.
    fn postgres(admin_url: &str) -> Server {
        Server::postgres_named("postgres", admin_url, &|_, url| url.to_owned())
    }

    /// A PostgreSQL server of its own, for a test that breaks something on purpose. `route`
    /// gives the URL the server is configured with for each database (`gp`, `sc`, `store`), for
    /// instance through a [`Proxy`]; the test's own `store_url` stays direct.
    pub fn postgres_named(
        name: &'static str,
        admin_url: &str,
        route: &dyn Fn(&str, &str) -> String,
    ) -> Server {
        Server::postgres_configured(name, admin_url, route, &|c| c)
    }

    /// [`Server::postgres_named`], with `edit` applied to the configuration the server runs
    /// with (not to the one it is seeded with).
    pub fn postgres_configured(
        name: &'static str,
        admin_url: &str,
        route: &dyn Fn(&str, &str) -> String,
        edit: &dyn Fn(String) -> String,
    ) -> Server {
        use diesel::Connection;
        let dir = scratch(name);
        let port = free_port();
        let mut admin =
            diesel::PgConnection::establish(admin_url).expect("connect to TEST_POSTGRES_URL");
        drop_databases_of_finished_runs(&mut admin);
        let stem = format!("scr_blackbox_{}_{name}", std::process::id());
        let root = admin_url
            .rsplit_once('/')
            .map(|(r, _)| r)
            .expect("a database URL");
        let mut urls = Vec::new();
        let mut direct = Vec::new();
        for db in ["gp", "sc", "store"] {
            let name = format!("{stem}_{db}");
            // One statement per call: PostgreSQL refuses CREATE/DROP DATABASE in a transaction.
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            diesel::RunQueryDsl::execute(diesel::sql_query(drop), &mut admin)
                .expect("drop database");
            let create = format!("CREATE DATABASE {name}");
            diesel::RunQueryDsl::execute(diesel::sql_query(create), &mut admin)
                .expect("create database");
            direct.push(format!("{root}/{name}"));
            urls.push(route(db, &format!("{root}/{name}")));
        }
        let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fhir-profiles");
        let p = profiles.display();
        let e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dev-issuer");
        let e = e.display();
        let mllp_port = free_port();
        let key = dir.join("token-signing-key.pem");
        let key = key.display();
        let d = dir.display();
        let config = format!(
            r#"[server]
bind = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}/fhir"
refusals_per_minute = {LIFTED_LIMIT}
viewer_app = true
[store]
url = "{}"
[auth]
dev_issuer = true
dev_identity_provider = true
token_requests_per_minute = {LIFTED_LIMIT}
signing_key_file = "{key}"
[[auth.clients]]
client_id = "dev-backend-client"
org = "RXK"
jwks_file = "{e}/dev-client-jwks.json"
scopes = ["system/*.rs"]
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
url = "{}"
[[sources.social_care]]
name = "sc-dudley"
council = "LA-DUD"
council_name = "Dudley Council"
url = "{}"
[hl7]
facilities = ["RXK", "TAJ"]
[mllp]
bind = "127.0.0.1:{mllp_port}"
[[mllp.senders]]
facility = "RXK"
addresses = ["127.0.0.1"]
[[mllp.senders]]
facility = "TAJ"
addresses = ["127.0.0.1"]
[audit]
checkpoint_key_file = "{d}/audit-checkpoint-key.pem"
checkpoint_file = "{d}/audit-checkpoints.jsonl"
[policy]
sensitive_valuesets = ["{p}/ValueSet-scr-sensitive-codes.json"]
objection_valueset = "{p}/ValueSet-scr-objection-codes.json"
consent_valueset = "{p}/ValueSet-scr-consent-codes.json"
"#,
            urls[2], urls[0], urls[1]
        );
        let path = dir.join("scr.toml");
        // Seeded directly, whatever the server is routed through.
        let mut seeding = config.clone();
        for (routed, d) in urls.iter().zip(&direct) {
            seeding = seeding.replace(&format!("\"{routed}\""), &format!("\"{d}\""));
        }
        std::fs::write(&path, seeding).expect("config");
        run(&[
            "seed",
            "--config",
            path.to_str().unwrap(),
            "--patients",
            "40",
        ]);
        std::fs::write(&path, edit(config)).expect("config");
        let store = direct[2].clone();
        Server::start(name, dir, port, &path, store, mllp_port)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request_at(self.port, method, path, headers, body)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", path, &headers, b"")
    }

    /// Follows `next` links from a search, collecting every entry of mode `match`.
    pub fn all_pages(&self, first: &str, token: &str) -> (Vec<Value>, Option<u64>) {
        let mut url = first.to_owned();
        let mut found = Vec::new();
        for _ in 0..100 {
            let r = self.get(&url, Some(token));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let b = r.json();
            let total = b["total"].as_u64();
            found.extend(
                b["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["search"]["mode"] == "match")
                    .map(|e| e["resource"].clone()),
            );
            match b["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
            {
                Some(next) => url = next["url"].as_str().unwrap().replace(&self.base, ""),
                None => return (found, total),
            }
        }
        panic!("paging did not end");
    }
}

/// One HTTP/1.1 request to the server on loopback `port` (`path` under `/fhir` if it starts
/// with `/`).
pub fn request_at(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let full = if path.starts_with('/') {
        format!("/fhir{path}")
    } else {
        path.to_owned()
    };
    request_raw(port, method, &full, headers, body)
}

/// One HTTP/1.1 request to loopback `port` for `full`, the path as sent (no `/fhir` added).
pub fn request_raw(
    port: u16,
    method: &str,
    full: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request_raw(port, method, full, headers, body).expect("a complete response from the server")
}

/// [`request_at`] that answers `None` when no complete response arrives (the server refused
/// the connection, or was killed mid-request), for tests that kill the server under load.
pub fn try_request_at(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    try_request_raw(port, method, &format!("/fhir{path}"), headers, body)
}

fn try_request_raw(
    port: u16,
    method: &str,
    full: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut head = format!("{method} {full} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n", port, body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[pos + 2..pos + 2 + size]);
        data = &data[pos + 2 + size + 2..];
    }
    out
}

/// The request limits of the test servers: every test connects from 127.0.0.1 and many are
/// refused on purpose, which the production limits would answer 429. The limits themselves are
/// tested on servers of their own.
pub const LIFTED_LIMIT: u32 = 1_000_000;

/// Raises the request limits in a demo configuration.
fn lift_request_limits(path: &Path) {
    let config = std::fs::read_to_string(path).expect("config");
    let config = config
        .replacen(
            "[server]\n",
            &format!("[server]\nrefusals_per_minute = {LIFTED_LIMIT}\n"),
            1,
        )
        .replacen(
            "[auth]\n",
            &format!("[auth]\ntoken_requests_per_minute = {LIFTED_LIMIT}\n"),
            1,
        );
    std::fs::write(path, config).expect("config");
}

/// The servers to run each test against: SQLite always, PostgreSQL when `TEST_POSTGRES_URL` is set.
pub fn servers() -> Vec<&'static Server> {
    static SQLITE: OnceLock<Server> = OnceLock::new();
    static POSTGRES: OnceLock<Option<Server>> = OnceLock::new();
    let mut out = vec![SQLITE.get_or_init(Server::sqlite)];
    if let Some(pg) = POSTGRES.get_or_init(|| {
        std::env::var("TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|u| Server::postgres(&u))
    }) {
        out.push(pg);
    }
    out
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: &Value) -> String {
    scr_auth::dev::sign_rs256(
        claims,
        scr_auth::dev::dev_private_key_pem(),
        scr_auth::dev::DEV_KID,
    )
    .expect("sign")
}

pub fn staff(server: &Server, org: &str, role: &str, scope: &str) -> String {
    staff_as(server, "555021935107", org, role, scope)
}

pub fn staff_as(server: &Server, sub: &str, org: &str, role: &str, scope: &str) -> String {
    let t = scr_auth::dev::StaffToken {
        audience: server.base.clone(),
        subject: sub.into(),
        org: org.into(),
        role_code: role.into(),
        scope: scope.into(),
        name: Some("Test User".into()),
        lifetime_seconds: 600,
    };
    sign(&scr_auth::dev::staff_claims(&t, now()))
}

pub fn clinician(server: &Server, org: &str) -> String {
    staff(server, org, "R8000", "user/*.rs")
}

pub fn patient(server: &Server, nhs: &str, level: &str) -> String {
    let t = scr_auth::dev::PatientToken {
        audience: server.base.clone(),
        nhs_number: nhs.into(),
        proofing_level: level.into(),
        scope: "patient/*.rs".into(),
        lifetime_seconds: 600,
    };
    sign(&scr_auth::dev::patient_claims(&t, now()))
}

/// Claims of a clinician token, to tamper with.
pub fn clinician_claims(server: &Server, org: &str) -> Value {
    let t = scr_auth::dev::StaffToken {
        audience: server.base.clone(),
        subject: "555021935107".into(),
        org: org.into(),
        role_code: "R8000".into(),
        scope: "user/*.rs".into(),
        name: None,
        lifetime_seconds: 600,
    };
    scr_auth::dev::staff_claims(&t, now())
}

pub fn signed(claims: &Value) -> String {
    sign(claims)
}

/// An `ADT^A28` (add person) from `facility` for Linda Brown (9990000069), who has no HL7
/// record in the seeded data: results for her are accepted only once a trust has registered her
/// (hl7v2-acute.md: AE for an unknown patient on a result).
pub fn register_linda_a28(control_id: &str, facility: &str) -> String {
    [
        format!("MSH|^~\\&|PAS|{facility}|SCR|SCR|20261120080000||ADT^A28|{control_id}|P|2.4"),
        "EVN|A28|20261120080000".to_string(),
        "PID|1||9990000069^^^NHS^NH||BROWN^LINDA||19800404|F".to_string(),
    ]
    .join("\r")
}

/// Resources of the given type in a Bundle's `match` entries.
pub fn of_type<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

/// Whether a resource carries the facade's source tag with `name` (a source or a neighbouring
/// record).
pub fn tagged(resource: &Value, name: &str) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["system"] == scr_fhir::systems::SOURCE_SYSTEM_TAG && t["code"] == name)
}

/// The ODS codes in a resource's `meta.tag`.
pub fn ods_tags(resource: &Value) -> Vec<String> {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["system"] == "https://fhir.nhs.uk/Id/ods-organization-code")
        .filter_map(|t| t["code"].as_str().map(str::to_owned))
        .collect()
}

/// A backend-services token (`system/` scopes) for a client of organisation `org`.
pub fn system(server: &Server, org: &str, scope: &str) -> String {
    let t = scr_auth::dev::SystemToken {
        audience: server.base.clone(),
        client_id: "test-backend".into(),
        org: org.into(),
        scope: scope.into(),
        lifetime_seconds: 600,
    };
    sign(&scr_auth::dev::system_claims(&t, now()))
}

/// Tests have no teardown, so each run removes the databases of earlier runs whose process
/// (named in the database name) no longer exists.
fn drop_databases_of_finished_runs(admin: &mut diesel::PgConnection) {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let names: Vec<Name> = diesel::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'scr\\_blackbox\\_%'",
        ),
        admin,
    )
    .unwrap_or_default();
    for Name { datname } in names {
        let pid = datname
            .split('_')
            .nth(2)
            .and_then(|p| p.parse::<u32>().ok());
        let finished = pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if finished {
            let drop = format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)");
            let _ = diesel::RunQueryDsl::execute(diesel::sql_query(drop), admin);
        }
    }
}

/// A TCP proxy on loopback in front of a database server: a test takes the database away from
/// the server under test (every connection cut, new ones refused), as a stopped server or a
/// network failure would, and brings it back.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: String) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (u, o) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !u.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = o.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, open }
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` (`postgres://user@host:port/db`) through this proxy, and the address it targets.
    pub fn route(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a database URL");
        let (user, rest) = rest.split_once('@').expect("a user in the URL");
        let (_, db) = rest.split_once('/').expect("a database in the URL");
        format!("{scheme}://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

/// The `host:port` a database URL names.
pub fn authority(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// ODS codes of every resource (Patient and records) in a Bundle, sorted, once each.
pub fn holders(bundle: &Value) -> Vec<String> {
    let mut all: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .flat_map(|e| ods_tags(&e["resource"]))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Every OperationOutcome in a Bundle, as text.
pub fn warnings(bundle: &Value) -> String {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["resourceType"] == "OperationOutcome")
        .map(|e| e["resource"].to_string())
        .collect()
}

/// A connection to a server's own store, for tests that inspect or tamper with it.
pub fn store_connection(s: &Server) -> scr_db::PooledDb {
    let pool = scr_db::open_pool(
        "store",
        &s.store_url,
        &scr_db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    pool.get().unwrap()
}

/// Servers of a test's own, SQLite and (when `TEST_POSTGRES_URL` is set) PostgreSQL, whose
/// configuration `edit` changes before they start: for tests that change shared state or need
/// settings of their own.
pub fn own_servers(name: &'static str, edit: fn(String) -> String) -> Vec<Server> {
    own_servers_with(name, &edit)
}

/// [`own_servers`] with an edit that may capture (another server's address, a key file).
pub fn own_servers_with(name: &'static str, edit: &dyn Fn(String) -> String) -> Vec<Server> {
    let mut out = vec![Server::sqlite_prepared(name, 0, |dir| {
        let path = dir.join("scr.toml");
        let config = std::fs::read_to_string(&path).expect("config");
        std::fs::write(&path, edit(config)).expect("config");
    })];
    if let Some(admin) = std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        // Its scratch folder must differ from the SQLite server's.
        let pg_name: &'static str =
            Box::leak(format!("{}pg", name.replace('-', "")).into_boxed_str());
        out.push(Server::postgres_configured(
            pg_name,
            &admin,
            &|_, url| url.to_owned(),
            edit,
        ));
    }
    out
}

/// `scr <args> --config <the server's config>`, as an operator runs it beside the server.
pub fn scr_cli(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(s.dir.join("scr.toml"))
        .env("SCR_LOG", "warn")
        .output()
        .expect("scr")
}

/// What [`scr_cli`] printed, the command having succeeded.
pub fn scr_cli_ok(s: &Server, args: &[&str]) -> String {
    let out = scr_cli(s, args);
    assert!(
        out.status.success(),
        "scr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scr audit verify` on a server's store: whether the chain is intact, and what it printed.
pub fn audit_verify(s: &Server) -> (bool, String) {
    let out = scr_cli(s, &["audit", "verify"]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A tag made unique to this test run and call: `{tag}-{pid}-{now}-{n}`.
pub fn unique_id(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{tag}-{}-{}-{n}", std::process::id(), now())
}

/// The value of an AuditEvent's first entity detail of this type (`request-id`, `decided-by`).
pub fn audit_detail<'a>(event: &'a Value, kind: &str) -> Option<&'a str> {
    event["entity"]
        .as_array()?
        .iter()
        .flat_map(|e| e["detail"].as_array().into_iter().flatten())
        .find(|d| d["type"] == kind)
        .and_then(|d| d["valueString"].as_str())
}
