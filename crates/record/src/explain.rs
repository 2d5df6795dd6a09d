//! "Why can't Dr X see this?": the policy's decision for a described caller on one patient's
//! record, with every rule evaluated, its outcome and the facts it used, and per resource type
//! how many records would be shown and how many withheld under which rule. Never clinical
//! content: only counts, organisation codes, sources and dates of relationships and statements.
//! Served by `POST Patient/{id}/$explain` and `scr policy explain`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use scr_auth::{Caller, CallerKind, Scopes};
use scr_policy::{Action, Ask, Decision, Rule, StepResult};

use crate::open::{fragment_facts, record_facts};
use crate::{Access, RecordError, Records, Wanted};

/// The caller whose access is explained, as an IG team describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribedCaller {
    /// Staff (the default), `patient` or `system`.
    pub kind: Option<String>,
    /// ODS code of the organisation they act for.
    pub org: Option<String>,
    /// National RBAC job role code, e.g. `R8000`.
    pub role_code: Option<String>,
    /// Their user id (token `sub`); for a patient, their NHS number.
    pub user: String,
    /// SMART scopes, space separated; empty means what their profile allows.
    pub scopes: String,
    /// Purpose of use: `TREAT` (default), `ETREAT` or `BTG`.
    pub purpose: Option<String>,
    /// A user of this neighbouring record (its configured name), asking through it with an
    /// exchanged token for this patient (docs/federation.md, R-FED-1..5): staff only.
    pub peer: Option<String>,
    /// The relationship the neighbour asserts for them: the rule id that gave it there
    /// (`R-LR-2`) and its organisation.
    pub relationship: Option<(String, String)>,
}

impl DescribedCaller {
    /// The federation part of a described user of a neighbouring record, for `nhs`.
    fn federation(&self, nhs: &str) -> Result<Option<scr_auth::Federation>, String> {
        let Some(peer) = &self.peer else {
            if self.relationship.is_some() {
                return Err(
                    "an asserted relationship needs the neighbouring record (peer) that asserts it"
                        .into(),
                );
            }
            return Ok(None);
        };
        if !matches!(self.kind.as_deref(), None | Some("staff")) {
            return Err("a user of a neighbouring record is a staff caller".into());
        }
        let purpose = self.purpose.as_deref().unwrap_or("TREAT");
        let purpose = scr_auth::PurposeOfUse::from_code(purpose)
            .ok_or_else(|| format!("purpose of use '{purpose}' is not TREAT, ETREAT or BTG"))?;
        Ok(Some(scr_auth::Federation {
            peer: peer.clone(),
            actor: peer.clone(),
            user_name: "described by a privacy officer".into(),
            purpose,
            patient: nhs.to_owned(),
            request_id: "explain".into(),
            relationship: self.relationship.as_ref().map(|(rule, org)| {
                scr_auth::AssertedRelationship {
                    rule: rule.clone(),
                    org: org.clone(),
                }
            }),
            reason: purpose
                .is_break_glass()
                .then(|| "described by a privacy officer".into()),
        }))
    }

    fn access(&self, nhs: &str) -> Result<Access, String> {
        let kind = match self.kind.as_deref().unwrap_or("staff") {
            "staff" => CallerKind::Staff,
            "patient" => CallerKind::Patient,
            "system" => CallerKind::System,
            other => {
                return Err(format!(
                    "caller kind '{other}' is not staff, patient or system"
                ))
            }
        };
        if kind == CallerKind::Staff && (self.org.is_none() || self.role_code.is_none()) {
            return Err("a staff caller needs an organisation and a role code".into());
        }
        let default_scope = match kind {
            CallerKind::Staff => "user/*.rs",
            CallerKind::Patient => "patient/*.rs",
            CallerKind::System => "system/*.rs",
        };
        let scope = if self.scopes.trim().is_empty() {
            default_scope
        } else {
            self.scopes.as_str()
        };
        Ok(Access::new(Caller {
            kind,
            subject: self.user.clone(),
            issuer: "described by a privacy officer".into(),
            organisation: self.org.clone(),
            role_code: self.role_code.clone(),
            nhs_number: (kind == CallerKind::Patient).then(|| self.user.clone()),
            identity_proofing_level: (kind == CallerKind::Patient).then(|| "P9".into()),
            fhir_user: None,
            name: None,
            token_id: String::new(),
            expires_at: 0,
            scopes: Scopes::parse(scope),
            federation: self.federation(nhs)?,
            patient_context: None,
        }))
    }
}

/// The decision for a described caller, and what it would show.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub nhs_number: String,
    pub purpose: String,
    pub decision: Decision,
    /// Per resource type: shown, and withheld by rule.
    pub counts: BTreeMap<String, (usize, BTreeMap<Rule, usize>)>,
    /// With a purpose of ETREAT or BTG and no relationship: whether they could self-claim one.
    pub self_claim: Option<Decision>,
    /// The sources that did not answer.
    pub unanswered: Vec<String>,
}

impl Records {
    /// Explains what `described` would see of `nhs`'s record. 404 when no source knows them;
    /// [`RecordError::Invalid`] when the description is incomplete.
    pub async fn explain(
        &self,
        described: &DescribedCaller,
        nhs: &str,
    ) -> Result<Explanation, RecordError> {
        let access = described
            .access(nhs)
            .map_err(|message| RecordError::Invalid {
                element: "caller".into(),
                message,
            })?;
        let purpose = described.purpose.clone().unwrap_or_else(|| "TREAT".into());
        if !matches!(purpose.as_str(), "TREAT" | "ETREAT" | "BTG") {
            return Err(RecordError::Invalid {
                element: "purpose".into(),
                message: format!("purpose of use '{purpose}' is not TREAT, ETREAT or BTG"),
            });
        }
        let (view, facts) = self.known(nhs, Wanted::Everything).await?;
        let action = Action::Search;
        let offered: Vec<_> = view
            .records
            .fragments
            .iter()
            .map(fragment_facts)
            .chain(
                view.records
                    .records
                    .iter()
                    .map(|r| record_facts(&access, r, action)),
            )
            .collect();
        let decision = self.decide(
            &access,
            Ask::Open { action },
            Some(nhs),
            Some(&facts),
            &offered,
        );
        let counts = if decision.permitted {
            decision.counts_by_type(&offered)
        } else {
            BTreeMap::new()
        };
        // A neighbour's user does not self-claim here: their break glass is their purpose of
        // use, already decided (R-FED-3).
        let self_claim = (purpose != "TREAT"
            && !decision.permitted
            && decision.rule == Rule::Lr5
            && !access.federated())
        .then(|| self.decide(&access, Ask::SelfClaim, Some(nhs), None, &[]));
        Ok(Explanation {
            nhs_number: nhs.to_owned(),
            purpose,
            decision,
            counts,
            self_claim,
            unanswered: facts
                .unanswered
                .iter()
                .map(|u| u.description.clone())
                .collect(),
        })
    }
}

fn part_string(name: &str, value: &str) -> Value {
    json!({ "name": name, "valueString": value })
}

fn part_code(name: &str, value: &str) -> Value {
    json!({ "name": name, "valueCode": value })
}

impl Explanation {
    /// The answer of `$explain`: a FHIR `Parameters` resource (see
    /// `fhir-profiles/OperationDefinition-explain.json`).
    pub fn to_parameters(&self) -> Value {
        let d = &self.decision;
        let mut params = vec![
            part_code("outcome", if d.permitted { "permit" } else { "refuse" }),
            part_code("rule", d.rule.id()),
            part_code("purpose", &self.purpose),
        ];
        if !d.reason.is_empty() {
            params.push(part_string("reason", &d.reason));
        }
        let mut steps: Vec<&scr_policy::Step> = d.trace.iter().collect();
        if let Some(sc) = &self.self_claim {
            steps.extend(sc.trace.iter().filter(|s| s.rule == Rule::Lr4));
        }
        for step in steps {
            let mut part = vec![
                part_code("rule", step.rule.id()),
                part_code("result", step.result.code()),
                part_string("detail", &step.detail),
            ];
            part.extend(step.facts.iter().map(|f| part_string("fact", f)));
            params.push(json!({ "name": "evaluation", "part": part }));
        }
        for (resource_type, (shown, withheld)) in &self.counts {
            let mut part = vec![
                part_code("resourceType", resource_type),
                json!({ "name": "shown", "valueInteger": shown }),
            ];
            for (rule, n) in withheld {
                part.push(json!({ "name": "withheld", "part": [
                    part_code("rule", rule.id()),
                    json!({ "name": "count", "valueInteger": n }),
                ]}));
            }
            params.push(json!({ "name": "count", "part": part }));
        }
        for u in &self.unanswered {
            params.push(part_string("unanswered", u));
        }
        json!({ "resourceType": "Parameters", "parameter": params })
    }

    /// The same, as lines of text for a terminal.
    pub fn to_text(&self) -> String {
        let d = &self.decision;
        let mut out = format!(
            "patient {}: {} by {}{}\n",
            self.nhs_number,
            if d.permitted { "PERMIT" } else { "REFUSE" },
            d.rule,
            if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", d.reason)
            }
        );
        let mut steps: Vec<&scr_policy::Step> = d.trace.iter().collect();
        if let Some(sc) = &self.self_claim {
            steps.extend(sc.trace.iter().filter(|s| s.rule == Rule::Lr4));
        }
        for s in steps {
            let mark = match s.result {
                StepResult::Permit => "permit",
                StepResult::Refuse => "REFUSE",
                StepResult::Restrict => "restrict",
                StepResult::NotApplicable => "-",
                StepResult::Unknown => "UNKNOWN",
            };
            out.push_str(&format!("  {:<10} {:<8} {}\n", s.rule.id(), mark, s.detail));
            for f in &s.facts {
                out.push_str(&format!("  {:<10} {:<8}   fact: {f}\n", "", ""));
            }
        }
        for (rt, (shown, withheld)) in &self.counts {
            let w: Vec<String> = withheld
                .iter()
                .map(|(r, n)| format!("{n} under {r}"))
                .collect();
            out.push_str(&format!(
                "  {rt}: {shown} shown{}\n",
                if w.is_empty() {
                    String::new()
                } else {
                    format!(", withheld {}", w.join(", "))
                }
            ));
        }
        for u in &self.unanswered {
            out.push_str(&format!("  did not answer: {u}\n"));
        }
        out
    }
}
