//! The MLLP listener wired to the HL7 v2 apply step: `AA` only after a message's effect is
//! committed to the store, `AE`/`AR` kept in the quarantine, duplicates acknowledged and applied
//! once (`scr_source_hl7v2::ingest`).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use scr_mllp::{ListenerConfig, MessageHandler};
use scr_server::config::Config;
use scr_source_hl7v2::ingest::{ingest_message, reject_too_large, Hl7Config};

/// The name this receiver gives itself in ACKs (MSH-3).
const RECEIVING_APPLICATION: &str = "SCR";

struct Hl7Handler {
    pool: scr_db::DbPool,
    config: Hl7Config,
}

impl MessageHandler for Hl7Handler {
    fn message(&self, raw: &str) -> Result<String, String> {
        let (_, now) = scr_fhir::build::today_and_now();
        ingest_message(&self.pool, raw, &self.config, &now)
            .map(|ack| ack.to_hl7(RECEIVING_APPLICATION))
            .map_err(|e| e.to_string())
    }

    fn too_large(&self, prefix: &str, size: usize, limit: usize) -> Result<String, String> {
        let (_, now) = scr_fhir::build::today_and_now();
        reject_too_large(&self.pool, prefix, size, limit, &now)
            .map(|ack| ack.to_hl7(RECEIVING_APPLICATION))
            .map_err(|e| e.to_string())
    }
}

/// Binds the configured address and serves on a thread of its own. `None` when no
/// `mllp.bind` is configured.
pub fn spawn(
    config: &Config,
    store: &scr_store::Store,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    let Some(bind) = &config.mllp.bind else {
        return Ok(None);
    };
    let listener = TcpListener::bind(bind).map_err(|e| format!("mllp.bind {bind}: {e}"))?;
    let handler = Arc::new(Hl7Handler {
        pool: store.pool().clone(),
        config: crate::ingest::hl7_config(config)?,
    });
    let listener_config = ListenerConfig {
        max_message_bytes: config.mllp.max_message_bytes,
        idle_timeout: Duration::from_secs(config.mllp.idle_timeout_seconds),
        max_connections: config.mllp.max_connections,
    };
    Ok(Some(std::thread::spawn(move || {
        if let Err(e) = scr_mllp::serve(listener, listener_config, handler) {
            log::error!("MLLP listener stopped: {e}");
        }
    })))
}
