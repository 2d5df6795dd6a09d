//! `scr`: the shared care record facade's one binary.

mod checkpoints;
mod demo;
mod generate;
mod health;
mod ingest;
mod mllp;
mod seed;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: a request builds and drops thousands of small JSON values
/// on whichever worker thread it runs, and glibc's per-thread arenas spent about 40% of the
/// facade's CPU in malloc, free and consolidation under load (perf, `$everything` at 32
/// connections). See docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use scr_server::config::Config;

#[derive(Parser)]
#[command(
    name = "scr",
    version,
    about = "FHIR R4 facade for a regional shared care record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve FHIR R4 with the given configuration.
    Serve {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        /// Stop when standard input closes (test harnesses use this so no server outlives them).
        #[arg(long, hide = true)]
        exit_on_stdin_close: bool,
    },
    /// Create (once) a demo data folder with synthetic sources, then serve it on localhost.
    Demo(demo::DemoArgs),
    /// Fill the configured GP and social care replicas with synthetic data and ingest a synthetic
    /// HL7 backfill into the store (for tests and benchmarks; the replicas must be empty).
    Seed(seed::SeedArgs),
    /// Make a region's worth of synthetic data (GP and social care replicas, HL7 backfill) as
    /// SQLite files or PostgreSQL databases, with a configuration that serves it.
    Generate(generate::GenerateArgs),
    /// Run the MLLP listener alone (without the FHIR server).
    Mllp {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
    },
    /// The HL7 v2 quarantine: messages answered AE or AR, kept for review.
    Quarantine {
        #[command(subcommand)]
        what: QuarantineCommand,
    },
    /// Create or update the store's tables.
    Migrate {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
    },
    /// Load data into the store.
    Ingest {
        #[command(subcommand)]
        what: ingest::IngestCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// The access policy.
    Policy {
        #[command(subcommand)]
        what: PolicyCommand,
    },
    /// Mint a development token (trusted only where `auth.dev_issuer = true`).
    Token(token::TokenArgs),
    /// Check FHIR JSON files against the R4 model; prints the first problem of each.
    Validate { files: Vec<PathBuf> },
    /// Ask a running server's health endpoint: exit 0 on 200 (the container's HEALTHCHECK).
    Health(health::HealthArgs),
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined messages, oldest first.
    List {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
    },
    /// Apply quarantined messages again (after a fix to configuration or data).
    Replay {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        ids: Vec<i64>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Why a caller sees what they see of a patient's record: every rule evaluated, the facts it
    /// used, and per resource type how many records are shown and withheld under which rule.
    /// Never clinical content.
    Explain {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        /// The patient's NHS number.
        #[arg(long)]
        patient: String,
        /// staff, patient or system.
        #[arg(long, default_value = "staff")]
        kind: String,
        /// ODS code of the caller's organisation.
        #[arg(long)]
        org: Option<String>,
        /// National RBAC job role code (R8000).
        #[arg(long)]
        role: Option<String>,
        /// The caller's user id (token sub); for a patient, their NHS number.
        #[arg(long)]
        user: String,
        /// SMART scopes; default what the kind's profile reads.
        #[arg(long, default_value = "")]
        scope: String,
        /// TREAT, ETREAT or BTG.
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// A user of this neighbouring record (its `[[auth.peers]]` name), asking through it
        /// with an exchanged token (docs/federation.md).
        #[arg(long)]
        peer: Option<String>,
        /// With --peer: the relationship the neighbour asserts, as RULE:ORG (R-LR-2:RXK).
        #[arg(long, requires = "peer")]
        relationship: Option<String>,
        /// Print the FHIR Parameters resource that `$explain` answers, not text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// List self-claimed (break-glass) relationships for review (R-LR-4, R-AUD-4).
    BreakGlass {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        /// Only those nobody has reviewed yet.
        #[arg(long)]
        pending: bool,
    },
    /// Mark a break-glass claim reviewed.
    Review {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
        id: i64,
    },
    /// Recompute the hash chain over every column and check it against the signed checkpoints;
    /// names the first altered, removed or inserted record, a recomputed chain and removed
    /// newest records (R-AUD-3, docs/audit.md). Exits non-zero on any failure.
    Verify {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
    },
    /// Sign a checkpoint of the chain's head now (audit.checkpoint_key_file), after checking
    /// that the trail follows from the last one, and append it to audit.checkpoint_file.
    Checkpoint {
        #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            exit_on_stdin_close,
        } => {
            let config = load(&config)?;
            if exit_on_stdin_close {
                std::thread::spawn(|| {
                    let mut sink = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
                    std::process::exit(0);
                });
            }
            let state = scr_server::AppState::build(&config).map_err(|e| e.to_string())?;
            state.report_unmatched_rows();
            mllp::spawn(&config, &state.store)?;
            checkpoints::spawn(&config, &state.store)?;
            actix_web::rt::System::new()
                .block_on(scr_server::serve(config, state))
                .map_err(|e| format!("server stopped: {e}"))
        }
        Command::Generate(args) => generate::run(args),
        Command::Mllp { config } => {
            let config = load(&config)?;
            let store = scr_store::Store::open(&config.store.url, config.store.pool_size)
                .map_err(|e| e.to_string())?;
            let handle = mllp::spawn(&config, &store)?.ok_or("mllp.bind is not configured")?;
            handle
                .join()
                .map_err(|_| "the MLLP listener panicked".to_string())
        }
        Command::Quarantine {
            what: QuarantineCommand::List { config },
        } => {
            let config = load(&config)?;
            let store = scr_store::Store::open(&config.store.url, 1).map_err(|e| e.to_string())?;
            let list =
                scr_hl7_ingest::ingest::list_quarantine(store.pool()).map_err(|e| e.to_string())?;
            println!(
                "{:>6}  {:<20}  {:<8}  {:<16}  {:<10}  {:<3}  {:>8}  reason",
                "id", "received", "facility", "control id", "type", "ack", "attempts"
            );
            for q in &list {
                println!(
                    "{:>6}  {:<20}  {:<8}  {:<16}  {:<10}  {:<3}  {:>8}  {}",
                    q.id,
                    q.received_at,
                    q.facility,
                    q.control_id,
                    q.message_type,
                    q.code.as_str(),
                    q.attempts,
                    q.reason.as_deref().unwrap_or("")
                );
            }
            println!("{} message(s) in quarantine", list.len());
            Ok(())
        }
        Command::Quarantine {
            what: QuarantineCommand::Replay { config, ids },
        } => {
            let config = load(&config)?;
            let store = scr_store::Store::open(&config.store.url, 1).map_err(|e| e.to_string())?;
            let cfg = ingest::hl7_config(&config)?;
            for id in ids {
                let (_, now) = scr_fhir::build::today_and_now();
                let ack = scr_hl7_ingest::ingest::replay(store.pool(), id, &cfg, &now)
                    .map_err(|e| format!("{id}: {e}"))?;
                println!(
                    "{id}: {} {}",
                    ack.code.as_str(),
                    ack.reason.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(args),
        Command::Health(args) => health::run(args),
        Command::Seed(args) => seed::run(args),
        Command::Migrate { config } => {
            let config = load(&config)?;
            scr_store::Store::open(&config.store.url, 1).map_err(|e| e.to_string())?;
            println!("store migrated");
            Ok(())
        }
        Command::Ingest { what } => ingest::run(what),
        Command::Token(args) => token::run(args),
        Command::Audit {
            what: AuditCommand::BreakGlass { config, pending },
        } => {
            let config = load(&config)?;
            let store = scr_store::Store::open(&config.store.url, 1).map_err(|e| e.to_string())?;
            let mut conn = store.conn().map_err(|e| e.to_string())?;
            let claims = scr_store::audit::break_glass_claims(&mut conn, pending)
                .map_err(|e| e.to_string())?;
            println!(
                "{:>5}  {:<20}  {:<8}  {:<12}  {:<7}  {:<20}  {:<20}  reason",
                "id", "claimed", "org", "NHS number", "purpose", "user", "reviewed"
            );
            for c in &claims {
                println!(
                    "{:>5}  {:<20}  {:<8}  {:<12}  {:<7}  {:<20}  {:<20}  {}",
                    c.id,
                    c.claimed_at,
                    c.org,
                    c.nhs_number,
                    c.purpose,
                    c.user_id,
                    c.reviewed_at.as_deref().unwrap_or("pending"),
                    c.reason
                );
            }
            println!("{} claim(s)", claims.len());
            Ok(())
        }
        Command::Audit {
            what: AuditCommand::Review { config, id },
        } => {
            let config = load(&config)?;
            let store = scr_store::Store::open(&config.store.url, 1).map_err(|e| e.to_string())?;
            let mut conn = store.conn().map_err(|e| e.to_string())?;
            let (_, now) = scr_fhir::build::today_and_now();
            scr_store::audit::mark_break_glass_reviewed(&mut conn, id, &now)
                .map_err(|e| e.to_string())?;
            println!("break-glass claim {id} reviewed");
            Ok(())
        }
        Command::Audit {
            what: AuditCommand::Verify { config },
        } => checkpoints::verify(&load(&config)?),
        Command::Audit {
            what: AuditCommand::Checkpoint { config },
        } => checkpoints::checkpoint(&load(&config)?),
        Command::Policy {
            what:
                PolicyCommand::Explain {
                    config,
                    patient,
                    kind,
                    org,
                    role,
                    user,
                    scope,
                    purpose,
                    peer,
                    relationship,
                    json,
                },
        } => {
            let relationship = match relationship {
                None => None,
                Some(r) => match r.split_once(':') {
                    Some((rule, org)) if !rule.is_empty() && !org.is_empty() => {
                        Some((rule.to_owned(), org.to_owned()))
                    }
                    _ => {
                        return Err(format!(
                            "--relationship {r}: expected RULE:ORG, e.g. R-LR-2:RXK"
                        ))
                    }
                },
            };
            let config = load(&config)?;
            let (records, _) = scr_server::state::records(&config).map_err(|e| e.to_string())?;
            let described = scr_record::DescribedCaller {
                kind: Some(kind),
                org,
                role_code: role,
                user,
                scopes: scope,
                purpose: Some(purpose),
                peer,
                relationship,
            };
            let explanation = actix_web::rt::System::new()
                .block_on(records.explain(&described, &patient))
                .map_err(|e| match e {
                    scr_record::RecordError::NotFound { .. } => {
                        format!("no source knows NHS number {patient}")
                    }
                    other => other.to_string(),
                })?;
            if json {
                println!("{}", explanation.to_parameters());
            } else {
                print!("{}", explanation.to_text());
            }
            Ok(())
        }
        Command::Validate { files } => {
            let mut failed = 0;
            for f in &files {
                let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                match scr_fhir::conformance::check_bytes(&bytes) {
                    Ok(()) => println!("{}: valid R4", f.display()),
                    Err(e) => {
                        failed += 1;
                        println!("{}: {e}", f.display());
                    }
                }
            }
            if failed == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{failed} of {} files are not valid R4",
                    files.len()
                ))
            }
        }
    }
}

fn main() -> ExitCode {
    scr_server::logging::set_format(scr_server::logging::format_from_env());
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("SCR_LOG", "info"))
        .format(scr_server::logging::format)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("scr: {message}");
            ExitCode::FAILURE
        }
    }
}
