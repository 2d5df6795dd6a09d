//! What the policy knows about a patient and their records, each fact with the source it came
//! from. A source that did not answer leaves its facts *unknown*, never *absent*: it is listed
//! in [`PatientFacts::unanswered`] with the kinds of fact it would have given, and every rule
//! that needs such a fact fails closed on it. Dates are whole days since 1970-01-01.

use std::fmt;

/// A fact and the source that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The configured source name (`gp-main`, `hl7`, `scr` for the facade's own store).
    pub source: String,
    pub fact: T,
}

impl<T> Sourced<T> {
    pub fn new(source: impl Into<String>, fact: T) -> Sourced<T> {
        Sourced {
            source: source.into(),
            fact,
        }
    }
}

/// One standing or recent link between the patient and an organisation or worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareLink {
    /// GP registration; `current` while not ended (R-LR-1).
    Registration { org: String, current: bool },
    /// Hospital or mental health visit; `ended_day` is the discharge day (R-LR-2).
    Visit { org: String, ended_day: Option<i64> },
    /// Social care allocation to a worker (token `sub`) and/or the members of a team (R-LR-3).
    Allocation {
        org: String,
        worker: Option<String>,
        team_members: Vec<String>,
        open: bool,
    },
}

impl fmt::Display for CareLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CareLink::Registration { org, current } => write!(
                f,
                "GP registration at {org} ({})",
                if *current { "current" } else { "ended" }
            ),
            CareLink::Visit { org, ended_day } => match ended_day {
                None => write!(f, "open visit at {org}"),
                Some(d) => write!(f, "visit at {org} ended on {}", civil_date(*d)),
            },
            CareLink::Allocation {
                org,
                worker,
                team_members,
                open,
            } => write!(
                f,
                "{} allocation at {org} to {}{}",
                if *open { "open" } else { "closed" },
                worker.as_deref().unwrap_or("no named worker"),
                if team_members.is_empty() {
                    String::new()
                } else {
                    format!(" and a team of {}", team_members.len())
                }
            ),
        }
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (proleptic Gregorian calendar).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A statement of the patient's objection to sharing, or its withdrawal (R-OBJ-1), from the GP
/// record or registered in the shared care record as a Consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub objects: bool,
    pub effective: String,
    pub recorded_at: String,
    pub org: String,
    /// Its place in the facade's own log of statements (the store's row id), which orders two
    /// statements registered here with the same dates and recording time. Only the facade's
    /// store sets it, so it never compares statements of two sources.
    pub sequence: Option<i64>,
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} effective {} recorded by {}",
            if self.objects {
                "objection"
            } else {
                "withdrawal of objection"
            },
            self.effective,
            self.org
        )
    }
}

/// A self-claimed relationship in force (R-LR-4), for one user at one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user: String,
    pub org: String,
    /// `ETREAT` or `BTG`.
    pub purpose: String,
    /// The written reason the clinician gave.
    pub reason: String,
    pub expires_at: String,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "self-claimed relationship of user {} at {}, purpose {}, until {}",
            self.user, self.org, self.purpose, self.expires_at
        )
    }
}

/// A source that did not answer for this patient, and the facts it would have given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub source: String,
    /// A human label for notices, e.g. "GP replica gp-main".
    pub description: String,
    /// It holds registrations, visits or allocations (R-LR).
    pub relationships: bool,
    /// It holds objection statements (R-OBJ-1).
    pub objections: bool,
}

/// Everything the policy knows about the patient whose record is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    pub links: Vec<Sourced<CareLink>>,
    pub statements: Vec<Sourced<Statement>>,
    /// Self-claimed relationships in force (R-LR-4), from the facade's store.
    pub claims: Vec<Sourced<Claim>>,
    /// Sources that did not answer: their facts are unknown.
    pub unanswered: Vec<Unanswered>,
    /// Today, in days since 1970-01-01.
    pub today: i64,
}

impl PatientFacts {
    /// The sources that hold relationships and did not answer.
    pub fn relationships_unknown_from(&self) -> Vec<&str> {
        self.unanswered_where(|u| u.relationships)
    }

    /// The sources that hold objection statements and did not answer.
    pub fn objections_unknown_from(&self) -> Vec<&str> {
        self.unanswered_where(|u| u.objections)
    }

    fn unanswered_where(&self, holds: impl Fn(&Unanswered) -> bool) -> Vec<&str> {
        self.unanswered
            .iter()
            .filter(|u| holds(u))
            .map(|u| u.description.as_str())
            .collect()
    }
}

/// Whether a record is coded in a sensitive value set or came from a sensitive service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    NotSensitive,
    Sensitive,
    /// The source could not classify it (its value set or service list is not loaded):
    /// treated as sensitive (R-SENS-1, failing closed).
    Unknown,
}

/// What the policy knows of one record: its holder and its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLabels<'a> {
    pub source_org: &'a str,
    pub sensitivity: Sensitivity,
    pub confidential: bool,
    pub hidden_from_patient: bool,
}

/// One record (or demographics fragment, `resource_type` `Patient`) offered to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFacts<'a> {
    pub resource_type: &'a str,
    pub labels: RecordLabels<'a>,
    /// Whether the token's SMART v2 search constraints (`patient/Observation.rs?category=...`)
    /// admit this record; evaluated by whoever holds the resource, a fact to the policy.
    pub within_scope_constraints: bool,
}
