//! The HL7 v2 feed as a provider source: what the trusts sent, read back from the store as FHIR
//! with ids, `meta` and policy labels. A record's id is `{source name}.{kind}-{row id}`
//! (`obs-42`, `allergy-7`, `med-3`); a corrected result keeps its row, hence its id.

use serde_json::Value;

use scr_db::DbPool;
use scr_fhir::build;
use scr_source::{
    make_id, Feeds, Labels, MatchReport, PatientFragment, PatientQuery, PatientRecords, Record,
    Relationship, Source, SourceError, Wanted,
};
use scr_store::hl7;
use scr_store::{DbConnection, PooledDb};

use scr_hl7::ErrorKind;

/// Patient demographics from hospitals rank after the GP's.
const HOSPITAL_PRIORITY: u8 = 1;

/// The kinds of record this source serves: FHIR type and native key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allergy,
    Observation,
    Medication,
}

impl Kind {
    fn resource_type(self) -> &'static str {
        match self {
            Kind::Allergy => "AllergyIntolerance",
            Kind::Observation => "Observation",
            Kind::Medication => "MedicationStatement",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Allergy => "allergy",
            Kind::Observation => "obs",
            Kind::Medication => "med",
        }
    }

    /// The kind and row id a native key names, if it names one for `resource_type`.
    fn parse_key(resource_type: &str, native_key: &str) -> Option<(Kind, i64)> {
        let kind = [Kind::Allergy, Kind::Observation, Kind::Medication]
            .into_iter()
            .find(|k| k.resource_type() == resource_type)?;
        let digits = native_key.strip_prefix(kind.prefix())?.strip_prefix('-')?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return None;
        }
        digits.parse().ok().map(|id| (kind, id))
    }
}

/// The records received over HL7 v2 from the configured trusts.
pub struct Hl7Source {
    name: String,
    pool: DbPool,
}

impl Hl7Source {
    /// `name` is the configured source name (the prefix of every id); `pool` the store's pool.
    pub fn new(name: impl Into<String>, pool: DbPool) -> Hl7Source {
        Hl7Source {
            name: name.into(),
            pool,
        }
    }

    fn conn(&self) -> Result<PooledDb, SourceError> {
        self.pool.get().map_err(|e| self.unavailable(&e))
    }

    fn unavailable(&self, e: &dyn std::error::Error) -> SourceError {
        let mut detail = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
            cause = c.source();
        }
        SourceError::Unavailable {
            source_name: self.name.clone(),
            detail,
        }
    }

    fn bad_data(&self, what: &str, id: i64, e: &serde_json::Error) -> SourceError {
        SourceError::BadData {
            source_name: self.name.clone(),
            detail: format!("stored {what} {id} is not JSON: {e}"),
        }
    }

    /// A stored row as a record: the resource with `id` and `meta` added.
    #[expect(
        clippy::too_many_arguments,
        reason = "the columns every record row shares"
    )]
    fn record(
        &self,
        kind: Kind,
        id: i64,
        nhs_number: &str,
        facility: &str,
        sensitive: i32,
        resource: &str,
        last_updated: &str,
    ) -> Result<Record, SourceError> {
        let mut value: Value = serde_json::from_str(resource)
            .map_err(|e| self.bad_data(kind.resource_type(), id, &e))?;
        let fhir_id = make_id(&self.name, &format!("{}-{id}", kind.prefix()));
        value["id"] = fhir_id.clone().into();
        value["meta"] = build::source_meta(
            kind.resource_type(),
            &self.name,
            facility,
            Some(last_updated),
        );
        Ok(Record {
            resource_type: kind.resource_type(),
            id: fhir_id,
            nhs_number: nhs_number.to_owned(),
            labels: Labels {
                source_org: facility.to_owned(),
                sensitive: sensitive != 0,
                ..Labels::default()
            },
            resource: value,
        })
    }

    fn allergy(&self, r: &hl7::AllergyRow) -> Result<Record, SourceError> {
        self.record(
            Kind::Allergy,
            r.id,
            &r.nhs_number,
            &r.facility,
            r.sensitive,
            &r.resource,
            &r.last_updated,
        )
    }

    fn observation(&self, r: &hl7::ObservationRow) -> Result<Record, SourceError> {
        self.record(
            Kind::Observation,
            r.id,
            &r.nhs_number,
            &r.facility,
            r.sensitive,
            &r.resource,
            &r.last_updated,
        )
    }

    fn medication(&self, r: &hl7::MedicationRow) -> Result<Record, SourceError> {
        self.record(
            Kind::Medication,
            r.id,
            &r.nhs_number,
            &r.facility,
            r.sensitive,
            &r.resource,
            &r.last_updated,
        )
    }

    fn load_records(
        &self,
        c: &mut DbConnection,
        nhs_number: &str,
        wanted: Wanted,
    ) -> Result<PatientRecords, SourceError> {
        let db = |e: diesel::result::Error| self.unavailable(&e);
        let mut out = PatientRecords::default();
        for p in hl7::patients_by_nhs(c, nhs_number).map_err(db)? {
            let resource: Value = serde_json::from_str(&p.resource)
                .map_err(|e| self.bad_data("Patient", p.id, &e))?;
            out.fragments.push(PatientFragment {
                source_name: self.name.clone(),
                source_org: p.facility,
                priority: HOSPITAL_PRIORITY,
                resource,
                last_updated: p.last_updated,
            });
        }
        if wanted.includes("AllergyIntolerance") {
            for a in hl7::allergies_by_nhs(c, nhs_number).map_err(db)? {
                out.records.push(self.allergy(&a)?);
            }
        }
        if wanted.includes("Observation") {
            for o in hl7::shown_observations_by_nhs(c, nhs_number).map_err(db)? {
                out.records.push(self.observation(&o)?);
            }
        }
        if wanted.includes("MedicationStatement") {
            for m in hl7::shown_medications_by_nhs(c, nhs_number).map_err(db)? {
                out.records.push(self.medication(&m)?);
            }
        }
        out.relationships = hl7::visits_by_nhs(c, nhs_number)
            .map_err(db)?
            .into_iter()
            .map(|v| Relationship::Visit {
                org: v.facility,
                start: v.admit_time,
                ended: v.discharge_time,
            })
            .collect();
        Ok(out)
    }
}

impl Source for Hl7Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        format!("HL7 v2 feed {}", self.name)
    }

    fn feeds(&self) -> Feeds {
        Feeds {
            relationships: true,
            objections: false,
        }
    }

    fn find_patients(&self, query: &PatientQuery) -> Result<Vec<String>, SourceError> {
        let mut c = self.conn()?;
        match query {
            PatientQuery::NhsNumber(n) => {
                if !scr_fhir::nhs_number::is_valid(n) {
                    return Ok(Vec::new());
                }
                let known = hl7::nhs_number_known(&mut c, n).map_err(|e| self.unavailable(&e))?;
                Ok(if known { vec![n.clone()] } else { Vec::new() })
            }
            PatientQuery::FamilyAndBirthDate { family, birth_date } => {
                if family.trim().is_empty() {
                    return Ok(Vec::new());
                }
                hl7::nhs_numbers_by_family(&mut c, family.trim(), birth_date)
                    .map_err(|e| self.unavailable(&e))
            }
        }
    }

    fn patient_records(
        &self,
        nhs_number: &str,
        wanted: Wanted,
    ) -> Result<PatientRecords, SourceError> {
        let mut c = self.conn()?;
        self.load_records(&mut c, nhs_number, wanted)
    }

    fn read(&self, resource_type: &str, native_key: &str) -> Result<Option<Record>, SourceError> {
        let Some((kind, id)) = Kind::parse_key(resource_type, native_key) else {
            return Ok(None);
        };
        let mut c = self.conn()?;
        let db = |e: diesel::result::Error| self.unavailable(&e);
        match kind {
            Kind::Allergy => hl7::allergy_by_id(&mut c, id)
                .map_err(db)?
                .map(|r| self.allergy(&r))
                .transpose(),
            Kind::Observation => hl7::observation_by_id(&mut c, id)
                .map_err(db)?
                .filter(|r| r.cancelled == 0)
                .map(|r| self.observation(&r))
                .transpose(),
            Kind::Medication => hl7::medication_by_id(&mut c, id)
                .map_err(db)?
                .filter(|r| r.cancelled == 0)
                .map(|r| self.medication(&r))
                .transpose(),
        }
    }

    fn ping(&self) -> Result<(), SourceError> {
        scr_db::ping(&mut *self.conn()?).map_err(|e| self.unavailable(&e))
    }

    fn match_report(&self) -> Result<MatchReport, SourceError> {
        let mut c = self.conn()?;
        let db = |e: diesel::result::Error| self.unavailable(&e);
        let checked = hl7::count_messages(&mut c).map_err(db)?;
        let unmatched =
            hl7::count_quarantined(&mut c, "AE", ErrorKind::NhsNumber.as_str()).map_err(db)?;
        Ok(MatchReport {
            rows_checked: u64::try_from(checked).unwrap_or_default(),
            rows_without_valid_nhs_number: u64::try_from(unmatched).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scr_hl7::examples::{with_field, ADT_A01, ORU_R01, RDE_O11};
    use scr_hl7_ingest::ingest::{ingest_message, AckCode, Hl7Config};
    use scr_store::test_support::test_databases;
    use scr_store::Store;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const NOW: &str = "2026-11-05T10:00:00Z";

    fn cfg() -> Hl7Config {
        Hl7Config {
            facilities: vec!["RXK".into()],
            sensitive_services: vec!["GUM".into()],
            sensitive_codes: vec![],
        }
    }

    fn loaded(store: &Store) -> Result<Hl7Source, Box<dyn std::error::Error>> {
        for raw in [ADT_A01, ORU_R01, RDE_O11] {
            assert_eq!(
                ingest_message(store.pool(), raw, &cfg(), NOW)?.code,
                AckCode::AA
            );
        }
        Ok(Hl7Source::new("acute", store.pool().clone()))
    }

    #[test]
    fn patient_records_hold_a_fragment_records_and_the_visit() -> TestResult {
        for db in test_databases("src_records")? {
            let store = Store::open(&db.url, 2)?;
            let source = loaded(&store)?;
            let recs = source.patient_records("9990000018", Wanted::Everything)?;
            assert_eq!(recs.fragments.len(), 1, "{}", db.label);
            let f = &recs.fragments[0];
            assert_eq!(
                (f.source_org.as_str(), f.priority, f.source_name.as_str()),
                ("RXK", 1, "acute")
            );
            scr_fhir::conformance::check(&f.resource)?;
            assert_eq!(f.resource["identifier"][0]["value"], "9990000018");
            let types: Vec<&str> = recs.records.iter().map(|r| r.resource_type).collect();
            assert_eq!(
                types,
                [
                    "AllergyIntolerance",
                    "Observation",
                    "Observation",
                    "MedicationStatement"
                ]
            );
            for r in &recs.records {
                scr_fhir::conformance::check(&r.resource).map_err(|e| format!("{}: {e}", r.id))?;
                assert_eq!(r.resource["id"], r.id.as_str());
                assert_eq!(
                    r.labels,
                    Labels {
                        source_org: "RXK".into(),
                        ..Labels::default()
                    }
                );
                assert_eq!(r.resource["meta"]["tag"][0]["code"], "RXK");
                assert_eq!(r.resource["meta"]["lastUpdated"], NOW);
                assert!(r.id.starts_with("acute."));
            }
            assert_eq!(
                recs.relationships,
                vec![Relationship::Visit {
                    org: "RXK".into(),
                    start: "2026-11-01T09:25:00Z".into(),
                    ended: None
                }]
            );
            assert!(source
                .patient_records("9434765919", Wanted::Everything)?
                .records
                .is_empty());
        }
        Ok(())
    }

    #[test]
    fn read_finds_records_by_native_key_and_nothing_else() -> TestResult {
        for db in test_databases("src_read")? {
            let store = Store::open(&db.url, 2)?;
            let source = loaded(&store)?;
            let recs = source.patient_records("9990000018", Wanted::Everything)?;
            for r in &recs.records {
                let (_, key) = scr_source::split_id(&r.id).ok_or("bad id")?;
                let read = source.read(r.resource_type, key)?.ok_or("not found")?;
                assert_eq!(read.resource, r.resource, "{}", db.label);
            }
            assert!(source.read("Observation", "allergy-1")?.is_none());
            assert!(source.read("Observation", "obs-999999")?.is_none());
            assert!(source.read("Observation", "obs-01")?.is_none());
            assert!(source.read("Patient", "9990000018")?.is_none());
            assert!(source.read("Flag", "obs-1")?.is_none());
        }
        Ok(())
    }

    #[test]
    fn a_cancelled_result_cannot_be_read_by_id() -> TestResult {
        for db in test_databases("src_cancel")? {
            let store = Store::open(&db.url, 2)?;
            let source = loaded(&store)?;
            let before = source.patient_records("9990000018", Wanted::Everything)?;
            let k = before
                .records
                .iter()
                .find(|r| r.resource["code"]["coding"][0]["code"] == "2823-3")
                .ok_or("no K")?;
            let cancel = ORU_R01
                .replace("RXK000124", "RXK000900")
                .replace("20261101120000", "20261102120000")
                .replace("|5.9|mmol/L|3.5-5.3|H|||F|", "|||||||X|");
            ingest_message(store.pool(), &cancel, &cfg(), NOW)?;
            let (_, key) = scr_source::split_id(&k.id).ok_or("bad id")?;
            assert!(source.read("Observation", key)?.is_none(), "{}", db.label);
            assert_eq!(
                source
                    .patient_records("9990000018", Wanted::Everything)?
                    .records
                    .len(),
                before.records.len() - 1
            );
        }
        Ok(())
    }

    #[test]
    fn patients_are_found_by_nhs_number_or_family_and_birth_date() -> TestResult {
        for db in test_databases("src_find")? {
            let store = Store::open(&db.url, 2)?;
            let source = loaded(&store)?;
            let nhs = |n: &str| PatientQuery::NhsNumber(n.into());
            let fam = |f: &str, d: &str| PatientQuery::FamilyAndBirthDate {
                family: f.into(),
                birth_date: d.into(),
            };
            assert_eq!(
                source.find_patients(&nhs("9990000018"))?,
                ["9990000018"],
                "{}",
                db.label
            );
            assert!(source.find_patients(&nhs("9434765919"))?.is_empty());
            assert!(source.find_patients(&nhs("not-a-number"))?.is_empty());
            assert_eq!(
                source.find_patients(&fam("smi", "1970-01-02"))?,
                ["9990000018"]
            );
            assert_eq!(
                source.find_patients(&fam("Smith", "1970-01-02"))?,
                ["9990000018"]
            );
            assert!(source
                .find_patients(&fam("jones", "1970-01-02"))?
                .is_empty());
            assert!(source
                .find_patients(&fam("smith", "1970-01-03"))?
                .is_empty());
            assert!(source.find_patients(&fam("%", "1970-01-02"))?.is_empty());
            assert!(source.find_patients(&fam(" ", "1970-01-02"))?.is_empty());
        }
        Ok(())
    }

    #[test]
    fn gum_visit_records_are_labelled_sensitive() -> TestResult {
        for db in test_databases("src_gum")? {
            let store = Store::open(&db.url, 2)?;
            let adt = with_field(ADT_A01, "PV1", 10, "GUM");
            ingest_message(store.pool(), &adt, &cfg(), NOW)?;
            ingest_message(
                store.pool(),
                &with_field(ORU_R01, "OBR", 24, "GUM"),
                &cfg(),
                NOW,
            )?;
            let source = Hl7Source::new("acute", store.pool().clone());
            let recs = source.patient_records("9990000018", Wanted::Everything)?;
            assert_eq!(recs.records.len(), 3, "{}", db.label);
            assert!(recs
                .records
                .iter()
                .all(|r| r.labels.sensitive && r.labels.source_org == "RXK"));
        }
        Ok(())
    }

    #[test]
    fn match_report_counts_messages_without_a_valid_nhs_number() -> TestResult {
        for db in test_databases("src_match")? {
            let store = Store::open(&db.url, 2)?;
            let source = loaded(&store)?;
            ingest_message(
                store.pool(),
                &ADT_A01.replace("9990000018", "9990000017"),
                &cfg(),
                NOW,
            )?;
            ingest_message(
                store.pool(),
                &ADT_A01
                    .replace("9990000018^^^NHS^NH~", "")
                    .replace("RXK000123", "RXK000124X"),
                &cfg(),
                NOW,
            )?;
            ingest_message(store.pool(), "garbage", &cfg(), NOW)?;
            let report = source.match_report()?;
            assert_eq!(
                report,
                MatchReport {
                    rows_checked: 6,
                    rows_without_valid_nhs_number: 2
                },
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn a_database_failure_is_unavailable_not_empty() -> TestResult {
        // A pool over a store whose tables do not exist: every query fails.
        let db = scr_store::test_support::sqlite_database("src_down");
        let pool = scr_db::open_pool("broken", &db.url, &scr_db::PoolOptions::default())?;
        let source = Hl7Source::new("acute", pool);
        assert!(matches!(
            source.patient_records("9990000018", Wanted::Everything),
            Err(SourceError::Unavailable { .. })
        ));
        assert!(matches!(
            source.read("Observation", "obs-1"),
            Err(SourceError::Unavailable { .. })
        ));
        assert!(matches!(
            source.find_patients(&PatientQuery::NhsNumber("9990000018".into())),
            Err(SourceError::Unavailable { .. })
        ));
        assert!(matches!(
            source.match_report(),
            Err(SourceError::Unavailable { .. })
        ));
        Ok(())
    }
}
