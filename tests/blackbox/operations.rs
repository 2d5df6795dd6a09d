//! Operations (issue 13 item 6): Prometheus metrics at `/metrics`, the request id joining the
//! response, the Bundle and the AuditEvent, `Last-Modified` on reads, and the
//! CapabilityStatement telling the truth.

use std::collections::BTreeMap;

use crate::harness::*;
use crate::mllp::{msa, send};

const JANE: &str = "9990000018";

/// One sample of the text exposition format: name, labels, value.
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

pub(crate) fn scrape(s: &Server) -> (String, Vec<Sample>) {
    let r = s.request(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", s.port),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    let text = String::from_utf8(r.body).expect("UTF-8");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closed labels");
                    let labels = inner
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect();
    (text, samples)
}

/// The value of the series `name` with exactly these labels (0 when absent).
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .unwrap_or(0.0)
}

/// A valid NHS number of the test range that no ADT message registers.
fn unregistered_nhs_number() -> String {
    (0..1000)
        .filter_map(|n| scr_fhir::nhs_number::with_check_digit(&format!("999077{n:03}")))
        .next()
        .expect("a valid number")
}

fn oru_for(control_id: &str, nhs: &str) -> String {
    [
        format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261121100000||ORU^R01|{control_id}|P|2.4"),
        format!("PID|1||{nhs}^^^NHS^NH||NOBODY^KNOWN||19800404|F"),
        "OBR|1||OPSCRP1|CRP^C-reactive protein^L|||20261121090000|||||||||||||||||CH".to_string(),
        "OBX|1|NM|1988-5^C reactive protein^LN||7|mg/L|0-5|H|||F|||20261121093000".to_string(),
    ]
    .join("\r")
}

#[test]
fn metrics_count_a_read_a_search_and_mllp_acks_by_label_and_name_no_patient() {
    for s in servers() {
        let (_, before) = scrape(s);
        let t = clinician(s, "M85001");
        assert_eq!(s.get(&format!("/Patient/{JANE}"), Some(&t)).status, 200);
        let search = s.get(&format!("/Observation?patient={JANE}"), Some(&t));
        assert_eq!(search.status, 200);
        let tag = format!("OPS{}{}", std::process::id() % 10000, now() % 100000);
        let nobody = unregistered_nhs_number();
        let acks = send(
            s,
            &[
                register_linda_a28(&format!("{tag}A"), "RXK"),
                oru_for(&format!("{tag}E"), &nobody),
            ],
        );
        assert_eq!(msa(&acks[0]).0, "AA", "{:?}", acks[0]);
        assert_eq!(msa(&acks[1]).0, "AE", "{:?}", acks[1]);
        let (text, after) = scrape(s);
        let grew = |name: &str, labels: &[(&str, &str)]| {
            value(&after, name, labels) - value(&before, name, labels)
        };
        let http = "scr_http_requests_total";
        assert!(
            grew(http, &[("interaction", "read"), ("status", "200")]) >= 1.0,
            "{text}"
        );
        assert!(
            grew(http, &[("interaction", "search"), ("status", "200")]) >= 1.0,
            "{text}"
        );
        assert!(
            grew(
                "scr_http_request_duration_seconds_count",
                &[("interaction", "read")]
            ) >= 1.0,
            "{text}"
        );
        assert!(
            grew("scr_mllp_messages_total", &[("ack", "AA")]) >= 1.0,
            "{text}"
        );
        assert!(
            grew("scr_mllp_messages_total", &[("ack", "AE")]) >= 1.0,
            "{text}"
        );
        assert!(
            value(&after, "scr_hl7_quarantine_messages", &[]) >= 1.0,
            "the AE message is in the quarantine: {text}"
        );
        assert!(
            grew("scr_source_duration_seconds_count", &[("source", "gp")]) >= 1.0,
            "{text}"
        );
        assert!(
            grew("scr_audit_commit_duration_seconds_count", &[]) >= 1.0,
            "{text}"
        );
        assert!(
            value(&after, "scr_audit_batch_events_sum", &[]) >= 2.0,
            "{text}"
        );
        // A fixed label set: interactions by name, never a path, id or query.
        let interactions = [
            "read",
            "vread",
            "history",
            "search",
            "everything",
            "break-glass",
            "explain",
            "create",
            "update",
            "token",
            "capabilities",
            "smart-configuration",
            "health",
            "metrics",
            "other",
        ];
        for sample in after.iter().filter(|s| s.name.starts_with("scr_http_")) {
            let i = sample.labels.get("interaction").map(String::as_str);
            assert!(i.is_some_and(|i| interactions.contains(&i)), "{i:?}");
        }
        // No patient data anywhere: no NHS number (all of the test range start 999), no path.
        for nhs in [JANE, "9990000069", nobody.as_str()] {
            assert!(!text.contains(nhs), "{nhs} in /metrics");
        }
        assert!(
            nhs_like_numbers(&text).is_empty(),
            "no NHS-number-like digits: {text}"
        );
        assert!(!text.contains("/Patient"), "no path: {text}");
    }
}

/// Whole numbers of ten digits starting 999 (the test range) in `text`; fractions (digits after a
/// decimal point, as in `0.0080752039999`) are not whole numbers.
fn nhs_like_numbers(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &text[start..i];
            let fraction = start > 0 && bytes[start - 1] == b'.';
            if !fraction && run.len() == 10 && run.starts_with("999") {
                found.push(run.to_owned());
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn nhs_like_numbers_finds_whole_numbers_only() {
    assert_eq!(nhs_like_numbers("x 9990000018 y"), ["9990000018"]);
    assert!(nhs_like_numbers("0.9990000018 12 99900000181").is_empty());
}

fn audit_request_ids(s: &Server, user: &str) -> Vec<String> {
    let po = staff_as(s, "po-0001", "M85001", "R0001", "user/AuditEvent.rs");
    let r = s.get(&format!("/AuditEvent?agent={user}"), Some(&po));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    of_type(&r.json(), "AuditEvent")
        .into_iter()
        .flat_map(|e| e["entity"].as_array().cloned().unwrap_or_default())
        .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["type"] == "request-id")
        .filter_map(|d| d["valueString"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn request_id_joins_the_response_header_the_bundle_id_and_the_audit_event() {
    for s in servers() {
        let user = format!("rid-{}-{}", std::process::id(), now());
        let t = staff_as(s, &user, "M85001", "R8000", "user/*.rs");
        let auth = format!("Bearer {t}");
        let mine = format!("req-{}.{}", std::process::id(), now());
        let r = s.request(
            "GET",
            &format!("/Observation?patient={JANE}"),
            &[("Authorization", &auth), ("X-Request-Id", &mine)],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-request-id"), Some(mine.as_str()));
        assert_eq!(r.json()["id"], mine.as_str(), "the searchset Bundle's id");
        // None sent: one is generated, and $everything's Bundle carries it too.
        let e = s.get(&format!("/Patient/{JANE}/$everything"), Some(&t));
        assert_eq!(e.status, 200);
        let generated = e.header("x-request-id").expect("a generated id").to_owned();
        assert_eq!(generated.len(), 32, "{generated}");
        assert_eq!(e.json()["id"], generated.as_str());
        // A malformed one is replaced, never echoed (it could carry anything into the logs).
        let bad = s.request(
            "GET",
            &format!("/Patient/{JANE}"),
            &[("Authorization", &auth), ("X-Request-Id", "a b/c")],
            b"",
        );
        let replaced = bad.header("x-request-id").expect("an id").to_owned();
        assert_ne!(replaced, "a b/c");
        let ids = audit_request_ids(s, &user);
        for id in [&mine, &generated, &replaced] {
            assert!(ids.contains(id), "{id} not in the AuditEvents: {ids:?}");
        }
        // The request's log line names it (and nothing that identifies the patient).
        let line = s
            .log()
            .lines()
            .find(|l| l.contains(&format!("request_id={mine}")))
            .map(str::to_owned);
        assert!(
            line.as_deref().is_some_and(|l| !l.contains(JANE)),
            "{line:?}"
        );
        // Refusals and answers outside /fhir carry one too.
        let refused = s.get(&format!("/Patient/{JANE}"), None);
        assert_eq!(refused.status, 401);
        assert!(refused.header("x-request-id").is_some());
        let live = s.request(
            "GET",
            &format!("http://127.0.0.1:{}/health/live", s.port),
            &[],
            b"",
        );
        assert!(live.header("x-request-id").is_some());
    }
}

#[test]
fn last_modified_on_reads_and_if_modified_since_answers_304() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let auth = format!("Bearer {t}");
        let bundle = s
            .get(&format!("/Observation?patient={JANE}"), Some(&t))
            .json();
        let dated: Vec<&serde_json::Value> = of_type(&bundle, "Observation")
            .into_iter()
            .filter(|o| o["meta"]["lastUpdated"].is_string())
            .collect();
        assert!(
            !dated.is_empty(),
            "observations with meta.lastUpdated: {bundle}"
        );
        let obs = dated[0];
        let id = obs["id"].as_str().expect("an id");
        let read = s.get(&format!("/Observation/{id}"), Some(&t));
        assert_eq!(read.status, 200);
        let lm = read
            .header("last-modified")
            .expect("Last-Modified")
            .to_owned();
        let secs = scr_fhir::build::unix_of_date_time(obs["meta"]["lastUpdated"].as_str().unwrap())
            .expect("an instant");
        let since_epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        assert_eq!(
            lm,
            actix_web::http::header::HttpDate::from(since_epoch).to_string(),
            "Last-Modified is meta.lastUpdated as an HTTP-date"
        );
        let cond = |since: &str| {
            s.request(
                "GET",
                &format!("/Observation/{id}"),
                &[("Authorization", &auth), ("If-Modified-Since", since)],
                b"",
            )
        };
        let same = cond(&lm);
        assert_eq!(same.status, 304);
        assert!(same.body.is_empty(), "304 has no body");
        assert_eq!(same.header("last-modified"), Some(lm.as_str()));
        let earlier = actix_web::http::header::HttpDate::from(
            since_epoch - std::time::Duration::from_secs(1),
        );
        assert_eq!(cond(&earlier.to_string()).status, 200);
        // Only after the policy: a caller who may not see it gets 404 or 403, never 304.
        let other = format!("Bearer {}", patient(s, "9990000069", "P9"));
        let refused = s.request(
            "GET",
            &format!("/Observation/{id}"),
            &[("Authorization", &other), ("If-Modified-Since", &lm)],
            b"",
        );
        assert!(
            [403, 404].contains(&refused.status),
            "another patient: {}",
            refused.status
        );
    }
}

#[test]
fn scr_health_exits_0_for_a_live_server_and_1_for_none() {
    for s in servers() {
        let run = |url: &str| {
            std::process::Command::new(BIN)
                .args(["health", "--url", url, "--timeout", "5"])
                .env("SCR_LOG", "warn")
                .output()
                .expect("run scr health")
        };
        let live = run(&format!("http://127.0.0.1:{}/health/live", s.port));
        assert!(
            live.status.success(),
            "{}",
            String::from_utf8_lossy(&live.stderr)
        );
        // A path the server answers 404: not healthy.
        let wrong = run(&format!("http://127.0.0.1:{}/health/nothing", s.port));
        assert_eq!(wrong.status.code(), Some(1));
        // Nothing listening.
        let none = run(&format!("http://127.0.0.1:{}/health/live", free_port()));
        assert_eq!(none.status.code(), Some(1));
    }
}

/// Whether the server says it does not support what was asked: 405, or 404 `not-supported`
/// (an unknown endpoint), as opposed to answering it (even with 400, 401, 403 or 404 not-found).
fn unsupported(r: &Response) -> bool {
    r.status == 405 || (r.status == 404 && r.issue_code() == "not-supported")
}

/// Asks the running server for one interaction on one type.
fn ask(s: &Server, token: &str, resource_type: &str, interaction: &str) -> Response {
    let auth = format!("Bearer {token}");
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/fhir+json"),
        ("Accept", "application/fhir+json"),
    ];
    // The shape of an alert written here (only those are updated), unknown on every type.
    let id = "scr.flag-999999999";
    let body = format!(r#"{{"resourceType":"{resource_type}","id":"{id}"}}"#);
    let search = if resource_type == "Patient" {
        format!("/Patient?_id={JANE}")
    } else {
        format!("/{resource_type}?patient=Patient/{JANE}")
    };
    match interaction {
        "read" => s.request("GET", &format!("/{resource_type}/{id}"), &json, b""),
        "vread" => s.request(
            "GET",
            &format!("/{resource_type}/{id}/_history/1"),
            &json,
            b"",
        ),
        "history-instance" => s.request(
            "GET",
            &format!("/{resource_type}/{id}/_history"),
            &json,
            b"",
        ),
        "search-type" => s.request("GET", &search, &json, b""),
        "create" => s.request("POST", &format!("/{resource_type}"), &json, body.as_bytes()),
        "update" => {
            let mut h = json.to_vec();
            h.push(("If-Match", "W/\"1\""));
            s.request(
                "PUT",
                &format!("/{resource_type}/{id}"),
                &h,
                body.as_bytes(),
            )
        }
        "delete" => s.request("DELETE", &format!("/{resource_type}/{id}"), &json, b""),
        other => panic!("no request for {other}"),
    }
}

#[test]
fn capability_statement_lists_exactly_the_interactions_the_server_answers() {
    for s in servers() {
        let cs = s.get("/metadata", None).json();
        let token = staff_as(
            s,
            "capability-check",
            "M85001",
            "R8000",
            "user/*.rs user/Flag.cu user/Consent.c user/AuditEvent.rs",
        );
        let resources = cs["rest"][0]["resource"].as_array().expect("resources");
        assert!(resources.len() >= 7);
        for r in resources {
            let rt = r["type"].as_str().expect("a type");
            let advertised: Vec<&str> = r["interaction"]
                .as_array()
                .expect("interactions")
                .iter()
                .filter_map(|i| i["code"].as_str())
                .collect();
            for interaction in [
                "read",
                "vread",
                "history-instance",
                "search-type",
                "create",
                "update",
                "delete",
            ] {
                let answer = ask(s, &token, rt, interaction);
                assert_eq!(
                    advertised.contains(&interaction),
                    !unsupported(&answer),
                    "{rt} {interaction}: advertised {advertised:?}, answered {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
            // Operations: each listed one is answered; one not listed is not.
            let operations: Vec<&str> = r["operation"]
                .as_array()
                .map(|ops| ops.iter().filter_map(|o| o["name"].as_str()).collect())
                .unwrap_or_default();
            let auth = format!("Bearer {token}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/fhir+json"),
            ];
            for (name, method) in [
                ("everything", "GET"),
                ("break-glass", "POST"),
                ("explain", "POST"),
            ] {
                let answer = s.request(
                    method,
                    &format!("/{rt}/{JANE}/${name}"),
                    &headers,
                    br#"{"resourceType":"Parameters"}"#,
                );
                assert_eq!(
                    operations.contains(&name),
                    !unsupported(&answer),
                    "{rt} ${name}: listed {operations:?}, answered {}",
                    answer.status
                );
            }
        }
        // The writes that exist are there.
        let interactions = |rt: &str| -> Vec<String> {
            resources
                .iter()
                .find(|r| r["type"] == rt)
                .and_then(|r| r["interaction"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i["code"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(interactions("Flag").contains(&"create".to_owned()));
        assert!(interactions("Flag").contains(&"update".to_owned()));
        assert!(interactions("Consent").contains(&"create".to_owned()));
        // SMART: the service, and the token endpoint the SMART configuration also names.
        let security = &cs["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let smart: serde_json::Value =
            serde_json::from_slice(&s.get("/.well-known/smart-configuration", None).body)
                .expect("JSON");
        let token_uri = security["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
            })
            .flat_map(|e| e["extension"].as_array().cloned().unwrap_or_default())
            .find(|e| e["url"] == "token")
            .map(|e| e["valueUri"].clone());
        assert_eq!(
            token_uri.as_ref(),
            smart.get("token_endpoint"),
            "{security}"
        );
        assert!(
            token_uri.is_some(),
            "the test servers have a token endpoint"
        );
    }
}
