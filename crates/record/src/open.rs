//! Opening one patient's record for one caller: fetch from every source, build the patient's
//! facts (relationships, objection statements, self-claimed relationships, each with its source,
//! and which sources did not answer), ask the policy once, then keep only the demographics and
//! records it lets leave. Every read path goes through here, so a withheld record can leave no
//! trace in any of them (R-SENS-4), and every decision is kept for the audit.

use scr_fhir::build::days_of;
use scr_fhir::bundle::{Issue, Severity};
use scr_policy::{
    decide, Action, Ask, CareLink, Claim, Decision, PatientFacts, RecordFacts, RecordLabels,
    Request, Sensitivity, Sourced, Statement, Verdict,
};
use scr_source::{PatientFragment, PatientQuery, Record, Relationship};
use serde_json::{json, Value};

use crate::gather::{self, merge_patient, PatientView};
use crate::own_flags;
use crate::{Access, RecordError, Records, Wanted};

/// A patient's record as one caller may see it.
pub struct OpenedRecord {
    /// The merged Patient from the fragments the caller may see (R-OBJ-2: only their own
    /// organisation's while an objection stands or cannot be checked; then, if it holds none,
    /// the NHS number alone).
    pub patient: Value,
    /// Every record the policy lets this caller see, of the types fetched.
    pub records: Vec<Record>,
    /// Missing sources, and the notices the decision requires (R-OBJ-3, R-SENS-3).
    pub warnings: Vec<Issue>,
}

/// What the sources hold about a patient, and the policy's facts about them.
pub type Known = (PatientView, PatientFacts);

/// The policy's labels of one record.
pub(crate) fn record_facts<'a>(
    access: &Access,
    record: &'a Record,
    action: Action,
) -> RecordFacts<'a> {
    RecordFacts {
        resource_type: record.resource_type,
        labels: RecordLabels {
            source_org: &record.labels.source_org,
            sensitivity: if record.labels.sensitive {
                Sensitivity::Sensitive
            } else {
                Sensitivity::NotSensitive
            },
            confidential: record.labels.confidential,
            hidden_from_patient: record.labels.hidden_from_patient,
        },
        within_scope_constraints: access.within_scope_constraints(record, action),
    }
}

pub(crate) fn fragment_facts(fragment: &PatientFragment) -> RecordFacts<'_> {
    RecordFacts {
        resource_type: "Patient",
        labels: RecordLabels {
            source_org: &fragment.source_org,
            sensitivity: Sensitivity::NotSensitive,
            confidential: false,
            hidden_from_patient: false,
        },
        within_scope_constraints: true,
    }
}

/// The patient's facts, from what the sources returned and what the facade's store holds.
fn patient_facts(
    view: &PatientView,
    claims: Vec<Sourced<Claim>>,
    consents: Vec<Sourced<Statement>>,
) -> PatientFacts {
    let (today, _) = scr_fhir::build::today_and_now();
    let today = days_of(&today).unwrap_or(0);
    let still_open = |ended: &Option<String>| {
        ended
            .as_deref()
            .and_then(days_of)
            .is_none_or(|d| d >= today)
    };
    let links = view
        .relationships
        .iter()
        .map(|r| {
            let link = match &r.fact {
                Relationship::Registration { org, ended, .. } => CareLink::Registration {
                    org: org.clone(),
                    current: still_open(ended),
                },
                Relationship::Visit { org, ended, .. } => CareLink::Visit {
                    org: org.clone(),
                    ended_day: ended.as_deref().and_then(days_of),
                },
                Relationship::Allocation {
                    org,
                    worker_user_id,
                    team_member_user_ids,
                    ended,
                    ..
                } => CareLink::Allocation {
                    org: org.clone(),
                    worker: worker_user_id.clone(),
                    team_members: team_member_user_ids.clone(),
                    open: still_open(ended),
                },
            };
            Sourced::new(r.source.clone(), link)
        })
        .collect();
    let mut statements: Vec<Sourced<Statement>> = view
        .objections
        .iter()
        .map(|o| {
            Sourced::new(
                o.source.clone(),
                Statement {
                    objects: o.fact.objects,
                    effective: o.fact.effective.clone(),
                    recorded_at: o.fact.recorded_at.clone(),
                    org: o.fact.org.clone(),
                    sequence: None,
                },
            )
        })
        .collect();
    statements.extend(consents);
    PatientFacts {
        links,
        statements,
        claims,
        unanswered: view.unanswered.clone(),
        today,
    }
}

/// A decision as a result: the refusal as an error.
fn permitted(d: Decision) -> Result<Decision, RecordError> {
    if d.permitted {
        Ok(d)
    } else {
        Err(RecordError::refused(&d))
    }
}

/// The policy's notices as Bundle warnings.
fn notices(decision: &Decision) -> impl Iterator<Item = Issue> + '_ {
    decision
        .notices
        .iter()
        .map(|n| Issue::new(Severity::Warning, "suppressed", n.text()))
}

impl Records {
    /// Everything the policy needs about a patient some source knows: what the sources hold
    /// (only the records `wanted` names) and the patient's facts. 404 when no source knows the
    /// NHS number.
    pub async fn known(&self, nhs: &str, wanted: Wanted) -> Result<Known, RecordError> {
        let view = gather::view(self, nhs, wanted).await?;
        if view.records.fragments.is_empty() && view.records.records.is_empty() {
            return Err(RecordError::not_found("Patient", nhs));
        }
        let (claims, consents) = self.facade_facts(nhs).await?;
        let facts = patient_facts(&view, claims, consents);
        Ok((view, facts))
    }

    /// What the facade's own store adds to the patient's facts: self-claimed relationships in
    /// force (R-LR-4) and objections registered here as Consent (R-OBJ-1). A store that cannot
    /// answer is an error (503), never "no objection": the audit could not be written either.
    async fn facade_facts(
        &self,
        nhs: &str,
    ) -> Result<(Vec<Sourced<Claim>>, Vec<Sourced<Statement>>), RecordError> {
        let nhs = nhs.to_owned();
        let (_, now) = scr_fhir::build::today_and_now();
        self.with_store(move |conn| {
            let claims = scr_store::audit::active_break_glass(conn, &nhs, &now)?
                .into_iter()
                .map(|c| {
                    Sourced::new(
                        own_flags::NAME,
                        Claim {
                            user: c.user_id,
                            org: c.org,
                            purpose: c.purpose,
                            reason: c.reason,
                            expires_at: c.expires_at,
                        },
                    )
                })
                .collect();
            let consents = scr_store::consent::consents_for(conn, &nhs)?
                .into_iter()
                .map(|c| {
                    Sourced::new(
                        own_flags::NAME,
                        Statement {
                            objects: c.objects == 1,
                            effective: consent_effective(&c.effective, &c.recorded_at),
                            recorded_at: c.recorded_at,
                            org: c.org,
                            sequence: Some(c.id),
                        },
                    )
                })
                .collect();
            Ok((claims, consents))
        })
        .await
    }

    /// Asks the policy; nothing is kept for the audit (see [`Records::permit`] and the others).
    pub fn decide(
        &self,
        access: &Access,
        ask: Ask<'_>,
        patient: Option<&str>,
        facts: Option<&PatientFacts>,
        records: &[RecordFacts<'_>],
    ) -> Decision {
        decide(
            &Request {
                subject: &access.subject,
                grants: access,
                ask,
                patient,
                facts,
                records,
            },
            &self.policy,
        )
    }

    /// Whether the caller may open `nhs`'s record at all, for a patient picker: the decision
    /// opening it would make, on the patient's facts only, kept for the audit. An unknown
    /// patient is `false`, like a refused one, so the answer never tells them apart.
    pub async fn may_open(&self, access: &Access, nhs: &str) -> Result<bool, RecordError> {
        match self.known(nhs, Wanted::Context).await {
            Ok((_, facts)) => {
                let ask = Ask::Open {
                    action: Action::Read,
                };
                let decision = self.decide(access, ask, Some(nhs), Some(&facts), &[]);
                access.touch(nhs, &decision);
                Ok(decision.permitted)
            }
            Err(RecordError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// May the caller read or search this type at all? (R-ROLE-1, R-ROLE-3)
    pub fn may(&self, access: &Access, resource_type: &str, action: Action) -> bool {
        let ask = Ask::Type {
            resource_type,
            action,
        };
        self.decide(access, ask, None, None, &[]).permitted
    }

    /// Refuses the request unless the caller may read or search this type.
    pub fn require(
        &self,
        access: &Access,
        resource_type: &str,
        action: Action,
    ) -> Result<(), RecordError> {
        let ask = Ask::Type {
            resource_type,
            action,
        };
        permitted(self.decide(access, ask, None, None, &[])).map(drop)
    }

    /// A question that needs no facts about the patient (the audit trail, Consent statements):
    /// decided, kept for the audit when it names a patient, refused as an error.
    pub fn permit(
        &self,
        access: &Access,
        ask: Ask<'_>,
        patient: Option<&str>,
    ) -> Result<Decision, RecordError> {
        let d = self.decide(access, ask, patient, None, &[]);
        if let Some(nhs) = patient {
            access.touch(nhs, &d);
        }
        permitted(d)
    }

    /// A write about a patient (an alert, an objection): the patient's facts are gathered, the
    /// policy decides, the decision is kept for the audit. 404 when no source knows the patient.
    pub async fn authorise(
        &self,
        access: &Access,
        nhs: &str,
        ask: Ask<'_>,
    ) -> Result<Decision, RecordError> {
        let (_, facts) = self.known(nhs, Wanted::Context).await?;
        let d = self.decide(access, ask, Some(nhs), Some(&facts), &[]);
        access.touch(nhs, &d);
        permitted(d)
    }

    /// A self-claimed relationship (R-LR-4): the policy decides whether this caller may claim
    /// one; the claim it would make, with its expiry, is kept for the audit and returned for
    /// the caller to store once the audit is written. 404 when no source knows the patient.
    pub async fn self_claim(
        &self,
        access: &Access,
        nhs: &str,
        purpose: &str,
        reason: &str,
    ) -> Result<Claim, RecordError> {
        let mut d = self.decide(access, Ask::SelfClaim, Some(nhs), None, &[]);
        if !d.permitted {
            access.touch(nhs, &d);
            return Err(RecordError::refused(&d));
        }
        if !scr_fhir::nhs_number::is_valid(nhs) {
            return Err(RecordError::not_found("Patient", nhs));
        }
        self.known(nhs, Wanted::Context).await?;
        let claim = Claim {
            user: access.caller.subject.clone(),
            org: access.caller.organisation.clone().unwrap_or_default(),
            purpose: purpose.to_owned(),
            reason: reason.to_owned(),
            expires_at: scr_fhir::build::instant_from_unix(
                scr_fhir::build::unix_now() + self.policy.break_glass_hours * 3600,
            ),
        };
        d.claim = Some(claim.clone());
        access.touch(nhs, &d);
        Ok(claim)
    }

    /// Opens `nhs`'s record for `access`, fetching only what `wanted` names: 404 when no source
    /// knows the NHS number, a refusal when the policy refuses the caller this patient.
    pub async fn open(
        &self,
        access: &Access,
        nhs: &str,
        action: Action,
        wanted: Wanted,
    ) -> Result<OpenedRecord, RecordError> {
        let (view, facts) = self.known(nhs, wanted).await?;
        let PatientView {
            records: mut all,
            mut warnings,
            ..
        } = view;
        let neighbours = self
            .ask_neighbours(access, nhs, action, wanted, &facts)
            .await;
        all.extend(neighbours.records);
        warnings.extend(neighbours.warnings);
        let offered: Vec<RecordFacts<'_>> = all
            .fragments
            .iter()
            .map(fragment_facts)
            .chain(all.records.iter().map(|r| record_facts(access, r, action)))
            .collect();
        let decision = self.decide(
            access,
            Ask::Open { action },
            Some(nhs),
            Some(&facts),
            &offered,
        );
        access.touch(nhs, &decision);
        if !decision.permitted {
            return Err(RecordError::refused(&decision));
        }
        drop(offered);
        let (fragment_verdicts, record_verdicts) = decision.verdicts.split_at(all.fragments.len());
        let fragments: Vec<PatientFragment> = all
            .fragments
            .into_iter()
            .zip(fragment_verdicts)
            .filter(|(_, v)| **v == Verdict::Show)
            .map(|(f, _)| f)
            .collect();
        let records: Vec<Record> = all
            .records
            .into_iter()
            .zip(record_verdicts)
            .filter(|(_, v)| **v == Verdict::Show)
            .map(|(r, _)| r)
            .collect();
        let patient = merge_patient(nhs, &fragments).unwrap_or_else(|| minimal_patient(nhs));
        warnings.extend(notices(&decision));
        Ok(OpenedRecord {
            patient,
            records,
            warnings,
        })
    }

    /// One record by its id, for a read: read from the source the id names, then decided with
    /// the patient's facts alone (the patient's other records are not fetched). A record the
    /// caller may not see, or of a patient they may not open, is answered exactly as an id that
    /// does not exist: ids of some sources are sequential and must not be probed.
    pub async fn read(
        &self,
        access: &Access,
        resource_type: &'static str,
        id: &str,
    ) -> Result<Record, RecordError> {
        let not_found = || RecordError::not_found(resource_type, id);
        let (source_name, key) = scr_source::split_id(id).ok_or_else(not_found)?;
        if self.is_neighbour(source_name) {
            return self.read_from_neighbour(access, resource_type, id).await;
        }
        let source = self.source(source_name).ok_or_else(not_found)?;
        let record = gather::read_record(self, source, resource_type, key.to_owned())
            .await?
            .filter(|r| r.resource_type == resource_type)
            .ok_or_else(not_found)?;
        let nhs = record.nhs_number.clone();
        let (_, facts) = match self.known(&nhs, Wanted::Context).await {
            Err(RecordError::NotFound { .. }) => return Err(not_found()),
            other => other?,
        };
        let offered = [record_facts(access, &record, Action::Read)];
        let decision = self.decide(
            access,
            Ask::Open {
                action: Action::Read,
            },
            Some(&nhs),
            Some(&facts),
            &offered,
        );
        access.touch(&nhs, &decision);
        match decision.verdicts.first() {
            Some(Verdict::Show) if decision.permitted => Ok(record),
            _ => Err(not_found()),
        }
    }

    /// NHS numbers matching a Patient query, across every source, and a warning per source that
    /// did not answer.
    pub async fn find_patients(
        &self,
        query: PatientQuery,
    ) -> Result<(Vec<String>, Vec<Issue>), RecordError> {
        gather::find_patients(self, query).await
    }
}

/// When a statement registered here takes effect (R-OBJ-1): its date as a UTC instant (rows
/// stored before offsets were normalised are normalised now), never later than when the facade
/// recorded it, so a statement dated ahead (`2099`) cannot beat every later one.
fn consent_effective(effective: &str, recorded_at: &str) -> String {
    let effective =
        scr_fhir::build::utc_date_time(effective).unwrap_or_else(|| effective.to_owned());
    let later = match effective.len() {
        10 => effective.get(..10) > recorded_at.get(..10),
        _ => effective.as_str() > recorded_at,
    };
    if later {
        recorded_at.to_owned()
    } else {
        effective
    }
}

/// The Patient when none of its demographics may be shown: the NHS number the caller already has.
fn minimal_patient(nhs: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": nhs,
        "meta": { "profile": [scr_fhir::systems::uk_core_profile("Patient")] },
        "identifier": [scr_fhir::build::nhs_number_identifier(nhs)],
    })
}

#[cfg(test)]
mod consent_tests {
    use super::consent_effective;

    #[test]
    fn item7_r_obj_1_a_stored_statement_takes_effect_no_later_than_its_recording() {
        let recorded = "2026-11-20T10:00:00Z";
        assert_eq!(consent_effective("2099-01-01", recorded), recorded);
        assert_eq!(
            consent_effective("2099-01-01T00:00:00Z", recorded),
            recorded
        );
        assert_eq!(
            consent_effective("2026-11-20T10:30:00+01:00", recorded),
            "2026-11-20T09:30:00Z"
        );
        assert_eq!(consent_effective("2026-11-19", recorded), "2026-11-19");
    }
}
