//! Sustained-ingest load generator for the MLLP listener (a benchmark, not a test).
//!
//! `cargo run --release -p scr-mllp --example mllp_load -- 127.0.0.1:2575 --connections 8 --messages 20000`
//!
//! Registers the fixture patient with an ADT^A28 (a result for a patient never seen is AE), then
//! opens the connections, sends ORU^R01 results for her round-robin (each message a new result
//! with its own control id and order number), waits for every ACK as an integration engine does,
//! and prints messages per second and ACK latency percentiles. Exits non-zero if any ACK is not
//! AA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn message(run: u128, i: usize) -> String {
    [
        format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261125100000||ORU^R01|L{run}{i:08}|P|2.4"),
        "PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F".to_string(),
        format!(
            "OBR|1||LOAD{run}{i:08}|UE^Urea and electrolytes^L|||20261125090000|||||||||||||||||CH"
        ),
        format!(
            "OBX|1|NM|2951-2^Sodium^LN||{}|mmol/L|133-146|N|||F|||20261125093000",
            133 + i % 14
        ),
        format!(
            "OBX|2|NM|2823-3^Potassium^LN||4.{}|mmol/L|3.5-5.3|N|||F|||20261125093000",
            i % 10
        ),
    ]
    .join("\r")
}

/// The fixture patient's ADT^A28, sent once before the results.
fn registration(run: u128) -> String {
    [
        format!("MSH|^~\\&|PAS|RXK|SCR|SCR|20261125080000||ADT^A28|R{run}|P|2.4"),
        "PID|1||9990000018^^^NHS^NH||SMITH^JANE||19700102|F".to_string(),
    ]
    .join("\r")
}

fn register(addr: &str, run: u128) -> Result<(), String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
    conn.write_all(&scr_mllp::frame(&registration(run)))
        .map_err(|e| e.to_string())?;
    let mut reader = scr_mllp::FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if let Some(scr_mllp::Frame::Message(a)) = reader.push(&buf[..n]).into_iter().next() {
            let ack = String::from_utf8_lossy(&a).into_owned();
            return if ack.contains("MSA|AA|") {
                Ok(())
            } else {
                Err(format!("registration not AA: {}", ack.replace('\r', " | ")))
            };
        }
    }
}

fn worker(addr: String, indices: Vec<usize>, run: u128) -> Result<Vec<Duration>, String> {
    let mut conn = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut reader = scr_mllp::FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    let mut latencies = Vec::with_capacity(indices.len());
    for i in indices {
        let sent = Instant::now();
        conn.write_all(&scr_mllp::frame(&message(run, i)))
            .map_err(|e| e.to_string())?;
        let ack = loop {
            let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            if let Some(scr_mllp::Frame::Message(a)) = reader.push(&buf[..n]).into_iter().next() {
                break String::from_utf8_lossy(&a).into_owned();
            }
        };
        if !ack.contains("MSA|AA|") {
            return Err(format!("not AA: {}", ack.replace('\r', " | ")));
        }
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2575".into());
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|p| args.get(p + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (connections, messages) = (flag("--connections", 1), flag("--messages", 5000));
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    if let Err(e) = register(&addr, run) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let indices: Vec<usize> = (c..messages).step_by(connections).collect();
            let addr = addr.clone();
            std::thread::spawn(move || worker(addr, indices, run))
        })
        .collect();
    let mut all = Vec::with_capacity(messages);
    for h in handles {
        match h.join().expect("worker panicked") {
            Ok(l) => all.extend(l),
            Err(e) => {
                eprintln!("mllp_load: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{messages} messages over {connections} connection(s) in {secs:.2} s: {:.0} messages/s; ACK latency p50 {:.2} ms, p99 {:.2} ms",
        messages as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}
