//! The neighbouring records (issue 12): asked only after this side's own facts are known and its
//! policy permits the caller, concurrently, each bounded by its own timeout and concurrency. What
//! they answer joins the patient's other records and passes the same policy; a neighbour that is
//! down, slow or refusing is a warning naming it, never a failed request.

use futures_util::future::join_all;

use scr_fhir::bundle::{Issue, Severity};
use scr_policy::{peer_ask, Action, Ask, PatientFacts};
use scr_source::{PatientRecords, Wanted};
use scr_source_peer::Asking;

use crate::{gather, Access, Records};

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
}
