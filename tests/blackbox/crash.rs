//! Issue 4's crash test: SIGKILL the server while a sender streams thousands of messages over
//! MLLP, restart it, resend what was not acknowledged (and a few that were, as an unsure engine
//! does); every acknowledged message is then present exactly once and nothing is doubled.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;

use crate::harness::*;

const MESSAGES: usize = 2000;

fn message(i: usize) -> (String, String) {
    let control = format!("CRASH{i:06}");
    let text = [
        format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261122100000||ORU^R01|{control}|P|2.4"),
        "PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F".to_string(),
        format!("OBR|1||CRASHORD{i:06}|GLU^Glucose^L|||20261122090000|||||||||||||||||CH"),
        format!(
            "OBX|1|NM|2345-7^Glucose^LN||{}|mmol/L|3.0-7.8|N|||F|||20261122093000",
            4 + i % 5
        ),
    ]
    .join("\r");
    (control, text)
}

/// Sends messages in order on one connection until done or the connection drops; returns
/// the control ids acknowledged AA.
fn stream(
    port: u16,
    items: &[(String, String)],
    acked: &Mutex<BTreeSet<String>>,
    progress: &AtomicUsize,
) {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = scr_mllp::FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    for (control, text) in items {
        if conn.write_all(&scr_mllp::frame(text)).is_err() {
            return;
        }
        let ack = loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(scr_mllp::Frame::Message(a)) =
                        reader.push(&buf[..n]).into_iter().next()
                    {
                        break String::from_utf8_lossy(&a).into_owned();
                    }
                }
            }
        };
        if ack.contains(&format!("MSA|AA|{control}")) {
            acked.lock().unwrap().insert(control.clone());
            progress.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut scr_db::DbConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

/// On SQLite and on PostgreSQL (issue 14: no lost message when `scr` is killed, both backends).
#[test]
fn mllp_sigkill_mid_stream_then_resend_loses_and_doubles_nothing() {
    for server in own_servers("crash", |c| c) {
        sigkill_mid_stream(server);
    }
}

fn sigkill_mid_stream(server: Server) {
    let items: Vec<(String, String)> = (0..MESSAGES).map(message).collect();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (items, acked, progress, port) = (
            items.clone(),
            Arc::clone(&acked),
            Arc::clone(&progress),
            server.mllp_port,
        );
        std::thread::spawn(move || stream(port, &items, &acked, &progress))
    };
    // Kill once a quarter is acknowledged; never wait forever on a sender that stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while progress.load(Ordering::SeqCst) < MESSAGES / 4
        && !sender.is_finished()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    sender.join().unwrap();
    let acked_before: BTreeSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked_before.len() < MESSAGES,
        "the kill landed mid-stream ({} acknowledged)",
        acked_before.len()
    );

    let restarted = server.restart();
    // Resend everything not acknowledged, plus the last ten that were.
    let last_acked: Vec<&String> = acked_before.iter().rev().take(10).collect();
    let resend: Vec<(String, String)> = items
        .iter()
        .filter(|(c, _)| !acked_before.contains(c) || last_acked.contains(&c))
        .cloned()
        .collect();
    let progress = AtomicUsize::new(0);
    stream(restarted.mllp_port, &resend, &acked, &progress);
    assert_eq!(
        acked.lock().unwrap().len(),
        MESSAGES,
        "every message acknowledged after the resend"
    );

    let pool = scr_db::open_pool(
        "store",
        &restarted.store_url,
        &scr_db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut conn = pool.get().unwrap();
    let applied = count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM hl7_message WHERE applied = 1 AND control_id LIKE 'CRASH%'",
    );
    let distinct = count(&mut conn, "SELECT COUNT(DISTINCT control_id) AS n FROM hl7_message WHERE applied = 1 AND control_id LIKE 'CRASH%'");
    let results = count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM hl7_observation WHERE filler_order LIKE 'CRASHORD%'",
    );
    assert_eq!(
        (applied, distinct, results),
        (MESSAGES as i64, MESSAGES as i64, MESSAGES as i64),
        "{}: each message applied exactly once",
        restarted.name
    );
    let b = restarted
        .get(
            "/Observation?patient=9990000018&code=http://loinc.org|2345-7&_summary=count",
            Some(&clinician(&restarted, "RXK")),
        )
        .json();
    assert_eq!(
        b["total"].as_u64(),
        Some(MESSAGES as u64),
        "{}: and served once each",
        restarted.name
    );
}
