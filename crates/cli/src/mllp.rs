//! The MLLP listener wired to the HL7 v2 apply step: `AA` only after a message's effect is
//! committed to the store, `AE`/`AR` kept in the quarantine, duplicates acknowledged and applied
//! once (`scr_hl7_ingest::ingest`), and every message checked against the facilities its
//! connection may send for (`[[mllp.senders]]`).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use scr_hl7_ingest::ingest::{receive, reject_too_large, Hl7Config};
use scr_hl7_ingest::senders::{AllowedSender, Origin, Senders};
use scr_mllp::{ListenerConfig, MessageHandler, Peer};
use scr_server::config::Config;

/// The name this receiver gives itself in ACKs (MSH-3).
const RECEIVING_APPLICATION: &str = "SCR";

struct Hl7Handler {
    pool: scr_db::DbPool,
    config: Hl7Config,
    senders: Senders,
}

fn origin(peer: &Peer) -> Origin {
    Origin {
        address: peer.address,
        certificate: peer.certificate.clone(),
    }
}

impl MessageHandler for Hl7Handler {
    fn message(&self, peer: &Peer, raw: &str) -> Result<String, String> {
        let (_, now) = scr_fhir::build::today_and_now();
        counted(receive(
            &self.pool,
            &origin(peer),
            &self.senders,
            raw,
            &self.config,
            &now,
        ))
    }

    fn too_large(
        &self,
        peer: &Peer,
        prefix: &str,
        size: usize,
        limit: usize,
    ) -> Result<String, String> {
        let (_, now) = scr_fhir::build::today_and_now();
        counted(reject_too_large(
            &self.pool,
            &origin(peer),
            &self.senders,
            prefix,
            size,
            limit,
            &now,
        ))
    }
}

/// The ACK to send, counted by its code for `/metrics` (`scr_mllp_messages_total{ack}`), or the
/// failure that leaves the message unacknowledged.
fn counted(
    result: Result<scr_hl7_ingest::ingest::Ack, scr_store::StoreError>,
) -> Result<String, String> {
    match result {
        Ok(ack) => {
            metrics::counter!("scr_mllp_messages_total", "ack" => ack.code.as_str()).increment(1);
            Ok(ack.to_hl7(RECEIVING_APPLICATION))
        }
        Err(e) => {
            metrics::counter!("scr_mllp_unacknowledged_total").increment(1);
            Err(e.to_string())
        }
    }
}

/// `[[mllp.senders]]` as the feed checks them (the configuration was validated at load).
fn senders(config: &Config) -> Result<Senders, String> {
    let allowed = config
        .mllp
        .senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let addresses = s
                .addresses
                .iter()
                .map(|a| a.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("mllp.senders[{i}].addresses: {e}"))?;
            Ok(AllowedSender {
                facility: s.facility.to_ascii_uppercase(),
                addresses,
                certificate: s.certificate.clone(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Senders {
        allowed,
        quarantine_cap: config.mllp.quarantine_cap_per_sender,
    })
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
    let tls = match &config.mllp.tls {
        None => None,
        Some(t) => Some(Arc::new(
            scr_mllp::tls_acceptor(&t.certificate, &t.private_key, &t.client_ca)
                .map_err(|e| format!("mllp.tls: {e}"))?,
        )),
    };
    let listener = TcpListener::bind(bind).map_err(|e| format!("mllp.bind {bind}: {e}"))?;
    let handler = Arc::new(Hl7Handler {
        pool: store.pool().clone(),
        config: crate::ingest::hl7_config(config)?,
        senders: senders(config)?,
    });
    let listener_config = ListenerConfig {
        max_message_bytes: config.mllp.max_message_bytes,
        idle_timeout: Duration::from_secs(config.mllp.idle_timeout_seconds),
        message_timeout: Duration::from_secs(config.mllp.message_timeout_seconds),
        max_connections: config.mllp.max_connections,
        tls,
    };
    Ok(Some(std::thread::spawn(move || {
        if let Err(e) = scr_mllp::serve(listener, listener_config, handler) {
            log::error!("MLLP listener stopped: {e}");
        }
    })))
}
