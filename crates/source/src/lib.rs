//! What every provider source gives the facade, whatever its native shape: FHIR resources
//! (as JSON) labelled for the access policy, patient demographics fragments to merge, and the
//! care relationships the legitimate-relationship rules need. Source crates implement
//! [`Source`]; the server fans out to them and never sees a native row.

use serde_json::Value;

/// The five clinical resource types the facade serves (plus Patient, which is merged).
pub const CLINICAL_TYPES: [&str; 4] = [
    "AllergyIntolerance",
    "MedicationStatement",
    "Observation",
    "Flag",
];

/// What the access policy needs to know about one record, decided by the source that holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// ODS code of the organisation that holds the record.
    pub source_org: String,
    /// Coded in a sensitive value set, or recorded by a sensitive service (R-SENS-1, R-SENS-2).
    pub sensitive: bool,
    /// Marked confidential by the GP (R-SENS-3).
    pub confidential: bool,
    /// Marked by the GP as not to be shown to the patient (R-SENS-5).
    pub hidden_from_patient: bool,
}

/// One clinical resource from a source.
#[derive(Debug, Clone)]
pub struct Record {
    pub resource_type: &'static str,
    /// The facade's logical id: `{source name}.{native key}`.
    pub id: String,
    pub nhs_number: String,
    pub labels: Labels,
    /// The FHIR R4 resource as JSON, `id` and `meta` filled in.
    pub resource: Value,
}

/// One source's view of a patient's demographics, to be merged with the others'.
#[derive(Debug, Clone)]
pub struct PatientFragment {
    pub source_name: String,
    pub source_org: String,
    /// Lower is preferred when fragments disagree: GP 0, hospital 1, social care 2.
    pub priority: u8,
    /// A FHIR Patient resource from this source alone (no id).
    pub resource: Value,
    /// `last_updated` of the native row, ISO 8601.
    pub last_updated: String,
}

/// A standing or recent relationship between a patient and an organisation or worker, for the
/// legitimate-relationship rules (R-LR-1..3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relationship {
    /// Registered at a GP practice; `ended` set when the patient left.
    Registration {
        org: String,
        start: String,
        ended: Option<String>,
    },
    /// A hospital visit; `ended` is the discharge time.
    Visit {
        org: String,
        start: String,
        ended: Option<String>,
    },
    /// A social care allocation to a worker (token `sub`) and/or a team.
    Allocation {
        org: String,
        worker_user_id: Option<String>,
        team_member_user_ids: Vec<String>,
        start: String,
        ended: Option<String>,
    },
}

/// A coded statement about the patient's objection to sharing (R-OBJ-1), read from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectionStatement {
    pub objects: bool,
    pub effective: String,
    pub recorded_at: String,
    pub org: String,
}

/// Everything one source holds about one patient, fetched in one batch.
#[derive(Debug, Clone, Default)]
pub struct PatientRecords {
    pub fragments: Vec<PatientFragment>,
    pub records: Vec<Record>,
    pub relationships: Vec<Relationship>,
    pub objections: Vec<ObjectionStatement>,
}

impl PatientRecords {
    pub fn extend(&mut self, other: PatientRecords) {
        self.fragments.extend(other.fragments);
        self.records.extend(other.records);
        self.relationships.extend(other.relationships);
        self.objections.extend(other.objections);
    }
}

/// How a Patient search identifies people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientQuery {
    NhsNumber(String),
    /// Family name (case-insensitive, starts-with as FHIR string search, `%` and `_` literal)
    /// and the exact day of birth (`YYYY-MM-DD`): never a family name alone, which would sweep
    /// the region.
    FamilyAndBirthDate {
        family: String,
        birth_date: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source could not be reached or answered with an error. `detail` is for the log only.
    #[error("source {source_name} is unavailable: {detail}")]
    Unavailable { source_name: String, detail: String },
    /// The source did not answer within its timeout.
    #[error("source {source_name} timed out")]
    Timeout { source_name: String },
    /// The source refused our request (a neighbouring record's own policy). `reason` is its
    /// OperationOutcome's text, which it meant for the end user.
    #[error("source {source_name} refused the request ({status}): {reason}")]
    Refused {
        source_name: String,
        status: u16,
        reason: String,
    },
    /// The source answered with data the facade cannot translate.
    #[error("source {source_name} returned data that cannot be translated: {detail}")]
    BadData { source_name: String, detail: String },
}

impl SourceError {
    pub fn source_name(&self) -> &str {
        match self {
            SourceError::Unavailable { source_name, .. }
            | SourceError::Timeout { source_name }
            | SourceError::Refused { source_name, .. }
            | SourceError::BadData { source_name, .. } => source_name,
        }
    }
}

/// A counted report of native rows the source could not match to anyone (no valid NHS number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchReport {
    pub rows_checked: u64,
    pub rows_without_valid_nhs_number: u64,
}

/// Which clinical records a request needs of a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Every record: `$everything`, or a read by id.
    Everything,
    /// None: a Patient read or search needs only demographics, relationships and objections.
    Context,
    /// The records of one type: a search of that type.
    OfType(&'static str),
}

impl Wanted {
    pub fn includes(self, resource_type: &str) -> bool {
        match self {
            Wanted::Everything => true,
            Wanted::Context => false,
            Wanted::OfType(t) => t == resource_type,
        }
    }
}

/// The kinds of patient fact a source holds. When the source does not answer, these facts are
/// unknown, and the access rules that need them fail closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feeds {
    /// Registrations, visits or allocations (R-LR-1..3).
    pub relationships: bool,
    /// Objection statements (R-OBJ-1).
    pub objections: bool,
}

/// A provider source. Calls block (diesel); the server runs them on its blocking pool.
pub trait Source: Send + Sync {
    /// The configured name, also the prefix of every id this source issues.
    fn name(&self) -> &str;
    /// A human label for warnings: e.g. "GP replica gp-main".
    fn description(&self) -> String;
    /// Which patient facts it holds: required, so no source can be forgotten when it is down.
    fn feeds(&self) -> Feeds;
    /// Whether a request that wants `wanted` needs this source at all. A source that holds
    /// demographics or patient facts is always needed: its silence must make them unknown. One
    /// that holds only records of some types may say no, and is then not asked.
    fn needed_for(&self, _wanted: Wanted) -> bool {
        true
    }
    /// NHS numbers (already validated) of the people matching the query.
    fn find_patients(&self, query: &PatientQuery) -> Result<Vec<String>, SourceError>;
    /// What this source holds about one NHS number: demographics, relationships and objections
    /// always, and the records `wanted` includes. A source may return other records too (the
    /// server drops them); `wanted` lets it skip reading what nobody asked for.
    fn patient_records(
        &self,
        nhs_number: &str,
        wanted: Wanted,
    ) -> Result<PatientRecords, SourceError>;
    /// One record by the native key (the part of the id after `{name}.`), if it exists.
    fn read(&self, resource_type: &str, native_key: &str) -> Result<Option<Record>, SourceError>;
    /// Rows the source could not match, for the start-up report.
    fn match_report(&self) -> Result<MatchReport, SourceError>;
    /// One round trip to the source, for `/health/ready`: no patient data.
    fn ping(&self) -> Result<(), SourceError>;
}

/// The distinct valid NHS numbers among a native NHS number column's values: invalid or missing
/// ones are never matched to anyone.
pub fn valid_nhs_numbers(found: Vec<Option<String>>) -> Vec<String> {
    let mut numbers: Vec<String> = found
        .into_iter()
        .flatten()
        .filter(|n| scr_fhir::nhs_number::is_valid(n))
        .collect();
    numbers.sort();
    numbers.dedup();
    numbers
}

/// Counts the rows of a native NHS number column that cannot be matched.
pub fn match_report(numbers: &[Option<String>]) -> MatchReport {
    let bad = numbers
        .iter()
        .filter(|n| !n.as_deref().is_some_and(scr_fhir::nhs_number::is_valid))
        .count();
    MatchReport {
        rows_checked: numbers.len() as u64,
        rows_without_valid_nhs_number: bad as u64,
    }
}

/// Splits a facade id into source name and native key.
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.')
        .filter(|(s, k)| !s.is_empty() && !k.is_empty())
}

/// Builds the facade id for a native key; keys outside FHIR's id alphabet are refused upstream.
pub fn make_id(source_name: &str, native_key: &str) -> String {
    format!("{source_name}.{native_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_source_and_key() {
        let id = make_id("gp-main", "obs-1234");
        assert_eq!(split_id(&id), Some(("gp-main", "obs-1234")));
        assert_eq!(split_id("nodot"), None);
        assert_eq!(split_id(".x"), None);
    }
}
