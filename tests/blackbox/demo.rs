//! `scr demo` (issue 12): the interactive demo starts a neighbouring shared care record beside
//! it, federated both ways, so its example request shows records labelled with the neighbour's
//! name. Runs the real binary serving (not `--no-serve`) on free ports in a scratch folder.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const JANE: &str = "9990000018";
const NEIGHBOUR: &str = "WMShCR";
const NEIGHBOUR_TRUST: &str = "RRK";
/// How the neighbour names home.
const HOME: &str = "BCShCR";

/// The demo process, ended however the test ends (a failed assertion included).
struct Running(Server);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// What `scr token ARGS` prints.
fn scr_token(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("token")
        .args(args)
        .output()
        .expect("scr token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("a token")
        .trim()
        .to_owned()
}

#[test]
fn demo_starts_with_a_neighbour_whose_records_arrive_labelled() {
    let dir = scratch("demo-neighbour");
    let (port, neighbour_port, mllp_port) = (free_port(), free_port(), free_port());
    let out = std::fs::File::create(dir.join("demo.out")).expect("log file");
    let err = std::fs::File::create(dir.join("server.log")).expect("log file");
    let data = dir.join("data");
    let child = Command::new(BIN)
        .args(["demo", "--data", data.to_str().unwrap(), "--patients", "0"])
        .args(["--port", &port.to_string()])
        .args(["--neighbour-port", &neighbour_port.to_string()])
        .args(["--mllp-port", &mllp_port.to_string()])
        .env("SCR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start scr demo");
    let demo = Running(Server::adopt("demo", dir.clone(), port, child));
    let home = &demo.0;
    let log = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(dir.join("demo.out")).unwrap_or_default(),
            home.log()
        )
    };

    // Both records answer, from the one process, within two minutes (seeding included).
    let started = Instant::now();
    for p in [port, neighbour_port] {
        while TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(!home.exited(), "scr demo exited: {}", log());
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "scr demo did not listen on {p}: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        data.join("neighbour/.seeded").exists(),
        "the neighbour's own store"
    );
    let banner = std::fs::read_to_string(dir.join("demo.out")).unwrap_or_default();
    assert!(
        banner.contains(NEIGHBOUR) && banner.contains(&format!("127.0.0.1:{neighbour_port}/fhir")),
        "the banner names the neighbour and where it runs: {banner}"
    );
    // Issue 13 item 4: the demo prints the viewer's standalone launch URL, and serves it.
    let launch = format!(
        "http://127.0.0.1:{}/apps/viewer/launch.html?iss={}",
        home.port, home.base
    );
    assert!(banner.contains(&launch), "{launch} in the banner: {banner}");
    let page = home.request("GET", &launch, &[], b"");
    assert_eq!(page.status, 200);

    // The token the README tells a reader to make.
    let token = scr_token(&[
        "staff", "--org", "RXK", "--role", "R8000", "--aud", &home.base,
    ]);
    let r = home.get(&format!("/Patient/{JANE}/$everything"), Some(&token));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let bundle = r.json();
    assert!(
        !warnings(&bundle).contains("unavailable"),
        "{}",
        warnings(&bundle)
    );
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| {
            !matches!(
                r["resourceType"].as_str(),
                Some("Patient" | "OperationOutcome")
            )
        })
        .collect();
    let from_neighbour: Vec<&&Value> = resources.iter().filter(|r| tagged(r, NEIGHBOUR)).collect();
    // What the neighbour's trust sent during her stay there: the latex allergy, the blood count
    // and a medication order.
    for kind in ["AllergyIntolerance", "Observation", "MedicationStatement"] {
        assert!(
            from_neighbour
                .iter()
                .any(|r| r["resourceType"] == kind
                    && ods_tags(r).contains(&NEIGHBOUR_TRUST.to_owned())),
            "a {kind} from {NEIGHBOUR}, held by {NEIGHBOUR_TRUST}: {bundle:#}"
        );
    }
    for r in &from_neighbour {
        let id = r["id"].as_str().unwrap_or_default();
        assert!(id.starts_with(&format!("{NEIGHBOUR}.")), "{id}");
    }
    assert!(
        from_neighbour
            .iter()
            .any(|r| r["code"]["coding"][0]["code"] == "300916003"),
        "the neighbour's latex allergy"
    );
    // Home's own records are there too, unlabelled, and none of them is the neighbour trust's.
    let own: Vec<&&Value> = resources.iter().filter(|r| !tagged(r, NEIGHBOUR)).collect();
    assert!(!own.is_empty(), "home's own records");
    assert!(own
        .iter()
        .all(|r| !ods_tags(r).contains(&NEIGHBOUR_TRUST.to_owned())));

    // Both ways: a clinician of the neighbour's trust (her stay there ended nine days ago) sees
    // home's records there, labelled with home's name.
    let neighbour_base = format!("http://127.0.0.1:{neighbour_port}/fhir");
    let token = scr_token(&[
        "staff",
        "--org",
        NEIGHBOUR_TRUST,
        "--role",
        "R8000",
        "--aud",
        &neighbour_base,
    ]);
    let auth = format!("Bearer {token}");
    let r = request_at(
        neighbour_port,
        "GET",
        &format!("/Patient/{JANE}/$everything"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let bundle = r.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["resourceType"] == "AllergyIntolerance"
                && tagged(&e["resource"], HOME)
                && ods_tags(&e["resource"]).contains(&"RXK".to_owned())),
        "home's RXK allergy reaches the neighbour, labelled {HOME}: {}",
        warnings(&bundle)
    );
    assert!(entries
        .iter()
        .any(|e| e["resource"]["resourceType"] == "AllergyIntolerance"
            && !tagged(&e["resource"], HOME)
            && ods_tags(&e["resource"]).contains(&NEIGHBOUR_TRUST.to_owned())));

    drop(demo);
    assert!(
        TcpStream::connect(("127.0.0.1", neighbour_port)).is_err(),
        "the neighbour stopped with the demo"
    );
}
