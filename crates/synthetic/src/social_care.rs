//! One council's social care reporting replica (`social-care.sql`), council `LA-DUD`: teams,
//! workers, the people known to the council, allocations and alerts.

use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::Connection;
use scr_db::DbConnection;

use crate::catalogue;
use crate::date::{self, Day};
use crate::fixtures as f;
use crate::people::{fixture_people, Person, Plan};
use crate::rng::{Rng, Stream};
use crate::sql::{self, Inserter, Target, V};
use crate::{Options, Summary, SynthError};

pub(crate) const DDL: &str = include_str!("../../source-social-care/replica-schema.sql");
pub(crate) const TABLES: [&str; 5] = ["team", "worker", "person", "allocation", "alert"];

const TEAM: usize = 0;
const WORKER: usize = 1;
const PERSON: usize = 2;
const ALLOCATION: usize = 3;
const ALERT: usize = 4;

const COLUMNS: [(&str, &str); 5] = [
    ("team", "team_id, name, service_area"),
    ("worker", "worker_id, user_id, display_name, job_title, team_id"),
    ("person", "person_id, nhs_number, forename, surname, date_of_birth, gender, postcode, last_updated"),
    ("allocation", "allocation_id, person_id, worker_id, team_id, start_date, end_date"),
    ("alert", "alert_id, person_id, category, title, detail, household, start_date, end_date, created_by, last_updated"),
];

/// (team id, name, service area). The first two are the fixtures' teams; random people are
/// allocated only to the others, so the fixture workers see exactly the fixture people.
const TEAMS: [(&str, &str, &str); 6] = [
    (f::TEAM_ADULTS_NORTH, "Adults North", "adults"),
    (f::TEAM_CHILDRENS, "Children's Social Care", "children"),
    ("tm-adults-south", "Adults South", "adults"),
    (
        "tm-hospital-discharge",
        "Hospital Discharge Team",
        "hospital-discharge",
    ),
    ("tm-safeguarding", "Adult Safeguarding Team", "safeguarding"),
    ("tm-childrens-east", "Children's Services East", "children"),
];
const ADULT_TEAMS: [&str; 3] = [
    "tm-adults-south",
    "tm-hospital-discharge",
    "tm-safeguarding",
];
const CHILDREN_TEAM: &str = "tm-childrens-east";

/// (worker id, user id, name, job title, team).
const WORKERS: [(&str, &str, &str, &str, &str); 12] = [
    (
        f::ALEX_GREEN_WORKER_ID,
        f::ALEX_GREEN_USER_ID,
        "Alex Green",
        "Social Worker",
        f::TEAM_ADULTS_NORTH,
    ),
    (
        f::CHRIS_BLACK_WORKER_ID,
        f::CHRIS_BLACK_USER_ID,
        "Chris Black",
        "Social Worker",
        f::TEAM_CHILDRENS,
    ),
    (
        "wk-0003",
        "sw-dud-0003",
        "Priya Sharma",
        "Senior Social Worker",
        "tm-adults-south",
    ),
    (
        "wk-0004",
        "sw-dud-0004",
        "Tom Wright",
        "Social Worker",
        "tm-adults-south",
    ),
    (
        "wk-0005",
        "sw-dud-0005",
        "Agnieszka Nowak",
        "Occupational Therapist",
        "tm-adults-south",
    ),
    (
        "wk-0006",
        "sw-dud-0006",
        "Daniel Okafor",
        "Social Worker",
        "tm-hospital-discharge",
    ),
    (
        "wk-0007",
        "sw-dud-0007",
        "Sarah Hughes",
        "Social Care Assessor",
        "tm-hospital-discharge",
    ),
    (
        "wk-0008",
        "sw-dud-0008",
        "Imran Iqbal",
        "Safeguarding Practitioner",
        "tm-safeguarding",
    ),
    (
        "wk-0009",
        "sw-dud-0009",
        "Gemma Price",
        "Senior Social Worker",
        "tm-safeguarding",
    ),
    (
        "wk-0010",
        "sw-dud-0010",
        "Kwame Mensah",
        "Social Worker",
        "tm-childrens-east",
    ),
    (
        "wk-0011",
        "sw-dud-0011",
        "Siobhan O'Brien",
        "Senior Social Worker",
        "tm-childrens-east",
    ),
    (
        "wk-0012",
        "sw-dud-0012",
        "Harjit Sandhu",
        "Family Support Worker",
        "tm-childrens-east",
    ),
];

pub(crate) fn generate(
    conn: &mut DbConnection,
    opts: &Options,
    done: &AtomicUsize,
) -> Result<Summary, SynthError> {
    let plan = Plan::new(opts)?;
    let started = std::time::Instant::now();
    let summary = conn.transaction::<_, SynthError, _>(|conn| {
        sql::create_schema(conn, "social care", DDL, &TABLES)?;
        write_all(Inserter::new(Target::Db(conn), &COLUMNS), &plan, done)
    })?;
    log::info!(
        "social care replica ({}): {} people, {} rows ({} without a valid NHS number) in {} ms",
        f::COUNCIL,
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
        persons: 0,
        invalid: 0,
    };
    for (id, name, area) in TEAMS {
        w.ins.row(TEAM, &[V::T(id), V::T(name), V::T(area)]);
    }
    for (id, user, name, title, team) in WORKERS {
        w.ins.row(
            WORKER,
            &[V::T(id), V::T(user), V::T(name), V::T(title), V::T(team)],
        );
    }
    write_fixtures(&mut w);
    w.ins.flush()?;
    for person in plan.people() {
        if person.social_care {
            write_random(&mut w, plan, &person);
            w.ins.maybe_flush()?;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    w.ins.flush()?;
    Ok(Summary {
        patients: w.persons,
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
    persons: usize,
    invalid: usize,
}

impl Writer<'_> {
    fn person(&mut self, id: &str, nhs: Option<&str>, p: &Person) {
        self.persons += 1;
        if !nhs.is_some_and(scr_fhir::nhs_number::is_valid) {
            self.invalid += 1;
        }
        let dob = date::iso(p.dob);
        let updated = date::iso_time(
            self.today - 1 - (p.index % 200) as Day,
            9 * 3600 + (p.index % 30_000) as u32,
        );
        self.ins.row(
            PERSON,
            &[
                V::T(id),
                V::OptT(nhs),
                V::T(p.given),
                V::T(p.family),
                V::T(&dob),
                V::T(p.sex.social_care()),
                V::T(&p.postcode),
                V::T(&updated),
            ],
        );
    }

    fn allocation(
        &mut self,
        id: &str,
        person: &str,
        worker: Option<&str>,
        team: Option<&str>,
        start: Day,
        end: Option<Day>,
    ) {
        let start = date::iso(start);
        let end = end.map(date::iso);
        self.ins.row(
            ALLOCATION,
            &[
                V::T(id),
                V::T(person),
                V::OptT(worker),
                V::OptT(team),
                V::T(&start),
                V::OptT(end.as_deref()),
            ],
        );
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per column of the alert row"
    )]
    fn alert(
        &mut self,
        id: &str,
        person: &str,
        (category, title, detail): (&str, &str, &str),
        household: bool,
        start: Day,
        end: Option<Day>,
        created_by: Option<&str>,
    ) {
        let updated = date::iso_time(end.unwrap_or(start), 15 * 3600);
        let start = date::iso(start);
        let end = end.map(date::iso);
        self.ins.row(
            ALERT,
            &[
                V::T(id),
                V::T(person),
                V::T(category),
                V::T(title),
                V::T(detail),
                V::I(i64::from(household)),
                V::T(&start),
                V::OptT(end.as_deref()),
                V::OptT(created_by),
                V::T(&updated),
            ],
        );
    }
}

fn write_fixtures(w: &mut Writer<'_>) {
    let t = w.today;
    let people = fixture_people();

    let jane = &people.jane;
    w.person(f::JANE_SMITH_SC_PERSON, Some(&jane.nhs), jane);
    w.allocation(
        f::JANE_SMITH_ALLOCATION,
        f::JANE_SMITH_SC_PERSON,
        Some(f::ALEX_GREEN_WORKER_ID),
        None,
        t - 400,
        None,
    );
    w.alert(
        f::JANE_SMITH_SC_ALERT,
        f::JANE_SMITH_SC_PERSON,
        ("safeguarding", f::JANE_SMITH_SC_ALERT_TITLE, "Partner has a history of violence: visit in pairs and do not discuss concerns in front of him"),
        true,
        t - 90,
        None,
        Some(f::ALEX_GREEN_WORKER_ID),
    );

    let amelia = &people.amelia;
    w.person(f::AMELIA_NOWAK_SC_PERSON, Some(&amelia.nhs), amelia);
    w.allocation(
        f::AMELIA_NOWAK_ALLOCATION,
        f::AMELIA_NOWAK_SC_PERSON,
        None,
        Some(f::TEAM_CHILDRENS),
        t - 250,
        None,
    );

    let oliver = &people.oliver;
    w.person(f::OLIVER_WHITE_SC_PERSON, Some(&oliver.nhs), oliver);
    w.allocation(
        "sc-alloc-0007",
        f::OLIVER_WHITE_SC_PERSON,
        Some(f::ALEX_GREEN_WORKER_ID),
        None,
        t - 400,
        Some(t - f::OLIVER_WHITE_ALLOCATION_ENDED_DAYS_AGO),
    );
    w.alert(
        "sc-alert-0007",
        f::OLIVER_WHITE_SC_PERSON,
        (
            "communication",
            "Prefers contact by text message",
            "Does not answer calls from withheld numbers",
        ),
        false,
        t - 380,
        None,
        Some(f::ALEX_GREEN_WORKER_ID),
    );

    let daniel = crate::people::fixture_person(
        30,
        f::NINE_DIGIT_NHS,
        None,
        "Daniel",
        None,
        "Wright",
        crate::people::Sex::Male,
        "1991-02-14",
        ("27 Queen Street", "Dudley", "DY2 7HB"),
    );
    w.person(f::SC_PERSON_BAD_NHS, Some(f::NINE_DIGIT_NHS), &daniel);
}

fn write_random(w: &mut Writer<'_>, plan: &Plan, p: &Person) {
    let t = plan.today;
    let mut rng = Rng::for_patient(plan.seed, p.index, Stream::SocialCare);
    let key = format!("r{:07}", p.index);
    let person_id = format!("sc-per-{key}");
    w.person(&person_id, Some(&p.nhs), p);
    let child = p.age(t) < 18;
    // Known to the council for up to ten years; alerts from the last five.
    let known_since = (p.dob + 30).max(t - 3650).min(t - 2);
    let alerts_since = known_since.max(t - 1825);
    let team = if child {
        CHILDREN_TEAM
    } else {
        *rng.pick(&ADULT_TEAMS)
    };
    let team_workers: Vec<&str> = WORKERS
        .iter()
        .filter(|w| w.4 == team)
        .map(|w| w.0)
        .collect();
    let worker = *rng.pick(&team_workers);
    let mut allocations = 0;
    let mut allocate = |w: &mut Writer<'_>, rng: &mut Rng, start: Day, end: Option<Day>| {
        allocations += 1;
        let (with_worker, with_team) = *rng.weighted(&[
            (500, (true, true)),
            (300, (false, true)),
            (200, (true, false)),
        ]);
        w.allocation(
            &format!("sc-alloc-{key}-{allocations}"),
            &person_id,
            with_worker.then_some(worker),
            with_team.then_some(team),
            start,
            end,
        );
    };
    if rng.chance(150) {
        let start = rng.range(known_since, t - 2);
        let end = rng.range(start + 1, t - 1).min(t - 1);
        allocate(w, &mut rng, start, Some(end));
    }
    let start = rng.range(known_since, t - 1);
    let end = rng.chance(200).then(|| rng.range(start, t - 1));
    allocate(w, &mut rng, start, end);

    let alerts = *rng.weighted(&[(500, 0usize), (350, 1), (150, 2)]);
    for k in 1..=alerts {
        let (category, title, detail, household) =
            catalogue::SC_ALERTS[rng.below(catalogue::SC_ALERTS.len())];
        let start = rng.range(alerts_since, t - 1);
        let end = rng.chance(200).then(|| rng.range(start, t - 1));
        w.alert(
            &format!("sc-alert-{key}-{k}"),
            &person_id,
            (category, title, detail),
            household,
            start,
            end,
            Some(worker),
        );
    }
}
