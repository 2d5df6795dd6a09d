//! The audit chain's signed checkpoints (R-AUD-3, docs/audit.md): `scr audit verify`, `scr audit
//! checkpoint`, and the thread with which `scr serve` checkpoints the chain's head periodically.

use std::path::Path;
use std::time::Duration;

use scr_server::config::Config;
use scr_store::checkpoint::{self, CheckpointError, CheckpointKey, Checkpointer};
use scr_store::Store;

fn now() -> String {
    scr_fhir::build::today_and_now().1
}

/// An error, naming the configuration key of the key or file it is about.
fn keyed(e: &CheckpointError) -> String {
    let key = match e {
        CheckpointError::Key { .. } => "audit.checkpoint_key_file: ",
        CheckpointError::File { .. } => "audit.checkpoint_file: ",
        _ => "",
    };
    format!("{key}{}", scr_store::error_chain(e))
}

const NOT_CONFIGURED: &str = "no checkpoint key is configured (audit.checkpoint_key_file, audit.checkpoint_file): the chain shows a record altered, inserted or removed, but not that the newest records were removed, nor a chain recomputed from the start by someone with database access";

/// Opens the key (creating it if missing) and the checkpoint file, then checkpoints the chain's
/// head at once and every `audit.checkpoint_interval_seconds` on a thread of its own (when it
/// grew). A key that cannot be read or created stops the start; a checkpoint that cannot be
/// written is logged as an error, and tried again at the next interval.
pub fn spawn(config: &Config, store: &Store) -> Result<(), String> {
    let Some((key_file, file)) = config.audit.checkpoints() else {
        log::warn!("audit: {NOT_CONFIGURED}");
        return Ok(());
    };
    let (mut writer, created) = Checkpointer::open(key_file, file).map_err(|e| keyed(&e))?;
    if created {
        log::info!(
            "audit: created the checkpoint signing key at {}",
            key_file.display()
        );
    }
    let interval = Duration::from_secs(config.audit.checkpoint_interval_seconds);
    let store = store.clone();
    std::thread::Builder::new()
        .name("audit-checkpoint".into())
        .spawn(move || loop {
            checkpoint_once(&mut writer, &store);
            std::thread::sleep(interval);
        })
        .map_err(|e| format!("cannot start the audit checkpoint thread: {e}"))?;
    Ok(())
}

fn checkpoint_once(writer: &mut Checkpointer, store: &Store) {
    let written = store
        .conn()
        .map_err(CheckpointError::from)
        .and_then(|mut conn| writer.checkpoint(&mut conn, &now(), false));
    match written {
        Ok(Some(c)) => log::info!("audit: checkpoint signed at record {}", c.seq),
        Ok(None) => {}
        Err(e) => log::error!("audit: checkpoint not written: {}", keyed(&e)),
    }
}

/// `scr audit checkpoint`: signs the chain's head now, after checking that it follows from the
/// last checkpoint.
pub fn checkpoint(config: &Config) -> Result<(), String> {
    let Some((key_file, file)) = config.audit.checkpoints() else {
        return Err("audit.checkpoint_key_file: not configured; set audit.checkpoint_key_file and audit.checkpoint_file (docs/audit.md)".into());
    };
    let store = Store::open(&config.store.url, 1).map_err(|e| scr_store::error_chain(&e))?;
    let mut conn = store.conn().map_err(|e| scr_store::error_chain(&e))?;
    let (mut writer, created) = Checkpointer::open(key_file, file).map_err(|e| keyed(&e))?;
    if created {
        println!("created the checkpoint signing key {}", key_file.display());
    }
    let c = writer
        .checkpoint(&mut conn, &now(), true)
        .map_err(|e| keyed(&e))?
        .ok_or("no checkpoint was written")?;
    println!(
        "checkpoint written to {}: record {}, hash {}, at {}",
        file.display(),
        c.seq,
        c.hash,
        c.time
    );
    Ok(())
}

fn failed(problems: &[String]) -> String {
    format!(
        "audit trail verification failed:\n  {}",
        problems.join("\n  ")
    )
}

/// `scr audit verify`: the chain from the start (every column), every checkpoint's signature,
/// every checkpoint's record and hash, and that the trail reaches the latest checkpoint. The
/// last line printed on success is `audit chain intact: N records`.
pub fn verify(config: &Config) -> Result<(), String> {
    let store = Store::open(&config.store.url, 1).map_err(|e| scr_store::error_chain(&e))?;
    let mut conn = store.conn().map_err(|e| scr_store::error_chain(&e))?;
    let Some((key_file, file)) = config.audit.checkpoints() else {
        return verify_chain_only(&mut conn, NOT_CONFIGURED);
    };
    let nothing_written = std::fs::metadata(file).map_or(true, |m| m.len() == 0);
    if !key_file.exists() && nothing_written {
        // Before the first start: no key, no checkpoint. Not a failure, but said plainly.
        let warning = format!(
            "no checkpoint has been written yet (the key {} does not exist yet; the server creates it at start, or run `scr audit checkpoint`): removal of the newest records, or a recomputed chain, cannot be detected until one is",
            key_file.display()
        );
        return verify_chain_only(&mut conn, &warning);
    }
    let key = CheckpointKey::load(key_file).map_err(|e| keyed(&e))?;
    let v = checkpoint::verify(&mut conn, &key, file).map_err(|e| keyed(&e))?;
    let problems = v.problems(file);
    if !problems.is_empty() {
        return Err(failed(&problems));
    }
    print_checkpoints(&v, file, config.audit.checkpoint_interval_seconds);
    print_legacy(v.chain.legacy_rows);
    println!("audit chain intact: {} records", v.chain.rows);
    Ok(())
}

/// The chain alone, with a warning of what it cannot show.
fn verify_chain_only(conn: &mut scr_store::DbConnection, warning: &str) -> Result<(), String> {
    let report = scr_store::audit::verify_chain(conn).map_err(|e| scr_store::error_chain(&e))?;
    let problems = report.problems();
    if !problems.is_empty() {
        return Err(failed(&problems));
    }
    println!("warning: {warning}");
    print_legacy(report.legacy_rows);
    println!("audit chain intact: {} records", report.rows);
    Ok(())
}

fn print_checkpoints(v: &checkpoint::Verification, file: &Path, interval: u64) {
    match &v.latest {
        Some(c) => {
            println!(
                "checkpoints: {} signed checkpoint(s) in {} verify with key {}; the latest covers record {} (signed {})",
                v.valid,
                file.display(),
                c.key,
                c.seq,
                c.time
            );
            let head = v.chain.head.as_ref().map_or(0, |(seq, _)| *seq);
            if head > c.seq {
                println!(
                    "{} record(s) after the latest checkpoint are covered by the chain only, until the next checkpoint",
                    head - c.seq
                );
            }
        }
        None => println!(
            "warning: no signed checkpoint in {}{} yet: removal of the newest records, or a recomputed chain, cannot be detected until one is written (the server writes one at start and every {interval} s; `scr audit checkpoint` writes one now)",
            file.display(),
            if v.no_file { " (no such file)" } else { "" }
        ),
    }
}

fn print_legacy(rows: u64) {
    if rows > 0 {
        println!(
            "note: the first {rows} record(s) were written before hash version 2: their hashes cover their JSON but not their search columns (docs/audit.md)"
        );
    }
}
