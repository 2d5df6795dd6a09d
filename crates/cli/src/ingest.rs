//! `scr ingest hl7 FILE...`: loads HL7 v2 messages through the same apply step the MLLP listener
//! will use, idempotently (a message already applied is acknowledged again and not re-applied).

use std::path::PathBuf;

use clap::Subcommand;

use scr_server::config::Config;

#[derive(Subcommand)]
pub enum IngestCommand {
    /// HL7 v2.4 messages, one after another (a line starting `MSH|` begins each) or MLLP-framed.
    Hl7 {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        files: Vec<PathBuf>,
    },
}

/// Counts of acknowledgement codes over one ingest.
#[derive(Debug, Default)]
pub struct Summary {
    pub accepted: usize,
    pub duplicates: usize,
    pub errors: usize,
    pub rejected: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accepted (AA), of which {} duplicates applied before; {} application errors (AE) and {} rejected (AR) kept in quarantine",
            self.accepted, self.duplicates, self.errors, self.rejected
        )
    }
}

pub fn hl7_config(config: &Config) -> Result<scr_source_hl7v2::ingest::Hl7Config, String> {
    let sensitive = scr_server::state::policy_codes(config)
        .map_err(|e| e.to_string())?
        .sensitive;
    Ok(scr_source_hl7v2::ingest::Hl7Config {
        facilities: config.hl7.facilities.clone(),
        sensitive_services: config.hl7.sensitive_services.clone(),
        sensitive_codes: sensitive,
    })
}

/// Applies every message in `text` to the store.
pub fn ingest_text(
    pool: &scr_db::DbPool,
    cfg: &scr_source_hl7v2::ingest::Hl7Config,
    text: &str,
) -> Result<Summary, String> {
    use scr_source_hl7v2::ingest::{ingest_message, split_messages, AckCode};
    let mut summary = Summary::default();
    for message in split_messages(text) {
        let (_, now) = scr_fhir::build::today_and_now();
        let ack = ingest_message(pool, &message, cfg, &now)
            .map_err(|e| format!("the store failed; nothing more was acknowledged: {e}"))?;
        match ack.code {
            AckCode::AA if ack.duplicate => {
                summary.accepted += 1;
                summary.duplicates += 1;
            }
            AckCode::AA => summary.accepted += 1,
            AckCode::AE => summary.errors += 1,
            AckCode::AR => summary.rejected += 1,
        }
    }
    Ok(summary)
}

pub fn run(command: IngestCommand) -> Result<(), String> {
    match command {
        IngestCommand::Hl7 { config, files } => {
            let config = Config::load(&config).map_err(|e| e.to_string())?;
            let store = scr_store::Store::open(&config.store.url, 2).map_err(|e| e.to_string())?;
            let cfg = hl7_config(&config)?;
            for f in &files {
                let text =
                    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let summary = ingest_text(store.pool(), &cfg, &text)?;
                println!("{}: {summary}", f.display());
            }
            Ok(())
        }
    }
}
