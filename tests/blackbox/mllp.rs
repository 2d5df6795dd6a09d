//! The MLLP listener over real loopback TCP: every kind of message a trust's engine may send,
//! checked through the ACK, the FHIR API and the quarantine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

const LINDA: &str = "9990000069";

/// One connection; sends each message and reads its ACK before the next, as engines do.
pub(crate) fn send(s: &Server, messages: &[String]) -> Vec<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", s.mllp_port)).expect("connect to MLLP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    messages
        .iter()
        .map(|m| exchange(&mut stream, &scr_mllp::frame(m)))
        .collect()
}

fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    let mut reader = scr_mllp::FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("an ACK");
        assert!(n > 0, "connection closed without an ACK");
        if let Some(scr_mllp::Frame::Message(ack)) = reader.push(&buf[..n]).into_iter().next() {
            return String::from_utf8(ack).unwrap();
        }
    }
}

pub(crate) fn msa(ack: &str) -> (String, String) {
    let line = ack
        .split('\r')
        .find(|l| l.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    let f: Vec<&str> = line.split('|').collect();
    (f[1].to_owned(), f[2].to_owned())
}

pub(crate) fn oru(
    control_id: &str,
    facility: &str,
    nhs: &str,
    status: &str,
    value: &str,
) -> String {
    [
        format!("MSH|^~\\&|LAB|{facility}|SCR|SCR|20261121100000||ORU^R01|{control_id}|P|2.4"),
        format!("PID|1||{nhs}^^^NHS^NH||BROWN^LINDA||19800404|F"),
        "OBR|1||MLLPCRP1|CRP^C-reactive protein^L|||20261121090000|||||||||||||||||CH".to_string(),
        format!(
            "OBX|1|NM|1988-5^C reactive protein^LN||{value}|mg/L|0-5|H|||{status}|||20261121093000"
        ),
    ]
    .join("\r")
}

/// Registers Linda with an ADT^A28 so that results for her are for a known patient.
pub(crate) fn register_linda(s: &Server) {
    let ack = send(s, &[register_linda_a28(&unique("RL"), "RXK")]);
    assert_eq!(msa(&ack[0]).0, "AA", "{:?}", ack[0]);
}

pub(crate) fn unique(tag: &str) -> String {
    format!("{tag}{}{}", std::process::id() % 10000, now() % 100000)
}

fn crp(s: &Server) -> Vec<serde_json::Value> {
    let b = s
        .get(
            &format!("/Observation?patient={LINDA}&code=http://loinc.org|1988-5"),
            Some(&clinician(s, "M85002")),
        )
        .json();
    of_type(&b, "Observation").into_iter().cloned().collect()
}

fn quarantine(s: &Server) -> String {
    scr_cli_ok(s, &["quarantine", "list"])
}

#[test]
fn mllp_accepted_duplicate_corrected_and_cancelled_results_are_visible_on_the_next_read() {
    for s in servers() {
        register_linda(s);
        let first = unique("MA");
        let acks = send(
            s,
            &[
                oru(&first, "RXK", LINDA, "F", "12"),
                oru(&first, "RXK", LINDA, "F", "12"),
            ],
        );
        assert_eq!(
            msa(&acks[0]),
            ("AA".into(), first.clone()),
            "MSA-2 echoes MSH-10"
        );
        assert_eq!(
            msa(&acks[1]).0,
            "AA",
            "a resent message is acknowledged again"
        );
        let once = crp(s);
        assert_eq!(once.len(), 1, "and applied once");
        assert_eq!(once[0]["valueQuantity"]["value"], 12.0);
        assert_eq!(
            msa(&send(s, &[oru(&unique("MC"), "RXK", LINDA, "C", "9")])[0]).0,
            "AA"
        );
        let corrected = crp(s);
        assert_eq!((corrected.len(), &corrected[0]["id"]), (1, &once[0]["id"]));
        assert_eq!(corrected[0]["valueQuantity"]["value"], 9.0);
        assert_eq!(
            msa(&send(s, &[oru(&unique("MX"), "RXK", LINDA, "X", "9")])[0]).0,
            "AA"
        );
        assert!(crp(s).is_empty(), "a cancelled result is not shown");
    }
}

#[test]
fn mllp_bad_messages_get_ae_or_ar_with_a_reason_and_are_quarantined() {
    for s in servers() {
        let (bad_nhs, unknown) = (unique("BN"), unique("UF"));
        let acks = send(
            s,
            &[
                oru(&bad_nhs, "RXK", "9990000017", "F", "1"),
                oru(&unknown, "ZZZ", LINDA, "F", "1"),
                "this is not HL7".to_string(),
            ],
        );
        assert_eq!(msa(&acks[0]), ("AE".into(), bad_nhs.clone()));
        assert!(
            acks[0].contains("\rERR|"),
            "ERR carries the reason: {:?}",
            acks[0]
        );
        assert_eq!(msa(&acks[1]).0, "AR");
        assert_eq!(msa(&acks[2]).0, "AR");
        let q = quarantine(s);
        assert!(q.contains(&bad_nhs) && q.contains(&unknown), "{q}");
        assert!(
            q.contains("unparseable") || q.contains("not a valid HL7"),
            "{q}"
        );
        assert!(!q.contains("9990000017"), "no NHS number in the reasons");
        // Replayed without a fix, the message is refused again, and says so.
        let id = q
            .lines()
            .find(|l| l.contains(&bad_nhs))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_owned();
        let out = scr_cli(s, &["quarantine", "replay", &id]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&format!("{id}: AE")),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn mllp_an_oversized_message_is_refused_and_the_connection_goes_on() {
    for s in servers() {
        register_linda(s);
        let big_id = unique("BIG");
        let mut big = oru(&big_id, "RXK", LINDA, "F", "1");
        big.push_str(&format!("\rNTE|1||{}", "x".repeat(1_100_000)));
        let after = unique("AFT");
        let acks = send(s, &[big, oru(&after, "RXK", LINDA, "F", "3")]);
        assert_eq!(msa(&acks[0]), ("AR".into(), big_id.clone()));
        assert!(acks[0].contains("exceeds"), "{:?}", acks[0]);
        assert_eq!(msa(&acks[1]), ("AA".into(), after));
        assert!(quarantine(s).contains(&big_id));
    }
}

#[test]
fn mllp_framing_errors_half_sent_messages_and_silent_senders_affect_no_one_else() {
    for s in servers() {
        register_linda(s);
        // A silent sender holds a connection open...
        let _silent = TcpStream::connect(("127.0.0.1", s.mllp_port)).unwrap();
        // ...a sender disconnects mid-message...
        let half_id = unique("HALF");
        {
            let mut half = TcpStream::connect(("127.0.0.1", s.mllp_port)).unwrap();
            let framed = scr_mllp::frame(&oru(&half_id, "RXK", LINDA, "F", "4"));
            half.write_all(&framed[..framed.len() / 2]).unwrap();
        }
        // ...and another sends bytes outside any frame before a good message.
        let good = unique("GOOD");
        let mut stream = TcpStream::connect(("127.0.0.1", s.mllp_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut bytes = b"\r\nnoise outside frames\r\n".to_vec();
        bytes.extend(scr_mllp::frame(&oru(&good, "RXK", LINDA, "F", "5")));
        assert_eq!(msa(&exchange(&mut stream, &bytes)), ("AA".into(), good));
        assert!(
            !quarantine(s).contains(&half_id),
            "a half message is neither applied nor acknowledged"
        );
    }
}

#[test]
fn r_sens_1_a_result_coded_in_a_sensitive_value_set_stays_with_the_trust() {
    for s in servers() {
        register_linda(s);
        // An ordinary chemistry section (CH), but the test is in the sensitive value set.
        let control = unique("SENS");
        let message = [
            format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261121100000||ORU^R01|{control}|P|2.4"),
            format!("PID|1||{LINDA}^^^NHS^NH||BROWN^LINDA||19800404|F"),
            format!(
                "OBR|1||S{control}|STI^Sexual health screen^L|||20261121090000|||||||||||||||||CH"
            ),
            "OBX|1|ST|21613-5^Chlamydia trachomatis DNA^LN||Not detected||||||F|||20261121093000"
                .to_string(),
        ]
        .join("\r");
        assert_eq!(msa(&send(s, &[message])[0]).0, "AA");
        // Linda is not in the decision table, whose patients must not change under it.
        let query = format!("/Observation?patient={LINDA}&code=http://loinc.org|21613-5");
        let trust = s.get(&query, Some(&system(s, "RXK", "system/*.rs"))).json();
        assert!(
            trust["total"].as_u64().unwrap() >= 1,
            "the trust that holds it sees it"
        );
        let gp = s.get(&query, Some(&clinician(s, "M85002"))).json();
        assert_eq!(gp["total"], 0, "no one else does");
        let warned = gp["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["resource"]["resourceType"] == "OperationOutcome");
        assert!(!warned, "and no warning hints at it (R-SENS-4)");
    }
}

/// Binds TAJ to an address the tests never connect from; RXK stays bound to loopback.
fn taj_elsewhere(config: String) -> String {
    let bound = "[[mllp.senders]]\nfacility = \"TAJ\"\naddresses = [\"127.0.0.1\"";
    assert!(
        config.contains(bound),
        "the demo config binds TAJ to loopback"
    );
    config.replace(
        bound,
        "[[mllp.senders]]\nfacility = \"TAJ\"\naddresses = [\"192.0.2.1\"",
    )
}

fn admission(control_id: &str, facility: &str, nhs: &str) -> String {
    [
        format!("MSH|^~\\&|PAS|{facility}|SCR|SCR|20261121100000||ADT^A01|{control_id}|P|2.4"),
        "EVN|A01|20261121100000".to_string(),
        format!("PID|1||{nhs}^^^NHS^NH||BROWN^LINDA||19800404|F"),
        format!("PV1|1|I|WARD 1^BED 1^^{facility}||||||||||||||||V{control_id}|||||||||||||||||||||||||20261121095500"),
    ]
    .join("\r")
}

/// A result from RXK for Linda: `obx3` the test, `obx14` when it was taken (HL7, local time).
fn result_for_linda(control_id: &str, filler: &str, obx3: &str, obx14: &str) -> String {
    [
        format!("MSH|^~\\&|LAB|RXK|SCR|SCR|{obx14}||ORU^R01|{control_id}|P|2.4"),
        format!("PID|1||{LINDA}^^^NHS^NH||BROWN^LINDA||19800404|F"),
        format!("OBR|1||{filler}|CHOL^Cholesterol^L|||{obx14}|||||||||||||||||CH"),
        format!("OBX|1|NM|{obx3}||4.2|mmol/L|0-5|N|||F|||{obx14}"),
    ]
    .join("\r")
}

#[test]
fn item1_r_lr_2_a_spoofed_sending_facility_is_ar_quarantined_and_opens_no_relationship() {
    for s in own_servers("mllp-senders", taj_elsewhere) {
        let taj = clinician(&s, "TAJ");
        let open = |s: &Server| s.get(&format!("/Patient/{LINDA}/$everything"), Some(&taj));
        assert_eq!(open(&s).status, 403, "TAJ has no relationship with Linda");
        // From loopback, RXK's address, claiming to be TAJ: an admission would give every TAJ
        // user a legitimate relationship (R-LR-2) without break glass.
        let id = unique("SPOOF");
        let acks = send(&s, &[admission(&id, "TAJ", LINDA)]);
        assert_eq!(msa(&acks[0]), ("AR".to_owned(), id.clone()), "{}", acks[0]);
        assert!(acks[0].contains("may not send for facility"), "{}", acks[0]);
        assert_eq!(open(&s).status, 403, "the spoof opened no visit");
        let q = quarantine(&s);
        assert!(
            q.lines()
                .any(|l| l.contains(&id) && l.contains("may not send for facility")),
            "kept for review: {q}"
        );
        // RXK from its own address is applied as before.
        register_linda(&s);
        let rxk = unique("RXKOK");
        let acks = send(&s, &[oru(&rxk, "RXK", LINDA, "F", "7")]);
        assert_eq!(msa(&acks[0]).0, "AA", "{}", acks[0]);
    }
}

/// A CA, a server certificate and client certificates, written as PEM files in `dir`.
mod pki {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509Name, X509};
    use std::path::Path;

    pub fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    /// A certificate for `cn`, signed by `issuer` (self-signed when `None`).
    pub fn certificate(
        cn: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        ca: bool,
    ) -> X509 {
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(
            &BigNum::from_u32(rand_serial())
                .unwrap()
                .to_asn1_integer()
                .unwrap(),
        )
        .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
            .unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        if ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
        } else {
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .ip("127.0.0.1")
                .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
            .unwrap();
        b.build()
    }

    fn rand_serial() -> u32 {
        let mut bytes = [0u8; 4];
        openssl::rand::rand_bytes(&mut bytes).unwrap();
        u32::from_le_bytes(bytes) & 0x7fff_ffff
    }

    pub fn write(dir: &Path, name: &str, cert: &X509, key: &PKey<Private>) {
        std::fs::write(dir.join(format!("{name}.pem")), cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn item1_mutual_tls_the_client_certificate_names_the_facility_it_may_send_for() {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
    let (ca_key, server_key, rxk_key, rogue_key) = (pki::key(), pki::key(), pki::key(), pki::key());
    let ca = pki::certificate("SCR test trust CA", &ca_key, None, true);
    let server_cert = pki::certificate("localhost", &server_key, Some((&ca, &ca_key)), false);
    let rxk = pki::certificate("RXK", &rxk_key, Some((&ca, &ca_key)), false);
    // Claims to be RXK, but no trusted authority signed it.
    let rogue = pki::certificate("RXK", &rogue_key, None, false);
    let s = Server::sqlite_prepared("mllp-tls", 0, |dir| {
        pki::write(dir, "ca", &ca, &ca_key);
        pki::write(dir, "mllp-server", &server_cert, &server_key);
        let d = dir.display();
        let path = dir.join("scr.toml");
        // [mllp.tls] goes after the [mllp] table's keys: before the first [[mllp.senders]].
        let config = std::fs::read_to_string(&path).unwrap().replacen(
            "[[mllp.senders]]",
            &format!("[mllp.tls]\ncertificate = \"{d}/mllp-server.pem\"\nprivate_key = \"{d}/mllp-server.key\"\nclient_ca = \"{d}/ca.pem\"\n[[mllp.senders]]"),
            1,
        );
        std::fs::write(&path, config).unwrap();
    });
    let dir = s.dir.clone();
    pki::write(&dir, "rxk", &rxk, &rxk_key);
    pki::write(&dir, "rogue", &rogue, &rogue_key);
    let client = |identity: Option<&str>| {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(dir.join("ca.pem")).unwrap();
        if let Some(name) = identity {
            b.set_certificate_file(dir.join(format!("{name}.pem")), SslFiletype::PEM)
                .unwrap();
            b.set_private_key_file(dir.join(format!("{name}.key")), SslFiletype::PEM)
                .unwrap();
        }
        let tcp = TcpStream::connect(("127.0.0.1", s.mllp_port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        b.build().connect("localhost", tcp)
    };
    // A message over a connection, or None when the connection fails before an ACK.
    let try_send = |identity: Option<&str>, message: &str| -> Option<String> {
        let mut tls = client(identity).ok()?;
        tls.write_all(&scr_mllp::frame(message)).ok()?;
        let mut reader = scr_mllp::FrameReader::new(1 << 20);
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            if let Some(scr_mllp::Frame::Message(ack)) = reader.push(&buf[..n]).into_iter().next() {
                return String::from_utf8(ack).ok();
            }
        }
    };
    let registered =
        try_send(Some("rxk"), &register_linda_a28(&unique("TLSREG"), "RXK")).expect("an ACK");
    assert_eq!(msa(&registered).0, "AA", "{registered}");
    let good = unique("TLSOK");
    let ack = try_send(Some("rxk"), &oru(&good, "RXK", LINDA, "F", "8")).expect("an ACK");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let spoof = unique("TLSTAJ");
    let ack = try_send(Some("rxk"), &admission(&spoof, "TAJ", LINDA)).expect("an ACK");
    assert_eq!(
        msa(&ack).0,
        "AR",
        "RXK's certificate cannot send for TAJ: {ack}"
    );
    assert_eq!(
        try_send(None, &oru(&unique("NOCERT"), "RXK", LINDA, "F", "9")),
        None,
        "no client certificate, no message"
    );
    assert_eq!(
        try_send(
            Some("rogue"),
            &oru(&unique("ROGUE"), "RXK", LINDA, "F", "9")
        ),
        None,
        "a certificate no trusted authority signed, no message"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", s.mllp_port))
            .and_then(|mut plain| {
                plain.set_read_timeout(Some(Duration::from_secs(30)))?;
                plain.write_all(&scr_mllp::frame(&oru(
                    &unique("PLAIN"),
                    "RXK",
                    LINDA,
                    "F",
                    "9",
                )))?;
                let mut buf = [0u8; 64];
                let n = plain.read(&mut buf)?;
                Ok(n > 0 && buf[0] == scr_mllp::codec::START)
            })
            .map_or(true, |acked| !acked),
        "plain TCP gets no ACK"
    );
}

/// Registers people at RXK with the same family name and day of birth (a visit each, so RXK
/// clinicians may open them).
fn register_twins(s: &Server, family: &str, birth: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stem = 999_100_000u64 + (now() as u64 % 50_000) * 10;
    while out.len() < 2 {
        stem += 1;
        let Some(nhs) = scr_fhir::nhs_number::with_check_digit(&stem.to_string()) else {
            continue;
        };
        let id = format!("{}{}", unique("REG"), out.len());
        let msg = [
            format!("MSH|^~\\&|PAS|RXK|SCR|SCR|20261121100000||ADT^A04|{id}|P|2.4"),
            "EVN|A04|20261121100000".to_string(),
            format!("PID|1||{nhs}^^^NHS^NH||{family}^ALEX||{birth}|U"),
            format!("PV1|1|O|CLINIC 1^^^RXK||||||||||||||||V{id}|||||||||||||||||||||||||20261121095500"),
        ]
        .join("\r");
        let acks = send(s, &[msg]);
        assert_eq!(msa(&acks[0]).0, "AA", "{}", acks[0]);
        out.push(nhs);
    }
    out
}

#[test]
fn item3_patient_search_needs_an_exact_birth_date_takes_wildcards_literally_and_opens_one_page() {
    for s in servers() {
        let t = clinician(s, "RXK");
        // Family alone, or with a range of birth dates, would sweep the region.
        for q in [
            "/Patient?family=%25&birthdate=ge1900",
            "/Patient?family=smith",
            "/Patient?family=smith&birthdate=1970",
            "/Patient?family=smith&birthdate=lt2000-01-01",
        ] {
            let r = s.get(q, Some(&t));
            assert_eq!(r.status, 400, "{q}");
            assert!(
                r.json().to_string().contains("birthdate"),
                "{q}: names the parameter"
            );
        }
        // `%` and `_` are letters, not wildcards.
        for q in [
            "/Patient?family=%25&birthdate=1970-01-02",
            "/Patient?family=S_ITH&birthdate=1970-01-02",
            "/Patient?family=_&birthdate=1970-01-02",
        ] {
            let b = s.get(q, Some(&t)).json();
            assert_eq!(b["total"], 0, "{q}: {b}");
        }
        let family = format!("PAGE{}", unique("").trim_start_matches('0'));
        let twins = register_twins(s, &family, "19500505");
        let b = s
            .get(
                &format!("/Patient?family={family}&birthdate=1950-05-05"),
                Some(&t),
            )
            .json();
        assert_eq!(of_type(&b, "Patient").len(), 2, "{b}");
        // One page of one: one person opened, and a warning rather than a silent cut.
        let b = s
            .get(
                &format!("/Patient?family={family}&birthdate=1950-05-05&_count=1"),
                Some(&t),
            )
            .json();
        let found = of_type(&b, "Patient");
        assert_eq!(found.len(), 1, "{b}");
        assert!(twins.contains(&found[0]["id"].as_str().unwrap().to_owned()));
        assert!(b["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next"));
        assert!(warnings(&b).contains("refine the search"), "{b}");
    }
}

fn observations(s: &Server, query: &str) -> Vec<serde_json::Value> {
    let b = s
        .get(
            &format!("/Observation?patient={LINDA}&{query}"),
            Some(&clinician(s, "M85002")),
        )
        .json();
    of_type(&b, "Observation").into_iter().cloned().collect()
}

#[test]
fn item9_hl7_local_time_bst_is_served_with_its_offset_and_found_by_utc_searches() {
    for s in servers() {
        register_linda(s);
        // 09:30 on 1 July 2020, local time at RXK: 08:30 UTC.
        let control = unique("BST");
        let message = result_for_linda(
            &control,
            &format!("F{control}"),
            "2093-3^Cholesterol^LN",
            "20200701093000",
        );
        assert_eq!(msa(&send(s, &[message])[0]), ("AA".into(), control));
        let code = "code=http://loinc.org|2093-3";
        let found = observations(s, code);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["effectiveDateTime"], "2020-07-01T09:30:00+01:00");
        assert_eq!(found[0]["issued"], "2020-07-01T09:30:00+01:00");
        let count = |date: &str| observations(s, &format!("{code}&date={date}")).len();
        assert_eq!(
            count("lt2020-07-01T09:00:00Z"),
            1,
            "08:30Z is before 09:00Z"
        );
        assert_eq!(count("ge2020-07-01T09:00:00Z"), 0);
        assert_eq!(count("2020-07-01T08:30:00Z"), 1);
        assert_eq!(count("ge2020-07-01T09:30:00%2B01:00"), 1);
        assert_eq!(count("2020-07-01"), 1);
        assert_eq!(count("2020-06-30"), 0);
        // ap: 10% of the gap to now (years) either side of 2 July reaches 1 July; a year
        // later does not.
        assert_eq!(count("ap2020-07-02"), 1);
        assert_eq!(count("eq2020-07-02"), 0);
        assert_eq!(count("ap2021-07-01"), 0);
    }
}

#[test]
fn item9_hl7_local_time_in_the_spring_gap_and_autumn_overlap() {
    for s in servers() {
        register_linda(s);
        let (gap, overlap) = (unique("GAP"), unique("OVL"));
        let acks = send(
            s,
            &[
                result_for_linda(&gap, &format!("F{gap}"), "2085-9^HDL^LN", "20260329013000"),
                result_for_linda(
                    &overlap,
                    &format!("F{overlap}"),
                    "13457-7^LDL^LN",
                    "20261025013000",
                ),
            ],
        );
        assert_eq!(msa(&acks[0]).0, "AA");
        assert_eq!(msa(&acks[1]).0, "AA");
        // 01:30 does not exist on 29 March: moved forward to 02:30 BST.
        let hdl = observations(s, "code=http://loinc.org|2085-9");
        assert_eq!(hdl[0]["effectiveDateTime"], "2026-03-29T02:30:00+01:00");
        // 01:30 happens twice on 25 October: the earlier, BST.
        let ldl = observations(s, "code=http://loinc.org|13457-7");
        assert_eq!(ldl[0]["effectiveDateTime"], "2026-10-25T01:30:00+01:00");
    }
}

#[test]
fn item10_local_code_kept_and_searchable_in_the_facility_local_system() {
    for s in servers() {
        register_linda(s);
        let control = unique("LOC");
        let message = result_for_linda(
            &control,
            &format!("F{control}"),
            "LCHOL^Local cholesterol^L",
            "20261120093000",
        );
        assert_eq!(msa(&send(s, &[message])[0]).0, "AA");
        let system = "https://scr.example.nhs.uk/CodeSystem/local-RXK";
        let found = observations(s, &format!("code={system}|LCHOL"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0]["code"]["coding"][0],
            serde_json::json!({"system": system, "code": "LCHOL", "display": "Local cholesterol"})
        );
    }
}

#[test]
fn item10_a_result_for_an_unknown_patient_is_ae_quarantined_and_replayed_once_registered() {
    for s in servers() {
        // A valid NHS number no source knows.
        let unknown = "9991234519";
        let control = unique("UP");
        let message = [
            format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261121100000||ORU^R01|{control}|P|2.4"),
            format!("PID|1||{unknown}^^^NHS^NH||NOBODY^KNOWN||19900101|M"),
            format!("OBR|1||U{control}|GLU^Glucose^L|||20261121090000|||||||||||||||||CH"),
            "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L|3.0-7.8|N|||F|||20261121093000".to_string(),
        ]
        .join("\r");
        let ack = &send(s, &[message])[0];
        assert_eq!(msa(ack), ("AE".into(), control.clone()));
        assert!(ack.contains("\rERR|^^^204&"), "{ack:?}");
        assert!(
            !ack.contains(unknown) && !ack.contains("NOBODY"),
            "no patient data: {ack:?}"
        );
        let q = quarantine(s);
        let line = q
            .lines()
            .find(|l| l.contains(&control))
            .unwrap_or_else(|| panic!("not quarantined: {q}"));
        assert!(line.contains("AE") && line.contains("unknown"), "{line}");
        assert!(
            !q.contains(unknown),
            "no NHS number in the quarantine listing"
        );
        // Not applied: no record for them.
        let system_token = system(s, "RXK", "system/*.rs");
        let search = s.get(
            &format!("/Observation?patient={unknown}"),
            Some(&system_token),
        );
        let shown = if search.status == 200 {
            of_type(&search.json(), "Observation").len()
        } else {
            0
        };
        assert_eq!(shown, 0);
        // The trust registers them; the operator replays the result.
        let a28 = [
            format!(
                "MSH|^~\\&|PAS|RXK|SCR|SCR|20261121080000||ADT^A28|{}|P|2.4",
                unique("UA")
            ),
            format!("PID|1||{unknown}^^^NHS^NH||NOBODY^KNOWN||19900101|M"),
        ]
        .join("\r");
        assert_eq!(msa(&send(s, &[a28])[0]).0, "AA");
        let id = line.split_whitespace().next().unwrap().to_owned();
        let out = scr_cli(s, &["quarantine", "replay", &id]);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(printed.starts_with(&format!("{id}: AA")), "{printed}");
        let b = s
            .get(
                &format!("/Observation?patient={unknown}"),
                Some(&system_token),
            )
            .json();
        assert_eq!(of_type(&b, "Observation").len(), 1);
    }
}
