//! `scr seed`: synthetic data into the configured replicas and store (tests, demos, benchmarks).

use std::path::PathBuf;

use clap::Args;

use scr_server::config::Config;

#[derive(Args)]
pub struct SeedArgs {
    #[arg(long, env = "SCR_CONFIG", default_value = "scr.toml")]
    pub config: PathBuf,
    /// Random patients in addition to the fixtures.
    #[arg(long, default_value_t = 1000)]
    pub patients: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// Seeds the first GP replica, the first social care replica and the store of `config`.
pub fn seed(config: &Config, patients: usize, seed: u64) -> Result<(), String> {
    let (today, _) = scr_fhir::build::today_and_now();
    let mut options = scr_synthetic::Options::demo(&today);
    options.patients = patients;
    options.seed = seed;
    let open = crate::generate::connect;
    if let Some(gp) = config.sources.gp.first() {
        let mut conn = open(&gp.name, &gp.url)?;
        let s = scr_synthetic::create_gp_replica(&mut conn, &options)
            .map_err(|e| format!("{}: {e}", gp.name))?;
        println!(
            "GP replica {}: {} patients, {} rows ({} without a valid NHS number)",
            gp.name, s.patients, s.rows, s.rows_without_valid_nhs_number
        );
    }
    if let Some(sc) = config.sources.social_care.first() {
        let mut conn = open(&sc.name, &sc.url)?;
        let s = scr_synthetic::create_social_care_replica(&mut conn, &options)
            .map_err(|e| format!("{}: {e}", sc.name))?;
        println!(
            "social care replica {}: {} people, {} rows ({} without a valid NHS number)",
            sc.name, s.patients, s.rows, s.rows_without_valid_nhs_number
        );
    }
    let store = scr_store::Store::open(&config.store.url, 2).map_err(|e| e.to_string())?;
    let backfill = scr_synthetic::hl7_backfill(&options);
    let summary =
        crate::ingest::ingest_text(store.pool(), &crate::ingest::hl7_config(config)?, &backfill)?;
    println!("HL7 backfill: {summary}");
    Ok(())
}

pub fn run(args: SeedArgs) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    seed(&config, args.patients, args.seed)
}
