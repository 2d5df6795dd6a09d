//! The neighbouring records (issue 12): asked only after this side's own facts are known and its
//! policy permits the caller, concurrently, each bounded by its own timeout and concurrency. What
//! they answer joins the patient's other records and passes the same policy; a neighbour that is
//! down, slow or refusing is a warning naming it, never a failed request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use scr_fhir::bundle::{Issue, Severity};
use scr_policy::{peer_ask, Action, Ask, PatientFacts};
use scr_source::{PatientRecords, Wanted};
use scr_source_peer::Asking;

use crate::{gather, Access, RecordError, Records};
use scr_source::Record;

/// How long a neighbour's record served here can be read by id afterwards.
const READABLE_FOR: Duration = Duration::from_secs(60 * 60);
/// The most neighbours' record ids remembered at once.
const MAX_REMEMBERED: usize = 100_000;

/// Whose each neighbour's record served here is (type and id to NHS number), so that a read by
/// id of it (`GET Observation/WMShCR.x`, a Bundle entry's `fullUrl`) can open that patient's
/// record again. Ids and NHS numbers only, never a record; bounded, and forgotten after
/// [`READABLE_FOR`].
#[derive(Default)]
pub(crate) struct NeighbourRecordIds(Mutex<HashMap<TypeAndId, (String, Instant)>>);

/// A record's resource type and id.
type TypeAndId = (&'static str, String);

impl NeighbourRecordIds {
    fn remember(&self, records: &[Record], nhs: &str) {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + records.len() > MAX_REMEMBERED {
            map.retain(|_, (_, at)| now.duration_since(*at) < READABLE_FOR);
        }
        for r in records {
            if map.len() >= MAX_REMEMBERED {
                break;
            }
            map.insert((r.resource_type, r.id.clone()), (nhs.to_owned(), now));
        }
    }

    fn patient_of(&self, resource_type: &'static str, id: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(resource_type, id.to_owned()))
            .filter(|(_, at)| at.elapsed() < READABLE_FOR)
            .map(|(nhs, _)| nhs.clone())
    }
}

/// What the neighbours added: their records and Patient fragments, and the warnings for the
/// Bundle (theirs, and one per neighbour that did not answer).
#[derive(Default)]
pub(crate) struct FromNeighbours {
    pub records: PatientRecords,
    pub warnings: Vec<Issue>,
}

impl Records {
    pub(crate) async fn ask_neighbours(
        &self,
        access: &Access,
        nhs: &str,
        action: Action,
        wanted: Wanted,
        facts: &PatientFacts,
    ) -> FromNeighbours {
        let mut out = FromNeighbours::default();
        if self.peers.is_empty() {
            return out;
        }
        // The patient-level decision alone (no records): not kept for the audit, which keeps the
        // one made with every record below. The policy says whether to ask at all (never under
        // an objection, never again for a request that arrived by federation: R-FED-2).
        let first = self.decide(access, Ask::Open { action }, Some(nhs), Some(facts), &[]);
        let Some(ask) = peer_ask(&access.subject, &first) else {
            return out;
        };
        let asking = Asking {
            user_id: access.caller.subject.clone(),
            // The neighbour audits the access under a name: the token's, or the user id.
            name: Some(
                access
                    .caller
                    .name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| access.caller.subject.clone()),
            ),
            org_code: access.caller.organisation.clone().unwrap_or_default(),
            role_code: access.caller.role_code.clone().unwrap_or_default(),
            purpose_of_use: ask.purpose_of_use,
            reason: ask.reason,
            relationship: ask
                .relationship
                .map(|(rule, org)| (rule.id().to_owned(), org)),
            request_id: access.request_id.clone(),
        };
        let answers = join_all(self.peers.iter().map(|p| {
            let asking = &asking;
            async move {
                let started = std::time::Instant::now();
                let answer = p.fetch(asking, nhs, wanted).await;
                gather::count(p.name(), started, answer.as_ref().err());
                answer
            }
        }))
        .await;
        for (peer, answer) in self.peers.iter().zip(answers) {
            match answer {
                Ok(a) => {
                    self.neighbour_ids.remember(&a.records.records, nhs);
                    out.records.extend(a.records);
                    out.warnings.extend(a.warnings.into_iter().map(|text| {
                        Issue::new(
                            Severity::Warning,
                            "informational",
                            format!("{}: {text}", peer.name()),
                        )
                    }));
                }
                Err(e) => out.warnings.push(gather::missing(&peer.description(), &e)),
            }
        }
        out
    }

    /// Whether `name` is a neighbouring record's: the prefix of its records' ids here.
    pub(crate) fn is_neighbour(&self, name: &str) -> bool {
        self.peers.iter().any(|p| p.name() == name)
    }

    /// A neighbour's record by id, as its patient's record opened now shows it to this caller:
    /// the neighbour asked again, both sides' rules applied. A record not served here within
    /// [`READABLE_FOR`], gone at the neighbour, withheld, or of a patient the caller may not
    /// open is answered as an id that does not exist.
    pub(crate) async fn read_from_neighbour(
        &self,
        access: &Access,
        resource_type: &'static str,
        id: &str,
    ) -> Result<Record, RecordError> {
        let not_found = || RecordError::not_found(resource_type, id);
        let nhs = self
            .neighbour_ids
            .patient_of(resource_type, id)
            .ok_or_else(not_found)?;
        let wanted = Wanted::OfType(resource_type);
        let opened = match self.open(access, &nhs, Action::Read, wanted).await {
            Err(RecordError::NotFound { .. } | RecordError::Refused { .. }) => {
                return Err(not_found())
            }
            other => other?,
        };
        opened
            .records
            .into_iter()
            .find(|r| r.id == id && r.resource_type == resource_type)
            .ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(resource_type: &'static str, id: &str) -> Record {
        Record {
            resource_type,
            id: id.into(),
            nhs_number: String::new(),
            labels: Default::default(),
            resource: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_neighbours_record_id_names_the_patient_it_was_served_for_by_type() {
        let ids = NeighbourRecordIds::default();
        ids.remember(&[record("Observation", "WMShCR.x")], "9990000018");
        assert_eq!(
            ids.patient_of("Observation", "WMShCR.x").as_deref(),
            Some("9990000018")
        );
        assert_eq!(ids.patient_of("Flag", "WMShCR.x"), None, "another type");
        assert_eq!(ids.patient_of("Observation", "WMShCR.y"), None);
        // Served again for another patient: the latest answer stands (the read opens that
        // patient's record and finds the id there, or answers 404).
        ids.remember(&[record("Observation", "WMShCR.x")], "9990000026");
        assert_eq!(
            ids.patient_of("Observation", "WMShCR.x").as_deref(),
            Some("9990000026")
        );
    }

    #[test]
    fn neighbours_record_ids_remembered_are_bounded() {
        let ids = NeighbourRecordIds::default();
        let many: Vec<Record> = (0..MAX_REMEMBERED + 10)
            .map(|i| record("Observation", &format!("P.{i}")))
            .collect();
        ids.remember(&many, "9990000018");
        let kept = ids.0.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(kept, MAX_REMEMBERED);
        assert_eq!(
            ids.patient_of("Observation", &format!("P.{MAX_REMEMBERED}")),
            None
        );
    }
}
