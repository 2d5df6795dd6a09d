//! Generation into real SQLite files (and PostgreSQL when `TEST_POSTGRES_URL` is set), checked
//! with SQL: counts, the fixtures, NHS number validity, determinism, the HL7 backfill's shape.

use std::collections::HashSet;
use std::error::Error;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use scr_db::{open_pool, DbConnection, PoolOptions};
use scr_fhir::nhs_number::is_valid;

use crate::fixtures as f;
use crate::*;

type TestResult = Result<(), Box<dyn Error>>;

const TODAY: &str = "2026-03-01";

fn options(patients: usize, seed: u64) -> Options {
    Options {
        patients,
        seed,
        today: TODAY.to_owned(),
        practices: default_practices(),
    }
}

fn days_ago(n: i64) -> String {
    date::iso(date::parse(TODAY).unwrap_or_default() - n)
}

/// A SQLite file in the temp directory, removed (with its WAL files) when dropped.
type TempDb = scr_db::ScratchSqlite;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Txt {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

fn count(conn: &mut DbConnection, sql: &str) -> Result<i64, diesel::result::Error> {
    let row = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(sql).get_result::<Count>(c)?,
        DbConnection::Postgres(c) => diesel::sql_query(sql).get_result::<Count>(c)?,
    };
    Ok(row.n)
}

fn texts(conn: &mut DbConnection, sql: &str) -> Result<Vec<Option<String>>, diesel::result::Error> {
    let rows = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(sql).load::<Txt>(c)?,
        DbConnection::Postgres(c) => diesel::sql_query(sql).load::<Txt>(c)?,
    };
    Ok(rows.into_iter().map(|r| r.v).collect())
}

fn text(conn: &mut DbConnection, sql: &str) -> Result<String, Box<dyn Error>> {
    texts(conn, sql)?
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| format!("no value for {sql}").into())
}

fn total_rows(conn: &mut DbConnection, tables: &[&str]) -> Result<i64, diesel::result::Error> {
    let mut total = 0;
    for t in tables {
        total += count(conn, &format!("SELECT COUNT(*) AS n FROM {t}"))?;
    }
    Ok(total)
}

/// Everything checked about a GP + social care replica pair generated into one database.
fn check_replicas(conn: &mut DbConnection, opts: &Options, gp: Summary, sc: Summary) -> TestResult {
    // Counts agree with the summaries.
    assert_eq!(
        gp.patients as i64,
        count(conn, "SELECT COUNT(*) AS n FROM patient")?
    );
    assert_eq!(
        gp.patients,
        opts.patients + 9,
        "7 fixture registrations + Linda's second + 2 bad rows"
    );
    assert_eq!(gp.rows as i64, total_rows(conn, &gp::TABLES)?);
    assert_eq!(gp.rows_without_valid_nhs_number, 2);
    assert_eq!(
        sc.patients as i64,
        count(conn, "SELECT COUNT(*) AS n FROM person")?
    );
    assert_eq!(sc.rows as i64, total_rows(conn, &social_care::TABLES)?);
    assert_eq!(sc.rows_without_valid_nhs_number, 1);
    let orgs = texts(
        conn,
        "SELECT ods_code AS v FROM organisation ORDER BY ods_code",
    )?;
    assert_eq!(
        orgs,
        ["M85001", "M85002", "M85003"].map(|o| Some(o.to_owned()))
    );

    // Every NHS number but the bad rows' passes Modulus 11.
    let bad: Vec<Option<String>> = texts(conn, "SELECT nhs_number AS v FROM patient WHERE patient_guid LIKE 'gp-pat-bad%' ORDER BY patient_guid")?;
    assert_eq!(bad, [None, Some(f::INVALID_CHECK_DIGIT_NHS.to_owned())]);
    for n in texts(
        conn,
        "SELECT nhs_number AS v FROM patient WHERE patient_guid NOT LIKE 'gp-pat-bad%'",
    )? {
        let n = n.ok_or("NULL NHS number on a good row")?;
        assert!(is_valid(&n), "{n}");
    }
    for n in texts(
        conn,
        "SELECT nhs_number AS v FROM person WHERE person_id <> 'sc-per-bad1'",
    )? {
        let n = n.ok_or("NULL NHS number on a good person")?;
        assert!(is_valid(&n), "{n}");
    }
    assert_eq!(
        text(
            conn,
            "SELECT nhs_number AS v FROM person WHERE person_id = 'sc-per-bad1'"
        )?,
        f::NINE_DIGIT_NHS
    );
    // Random registrations are unique per NHS number; social care people are GP patients (or Oliver).
    assert_eq!(count(conn, "SELECT COUNT(DISTINCT nhs_number) AS n FROM patient WHERE patient_guid LIKE 'gp-pat-r%'")?, opts.patients as i64);
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM person WHERE person_id LIKE 'sc-per-r%' AND nhs_number NOT IN (SELECT nhs_number FROM patient WHERE nhs_number IS NOT NULL)"
        )?,
        0
    );

    // Jane Smith.
    let jane = "patient_guid = 'gp-pat-0001'";
    let row = texts(
        conn,
        &format!(
            "SELECT nhs_number || '|' || title || '|' || given_name || '|' || middle_names || '|' || family_name || '|' || date_of_birth \
             || '|' || sex || '|' || main_language || '|' || CAST(interpreter_required AS TEXT) || '|' || registered_org_guid || '|' || usual_gp_name AS v \
             FROM patient WHERE {jane}"
        ),
    )?;
    assert_eq!(
        row,
        [Some(
            "9990000018|Mrs|Jane|Ann|Smith|1970-01-02|F|pa|1|gp-org-M85001|Dr A Patel".to_owned()
        )]
    );
    assert_eq!(count(conn, &format!("SELECT COUNT(*) AS n FROM observation WHERE {jane} AND snomed_concept_id = '271649006' AND value_numeric = 142 AND value_unit = 'mm[Hg]'"))?, 1);
    assert_eq!(count(conn, &format!("SELECT COUNT(*) AS n FROM observation WHERE {jane} AND snomed_concept_id = '27113001' AND value_numeric = 72.5 AND value_unit = 'kg' AND entered_in_error = 0"))?, 1);
    assert_eq!(
        count(conn, &format!("SELECT COUNT(*) AS n FROM observation WHERE {jane} AND value_numeric = 48 AND value_unit = 'mmol/mol' AND reference_low = 20 AND reference_high = 41"))?,
        1
    );
    assert_eq!(count(conn, &format!("SELECT COUNT(*) AS n FROM observation WHERE {jane} AND value_text IS NOT NULL AND value_numeric IS NULL"))?, 1);
    assert_eq!(
        texts(conn, &format!("SELECT observation_guid AS v FROM observation WHERE {jane} AND entered_in_error = 1"))?,
        [Some(f::JANE_SMITH_ENTERED_IN_ERROR_OBSERVATION.to_owned())]
    );
    assert_eq!(
        text(conn, &format!("SELECT snomed_concept_id || '|' || severity || '|' || status || '|' || reaction_term || '|' || category AS v FROM allergy WHERE {jane}"))?,
        "91936005|severe|active|Anaphylaxis|medication"
    );
    let meds = texts(conn, &format!("SELECT drug_name || '|' || course_type || '|' || status AS v FROM medication WHERE {jane} ORDER BY medication_guid"))?;
    assert_eq!(
        meds,
        [
            Some("Metformin 500mg tablets|repeat|active".to_owned()),
            Some("Amoxicillin 500mg capsules|acute|completed".to_owned()),
            Some("Simvastatin 40mg tablets|repeat|cancelled".to_owned()),
        ]
    );
    assert_eq!(count(conn, &format!("SELECT COUNT(*) AS n FROM patient_alert WHERE {jane} AND term = 'Requires Punjabi interpreter' AND end_date IS NULL"))?, 1);

    // Objections: Khan 200 days ago, Amelia by a parent 100 days ago.
    assert_eq!(
        text(conn, "SELECT effective_date || '|' || term AS v FROM observation WHERE patient_guid = 'gp-pat-0002' AND snomed_concept_id = '416409005'")?,
        format!("{}|{}", days_ago(200), f::OBJECTION_TERM)
    );
    assert_eq!(
        text(conn, "SELECT effective_date || '|' || term AS v FROM observation WHERE patient_guid = 'gp-pat-0003' AND snomed_concept_id = '416409005'")?,
        format!("{}|{}", days_ago(100), f::OBJECTION_BY_PARENT_TERM)
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM allergy WHERE patient_guid = 'gp-pat-0002'"
        )?,
        1
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM medication WHERE patient_guid = 'gp-pat-0002'"
        )?,
        2
    );
    // Sam: gender other; Peter: confidential entries recorded by his practice.
    assert_eq!(
        text(
            conn,
            "SELECT sex AS v FROM patient WHERE patient_guid = 'gp-pat-0004'"
        )?,
        "U"
    );
    assert_eq!(
        text(conn, "SELECT observation_guid || '|' || org_guid AS v FROM observation WHERE patient_guid = 'gp-pat-0005' AND is_confidential = 1")?,
        format!("{}|gp-org-M85002", f::PETER_JONES_CONFIDENTIAL_OBSERVATION)
    );
    assert_eq!(text(conn, "SELECT medication_guid AS v FROM medication WHERE patient_guid = 'gp-pat-0005' AND is_confidential = 1")?, f::PETER_JONES_CONFIDENTIAL_MEDICATION);
    assert!(count(conn, "SELECT COUNT(*) AS n FROM observation WHERE patient_guid = 'gp-pat-0005' AND is_confidential = 0")? >= 3);
    // Linda: one ended registration, one current.
    let linda = texts(conn, "SELECT patient_guid || '|' || registered_org_guid || '|' || COALESCE(registration_end, '-') AS v FROM patient WHERE nhs_number = '9990000069' ORDER BY patient_guid")?;
    assert_eq!(
        linda,
        [
            Some(format!("gp-pat-0006a|gp-org-M85003|{}", days_ago(60))),
            Some("gp-pat-0006b|gp-org-M85002|-".to_owned())
        ]
    );
    // Oliver: no GP record.
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM patient WHERE nhs_number = '9990000077'"
        )?,
        0
    );
    // The bad rows have observations of their own.
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM observation WHERE patient_guid LIKE 'gp-pat-bad%'"
        )?,
        4
    );

    // Random patients stay within the documented shape.
    for (table, lo, hi) in [("observation", 20, 50), ("medication", 2, 10)] {
        let out_of_range = count(
            conn,
            &format!(
                "SELECT COUNT(*) AS n FROM (SELECT p.patient_guid, COUNT(x.patient_guid) AS c FROM patient p LEFT JOIN {table} x ON x.patient_guid = p.patient_guid \
                 WHERE p.patient_guid LIKE 'gp-pat-r%' GROUP BY p.patient_guid) per WHERE c < {lo} OR c > {hi}"
            ),
        )?;
        assert_eq!(
            out_of_range, 0,
            "{table} per random patient outside {lo}..={hi}"
        );
    }
    for (table, hi) in [("allergy", 3), ("patient_alert", 2)] {
        let over = count(conn, &format!("SELECT COUNT(*) AS n FROM (SELECT patient_guid, COUNT(*) AS c FROM {table} GROUP BY patient_guid) per WHERE c > {hi}"))?;
        assert_eq!(over, 0, "{table}");
    }
    if opts.patients >= 1000 {
        let obs = count(
            conn,
            "SELECT COUNT(*) AS n FROM observation WHERE patient_guid LIKE 'gp-pat-r%'",
        )?;
        let confidential = count(conn, "SELECT COUNT(*) AS n FROM observation WHERE patient_guid LIKE 'gp-pat-r%' AND is_confidential = 1")?;
        assert!(
            confidential * 100 > obs && confidential * 100 < obs * 6,
            "{confidential} of {obs}"
        );
        let objectors = count(conn, "SELECT COUNT(DISTINCT patient_guid) AS n FROM observation WHERE patient_guid LIKE 'gp-pat-r%' AND snomed_concept_id = '416409005'")?;
        assert!(
            objectors > 0 && objectors * 100 < opts.patients as i64 * 3,
            "{objectors}"
        );
        let people = count(
            conn,
            "SELECT COUNT(*) AS n FROM person WHERE person_id LIKE 'sc-per-r%'",
        )?;
        assert!(
            people * 100 > opts.patients as i64 * 6 && people * 100 < opts.patients as i64 * 14,
            "{people}"
        );
        let with_alerts = count(conn, "SELECT COUNT(DISTINCT patient_guid) AS n FROM patient_alert WHERE patient_guid LIKE 'gp-pat-r%'")?;
        assert!(
            with_alerts > 0 && with_alerts * 100 < opts.patients as i64 * 8,
            "{with_alerts}"
        );
    }

    // Social care fixtures.
    assert_eq!(
        text(
            conn,
            "SELECT w.user_id || '|' || w.display_name || '|' || w.team_id || '|' || COALESCE(a.end_date, 'open') AS v \
             FROM allocation a JOIN worker w ON w.worker_id = a.worker_id WHERE a.person_id = 'sc-per-0001'"
        )?,
        "sw-dud-0001|Alex Green|tm-adults-north|open"
    );
    assert_eq!(
        text(conn, "SELECT category || '|' || title || '|' || CAST(household AS TEXT) || '|' || COALESCE(end_date, 'active') AS v FROM alert WHERE person_id = 'sc-per-0001'")?,
        "safeguarding|Risk from household member|1|active"
    );
    assert_eq!(
        text(conn, "SELECT COALESCE(worker_id, 'none') || '|' || team_id || '|' || COALESCE(end_date, 'open') AS v FROM allocation WHERE person_id = 'sc-per-0003'")?,
        "none|tm-childrens|open"
    );
    assert_eq!(
        text(
            conn,
            "SELECT end_date AS v FROM allocation WHERE person_id = 'sc-per-0007'"
        )?,
        days_ago(30)
    );
    assert_eq!(
        text(
            conn,
            "SELECT display_name || '|' || team_id AS v FROM worker WHERE user_id = 'sw-dud-0002'"
        )?,
        "Chris Black|tm-childrens"
    );
    // Random people never land on the fixture workers or teams.
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) AS n FROM allocation WHERE person_id LIKE 'sc-per-r%' AND (worker_id IN ('wk-0001', 'wk-0002') OR team_id IN ('tm-adults-north', 'tm-childrens'))"
        )?,
        0
    );
    Ok(())
}

fn generate_into(
    conn: &mut DbConnection,
    opts: &Options,
) -> Result<(Summary, Summary), SynthError> {
    let gp = create_gp_replica(conn, opts)?;
    let sc = create_social_care_replica(conn, opts)?;
    Ok((gp, sc))
}

#[test]
fn sqlite_replicas_hold_the_fixtures_and_the_random_patients() -> TestResult {
    let db = TempDb::new("replicas");
    let pool = open_pool(
        "test",
        &db.url(),
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )?;
    let mut conn = pool.get()?;
    let opts = options(1000, 7);
    let (gp, sc) = generate_into(&mut conn, &opts)?;
    check_replicas(&mut conn, &opts, gp, sc)?;

    // Every HL7 patient but the bad ones is a GP patient, or Oliver (no GP record).
    let (backfill, _) = try_hl7_backfill(&opts)?;
    let gp_numbers: HashSet<String> = texts(&mut conn, "SELECT nhs_number AS v FROM patient")?
        .into_iter()
        .flatten()
        .collect();
    for nhs in pid_nhs_numbers(&backfill) {
        assert!(
            gp_numbers.contains(&nhs)
                || nhs == f::OLIVER_WHITE_NHS
                || nhs == f::INVALID_CHECK_DIGIT_NHS,
            "{nhs}"
        );
    }
    Ok(())
}

#[test]
fn fixtures_alone_when_no_random_patients_are_asked_for() -> TestResult {
    let db = TempDb::new("fixtures");
    let pool = open_pool(
        "test",
        &db.url(),
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )?;
    let mut conn = pool.get()?;
    let opts = Options {
        practices: Vec::new(),
        ..options(0, 1)
    };
    let (gp, sc) = generate_into(&mut conn, &opts)?;
    check_replicas(&mut conn, &opts, gp, sc)?;
    assert_eq!(sc.patients, 4);
    Ok(())
}

#[test]
fn refuses_a_database_that_already_has_the_tables() -> TestResult {
    let db = TempDb::new("twice");
    let pool = open_pool(
        "test",
        &db.url(),
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )?;
    let mut conn = pool.get()?;
    let opts = options(20, 3);
    let first = create_gp_replica(&mut conn, &opts)?;
    let again = create_gp_replica(&mut conn, &opts);
    assert!(
        matches!(&again, Err(SynthError::AlreadyExists { tables, .. }) if tables.contains("patient")),
        "{again:?}"
    );
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM patient")?,
        first.patients as i64
    );
    // A failure half-way leaves nothing behind: the social care tables, one pre-created.
    conn.batch_execute("CREATE TABLE alert (x INTEGER)")?;
    assert!(matches!(
        create_social_care_replica(&mut conn, &opts),
        Err(SynthError::AlreadyExists { .. })
    ));
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'person'"
        )?,
        0
    );
    Ok(())
}

#[test]
fn invalid_options_are_refused_with_a_clear_error() {
    let bad_today = Options {
        today: "2026-02-30".into(),
        ..options(1, 1)
    };
    assert!(matches!(
        try_hl7_backfill(&bad_today),
        Err(SynthError::InvalidToday { .. })
    ));
    let too_many = options(max_random_patients() + 1, 1);
    assert!(matches!(
        try_hl7_backfill(&too_many),
        Err(SynthError::TooManyPatients { .. })
    ));
    let no_practice = Options {
        practices: Vec::new(),
        ..options(5, 1)
    };
    assert!(matches!(
        try_hl7_backfill(&no_practice),
        Err(SynthError::NoPractices)
    ));
    let mut twice = options(5, 1);
    twice.practices.push(("M85001".into(), "Again".into()));
    assert!(matches!(
        try_hl7_backfill(&twice),
        Err(SynthError::DuplicatePractice { .. })
    ));
}

#[test]
fn same_seed_same_data_other_seed_other_data() -> TestResult {
    let (a, sa) = gp::sql_text(&options(300, 42))?;
    let (b, sb) = gp::sql_text(&options(300, 42))?;
    assert_eq!(sa, sb);
    assert!(a == b, "GP SQL differs between two runs with the same seed");
    let (c, _) = gp::sql_text(&options(300, 43))?;
    assert!(a != c);
    let (a, _) = social_care::sql_text(&options(300, 42))?;
    let (b, _) = social_care::sql_text(&options(300, 42))?;
    assert!(
        a == b,
        "social care SQL differs between two runs with the same seed"
    );
    assert!(hl7_backfill(&options(300, 42)) == hl7_backfill(&options(300, 42)));
    assert!(hl7_backfill(&options(300, 42)) != hl7_backfill(&options(300, 43)));
    // Patients are generated independently: asking for more keeps the first ones unchanged.
    let (small, _) = gp::sql_text(&options(10, 42))?;
    let (large, _) = gp::sql_text(&options(20, 42))?;
    let first = small
        .lines()
        .find(|l| l.contains("gp-pat-r0000000"))
        .ok_or("no random patient")?;
    let row_start = first.find("('gp-pat-r0000000'").ok_or("row")?;
    let row = &first[row_start
        ..first[row_start..]
            .find(')')
            .map_or(first.len(), |e| row_start + e)];
    assert!(large.contains(row));
    Ok(())
}

/// The NHS numbers in every `PID-3`.
fn pid_nhs_numbers(backfill: &str) -> Vec<String> {
    backfill
        .split('\r')
        .filter(|s| s.trim_start_matches('\n').starts_with("PID|"))
        .filter_map(|s| s.trim_start_matches('\n').split('|').nth(3))
        .filter_map(|ids| {
            ids.split('~')
                .find(|id| id.ends_with("^^^NHS^NH"))
                .map(|id| id.trim_end_matches("^^^NHS^NH").to_owned())
        })
        .collect()
}

fn messages(backfill: &str) -> Vec<&str> {
    backfill.split('\n').filter(|m| !m.is_empty()).collect()
}

fn field(segment: &str, n: usize) -> &str {
    // MSH-1 is the separator itself, so MSH fields are shifted by one.
    let shift = usize::from(segment.starts_with("MSH|"));
    segment.split('|').nth(n - shift).unwrap_or("")
}

fn segment<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .split('\r')
        .filter(|s| s.starts_with(&format!("{name}|")))
        .collect()
}

#[test]
fn hl7_backfill_fixtures_only_has_the_fixture_messages() -> TestResult {
    let (text, summary) = try_hl7_backfill(&options(0, 1))?;
    let msgs = messages(&text);
    assert_eq!(msgs.len(), f::HL7_FIXTURE_MESSAGES);
    assert_eq!(summary.rows, f::HL7_FIXTURE_MESSAGES);
    assert_eq!(summary.rows_without_valid_nhs_number, 1);

    let jane: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| m.contains("9990000018^^^NHS^NH") && field(m, 4) == "RXK")
        .collect();
    let kinds: Vec<&str> = jane.iter().map(|m| field(m, 9)).collect();
    assert_eq!(kinds, ["ADT^A01", "ORU^R01", "RDE^O11", "ADT^A03"]);
    let pv1 = segment(jane[0], "PV1")[0];
    assert_eq!(
        (field(pv1, 2), field(pv1, 10), field(pv1, 19)),
        ("I", "300", f::JANE_SMITH_RXK_VISIT)
    );
    assert_eq!(
        &field(pv1, 44)[..8],
        date::hl7_date(date::parse(TODAY).unwrap_or_default() - 20)
    );
    assert_eq!(
        field(segment(jane[0], "AL1")[0], 3),
        "91936005^Allergy to penicillin^SCT"
    );
    let obx = segment(jane[1], "OBX");
    assert_eq!(
        (field(obx[0], 3), field(obx[0], 5), field(obx[0], 8)),
        ("2951-2^Sodium^LN", "139", "N")
    );
    assert_eq!(
        (field(obx[1], 3), field(obx[1], 5), field(obx[1], 8)),
        ("2823-3^Potassium^LN", "5.9", "H")
    );
    assert_eq!(
        field(segment(jane[2], "RXE")[0], 2),
        "322236009^Paracetamol 500mg tablets^DMD"
    );
    assert_eq!(
        &field(segment(jane[3], "PV1")[0], 45)[..8],
        date::hl7_date(date::parse(TODAY).unwrap_or_default() - 15)
    );

    let sam: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| m.contains("9990000042^^^NHS^NH"))
        .collect();
    let services: Vec<(&str, &str)> = sam
        .iter()
        .map(|m| (field(m, 9), field(segment(m, "PV1")[0], 10)))
        .collect();
    assert_eq!(
        services,
        [
            ("ADT^A04", "FERT"),
            ("ORU^R01", "FERT"),
            ("ADT^A04", "GUM"),
            ("ORU^R01", "GUM"),
            ("ADT^A04", "180"),
            ("ORU^R01", "180")
        ]
    );
    assert_eq!(field(segment(sam[3], "OBR")[0], 24), "GUM");
    assert_eq!(field(segment(sam[0], "PID")[0], 8), "O");

    let oliver: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| m.contains("9990000077^^^NHS^NH"))
        .collect();
    assert_eq!(
        oliver
            .iter()
            .map(|m| (field(m, 4), field(m, 9)))
            .collect::<Vec<_>>(),
        [("TAJ", "ADT^A01"), ("TAJ", "RDE^O11")]
    );
    let khan: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| m.contains("9990000026^^^NHS^NH"))
        .collect();
    assert!(khan.iter().any(|m| field(m, 9) == "ORU^R01"));

    let invalid: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| field(m, 10) == f::HL7_INVALID_NHS_CONTROL_ID)
        .collect();
    assert_eq!(invalid.len(), 1);
    assert!(invalid[0].contains("9990000017^^^NHS^NH"));
    let unknown: Vec<&str> = msgs
        .iter()
        .copied()
        .filter(|m| field(m, 4) == f::UNKNOWN_FACILITY)
        .collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(field(unknown[0], 10), f::HL7_UNKNOWN_FACILITY_CONTROL_ID);
    Ok(())
}

#[test]
fn hl7_backfill_messages_are_well_formed_and_unique() -> TestResult {
    let opts = options(2000, 11);
    let (text, summary) = try_hl7_backfill(&opts)?;
    let msgs = messages(&text);
    assert_eq!(msgs.len(), summary.rows);
    assert!(text.ends_with("\r\n"));
    // About 30% of random patients (plus 5 fixture people and the bad one) have messages.
    let random_patients = summary.patients - 5;
    assert!(
        random_patients * 100 > opts.patients * 25 && random_patients * 100 < opts.patients * 35,
        "{random_patients}"
    );
    let mut control_ids = HashSet::new();
    let mut kinds = HashSet::new();
    for m in &msgs {
        assert!(m.starts_with("MSH|^~\\&|"), "{m}");
        assert!(m.ends_with('\r'));
        let msh = m.split('\r').next().unwrap_or("");
        assert_eq!(field(msh, 12), "2.4");
        assert_eq!(field(msh, 11), "P");
        assert!(matches!(field(msh, 4), "RXK" | "TAJ" | "XXX"));
        assert!(
            control_ids.insert(field(msh, 10).to_owned()),
            "duplicate MSH-10 {}",
            field(msh, 10)
        );
        kinds.insert(field(msh, 9).to_owned());
        assert_eq!(segment(m, "PID").len(), 1);
        for seg in m.split('\r').filter(|s| !s.is_empty()) {
            assert!(seg.len() > 3 && seg.as_bytes()[3] == b'|', "{seg}");
        }
    }
    for kind in ["ADT^A01", "ADT^A03", "ADT^A04", "ORU^R01", "RDE^O11"] {
        assert!(kinds.contains(kind), "{kind}");
    }
    assert!(text.contains("|C|||"), "some results are corrected");
    // Each patient's messages are in time order, the visit's ADT first, and none from today on.
    let today_start = format!(
        "{}000000",
        date::hl7_date(date::parse(TODAY).unwrap_or_default())
    );
    let mut previous: Option<(String, String)> = None;
    let mut admitted: HashSet<String> = HashSet::new();
    for m in &msgs {
        let msh = m.split('\r').next().unwrap_or("");
        let (nhs, at) = (pid_nhs_numbers(m).concat(), field(msh, 7).to_owned());
        assert!(at < today_start, "{msh}");
        if let Some((prev_nhs, prev_at)) = &previous {
            if *prev_nhs == nhs {
                assert!(*prev_at <= at, "{nhs}: {prev_at} then {at}");
            }
        }
        let visit = field(segment(m, "PV1").first().copied().unwrap_or(""), 19).to_owned();
        if field(msh, 9).starts_with("ADT^A0") && field(msh, 9) != "ADT^A03" {
            admitted.insert(visit);
        } else if !visit.is_empty() {
            assert!(
                admitted.contains(&visit),
                "{} before its admission: {msh}",
                field(msh, 9)
            );
        }
        previous = Some((nhs, at));
    }
    assert!(text.contains("\rAL1|1|"), "allergies are sent");
    let numbers = pid_nhs_numbers(&text);
    assert_eq!(numbers.len(), msgs.len());
    assert_eq!(numbers.iter().filter(|n| !is_valid(n)).count(), 1);
    // Streaming gives the same bytes.
    let mut streamed = Vec::new();
    write_hl7_backfill(&opts, &mut streamed)?;
    assert!(streamed == text.as_bytes());
    Ok(())
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A scratch PostgreSQL database, dropped when this goes out of scope.
struct TempPg {
    admin_url: String,
    name: String,
}

impl Drop for TempPg {
    fn drop(&mut self) {
        if let Ok(mut admin) = DbConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[test]
fn postgres_replicas_hold_the_same_data_when_test_postgres_url_is_set() -> TestResult {
    let Ok(admin_url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL not set: PostgreSQL generation not tested");
        return Ok(());
    };
    let name = format!("scr_synth_test_{}", std::process::id());
    let mut admin = DbConnection::establish(&admin_url)?;
    // One statement per call: PostgreSQL runs a multi-statement string as one transaction,
    // and CREATE / DROP DATABASE refuse to run inside one.
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let scratch = TempPg {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    {
        let mut conn = DbConnection::establish(&with_database(&admin_url, &name))?;
        let opts = options(1000, 7);
        let (gp, sc) = generate_into(&mut conn, &opts)?;
        check_replicas(&mut conn, &opts, gp, sc)?;
        assert!(matches!(
            create_gp_replica(&mut conn, &opts),
            Err(SynthError::AlreadyExists { .. })
        ));

        // Same rows as SQLite: compare a digest of every observation.
        let db = TempDb::new("pg-compare");
        let pool = open_pool(
            "test",
            &db.url(),
            &PoolOptions {
                max_size: 1,
                ..PoolOptions::default()
            },
        )?;
        let mut lite = pool.get()?;
        create_gp_replica(&mut lite, &opts)?;
        let digest = "SELECT observation_guid || '|' || snomed_concept_id || '|' || effective_date || '|' || COALESCE(value_text, '') || '|' \
                      || CAST(is_confidential AS TEXT) || '|' || CAST(COALESCE(ROUND(CAST(value_numeric * 100 AS NUMERIC)), -1) AS TEXT) AS v \
                      FROM observation ORDER BY observation_guid";
        let pg_rows = texts(&mut conn, digest)?;
        let lite_rows = texts(
            &mut lite,
            &digest.replace(
                "CAST(value_numeric * 100 AS NUMERIC)",
                "value_numeric * 100",
            ),
        )?;
        assert_eq!(pg_rows.len(), lite_rows.len());
        let normalise =
            |v: &Option<String>| v.as_deref().unwrap_or("").trim_end_matches(".0").to_owned();
        for (p, l) in pg_rows.iter().zip(&lite_rows) {
            assert_eq!(normalise(p), normalise(l));
        }
    }
    drop(admin);
    drop(scratch);
    Ok(())
}

/// Generation speed into SQLite; run with
/// `cargo test -p scr-synthetic --release -- --ignored --nocapture generation_speed`.
#[test]
#[ignore = "a measurement, not a behaviour check"]
fn generation_speed_into_sqlite() -> TestResult {
    for patients in [1000, 10_000, 100_000] {
        let db = TempDb::new("speed");
        let pool = open_pool(
            "test",
            &db.url(),
            &PoolOptions {
                max_size: 1,
                ..PoolOptions::default()
            },
        )?;
        let mut conn = pool.get()?;
        let opts = options(patients, 2026);
        let started = Instant::now();
        let gp = create_gp_replica(&mut conn, &opts)?;
        let gp_time = started.elapsed();
        let started = Instant::now();
        let sc = create_social_care_replica(&mut conn, &opts)?;
        let sc_time = started.elapsed();
        let started = Instant::now();
        let (hl7, summary) = try_hl7_backfill(&opts)?;
        let hl7_time = started.elapsed();
        eprintln!(
            "{patients:>7} patients: GP {} rows in {:.2} s ({:.0} rows/s); social care {} rows in {:.2} s; HL7 {} messages ({} MB) in {:.2} s",
            gp.rows,
            gp_time.as_secs_f64(),
            gp.rows as f64 / gp_time.as_secs_f64(),
            sc.rows,
            sc_time.as_secs_f64(),
            summary.rows,
            hl7.len() / 1_000_000,
            hl7_time.as_secs_f64()
        );
    }
    Ok(())
}

#[test]
#[ignore = "writes sample files for a human to look at"]
fn write_samples() -> TestResult {
    let opts = options(1000, 2026);
    let path = std::env::temp_dir().join("scr-synthetic-sample.db");
    let _ = std::fs::remove_file(&path);
    let pool = open_pool(
        "test",
        &format!("sqlite://{}", path.display()),
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )?;
    let mut conn = pool.get()?;
    generate_into(&mut conn, &opts)?;
    std::fs::write(
        std::env::temp_dir().join("scr-synthetic-sample.hl7"),
        hl7_backfill(&opts),
    )?;
    Ok(())
}
