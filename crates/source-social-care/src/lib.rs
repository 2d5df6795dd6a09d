//! A council's social care reporting replica as a source (`social-care.md`), read live. One
//! [`SocialCareSource`] per council, named in configuration with the council's code.
//!
//! It contributes a Patient fragment (below the GP's in priority), the council's alerts as Flags,
//! and the allocations that are social care's legitimate relationship (R-LR-3).

pub mod rows;
pub mod schema;
pub mod translate;

use diesel::prelude::*;
use scr_db::{DbConnection, DbPool};
use scr_fhir::nhs_number;
use scr_source::{
    Feeds, Labels, MatchReport, PatientFragment, PatientQuery, PatientRecords, Record,
    Relationship, Source, SourceError, Wanted,
};

use rows::*;
use schema::*;

use scr_db::lower;

pub struct SocialCareSource {
    name: String,
    council: String,
    council_name: String,
    pool: DbPool,
}

impl SocialCareSource {
    pub fn new(
        name: impl Into<String>,
        council: impl Into<String>,
        council_name: impl Into<String>,
        pool: DbPool,
    ) -> SocialCareSource {
        SocialCareSource {
            name: name.into(),
            council: council.into(),
            council_name: council_name.into(),
            pool,
        }
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

    fn load(&self, conn: &mut DbConnection, nhs: &str) -> Result<PatientRecords, SourceError> {
        let people: Vec<PersonRow> = person::table
            .filter(person::nhs_number.eq(nhs))
            .select(PersonRow::as_select())
            .load(conn)
            .map_err(|e| self.unavailable(e))?;
        if people.is_empty() {
            return Ok(PatientRecords::default());
        }
        let ids: Vec<String> = people.iter().map(|p| p.person_id.clone()).collect();
        let allocations: Vec<AllocationRow> = allocation::table
            .filter(allocation::person_id.eq_any(&ids))
            .select(AllocationRow::as_select())
            .load(conn)
            .map_err(|e| self.unavailable(e))?;
        let alerts: Vec<AlertRow> = alert::table
            .filter(alert::person_id.eq_any(&ids))
            .select(AlertRow::as_select())
            .load(conn)
            .map_err(|e| self.unavailable(e))?;
        let mut worker_ids: Vec<String> = allocations
            .iter()
            .filter_map(|a| a.worker_id.clone())
            .collect();
        let team_ids: Vec<String> = allocations
            .iter()
            .filter_map(|a| a.team_id.clone())
            .collect();
        worker_ids.sort();
        worker_ids.dedup();
        let workers: Vec<WorkerRow> = worker::table
            .filter(
                worker::worker_id
                    .eq_any(&worker_ids)
                    .or(worker::team_id.eq_any(&team_ids)),
            )
            .select(WorkerRow::as_select())
            .load(conn)
            .map_err(|e| self.unavailable(e))?;

        let (today, _) = scr_fhir::build::today_and_now();
        let ctx = translate::Context {
            source_name: &self.name,
            council: &self.council,
            council_name: &self.council_name,
            nhs_number: nhs,
            today: &today,
        };
        let mut out = PatientRecords::default();
        for p in &people {
            out.fragments.push(PatientFragment {
                source_name: self.name.clone(),
                source_org: self.council.clone(),
                priority: 2,
                resource: translate::patient(&ctx, p),
                last_updated: p.last_updated.clone(),
            });
        }
        for a in &allocations {
            let worker_user_id = a
                .worker_id
                .as_ref()
                .and_then(|w| workers.iter().find(|x| &x.worker_id == w))
                .map(|w| w.user_id.clone());
            let team_member_user_ids = a
                .team_id
                .as_ref()
                .map(|t| {
                    workers
                        .iter()
                        .filter(|w| w.team_id.as_ref() == Some(t))
                        .map(|w| w.user_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            out.relationships.push(Relationship::Allocation {
                org: self.council.clone(),
                worker_user_id,
                team_member_user_ids,
                start: a.start_date.clone(),
                ended: a.end_date.clone(),
            });
        }
        for a in &alerts {
            let resource = translate::alert(&ctx, a);
            out.records.push(Record {
                resource_type: "Flag",
                id: resource["id"].as_str().unwrap_or_default().to_owned(),
                nhs_number: nhs.to_owned(),
                labels: Labels {
                    source_org: self.council.clone(),
                    ..Labels::default()
                },
                resource,
            });
        }
        Ok(out)
    }
}

impl Source for SocialCareSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        format!("social care replica {} ({})", self.name, self.council)
    }

    fn feeds(&self) -> Feeds {
        Feeds {
            relationships: true,
            objections: false,
        }
    }

    fn find_patients(&self, query: &PatientQuery) -> Result<Vec<String>, SourceError> {
        let mut conn = self.conn()?;
        let found: Vec<Option<String>> = match query {
            PatientQuery::NhsNumber(n) => person::table
                .filter(person::nhs_number.eq(n))
                .select(person::nhs_number)
                .load(&mut *conn),
            PatientQuery::FamilyAndBirthDate { family, birth_date } => person::table
                .filter(
                    lower(person::surname)
                        .like(scr_db::like_prefix(&family.to_lowercase()))
                        .escape('\\'),
                )
                .filter(person::date_of_birth.eq(birth_date))
                .select(person::nhs_number)
                .load(&mut *conn),
        }
        .map_err(|e| self.unavailable(e))?;
        Ok(scr_source::valid_nhs_numbers(found))
    }

    /// A person's social care record is a few rows: read whole whatever is wanted.
    fn patient_records(&self, nhs: &str, _wanted: Wanted) -> Result<PatientRecords, SourceError> {
        if !nhs_number::is_valid(nhs) {
            return Ok(PatientRecords::default());
        }
        let mut conn = self.conn()?;
        self.load(&mut conn, nhs)
    }

    fn read(&self, resource_type: &str, key: &str) -> Result<Option<Record>, SourceError> {
        let Some(alert_id) = key
            .strip_prefix("alert-")
            .filter(|_| resource_type == "Flag")
        else {
            return Ok(None);
        };
        let mut conn = self.conn()?;
        let owner: Option<Option<String>> = alert::table
            .inner_join(person::table.on(person::person_id.eq(alert::person_id)))
            .filter(alert::alert_id.eq(alert_id))
            .select(person::nhs_number)
            .first(&mut *conn)
            .optional()
            .map_err(|e| self.unavailable(e))?;
        let Some(nhs) = owner.flatten().filter(|n| nhs_number::is_valid(n)) else {
            return Ok(None);
        };
        let wanted = scr_source::make_id(&self.name, key);
        Ok(self
            .load(&mut conn, &nhs)?
            .records
            .into_iter()
            .find(|r| r.id == wanted))
    }

    fn ping(&self) -> Result<(), SourceError> {
        scr_db::ping(&mut *self.conn()?).map_err(|e| self.unavailable(e))
    }

    fn match_report(&self) -> Result<MatchReport, SourceError> {
        let mut conn = self.conn()?;
        let numbers: Vec<Option<String>> = person::table
            .select(person::nhs_number)
            .load(&mut *conn)
            .map_err(|e| self.unavailable(e))?;
        Ok(scr_source::match_report(&numbers))
    }
}
