//! The GP clinical system's reporting replica as a source (`gp-system.md`), read live over SQL
//! at request time: nothing is copied. One [`GpSource`] per configured replica, each with its own
//! pool and name.
//!
//! Everything the replica's columns mean is in this crate: the diesel schema ([`schema`]), the rows
//! ([`rows`]) and their translation to FHIR ([`translate`]).

pub mod rows;
pub mod schema;
pub mod translate;

use std::collections::HashMap;

use diesel::prelude::*;
use scr_db::{DbConnection, DbPool};
use scr_fhir::nhs_number;
use scr_source::{
    Feeds, Labels, MatchReport, ObjectionStatement, PatientFragment, PatientQuery, PatientRecords,
    Record, Relationship, Source, SourceError, Wanted,
};

use rows::*;
use schema::*;
use translate::{Context, Org};

use scr_db::lower;

/// Codes with a meaning for the record as a whole, and the sensitive value sets: configuration.
#[derive(Debug, Clone, Default)]
pub struct GpCodes {
    /// SNOMED concepts recording an objection to the shared care record (e.g. 416409005).
    pub objection: Vec<String>,
    /// SNOMED concepts recording consent, withdrawing an earlier objection.
    pub consent: Vec<String>,
    /// SNOMED concepts in the agreement's sensitive value sets (R-SENS-1).
    pub sensitive: Vec<String>,
    /// The category of each alert code (one ValueSet per category): a practice alert is
    /// classified by its `snomed_concept_id` first, by its text only when no ValueSet lists it.
    pub alerts: scr_fhir::alerts::AlertCodes,
}

type RecordLevelFilter = Box<
    dyn BoxableExpression<
        observation::table,
        <DbConnection as diesel::Connection>::Backend,
        SqlType = diesel::sql_types::Bool,
    >,
>;

pub struct GpSource {
    name: String,
    pool: DbPool,
    codes: GpCodes,
    /// Objection and consent codes: the observations that speak for the record as a whole.
    record_level_codes: Vec<String>,
}

impl GpSource {
    pub fn new(name: impl Into<String>, pool: DbPool, codes: GpCodes) -> GpSource {
        let record_level_codes = codes
            .objection
            .iter()
            .chain(&codes.consent)
            .cloned()
            .collect();
        GpSource {
            name: name.into(),
            pool,
            codes,
            record_level_codes,
        }
    }

    /// `snomed_concept_id` is one of the objection or consent codes (`None` when there are
    /// none), written as `=`s joined by `OR`: the same text on every call, so the statement
    /// stays in the connection's prepared statement cache. `IN (...)` is never cached, and
    /// preparing it again on every record opened cost about 7% of a search's CPU.
    fn record_level_filter(&self) -> Option<RecordLevelFilter> {
        self.record_level_codes
            .iter()
            .map(|code| -> RecordLevelFilter {
                Box::new(observation::snomed_concept_id.eq(code.clone()))
            })
            .reduce(|a, b| Box::new(a.or(b)))
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn conn(&self) -> Result<scr_db::PooledDb, SourceError> {
        self.pool.get().map_err(|e| self.unavailable(e))
    }

    fn organisations(
        &self,
        conn: &mut DbConnection,
        guids: Vec<String>,
    ) -> Result<HashMap<String, OrganisationRow>, SourceError> {
        let mut rows = HashMap::new();
        // One query per organisation, not `IN (...)`: a fixed query text stays in the
        // connection's prepared statement cache, a list of varying length never does.
        for guid in guids {
            let row: Option<OrganisationRow> = organisation::table
                .filter(organisation::org_guid.eq(&guid))
                .select(OrganisationRow::as_select())
                .first(conn)
                .optional()
                .map_err(|e| self.unavailable(e))?;
            if let Some(row) = row {
                rows.insert(guid, row);
            }
        }
        Ok(rows)
    }

    fn labels(&self, org: &OrganisationRow, snomed: &str, confidential: i32) -> Labels {
        Labels {
            source_org: org.ods_code.clone(),
            sensitive: self.codes.sensitive.iter().any(|c| c == snomed),
            confidential: confidential == 1,
            hidden_from_patient: false,
        }
    }

    fn is_record_level_code(&self, snomed: &str) -> bool {
        self.codes
            .objection
            .iter()
            .chain(&self.codes.consent)
            .any(|c| c == snomed)
    }

    /// Translates every row of one patient (all registrations sharing the NHS number).
    fn translate_all(
        &self,
        conn: &mut DbConnection,
        nhs: &str,
        patients: Vec<PatientRow>,
        today: &str,
        wanted: Wanted,
    ) -> Result<PatientRecords, SourceError> {
        // Per registration (almost always one), not `IN (...)`: fixed query texts stay in the
        // connection's prepared statement cache.
        let (mut observations, mut allergies, mut medications, mut alerts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for guid in patients.iter().map(|p| &p.patient_guid) {
            let unavailable = |e| self.unavailable(e);
            // Objection and consent entries are read whatever is wanted: the policy needs them.
            observations.extend(if wanted.includes("Observation") {
                observation::table
                    .filter(observation::patient_guid.eq(guid))
                    .filter(observation::entered_in_error.eq(0))
                    .select(ObservationRow::as_select())
                    .load::<ObservationRow>(conn)
                    .map_err(unavailable)?
            } else if let Some(record_level) = self.record_level_filter() {
                observation::table
                    .filter(observation::patient_guid.eq(guid))
                    .filter(observation::entered_in_error.eq(0))
                    .filter(record_level)
                    .select(ObservationRow::as_select())
                    .load::<ObservationRow>(conn)
                    .map_err(unavailable)?
            } else {
                Vec::new()
            });
            if wanted.includes("AllergyIntolerance") {
                allergies.extend(
                    allergy::table
                        .filter(allergy::patient_guid.eq(guid))
                        .filter(allergy::status.ne("entered-in-error"))
                        .select(AllergyRow::as_select())
                        .load::<AllergyRow>(conn)
                        .map_err(unavailable)?,
                );
            }
            if wanted.includes("MedicationStatement") {
                medications.extend(
                    medication::table
                        .filter(medication::patient_guid.eq(guid))
                        .filter(medication::status.ne("entered-in-error"))
                        .select(MedicationRow::as_select())
                        .load::<MedicationRow>(conn)
                        .map_err(unavailable)?,
                );
            }
            if wanted.includes("Flag") {
                alerts.extend(
                    patient_alert::table
                        .filter(patient_alert::patient_guid.eq(guid))
                        .select(AlertRow::as_select())
                        .load::<AlertRow>(conn)
                        .map_err(unavailable)?,
                );
            }
        }

        let mut org_guids: Vec<String> = patients
            .iter()
            .map(|p| p.registered_org_guid.clone())
            .collect();
        org_guids.extend(observations.iter().map(|r| r.org_guid.clone()));
        org_guids.extend(allergies.iter().map(|r| r.org_guid.clone()));
        org_guids.extend(medications.iter().map(|r| r.org_guid.clone()));
        org_guids.extend(alerts.iter().map(|r| r.org_guid.clone()));
        org_guids.sort();
        org_guids.dedup();
        let orgs = self.organisations(conn, org_guids)?;
        let org_of = |guid: &str| {
            orgs.get(guid).ok_or_else(|| SourceError::BadData {
                source_name: self.name.clone(),
                detail: "row names an organisation the replica does not hold".into(),
            })
        };

        let ctx = Context {
            source_name: &self.name,
            nhs_number: nhs,
            today,
            alert_codes: &self.codes.alerts,
        };
        let mut out = PatientRecords::default();
        for p in &patients {
            let o = org_of(&p.registered_org_guid)?;
            let org = Org {
                ods: &o.ods_code,
                name: &o.name,
            };
            out.fragments.push(PatientFragment {
                source_name: self.name.clone(),
                source_org: o.ods_code.clone(),
                // A current registration is the best demographic source of all.
                priority: if p.registration_end.is_none() { 0 } else { 1 },
                resource: translate::patient(&ctx, p, &org),
                last_updated: p.last_updated.clone(),
            });
            out.relationships.push(Relationship::Registration {
                org: o.ods_code.clone(),
                start: p.registration_start.clone(),
                ended: p.registration_end.clone(),
            });
            if let Some(flag) = translate::interpreter_flag(&ctx, p, &org) {
                out.records.push(self.record(
                    "Flag",
                    flag,
                    nhs,
                    Labels {
                        source_org: o.ods_code.clone(),
                        ..Labels::default()
                    },
                ));
            }
        }
        for r in &observations {
            let o = org_of(&r.org_guid)?;
            if self.is_record_level_code(&r.snomed_concept_id) {
                out.objections.push(ObjectionStatement {
                    objects: self.codes.objection.contains(&r.snomed_concept_id),
                    effective: r.effective_date.clone(),
                    recorded_at: r.recorded_at.clone(),
                    org: o.ods_code.clone(),
                });
                continue;
            }
            let v = translate::observation(
                &ctx,
                r,
                &Org {
                    ods: &o.ods_code,
                    name: &o.name,
                },
            );
            out.records.push(self.record(
                "Observation",
                v,
                nhs,
                self.labels(o, &r.snomed_concept_id, r.is_confidential),
            ));
        }
        for r in &allergies {
            let o = org_of(&r.org_guid)?;
            let v = translate::allergy(
                &ctx,
                r,
                &Org {
                    ods: &o.ods_code,
                    name: &o.name,
                },
            );
            let mut labels = self.labels(o, &r.snomed_concept_id, r.is_confidential);
            labels.sensitive |= r
                .substance_snomed_id
                .as_ref()
                .is_some_and(|s| self.codes.sensitive.contains(s));
            out.records
                .push(self.record("AllergyIntolerance", v, nhs, labels));
        }
        for r in &medications {
            let o = org_of(&r.org_guid)?;
            let v = translate::medication(
                &ctx,
                r,
                &Org {
                    ods: &o.ods_code,
                    name: &o.name,
                },
            );
            out.records.push(self.record(
                "MedicationStatement",
                v,
                nhs,
                self.labels(o, &r.dmd_code, r.is_confidential),
            ));
        }
        for r in &alerts {
            let o = org_of(&r.org_guid)?;
            let v = translate::alert(
                &ctx,
                r,
                &Org {
                    ods: &o.ods_code,
                    name: &o.name,
                },
            );
            let code = r.snomed_concept_id.as_deref().unwrap_or("");
            out.records
                .push(self.record("Flag", v, nhs, self.labels(o, code, 0)));
        }
        Ok(out)
    }

    fn record(
        &self,
        resource_type: &'static str,
        resource: serde_json::Value,
        nhs: &str,
        labels: Labels,
    ) -> Record {
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        Record {
            resource_type,
            id,
            nhs_number: nhs.to_owned(),
            labels,
            resource,
        }
    }

    fn patients_by_nhs(
        &self,
        conn: &mut DbConnection,
        nhs: &str,
    ) -> Result<Vec<PatientRow>, SourceError> {
        patient::table
            .filter(patient::nhs_number.eq(nhs))
            .select(PatientRow::as_select())
            .load(conn)
            .map_err(|e| self.unavailable(e))
    }

    /// The patient guid a clinical row belongs to, by type and native key.
    fn owner_of(
        &self,
        conn: &mut DbConnection,
        resource_type: &str,
        key: &str,
    ) -> Result<Option<String>, SourceError> {
        let found = match resource_type {
            "Observation" => observation::table
                .filter(observation::observation_guid.eq(key))
                .select(observation::patient_guid)
                .first(conn)
                .optional(),
            "AllergyIntolerance" => allergy::table
                .filter(allergy::allergy_guid.eq(key))
                .select(allergy::patient_guid)
                .first(conn)
                .optional(),
            "MedicationStatement" => medication::table
                .filter(medication::medication_guid.eq(key))
                .select(medication::patient_guid)
                .first(conn)
                .optional(),
            "Flag" => match (key.strip_prefix("alert-"), key.strip_prefix("interp-")) {
                (Some(guid), _) => patient_alert::table
                    .filter(patient_alert::alert_guid.eq(guid))
                    .select(patient_alert::patient_guid)
                    .first(conn)
                    .optional(),
                (_, Some(patient_guid)) => Ok(Some(patient_guid.to_owned())),
                _ => Ok(None),
            },
            _ => Ok(None),
        };
        found.map_err(|e| self.unavailable(e))
    }
}

impl Source for GpSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        format!("GP replica {}", self.name)
    }

    fn feeds(&self) -> Feeds {
        Feeds {
            relationships: true,
            objections: true,
        }
    }

    fn find_patients(&self, query: &PatientQuery) -> Result<Vec<String>, SourceError> {
        let mut conn = self.conn()?;
        let found: Vec<Option<String>> = match query {
            PatientQuery::NhsNumber(n) => patient::table
                .filter(patient::nhs_number.eq(n))
                .select(patient::nhs_number)
                .load(&mut *conn),
            PatientQuery::FamilyAndBirthDate { family, birth_date } => patient::table
                .filter(
                    lower(patient::family_name)
                        .like(scr_db::like_prefix(&family.to_lowercase()))
                        .escape('\\'),
                )
                .filter(patient::date_of_birth.eq(birth_date))
                .select(patient::nhs_number)
                .load(&mut *conn),
        }
        .map_err(|e| self.unavailable(e))?;
        Ok(scr_source::valid_nhs_numbers(found))
    }

    fn patient_records(&self, nhs: &str, wanted: Wanted) -> Result<PatientRecords, SourceError> {
        if !nhs_number::is_valid(nhs) {
            return Ok(PatientRecords::default());
        }
        let mut conn = self.conn()?;
        let patients = self.patients_by_nhs(&mut conn, nhs)?;
        if patients.is_empty() {
            return Ok(PatientRecords::default());
        }
        let (today, _) = scr_fhir::build::today_and_now();
        self.translate_all(&mut conn, nhs, patients, &today, wanted)
    }

    fn read(&self, resource_type: &str, key: &str) -> Result<Option<Record>, SourceError> {
        // The connection goes back to the pool before the patient's rows are read with another:
        // holding one while waiting for a second deadlocks a full pool (every concurrent read
        // holds one and waits), which stalled reads by id at 32 connections.
        let owner: Option<Option<String>> = {
            let mut conn = self.conn()?;
            let Some(patient_guid) = self.owner_of(&mut conn, resource_type, key)? else {
                return Ok(None);
            };
            patient::table
                .filter(patient::patient_guid.eq(&patient_guid))
                .select(patient::nhs_number)
                .first(&mut *conn)
                .optional()
                .map_err(|e| self.unavailable(e))?
        };
        let Some(nhs) = owner.flatten().filter(|n| nhs_number::is_valid(n)) else {
            return Ok(None);
        };
        // One patient's rows are few: translate them all and pick the one asked for, so a read
        // and a search can never disagree about what a row looks like.
        let records = self.patient_records(&nhs, Wanted::Everything)?;
        let wanted = scr_source::make_id(&self.name, key);
        Ok(records
            .records
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.id == wanted))
    }

    fn ping(&self) -> Result<(), SourceError> {
        scr_db::ping(&mut *self.conn()?).map_err(|e| self.unavailable(e))
    }

    fn match_report(&self) -> Result<MatchReport, SourceError> {
        let mut conn = self.conn()?;
        let numbers: Vec<Option<String>> = patient::table
            .select(patient::nhs_number)
            .load(&mut *conn)
            .map_err(|e| self.unavailable(e))?;
        Ok(scr_source::match_report(&numbers))
    }
}
