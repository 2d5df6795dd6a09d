//! `scr generate`: a region's worth of synthetic data for benchmarks — the GP replica, the
//! social care replica and the HL7 backfill applied to the store — as SQLite files in `--out`
//! or as three new PostgreSQL databases, with a `scr.toml` in `--out` that serves them.
//!
//! Fast because it writes like a bulk loader, not like the facade: the replicas go in as
//! multi-row `INSERT`s in one transaction each, SQLite without a write-ahead log or syncs while
//! loading (the files are new; a failed run deletes them), PostgreSQL with
//! `synchronous_commit = off` for the loading sessions only; HL7 messages go through the real
//! apply step, two thousand to a transaction. The GP replica loads on one thread while social
//! care and HL7 load on another. Afterwards SQLite files are switched back to WAL and every
//! database is `ANALYZE`d, so the facade meets them as it would meet a supplier's replica.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use diesel::connection::SimpleConnection;

use scr_server::config::Config;

use crate::demo::DataUrls;

#[derive(Args)]
pub struct GenerateArgs {
    /// Random patients besides the fixtures: a number, or `max` for every valid NHS number of
    /// the 999 test range (909,000).
    #[arg(long, value_parser = parse_patients)]
    pub patients: usize,
    /// Folder for `scr.toml` (and the SQLite files unless `--postgres` is given).
    #[arg(long)]
    pub out: PathBuf,
    /// A PostgreSQL server to create the databases on, as a URL to a database that exists
    /// (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). SQLite files in `--out` if absent.
    #[arg(long)]
    pub postgres: Option<String>,
    /// PostgreSQL database names: `{prefix}_store`, `{prefix}_gp`, `{prefix}_social_care`.
    #[arg(long, default_value = "scr_region")]
    pub db_prefix: String,
    /// Replace what an earlier run left in `--out` (and the PostgreSQL databases).
    #[arg(long)]
    pub replace: bool,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Port the written configuration serves FHIR on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port the written configuration listens for MLLP on.
    #[arg(long, default_value_t = 2575)]
    pub mllp_port: u16,
}

fn parse_patients(s: &str) -> Result<usize, String> {
    if s == "max" {
        return Ok(scr_synthetic::max_random_patients());
    }
    s.replace(['_', ','], "")
        .parse()
        .map_err(|_| format!("expected a number of patients or `max`, got {s:?}"))
}

/// HL7 messages applied per transaction.
const HL7_BATCH: usize = 2000;
const SQLITE_FILES: [&str; 3] = ["scr.db", "gp.db", "social-care-dudley.db"];

pub fn run(args: GenerateArgs) -> Result<(), String> {
    let started = Instant::now();
    let (today, _) = scr_fhir::build::today_and_now();
    let mut options = scr_synthetic::Options::demo(&today);
    options.patients = args.patients;
    options.seed = args.seed;
    options.check().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let out =
        std::fs::canonicalize(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let config_path = out.join("scr.toml");
    if config_path.exists() && !args.replace {
        return Err(format!(
            "{} exists: generate into a new folder, or pass --replace",
            config_path.display()
        ));
    }
    // The checkpoints of a store about to be replaced would not match the new one.
    let _ = std::fs::remove_file(out.join(crate::demo::CHECKPOINT_FILE));
    let urls = match &args.postgres {
        None => {
            remove_sqlite_files(&out);
            DataUrls::sqlite(&out)
        }
        Some(server) => create_postgres_databases(server, &args.db_prefix, args.replace)?,
    };
    std::fs::write(
        &config_path,
        crate::demo::config_text(&out, &urls, args.port, args.mllp_port),
    )
    .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    println!(
        "Generating {} random patients and the fixtures into {} ...",
        args.patients,
        if args.postgres.is_some() {
            format!("PostgreSQL databases {}_*", args.db_prefix)
        } else {
            out.display().to_string()
        }
    );
    let result = load_all(&config, &urls, &options);
    if result.is_err() {
        // Half-loaded data must not be mistaken for a region: remove the configuration, and the
        // SQLite files (PostgreSQL databases are replaced on the next --replace).
        let _ = std::fs::remove_file(&config_path);
        if args.postgres.is_none() {
            remove_sqlite_files(&out);
        }
    }
    let report = result?;
    println!("{report}");
    write_sample(&out, &options)?;
    println!(
        "Done in {:.1} s. Serve it with:\n  scr serve --config {}",
        started.elapsed().as_secs_f64(),
        config_path.display()
    );
    Ok(())
}

/// `sample-patients.tsv`: up to 10,000 random patients spread over the whole range, with the
/// practice each is registered at: who a benchmark asks for, and as whom (a clinician of that
/// practice has a legitimate relationship, R-LR-1).
fn write_sample(out: &Path, options: &scr_synthetic::Options) -> Result<(), String> {
    const SAMPLE: usize = 10_000;
    let every = options.patients.div_ceil(SAMPLE).max(1);
    let sample = scr_synthetic::sample_patients(options, every).map_err(|e| e.to_string())?;
    let mut text = String::from("nhs_number\tpractice\n");
    for (nhs, practice) in sample {
        text.push_str(&format!("{nhs}\t{practice}\n"));
    }
    let path = out.join("sample-patients.tsv");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn remove_sqlite_files(out: &Path) {
    for f in SQLITE_FILES {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(out.join(format!("{f}{suffix}")));
        }
    }
}

fn create_postgres_databases(
    server: &str,
    prefix: &str,
    replace: bool,
) -> Result<DataUrls, String> {
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "--db-prefix {prefix:?}: use lower-case letters, digits and _"
        ));
    }
    let (base, _) = server
        .rsplit_once('/')
        .filter(|(b, _)| b.contains("://") && !b.ends_with('/'))
        .ok_or_else(|| {
            format!("--postgres {server:?}: expected postgres://user@host:port/database")
        })?;
    let names = ["store", "gp", "social_care"].map(|n| format!("{prefix}_{n}"));
    let mut conn = connect("the PostgreSQL server", server)?;
    for name in &names {
        if replace {
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .map_err(|e| format!("dropping {name}: {e}"))?;
        }
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| {
                format!("creating database {name}: {e} (pass --replace to drop an earlier run's)")
            })?;
    }
    let url_of = |name: &str| format!("{base}/{name}");
    Ok(DataUrls {
        store: url_of(&names[0]),
        gp: url_of(&names[1]),
        social_care: url_of(&names[2]),
    })
}

/// One connection to `url` (`name` is for errors), from a pool of one.
pub(crate) fn connect(name: &str, url: &str) -> Result<scr_db::PooledDb, String> {
    let pool = scr_db::open_pool(
        name,
        url,
        &scr_db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    pool.get()
        .map_err(|e| format!("{name}: cannot connect: {e}"))
}

/// A connection set up for loading: no journal or syncs on a new SQLite file, no commit flush
/// on PostgreSQL (for this session only).
fn bulk_connection(name: &str, url: &str) -> Result<scr_db::PooledDb, String> {
    let mut conn = connect(name, url)?;
    let pragmas = match &*conn {
        scr_db::DbConnection::Sqlite(_) => {
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;"
        }
        scr_db::DbConnection::Postgres(_) => "SET synchronous_commit = off;",
    };
    // Leaving WAL needs the file to itself, and SQLite does not wait for that (no busy
    // handler): the store's migration pools, just dropped, may still be closing a connection
    // on r2d2's own thread. Found by bench/soak.py: `scr generate` failed now and then with
    // "database is locked" on a loaded machine. Try again for up to five seconds.
    let mut attempts = 0;
    loop {
        match conn.batch_execute(pragmas) {
            Ok(()) => return Ok(conn),
            Err(e) if attempts < 50 && e.to_string().contains("database is locked") => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
}

/// Back to what the facade expects (WAL on SQLite), with planner statistics.
fn finish_database(name: &str, conn: &mut scr_db::PooledDb) -> Result<(), String> {
    let sql = match &**conn {
        // Without sqlite_stat4: with it, SQLite re-prepares a statement whenever a new value is
        // bound to an indexed column (to re-plan for that value), which halved the facade's
        // throughput (docs/benchmarks.md). sqlite_stat1 is enough for these plans.
        scr_db::DbConnection::Sqlite(_) => {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; ANALYZE; DELETE FROM sqlite_stat4;"
        }
        scr_db::DbConnection::Postgres(_) => "ANALYZE;",
    };
    conn.batch_execute(sql)
        .map_err(|e| format!("{name}: finishing: {e}"))
}

/// Counters the progress line reads.
#[derive(Default)]
struct Counters {
    gp: AtomicUsize,
    social_care: AtomicUsize,
    hl7_patients: AtomicUsize,
    hl7_messages: AtomicUsize,
}

fn load_all(
    config: &Config,
    urls: &DataUrls,
    options: &scr_synthetic::Options,
) -> Result<String, String> {
    let counters = Counters::default();
    let finished = AtomicBool::new(false);
    let total = options.patients;
    let hl7 = crate::ingest::hl7_config(config)?;
    std::thread::scope(|s| {
        let gp = s.spawn(|| -> Result<String, String> {
            let mut conn = bulk_connection("GP replica", &urls.gp)?;
            let summary =
                scr_synthetic::create_gp_replica_counted(&mut conn, options, &counters.gp)
                    .map_err(|e| format!("GP replica: {e}"))?;
            finish_database("GP replica", &mut conn)?;
            Ok(format!(
                "GP replica: {} registrations, {} rows",
                summary.patients, summary.rows
            ))
        });
        let others = s.spawn(|| -> Result<String, String> {
            let mut conn = bulk_connection("social care replica", &urls.social_care)?;
            let sc = scr_synthetic::create_social_care_replica_counted(
                &mut conn,
                options,
                &counters.social_care,
            )
            .map_err(|e| format!("social care replica: {e}"))?;
            finish_database("social care replica", &mut conn)?;
            // The store's own tables first (migrations), then the backfill through the real
            // apply step.
            scr_store::Store::open(&urls.store, 1).map_err(|e| e.to_string())?;
            let mut store = bulk_connection("store", &urls.store)?;
            let acks = load_hl7(&mut store, &hl7, options, &counters)?;
            finish_database("store", &mut store)?;
            Ok(format!(
                "social care replica: {} people, {} rows\nHL7 backfill: {acks}",
                sc.patients, sc.rows
            ))
        });
        let progress = s.spawn(|| show_progress(&counters, &finished, total));
        let gp = gp
            .join()
            .unwrap_or_else(|_| Err("the GP loader panicked".into()));
        let others = others
            .join()
            .unwrap_or_else(|_| Err("the social care and HL7 loader panicked".into()));
        finished.store(true, Ordering::Relaxed);
        let _ = progress.join();
        Ok(format!("{}\n{}", gp?, others?))
    })
}

/// Generates the backfill and applies it in batches; returns a count of acknowledgements.
fn load_hl7(
    conn: &mut scr_db::DbConnection,
    cfg: &scr_hl7_ingest::ingest::Hl7Config,
    options: &scr_synthetic::Options,
    counters: &Counters,
) -> Result<String, String> {
    use scr_hl7_ingest::ingest::{ingest_batch, AckCode};
    let mut batch: Vec<String> = Vec::with_capacity(HL7_BATCH);
    let mut codes = [0usize; 3];
    let mut apply = |batch: &mut Vec<String>, codes: &mut [usize; 3]| -> std::io::Result<()> {
        let (_, now) = scr_fhir::build::today_and_now();
        let acks = ingest_batch(conn, batch, cfg, &now).map_err(std::io::Error::other)?;
        for ack in acks {
            codes[match ack.code {
                AckCode::AA => 0,
                AckCode::AE => 1,
                AckCode::AR => 2,
            }] += 1;
        }
        counters
            .hl7_messages
            .fetch_add(batch.len(), Ordering::Relaxed);
        batch.clear();
        Ok(())
    };
    let generated =
        scr_synthetic::for_each_hl7_message(options, &counters.hl7_patients, &mut |m| {
            batch.push(m.trim_end_matches('\n').to_owned());
            if batch.len() >= HL7_BATCH {
                apply(&mut batch, &mut codes)?;
            }
            Ok(())
        });
    // A store failure inside a batch comes back as the generator's write error, with the
    // store's error as its source.
    generated.map_err(|e| format!("HL7 backfill: {}", scr_store::error_chain(&e)))?;
    apply(&mut batch, &mut codes).map_err(|e| format!("store: applying the HL7 backfill: {e}"))?;
    Ok(format!(
        "{} messages: {} AA, {} AE and {} AR (the fixtures' deliberately bad messages, kept in quarantine)",
        codes.iter().sum::<usize>(),
        codes[0],
        codes[1],
        codes[2]
    ))
}

/// One line on standard error, redrawn in place on a terminal, every 10 s otherwise.
fn show_progress(c: &Counters, finished: &AtomicBool, total: usize) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_line = Instant::now();
    let pct = |n: &AtomicUsize| n.load(Ordering::Relaxed) * 100 / total.max(1);
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let gp = c.gp.load(Ordering::Relaxed);
        let filled = gp * 30 / total.max(1);
        let line = format!(
            "[{}{}] GP {}% · social care {}% · HL7 {}% ({} messages) · {:.0} s",
            "#".repeat(filled.min(30)),
            "-".repeat(30 - filled.min(30)),
            pct(&c.gp),
            pct(&c.social_care),
            pct(&c.hl7_patients),
            c.hl7_messages.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        if tty {
            eprint!("\r{line}");
        } else if last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    }
    if tty {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::Connection;

    /// Issue 14 (found by the soak): `scr generate` makes its SQLite store while another
    /// connection to it is still closing; the bulk load waits for it instead of failing with
    /// "database is locked".
    #[test]
    fn bulk_loading_a_sqlite_store_waits_for_a_connection_still_open_on_it() {
        let scratch = scr_db::ScratchSqlite::new("generate-bulk");
        let path = scratch.path().to_owned();
        let mut other = diesel::SqliteConnection::establish(&path).expect("open");
        other
            .batch_execute(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER); BEGIN; SELECT * FROM t;",
            )
            .expect("a reader in WAL mode");
        let closing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            drop(other);
        });
        let bulk = bulk_connection("store", &format!("sqlite://{path}")).map(|_| ());
        closing.join().expect("the other connection");
        assert_eq!(bulk, Ok(()));
    }
}
