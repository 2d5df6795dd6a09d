//! The GP supplier's reporting replica (`gp-system.sql`): practices, registrations, coded
//! observations, allergies, medication courses and practice alerts.

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::Connection;
use scr_db::DbConnection;

use crate::catalogue::{self, Code, Condition, Drug};
use crate::date::{self, Day};
use crate::fixtures::{self as f, org_guid};
use crate::people::{fixture_people, Person, PersonAllergy, Plan};
use crate::rng::{Rng, Stream};
use crate::sql::{self, Inserter, Target, V};
use crate::{Options, Summary, SynthError};

pub(crate) const DDL: &str = include_str!("../../source-gp/replica-schema.sql");
pub(crate) const TABLES: [&str; 6] = [
    "organisation",
    "patient",
    "observation",
    "allergy",
    "medication",
    "patient_alert",
];

const ORGANISATION: usize = 0;
const PATIENT: usize = 1;
const OBSERVATION: usize = 2;
const ALLERGY: usize = 3;
const MEDICATION: usize = 4;
const ALERT: usize = 5;

const COLUMNS: [(&str, &str); 6] = [
    ("organisation", "org_guid, ods_code, name"),
    (
        "patient",
        "patient_guid, nhs_number, title, given_name, middle_names, family_name, date_of_birth, sex, date_of_death, \
         address_line_1, address_line_2, town, postcode, telephone, mobile, email, main_language, interpreter_required, \
         registered_org_guid, registration_start, registration_end, usual_gp_name, last_updated",
    ),
    (
        "observation",
        "observation_guid, patient_guid, org_guid, snomed_concept_id, term, effective_date, value_numeric, value_unit, \
         value_text, reference_low, reference_high, is_confidential, entered_in_error, recorded_by, recorded_at",
    ),
    (
        "allergy",
        "allergy_guid, patient_guid, org_guid, snomed_concept_id, term, substance_snomed_id, substance_term, \
         reaction_snomed_id, reaction_term, severity, category, onset_date, status, is_confidential, recorded_at",
    ),
    (
        "medication",
        "medication_guid, patient_guid, org_guid, dmd_code, drug_name, dosage_text, quantity_value, quantity_unit, \
         course_type, start_date, end_date, last_issue_date, status, is_confidential, recorded_at",
    ),
    ("patient_alert", "alert_guid, patient_guid, org_guid, snomed_concept_id, term, alert_text, start_date, end_date, recorded_at"),
];

pub(crate) fn generate(
    conn: &mut DbConnection,
    opts: &Options,
    done: &AtomicUsize,
) -> Result<Summary, SynthError> {
    let plan = Plan::new(opts)?;
    let started = std::time::Instant::now();
    let summary = conn.transaction::<_, SynthError, _>(|conn| {
        sql::create_schema(conn, "GP", DDL, &TABLES)?;
        write_all(Inserter::new(Target::Db(conn), &COLUMNS), &plan, done)
    })?;
    log::info!(
        "GP replica: {} patients, {} rows ({} without a valid NHS number) in {} ms",
        summary.patients,
        summary.rows,
        summary.rows_without_valid_nhs_number,
        started.elapsed().as_millis()
    );
    Ok(summary)
}

/// Writes every row of the replica through `ins`.
fn write_all(ins: Inserter<'_>, plan: &Plan, done: &AtomicUsize) -> Result<Summary, SynthError> {
    let mut w = Writer {
        ins,
        today: plan.today,
        patients: 0,
        invalid: 0,
    };
    for (ods, name) in &plan.organisations {
        w.ins
            .row(ORGANISATION, &[V::T(&org_guid(ods)), V::T(ods), V::T(name)]);
    }
    write_fixtures(&mut w);
    w.ins.flush()?;
    for person in plan.people() {
        write_random(&mut w, plan, &person);
        w.ins.maybe_flush()?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    w.ins.flush()?;
    Ok(Summary {
        patients: w.patients,
        rows: w.ins.rows,
        rows_without_valid_nhs_number: w.invalid,
    })
}

/// The SQL text the generator would run, for tests.
#[cfg(test)]
pub(crate) fn sql_text(opts: &Options) -> Result<(String, Summary), SynthError> {
    let plan = Plan::new(opts)?;
    let mut text = String::new();
    let summary = write_all(
        Inserter::new(Target::Capture(&mut text), &COLUMNS),
        &plan,
        &AtomicUsize::new(0),
    )?;
    Ok((text, summary))
}

struct Writer<'c> {
    ins: Inserter<'c>,
    today: Day,
    patients: usize,
    invalid: usize,
}

/// One registration being written: its keys and counters for the child rows.
struct Reg {
    /// `0001`, `r0000042`: the part shared by every key of this registration's rows.
    key: String,
    patient_guid: String,
    org_guid: String,
    usual_gp: &'static str,
    obs: usize,
    allergies: usize,
    meds: usize,
    alerts: usize,
}

impl Reg {
    fn new(key: &str, ods: &str, usual_gp: &'static str) -> Reg {
        Reg {
            key: key.to_owned(),
            patient_guid: format!("gp-pat-{key}"),
            org_guid: org_guid(ods),
            usual_gp,
            obs: 0,
            allergies: 0,
            meds: 0,
            alerts: 0,
        }
    }
}

/// The value of an observation.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    None,
    Num(f64, &'a str),
    Range(f64, &'a str, Option<f64>, Option<f64>),
    Text(&'a str),
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    confidential: bool,
    entered_in_error: bool,
}

const CONFIDENTIAL: Flags = Flags {
    confidential: true,
    entered_in_error: false,
};
const IN_ERROR: Flags = Flags {
    confidential: false,
    entered_in_error: true,
};

/// A medication course.
#[derive(Debug, Clone, Copy)]
struct Course {
    drug: Drug,
    course_type: &'static str,
    start: Day,
    end: Option<Day>,
    last_issue: Option<Day>,
    status: &'static str,
}

impl Writer<'_> {
    fn patient(&mut self, p: &Person, reg: &Reg, nhs: Option<&str>, start: Day, end: Option<Day>) {
        let today = self.today;
        self.patients += 1;
        if !nhs.is_some_and(scr_fhir::nhs_number::is_valid) {
            self.invalid += 1;
        }
        let dob = date::iso(p.dob);
        let start = date::iso(start);
        let end = end.map(date::iso);
        let updated = date::iso_time(
            today - 1 - (p.index % 300) as Day,
            8 * 3600 + (p.index % 36_000) as u32,
        );
        self.ins.row(
            PATIENT,
            &[
                V::T(&reg.patient_guid),
                V::OptT(nhs),
                V::OptT(p.title),
                V::T(p.given),
                V::OptT(p.middle),
                V::T(p.family),
                V::T(&dob),
                V::T(p.sex.gp()),
                V::Null,
                V::T(&p.address_line_1),
                V::Null,
                V::T(p.town),
                V::T(&p.postcode),
                V::OptT(p.telephone.as_deref()),
                V::OptT(p.mobile.as_deref()),
                V::OptT(p.email.as_deref()),
                V::T(p.language.0),
                V::I(i64::from(p.interpreter)),
                V::T(&reg.org_guid),
                V::T(&start),
                V::OptT(end.as_deref()),
                V::T(reg.usual_gp),
                V::T(&updated),
            ],
        );
    }

    /// Writes an observation and returns its key.
    fn obs(
        &mut self,
        reg: &mut Reg,
        concept: Code,
        day: Day,
        value: Val<'_>,
        flags: Flags,
    ) -> String {
        self.obs_term(reg, concept.id, concept.term, day, value, flags)
    }

    fn obs_term(
        &mut self,
        reg: &mut Reg,
        id: &str,
        term: &str,
        day: Day,
        value: Val<'_>,
        flags: Flags,
    ) -> String {
        reg.obs += 1;
        let guid = format!("gp-obs-{}-{:02}", reg.key, reg.obs);
        let (num, unit, text, low, high) = match value {
            Val::None => (None, None, None, None, None),
            Val::Num(n, u) => (Some(n), Some(u), None, None, None),
            Val::Range(n, u, lo, hi) => (Some(n), Some(u), None, lo, hi),
            Val::Text(t) => (None, None, Some(t), None, None),
        };
        let effective = date::iso(day);
        let recorded = date::iso_time(day, 9 * 3600 + (reg.obs as u32 * 617) % 28_800);
        self.ins.row(
            OBSERVATION,
            &[
                V::T(&guid),
                V::T(&reg.patient_guid),
                V::T(&reg.org_guid),
                V::T(id),
                V::T(term),
                V::T(&effective),
                V::OptR(num),
                V::OptT(unit),
                V::OptT(text),
                V::OptR(low),
                V::OptR(high),
                V::I(i64::from(flags.confidential)),
                V::I(i64::from(flags.entered_in_error)),
                V::T(reg.usual_gp),
                V::T(&recorded),
            ],
        );
        guid
    }

    fn allergy(&mut self, reg: &mut Reg, a: &PersonAllergy, confidential: bool) {
        reg.allergies += 1;
        let guid = format!("gp-all-{}-{:02}", reg.key, reg.allergies);
        let onset = date::iso(a.onset);
        let recorded = date::iso_time((a.onset + 2).min(self.today - 1), 11 * 3600);
        self.ins.row(
            ALLERGY,
            &[
                V::T(&guid),
                V::T(&reg.patient_guid),
                V::T(&reg.org_guid),
                V::T(a.def.concept.id),
                V::T(a.def.concept.term),
                V::T(a.def.substance.id),
                V::T(a.def.substance.term),
                V::T(a.reaction.id),
                V::T(a.reaction.term),
                V::OptT(a.severity),
                V::T(a.def.category),
                V::T(&onset),
                V::T(a.status),
                V::I(i64::from(confidential)),
                V::T(&recorded),
            ],
        );
    }

    fn medication(&mut self, reg: &mut Reg, c: &Course, confidential: bool) -> String {
        reg.meds += 1;
        let guid = format!("gp-med-{}-{:02}", reg.key, reg.meds);
        let start = date::iso(c.start);
        let end = c.end.map(date::iso);
        let last_issue = c.last_issue.map(date::iso);
        let recorded = date::iso_time(c.start, 10 * 3600 + (reg.meds as u32 * 911) % 20_000);
        self.ins.row(
            MEDICATION,
            &[
                V::T(&guid),
                V::T(&reg.patient_guid),
                V::T(&reg.org_guid),
                V::T(c.drug.dmd),
                V::T(c.drug.name),
                V::T(c.drug.dosage),
                V::R(c.drug.quantity),
                V::T(c.drug.unit),
                V::T(c.course_type),
                V::T(&start),
                V::OptT(end.as_deref()),
                V::OptT(last_issue.as_deref()),
                V::T(c.status),
                V::I(i64::from(confidential)),
                V::T(&recorded),
            ],
        );
        guid
    }

    fn alert(
        &mut self,
        reg: &mut Reg,
        snomed: Option<&str>,
        term: &str,
        text: &str,
        start: Day,
        end: Option<Day>,
    ) {
        reg.alerts += 1;
        let guid = format!("gp-alert-{}-{:02}", reg.key, reg.alerts);
        let start_s = date::iso(start);
        let end = end.map(date::iso);
        let recorded = date::iso_time(start, 12 * 3600);
        self.ins.row(
            ALERT,
            &[
                V::T(&guid),
                V::T(&reg.patient_guid),
                V::T(&reg.org_guid),
                V::OptT(snomed),
                V::T(term),
                V::T(text),
                V::T(&start_s),
                V::OptT(end.as_deref()),
                V::T(&recorded),
            ],
        );
    }
}

const MMHG: &str = "mm[Hg]";

fn repeat(drug: Drug, start: Day, last_issue: Day) -> Course {
    Course {
        drug,
        course_type: "repeat",
        start,
        end: None,
        last_issue: Some(last_issue),
        status: "active",
    }
}

fn acute(drug: Drug, start: Day) -> Course {
    Course {
        drug,
        course_type: "acute",
        start,
        end: Some(start + 7),
        last_issue: Some(start),
        status: "completed",
    }
}

/// The fixture patients, by hand: see [`crate::fixtures`].
fn write_fixtures(w: &mut Writer<'_>) {
    let t = w.today;
    let people = fixture_people();
    let (m1, m2, m3) = (
        f::PRACTICE_HIGH_STREET,
        f::PRACTICE_PARK_ROAD,
        f::PRACTICE_CANAL_SIDE,
    );

    // Jane Smith: the whole record.
    let jane = &people.jane;
    let mut r = Reg::new("0001", m1, f::JANE_SMITH_USUAL_GP);
    w.patient(jane, &r, Some(&jane.nhs), t - 9000, None);
    w.obs(
        &mut r,
        Condition::Type2Diabetes.code(),
        t - 2000,
        Val::None,
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 30,
        Val::Num(142.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 30,
        Val::Num(88.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 30,
        Val::Num(72.5, "kg"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_HEIGHT,
        t - 400,
        Val::Num(162.0, "cm"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::HBA1C,
        t - 45,
        Val::Range(48.0, "mmol/mol", Some(20.0), Some(41.0)),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::ALCOHOL_INTAKE,
        t - 400,
        Val::Text("Occasional drinker, about 4 units a week"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::NEVER_SMOKED,
        t - 400,
        Val::None,
        Flags::default(),
    );
    let in_error = w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 30,
        Val::Num(7.25, "kg"),
        IN_ERROR,
    );
    debug_assert_eq!(in_error, f::JANE_SMITH_ENTERED_IN_ERROR_OBSERVATION);
    w.obs(
        &mut r,
        catalogue::SERUM_CHOLESTEROL,
        t - 45,
        Val::Range(4.6, "mmol/L", None, Some(5.0)),
        Flags::default(),
    );
    let penicillin = PersonAllergy {
        def: catalogue::PENICILLIN_ALLERGY,
        onset: t - 4000,
        severity: Some("severe"),
        reaction: catalogue::ANAPHYLAXIS,
        status: "active",
    };
    w.allergy(&mut r, &penicillin, false);
    w.medication(
        &mut r,
        &repeat(catalogue::METFORMIN_500, t - 1990, t - 20),
        false,
    );
    // The course during which the anaphylaxis happened.
    let amoxicillin = Course {
        end: Some(t - 4000),
        ..acute(catalogue::AMOXICILLIN_500, t - 4003)
    };
    w.medication(&mut r, &amoxicillin, false);
    let cancelled = Course {
        end: Some(t - 180),
        last_issue: Some(t - 200),
        status: "cancelled",
        ..repeat(catalogue::SIMVASTATIN_40, t - 200, t - 200)
    };
    w.medication(&mut r, &cancelled, false);
    w.alert(
        &mut r,
        None,
        f::JANE_SMITH_GP_ALERT,
        "Main language Punjabi: book an interpreter for every appointment",
        t - 2000,
        None,
    );

    // Mohammed Khan: objects.
    let khan = &people.khan;
    let mut r = Reg::new("0002", m1, "Dr R Singh");
    w.patient(khan, &r, Some(&khan.nhs), t - 12_000, None);
    w.obs(
        &mut r,
        catalogue::OBJECTION,
        t - f::MOHAMMED_KHAN_OBJECTION_DAYS_AGO,
        Val::None,
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 300,
        Val::Num(138.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 300,
        Val::Num(84.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 300,
        Val::Num(81.2, "kg"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        Condition::AtrialFibrillation.code(),
        t - 1500,
        Val::None,
        Flags::default(),
    );
    let peanut = PersonAllergy {
        def: catalogue::PEANUT_ALLERGY,
        onset: t - 15_000,
        severity: Some("moderate"),
        reaction: catalogue::REACTIONS[2],
        status: "active",
    };
    w.allergy(&mut r, &peanut, false);
    w.medication(
        &mut r,
        &repeat(catalogue::AMLODIPINE_5, t - 1400, t - 25),
        false,
    );
    w.medication(
        &mut r,
        &repeat(catalogue::SIMVASTATIN_40, t - 1400, t - 25),
        false,
    );

    // Amelia Nowak: a child whose parent objected.
    let amelia = &people.amelia;
    let mut r = Reg::new("0003", m2, "Dr K Okafor");
    w.patient(amelia, &r, Some(&amelia.nhs), amelia.dob + 14, None);
    w.obs_term(
        &mut r,
        f::OBJECTION_SNOMED,
        f::OBJECTION_BY_PARENT_TERM,
        t - f::AMELIA_NOWAK_OBJECTION_DAYS_AGO,
        Val::None,
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 150,
        Val::Num(31.4, "kg"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_HEIGHT,
        t - 150,
        Val::Num(138.0, "cm"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        Condition::Asthma.code(),
        t - 900,
        Val::None,
        Flags::default(),
    );
    w.medication(
        &mut r,
        &repeat(catalogue::SALBUTAMOL_INHALER, t - 890, t - 60),
        false,
    );
    w.medication(&mut r, &acute(catalogue::AMOXICILLIN_250, t - 300), false);

    // Sam Taylor: ordinary GP data (the sensitive data is at the hospital).
    let sam = &people.sam;
    let mut r = Reg::new("0004", m1, f::JANE_SMITH_USUAL_GP);
    w.patient(sam, &r, Some(&sam.nhs), t - 2500, None);
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 220,
        Val::Num(121.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 220,
        Val::Num(76.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 220,
        Val::Num(68.0, "kg"),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::SMOKER,
        t - 220,
        Val::None,
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::ALCOHOL_INTAKE,
        t - 220,
        Val::Text("Drinks about 10 units a week"),
        Flags::default(),
    );
    let latex = PersonAllergy {
        def: catalogue::ALLERGIES[3],
        onset: t - 3000,
        severity: Some("mild"),
        reaction: catalogue::REACTIONS[1],
        status: "active",
    };
    w.allergy(&mut r, &latex, false);
    w.medication(&mut r, &acute(catalogue::PARACETAMOL_500, t - 220), false);

    // Peter Jones: confidential entries besides ordinary ones.
    let peter = &people.peter;
    let mut r = Reg::new("0005", m2, "Dr K Okafor");
    w.patient(peter, &r, Some(&peter.nhs), t - 15_000, None);
    w.obs(
        &mut r,
        Condition::Hypertension.code(),
        t - 3000,
        Val::None,
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 60,
        Val::Num(150.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 60,
        Val::Num(90.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 60,
        Val::Num(79.0, "kg"),
        Flags::default(),
    );
    let confidential = w.obs(
        &mut r,
        Condition::Depression.code(),
        t - 700,
        Val::None,
        CONFIDENTIAL,
    );
    debug_assert_eq!(confidential, f::PETER_JONES_CONFIDENTIAL_OBSERVATION);
    w.medication(
        &mut r,
        &repeat(catalogue::AMLODIPINE_5, t - 2900, t - 30),
        false,
    );
    w.medication(
        &mut r,
        &repeat(catalogue::RAMIPRIL_2_5, t - 2900, t - 30),
        false,
    );
    let confidential = w.medication(
        &mut r,
        &repeat(catalogue::CITALOPRAM_20, t - 690, t - 30),
        true,
    );
    debug_assert_eq!(confidential, f::PETER_JONES_CONFIDENTIAL_MEDICATION);

    // Linda Brown: left M85003 60 days ago, registered at M85002 the day after.
    let linda = &people.linda;
    let left = t - f::LINDA_BROWN_LEFT_DAYS_AGO;
    let mut r = Reg::new("0006a", m3, "Dr E Walsh");
    w.patient(linda, &r, Some(&linda.nhs), t - 3000, Some(left));
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 400,
        Val::Num(118.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 400,
        Val::Num(74.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 400,
        Val::Num(64.3, "kg"),
        Flags::default(),
    );
    let pollen = PersonAllergy {
        def: catalogue::ALLERGIES[4],
        onset: t - 5000,
        severity: Some("mild"),
        reaction: catalogue::REACTIONS[1],
        status: "active",
    };
    w.allergy(&mut r, &pollen, false);
    w.medication(&mut r, &acute(catalogue::PARACETAMOL_500, t - 500), false);
    let mut r = Reg::new("0006b", m2, "Dr K Okafor");
    w.patient(linda, &r, Some(&linda.nhs), left + 1, None);
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 50,
        Val::Num(121.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 50,
        Val::Num(79.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 50,
        Val::Num(65.0, "kg"),
        Flags::default(),
    );

    // Rows that cannot be matched to anyone.
    let tom = crate::people::fixture_person(
        20,
        "",
        Some("Mr"),
        "Tom",
        None,
        "Harris",
        crate::people::Sex::Male,
        "1962-05-17",
        ("18 Oak Avenue", "Dudley", "DY1 2RT"),
    );
    let mut r = Reg::new("bad1", m3, "Dr E Walsh");
    w.patient(&tom, &r, None, t - 6000, None);
    w.obs(
        &mut r,
        catalogue::SYSTOLIC_BP,
        t - 90,
        Val::Num(131.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_WEIGHT,
        t - 90,
        Val::Num(88.4, "kg"),
        Flags::default(),
    );
    let grace = crate::people::fixture_person(
        21,
        "",
        Some("Mrs"),
        "Grace",
        None,
        "Evans",
        crate::people::Sex::Female,
        "1977-11-23",
        ("5 Elm Grove", "West Bromwich", "B71 4JP"),
    );
    let mut r = Reg::new("bad2", m1, f::JANE_SMITH_USUAL_GP);
    w.patient(&grace, &r, Some(f::INVALID_CHECK_DIGIT_NHS), t - 4000, None);
    w.obs(
        &mut r,
        catalogue::DIASTOLIC_BP,
        t - 75,
        Val::Num(82.0, MMHG),
        Flags::default(),
    );
    w.obs(
        &mut r,
        catalogue::BODY_HEIGHT,
        t - 75,
        Val::Num(167.0, "cm"),
        Flags::default(),
    );
}

const ALCOHOL_TEXTS: [&str; 5] = [
    "Non-drinker",
    "Occasional drinker, about 2 units a week",
    "Drinks about 8 units a week",
    "Drinks about 14 units a week",
    "Drinks about 30 units a week; brief intervention given",
];

/// The kinds of filler observation, by weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BloodPressure,
    Weight,
    Height,
    Bmi,
    Smoking,
    Hba1c,
    Cholesterol,
    HeartRate,
    Spo2,
    RespiratoryRate,
    Alcohol,
}

const KINDS: [(u32, Kind); 11] = [
    (250, Kind::BloodPressure),
    (160, Kind::Weight),
    (50, Kind::Height),
    (80, Kind::Bmi),
    (80, Kind::Smoking),
    (60, Kind::Hba1c),
    (70, Kind::Cholesterol),
    (90, Kind::HeartRate),
    (60, Kind::Spo2),
    (40, Kind::RespiratoryRate),
    (60, Kind::Alcohol),
];

fn write_random(w: &mut Writer<'_>, plan: &Plan, p: &Person) {
    let t = plan.today;
    let mut rng = Rng::for_patient(plan.seed, p.index, Stream::Gp);
    let (ods, _) = plan.practice(p.practice);
    let usual_gp = catalogue::GP_NAMES[(p.practice * 3 + rng.below(3)) % catalogue::GP_NAMES.len()];
    let mut r = Reg::new(&format!("r{:07}", p.index), ods, usual_gp);
    w.patient(p, &r, Some(&p.nhs), p.registration_start, None);
    let age = p.age(t);
    let adult = age >= 16;
    let earliest = p.dob.max(t - 3650);
    let day = |rng: &mut Rng| rng.range(earliest.min(t - 1), t - 1);
    let flags = |rng: &mut Rng| Flags {
        confidential: rng.chance(30),
        entered_in_error: rng.chance(5),
    };

    // About 35 observations: with medication, allergies and the other sources, about 50 native
    // records per patient, as in a real region's shared record.
    let target = rng.range(20, 50) as usize;
    if p.objector {
        let d = rng.range(p.registration_start.min(t - 1), t - 1);
        w.obs(&mut r, catalogue::OBJECTION, d, Val::None, Flags::default());
    }
    for c in &p.conditions {
        let d = day(&mut rng);
        let fl = flags(&mut rng);
        w.obs(
            &mut r,
            c.code(),
            d,
            Val::None,
            Flags {
                entered_in_error: false,
                ..fl
            },
        );
    }
    let diabetic = p.conditions.contains(&Condition::Type2Diabetes);
    let hypertensive = p.conditions.contains(&Condition::Hypertension);
    while r.obs < target {
        let kind = *rng.weighted(&KINDS);
        let d = day(&mut rng);
        let fl = flags(&mut rng);
        match kind {
            Kind::BloodPressure if adult && r.obs + 2 <= target => {
                let base = 112.0 + age as f64 * 0.35 + if hypertensive { 14.0 } else { 0.0 };
                let sys = (base + rng.range(-14, 14) as f64).round();
                let dia = (sys * 0.62 + rng.range(-6, 6) as f64).round();
                w.obs(&mut r, catalogue::SYSTOLIC_BP, d, Val::Num(sys, MMHG), fl);
                w.obs(&mut r, catalogue::DIASTOLIC_BP, d, Val::Num(dia, MMHG), fl);
            }
            Kind::Weight => {
                let kg = if age < 16 {
                    (3.5 + date::age(p.dob, d) as f64 * 3.4) * rng.real(0.85, 1.15, 2)
                } else {
                    rng.real(48.0, 115.0, 1)
                };
                w.obs(
                    &mut r,
                    catalogue::BODY_WEIGHT,
                    d,
                    Val::Num((kg * 10.0).round() / 10.0, "kg"),
                    fl,
                );
            }
            Kind::Height => {
                let cm = if age < 16 {
                    52.0 + date::age(p.dob, d) as f64 * 6.2 + rng.range(-5, 5) as f64
                } else if p.sex == crate::people::Sex::Male {
                    rng.range(160, 192) as f64
                } else {
                    rng.range(150, 178) as f64
                };
                w.obs(&mut r, catalogue::BODY_HEIGHT, d, Val::Num(cm, "cm"), fl);
            }
            Kind::Bmi if adult => {
                let bmi = rng.real(18.5, 38.0, 1);
                w.obs(&mut r, catalogue::BMI, d, Val::Num(bmi, "kg/m2"), fl);
            }
            Kind::Smoking if adult => {
                let code = *rng.weighted(&[
                    (150, catalogue::SMOKER),
                    (250, catalogue::EX_SMOKER),
                    (600, catalogue::NEVER_SMOKED),
                ]);
                w.obs(&mut r, code, d, Val::None, fl);
            }
            Kind::Hba1c if diabetic || age >= 40 => {
                let v = if diabetic {
                    rng.range(45, 90)
                } else {
                    rng.range(30, 41)
                } as f64;
                w.obs(
                    &mut r,
                    catalogue::HBA1C,
                    d,
                    Val::Range(v, "mmol/mol", Some(20.0), Some(41.0)),
                    fl,
                );
            }
            Kind::Cholesterol if age >= 40 => {
                let v = rng.real(3.0, 7.5, 1);
                w.obs(
                    &mut r,
                    catalogue::SERUM_CHOLESTEROL,
                    d,
                    Val::Range(v, "mmol/L", None, Some(5.0)),
                    fl,
                );
            }
            Kind::HeartRate => {
                let v = rng.range(
                    if age < 5 { 80 } else { 55 },
                    if age < 5 { 130 } else { 100 },
                ) as f64;
                w.obs(&mut r, catalogue::HEART_RATE, d, Val::Num(v, "/min"), fl);
            }
            Kind::Spo2 => {
                let v = rng.range(93, 100) as f64;
                w.obs(&mut r, catalogue::SPO2, d, Val::Num(v, "%"), fl);
            }
            Kind::RespiratoryRate => {
                let v = rng.range(12, 20) as f64;
                w.obs(
                    &mut r,
                    catalogue::RESPIRATORY_RATE,
                    d,
                    Val::Num(v, "/min"),
                    fl,
                );
            }
            Kind::Alcohol if adult => {
                let text = *rng.pick(&ALCOHOL_TEXTS);
                w.obs(&mut r, catalogue::ALCOHOL_INTAKE, d, Val::Text(text), fl);
            }
            _ => {}
        }
    }

    for a in &p.allergies {
        let confidential = rng.chance(30);
        w.allergy(&mut r, a, confidential);
    }

    let target = rng.range(2, 10) as usize;
    let mut repeats: Vec<Drug> = Vec::new();
    for c in &p.conditions {
        for d in c.repeat_drugs() {
            if !repeats.iter().any(|x| x.dmd == d.dmd) {
                repeats.push(*d);
            }
        }
    }
    for drug in repeats.into_iter().take(target) {
        let start = rng.range((p.dob + 16 * 365).min(t - 60), t - 60);
        let course_type = if rng.chance(200) {
            "repeat-dispensing"
        } else {
            "repeat"
        };
        let course = match *rng.weighted(&[(850, "active"), (100, "cancelled"), (50, "completed")])
        {
            "active" => Course {
                course_type,
                ..repeat(drug, start, t - rng.range(1, 56))
            },
            status => {
                let end = (start + rng.range(30, 400)).min(t - 1);
                Course {
                    drug,
                    course_type,
                    start,
                    end: Some(end),
                    last_issue: Some(end),
                    status,
                }
            }
        };
        let confidential = rng.chance(30);
        w.medication(&mut r, &course, confidential);
    }
    let no_penicillins = p.has_penicillin_allergy();
    while r.meds < target {
        let mut drug = *rng.pick(&catalogue::ACUTE_DRUGS);
        if no_penicillins && drug.dmd != catalogue::PARACETAMOL_500.dmd {
            drug = catalogue::PARACETAMOL_500;
        }
        let start = rng.range(earliest.min(t - 8), t - 8);
        let confidential = rng.chance(30);
        w.medication(&mut r, &acute(drug, start), confidential);
    }

    let mut alerts = 0;
    if p.interpreter && rng.chance(700) {
        let term = format!("Requires {} interpreter", p.language.1);
        let text = format!(
            "Main language {}: book an interpreter for every appointment",
            p.language.1
        );
        w.alert(
            &mut r,
            None,
            &term,
            &text,
            p.registration_start.max(t - 3000),
            None,
        );
        alerts += 1;
    }
    if rng.chance(20) {
        let (snomed, term, text) = catalogue::GP_ALERTS[rng.below(catalogue::GP_ALERTS.len())];
        let start = rng.range(earliest.min(t - 1), t - 1);
        let end = rng.chance(150).then(|| rng.range(start, t - 1));
        // Resuscitation decisions and lasting powers of attorney belong to older adults.
        let for_older_adults = snomed.is_some() || term.starts_with("Lasting power");
        if alerts < 2 && (age >= 65 || !for_older_adults) {
            w.alert(&mut r, snomed, term, text, start, end);
        }
    }
}
