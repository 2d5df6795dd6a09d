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

/// A progress line on standard error for large files: redrawn in place on a terminal, a line
/// every tenth otherwise (so CI logs stay short).
struct Progress {
    total: usize,
    tty: bool,
    last_tenth: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    fn show(&mut self, done: usize, started: std::time::Instant) {
        if self.total < 1000 || done == 0 {
            return;
        }
        let tenth = done * 10 / self.total;
        if self.tty && done.is_multiple_of(250) {
            eprint!("\r{}", Self::line(done, self.total, started));
        } else if !self.tty && tenth > self.last_tenth {
            self.last_tenth = tenth;
            eprintln!("{}", Self::line(done, self.total, started));
        }
    }

    fn finish(&self, total: usize, started: std::time::Instant) {
        if total >= 1000 {
            eprintln!(
                "{}{}",
                if self.tty { "\r" } else { "" },
                Self::line(total, total, started)
            );
        }
    }

    fn line(done: usize, total: usize, started: std::time::Instant) -> String {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let width = 30;
        let filled = done * width / total.max(1);
        format!(
            "[{}{}] {done}/{total} messages, {:.0}/s",
            "#".repeat(filled),
            "-".repeat(width - filled),
            done as f64 / secs
        )
    }
}

pub fn hl7_config(config: &Config) -> Result<scr_hl7_ingest::ingest::Hl7Config, String> {
    let sensitive = scr_server::state::policy_codes(config)
        .map_err(|e| e.to_string())?
        .sensitive;
    Ok(scr_hl7_ingest::ingest::Hl7Config {
        facilities: config.hl7.facilities().map_err(|e| e.to_string())?,
        sensitive_services: config.hl7.sensitive_services.clone(),
        sensitive_codes: sensitive,
    })
}

/// Applies every message in `text` to the store.
pub fn ingest_text(
    pool: &scr_db::DbPool,
    cfg: &scr_hl7_ingest::ingest::Hl7Config,
    text: &str,
) -> Result<Summary, String> {
    use scr_hl7_ingest::ingest::{ingest_message, split_messages, AckCode};
    let mut summary = Summary::default();
    let messages = split_messages(text);
    let total = messages.len();
    let started = std::time::Instant::now();
    let mut progress = Progress::new(total);
    for (done, message) in messages.into_iter().enumerate() {
        progress.show(done, started);
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
    progress.finish(total, started);
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
