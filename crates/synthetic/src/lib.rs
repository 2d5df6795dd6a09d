//! Deterministic synthetic data for the shared care record: a GP supplier's reporting replica,
//! a council's social care replica and an HL7 v2.4 backfill from an acute and a mental health
//! trust, all about the same people. Used by `scr demo`, the tests and the benchmarks.
//!
//! The same [`Options`] (seed, number of patients, `today`) always give the same rows and the
//! same messages, byte for byte, on SQLite and PostgreSQL alike. No wall clock, no global random
//! state: each random patient has its own SplitMix64 streams keyed by (seed, index, source), so
//! the three generators can run separately and still agree on who exists. Every date is relative
//! to `Options::today` (dates of birth of the fixture people excepted).
//!
//! # Fixtures
//!
//! Always present, whatever `Options::patients` is; their keys are constants in [`fixtures`].
//!
//! | who | NHS number | GP replica | social care (LA-DUD) | HL7 | access rule exercised |
//! |---|---|---|---|---|---|
//! | Mrs Jane Ann SMITH, F, 1970-01-02 | 9990000018 | `gp-pat-0001` at M85001, Punjabi with interpreter, usual GP Dr A Patel; BP 142/88, weight 72.5 kg, HbA1c 48 mmol/mol (20-41), a text-valued alcohol intake, an entered-in-error weight; severe penicillin allergy (anaphylaxis); metformin repeat (active), amoxicillin acute (completed), simvastatin (cancelled); alert "Requires Punjabi interpreter" | `sc-per-0001`, open allocation to Alex Green (`sw-dud-0001`); active household safeguarding alert "Risk from household member" | RXK ADT^A01 20 days ago (visit V998877, service 300) with AL1 penicillin; ORU^R01 U&E (sodium 139, potassium 5.9 H); RDE^O11 paracetamol; ADT^A03 15 days ago | the full record; R-LR-1, R-LR-2 (discharged within 90 days), R-LR-3 (named worker); communication need as a Flag; alerts first; entered-in-error never shown |
//! | Mr Mohammed KHAN, M, 1958-03-14 | 9990000026 | `gp-pat-0002` at M85001; objection 416409005 200 days ago; BP, weight, AF; peanut allergy; amlodipine, simvastatin | - | RXK ADT^A04 cardiology clinic + ORU^R01 U&E | R-OBJ-1/2/3: each organisation sees only its own data |
//! | Amelia NOWAK, F, 2015-06-30 | 9990000034 | `gp-pat-0003` at M85002; objection "(by parent)" 100 days ago; asthma, salbutamol | `sc-per-0003`, open allocation to team `tm-childrens` only | - | R-OBJ-4; R-LR-3 through the team (Chris Black, `sw-dud-0002`) |
//! | Sam TAYLOR, gender other (GP `U`, HL7 `O`), 1988-09-09 | 9990000042 | `gp-pat-0004` at M85001; ordinary data | - | RXK ADT^A04 + ORU^R01 with `PV1-10` = `GUM` and `OBR-24` = `GUM` (chlamydia and gonorrhoea NAAT); ADT^A04 + ORU^R01 with `PV1-10` = `FERT` (FSH, LH); an ordinary ED visit with a full blood count | R-SENS-1/2: sensitive results never leave RXK, the FBC does |
//! | Mr Peter JONES, M, 1945-12-01 | 9990000050 | `gp-pat-0005` at M85002; a confidential depression diagnosis and a confidential citalopram course besides ordinary entries | - | - | R-SENS-3 (and its generic warning) |
//! | Ms Linda BROWN, F, 1980-04-04 | 9990000069 | `gp-pat-0006a` at M85003, left 60 days ago; `gp-pat-0006b` at M85002, current | - | - | R-LR-1: the old practice has no relationship but still holds its records |
//! | Mr Oliver WHITE, M, 1999-07-07 | 9990000077 | none | `sc-per-0007`, allocation to Alex Green that ended 30 days ago; communication alert | TAJ ADT^A01 10 days ago (still in), RDE^O11 citalopram | a patient without a GP record; R-LR-3 refused after an allocation ends; mental health trust data |
//! | unmatchable rows | NULL, 9990000017, 999000002 | `gp-pat-bad1` (NULL), `gp-pat-bad2` (fails Modulus 11), two observations each | `sc-per-bad1` (nine digits) | an RXK ADT^A01 whose only NHS number fails the check (AE); an ADT^A04 from unknown facility `XXX` (AR) | rows without a valid NHS number are reported, never matched |
//!
//! Organisations: practices M85001 High Street Surgery, M85002 Park Road Medical Centre, M85003
//! Canal Side Practice (always written, plus `Options::practices`); council teams
//! `tm-adults-north` and `tm-childrens` with workers Alex Green and Chris Black. Random people
//! are allocated only to other teams and workers, so the fixture workers see exactly the
//! fixture people.
//!
//! # Random patients
//!
//! NHS numbers from stem 999100000 upwards (then 999000100 upwards), completed with
//! [`scr_fhir::nhs_number::with_check_digit`]; the 999 test range holds only
//! [`max_random_patients`] (about 909,000) valid numbers. Ages 0-95, West Midlands names and
//! postcodes (B69-B71, DY1-DY4, WV1-WV2, WS1-WS2). At the GP each has 20-50 observations (vitals,
//! diagnoses driven by age, HbA1c and cholesterol with reference ranges, text-valued alcohol
//! intake), 0-3 allergies, 2-10 medication courses and, for a few percent, 1-2 alerts; about 3%
//! of entries are confidential, 0.5% of observations entered in error, 1% of patients object.
//! About 10% are known to social care (allocations, alerts) and 30% have HL7 messages (admissions
//! and discharges, ED and clinic attendances, results with occasional corrections, medication
//! orders, allergies; 1% of adult acute contacts are sexual health clinic visits).

pub mod fixtures;

mod catalogue;
mod date;
mod gp;
mod hl7;
mod people;
mod rng;
mod social_care;
mod sql;

pub use people::max_random_patients;

use std::sync::atomic::AtomicUsize;

use scr_db::DbConnection;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Random patients in addition to the fixtures.
    pub patients: usize,
    pub seed: u64,
    /// `YYYY-MM-DD`: every generated date is relative to it.
    pub today: String,
    /// Practices random patients register with: (ODS code, name). The fixture practices are
    /// always written to `organisation` as well.
    pub practices: Vec<(String, String)>,
}

impl Options {
    /// Whatever would stop generation (too many patients, a bad date, no practices), found
    /// before anything is written.
    pub fn check(&self) -> Result<(), SynthError> {
        people::Plan::new(self).map(|_| ())
    }

    /// The demo data set: 1000 random patients, seed 2026, the three default practices.
    pub fn demo(today: &str) -> Options {
        Options {
            patients: 1000,
            seed: 2026,
            today: today.to_owned(),
            practices: default_practices(),
        }
    }
}

/// M85001 High Street Surgery, M85002 Park Road Medical Centre, M85003 Canal Side Practice.
pub fn default_practices() -> Vec<(String, String)> {
    fixtures::PRACTICES
        .iter()
        .map(|(ods, name)| ((*ods).to_owned(), (*name).to_owned()))
        .collect()
}

/// What one generator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// GP: `patient` rows (registrations); social care: `person` rows; HL7: people with messages.
    pub patients: usize,
    /// Rows written to every table (HL7: messages).
    pub rows: usize,
    /// Patient or person rows (HL7: messages) whose NHS number is missing or invalid.
    pub rows_without_valid_nhs_number: usize,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("`today` must be a calendar date written YYYY-MM-DD, got {value:?}")]
    InvalidToday { value: String },
    #[error("{requested} random patients asked for, but the 999 test range holds only {max} valid NHS numbers for them; numbers outside it could belong to real people")]
    TooManyPatients { requested: usize, max: usize },
    #[error("random patients need at least one practice to register with")]
    NoPractices,
    #[error("practice {ods} is listed twice")]
    DuplicatePractice { ods: String },
    #[error("the database already has {replica} replica tables ({tables}); generate into an empty database")]
    AlreadyExists {
        replica: &'static str,
        tables: String,
    },
    #[error("database error while {step}")]
    Database {
        step: &'static str,
        #[source]
        source: diesel::result::Error,
    },
    #[error("could not write the HL7 backfill")]
    Write {
        #[source]
        source: std::io::Error,
    },
}

impl From<diesel::result::Error> for SynthError {
    /// Errors diesel's transaction manager raises itself (begin, commit, rollback).
    fn from(source: diesel::result::Error) -> SynthError {
        SynthError::Database {
            step: "running the transaction",
            source,
        }
    }
}

/// Creates the GP replica schema (`crates/source-gp/replica-schema.sql`) in an empty database
/// and fills it, all in one transaction: nothing is left behind on error. Refuses with
/// [`SynthError::AlreadyExists`] if any replica table exists already.
pub fn create_gp_replica(conn: &mut DbConnection, opts: &Options) -> Result<Summary, SynthError> {
    gp::generate(conn, opts, &AtomicUsize::new(0))
}

/// [`create_gp_replica`], adding one to `done` after each random patient (for a progress bar).
pub fn create_gp_replica_counted(
    conn: &mut DbConnection,
    opts: &Options,
    done: &AtomicUsize,
) -> Result<Summary, SynthError> {
    gp::generate(conn, opts, done)
}

/// Creates one council's (`LA-DUD`) social care replica schema
/// (`crates/source-social-care/replica-schema.sql`) and fills it, in one transaction. Its tables
/// do not clash with the GP replica's, so both may share a database.
pub fn create_social_care_replica(
    conn: &mut DbConnection,
    opts: &Options,
) -> Result<Summary, SynthError> {
    social_care::generate(conn, opts, &AtomicUsize::new(0))
}

/// [`create_social_care_replica`], adding one to `done` after each random patient, known to
/// social care or not.
pub fn create_social_care_replica_counted(
    conn: &mut DbConnection,
    opts: &Options,
    done: &AtomicUsize,
) -> Result<Summary, SynthError> {
    social_care::generate(conn, opts, done)
}

/// The HL7 v2.4 backfill from RXK (acute) and TAJ (mental health): every segment ends with
/// `\r`, every message with `\n`, so each line is one message starting `MSH|`; every `MSH-10`
/// is unique. [`fixtures::HL7_FIXTURE_MESSAGES`] messages come from the fixtures.
///
/// # Panics
///
/// If `opts` is invalid (see [`try_hl7_backfill`], which returns the error instead).
pub fn hl7_backfill(opts: &Options) -> String {
    match try_hl7_backfill(opts) {
        Ok((text, _)) => text,
        Err(e) => panic!("cannot generate the HL7 backfill: {e}"),
    }
}

/// [`hl7_backfill`], returning invalid options as an error, with the summary.
pub fn try_hl7_backfill(opts: &Options) -> Result<(String, Summary), SynthError> {
    let mut text = String::new();
    let summary = hl7::generate(opts, &mut text, &AtomicUsize::new(0))?;
    Ok((text, summary))
}

/// [`hl7_backfill`] streamed to `out`, for backfills too large to hold in memory.
pub fn write_hl7_backfill(
    opts: &Options,
    out: &mut dyn std::io::Write,
) -> Result<Summary, SynthError> {
    hl7::generate(opts, &mut hl7::IoSink(out), &AtomicUsize::new(0))
}

/// The backfill of [`hl7_backfill`] one message at a time (each ending `\n`), adding one to
/// `done` after each random patient, with messages or not. An error from `each` stops it.
pub fn for_each_hl7_message(
    opts: &Options,
    done: &AtomicUsize,
    each: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Summary, SynthError> {
    hl7::generate(opts, &mut hl7::FnSink(each), done)
}

/// Every `every`-th random patient (from the first) as (NHS number, ODS code of the practice
/// they are registered with): callers for benchmarks and load tests, spread over the whole
/// range of patients.
pub fn sample_patients(opts: &Options, every: usize) -> Result<Vec<(String, String)>, SynthError> {
    let plan = people::Plan::new(opts)?;
    Ok(plan
        .people()
        .step_by(every.max(1))
        .map(|p| (p.nhs.clone(), plan.practice(p.practice).0.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests;
