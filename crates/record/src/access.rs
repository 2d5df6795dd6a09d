//! The verified caller of a request, what their token grants, and every decision the policy made
//! about a patient during the request, kept for the audit (R-AUD-1: one AuditEvent per patient
//! touched, naming the rule that permitted or refused and what was withheld under which rule).

use std::collections::BTreeMap;
use std::sync::Mutex;

use scr_auth::{Caller, CallerKind, Interaction, PurposeOfUse, ScopeContext};
use scr_policy::{Action, Claim, Decision, Grants, Purpose, Rule, Subject};
use scr_source::Record;

/// A verified caller and the decisions made for them so far.
pub struct Access {
    pub caller: Caller,
    pub subject: Subject,
    /// This request's id: it travels to the neighbouring records, so both audit trails can be
    /// joined.
    pub request_id: String,
    touched: Mutex<Vec<Touched>>,
}

/// One patient a request asked about, and the policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub nhs_number: String,
    pub rule: Rule,
    pub permitted: bool,
    /// Records withheld from the response, by the rule that withheld them (never what).
    pub withheld: BTreeMap<Rule, usize>,
    /// The self-claimed relationship the access was made under, or that it declared.
    pub claim: Option<Claim>,
}

/// The policy's RESTful action for a SMART interaction.
pub fn action_of(interaction: Interaction) -> Action {
    match interaction {
        Interaction::Read => Action::Read,
        Interaction::Search => Action::Search,
        Interaction::Create => Action::Create,
        Interaction::Update | Interaction::Delete => Action::Update,
    }
}

fn interaction_of(action: Action) -> Interaction {
    match action {
        Action::Read => Interaction::Read,
        Action::Search => Interaction::Search,
        Action::Create => Interaction::Create,
        Action::Update => Interaction::Update,
    }
}

/// The policy's view of what a neighbouring record asserts about its user.
fn federation(f: &scr_auth::Federation, expires_at: i64) -> scr_policy::Federation {
    scr_policy::Federation {
        peer: f.peer.clone(),
        patient: f.patient.clone(),
        purpose: match f.purpose {
            PurposeOfUse::Treatment => Purpose::Treatment,
            PurposeOfUse::EmergencyTreatment => Purpose::EmergencyTreatment,
            PurposeOfUse::BreakTheGlass => Purpose::BreakTheGlass,
        },
        relationship: f
            .relationship
            .as_ref()
            .map(|r| (r.rule.clone(), r.org.clone())),
        reason: f.reason.clone(),
        expires_at: scr_fhir::build::instant_from_unix(expires_at),
    }
}

impl Access {
    pub fn new(caller: Caller) -> Access {
        let subject = match caller.kind {
            CallerKind::Staff => Subject::Staff {
                user: caller.subject.clone(),
                org: caller.organisation.clone().unwrap_or_default(),
                role_code: caller.role_code.clone().unwrap_or_default(),
                federation: caller
                    .federation
                    .as_ref()
                    .map(|f| federation(f, caller.expires_at)),
                patient_context: caller.patient_context.clone(),
            },
            CallerKind::Patient => Subject::Patient {
                nhs_number: caller.nhs_number.clone().unwrap_or_default(),
                proofing_level: caller.identity_proofing_level.clone(),
            },
            CallerKind::System => Subject::System {
                client_id: caller.subject.clone(),
                org: caller.organisation.clone(),
            },
        };
        Access {
            caller,
            subject,
            request_id: scr_auth::dev::new_jti(),
            touched: Mutex::new(Vec::new()),
        }
    }

    /// Whether the request arrived by federation: a user of a neighbouring shared care record
    /// asking through it with a token this server exchanged (docs/federation.md). Such a
    /// request never fans out to this record's own neighbours (R-FED-2).
    pub fn federated(&self) -> bool {
        self.caller.federation.is_some()
    }

    /// Keeps the decision about `nhs_number` for the audit; the first decision about a patient
    /// stands, later withheld counts are added to it.
    pub fn touch(&self, nhs_number: &str, decision: &Decision) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let withheld = decision.withheld();
        if let Some(t) = touched.iter_mut().find(|t| t.nhs_number == nhs_number) {
            for (rule, n) in withheld {
                *t.withheld.entry(rule).or_insert(0) += n;
            }
            return;
        }
        touched.push(Touched {
            nhs_number: nhs_number.to_owned(),
            rule: decision.rule,
            permitted: decision.permitted,
            withheld,
            claim: decision.claim.clone(),
        });
    }

    pub fn touched(&self) -> Vec<Touched> {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Scopes count only in the caller's own context: `patient/` for patients, `user/` for
    /// staff, `system/` for backend services; and `patient/` for staff using an app launched
    /// with a patient in context, which the policy binds to that patient (R-LAUNCH-1).
    fn counts(&self, context: ScopeContext) -> bool {
        match self.caller.kind {
            CallerKind::Staff => {
                context == ScopeContext::User
                    || (context == ScopeContext::Patient && self.caller.patient_context.is_some())
            }
            CallerKind::Patient => context == ScopeContext::Patient,
            CallerKind::System => context == ScopeContext::System,
        }
    }

    /// The token's SMART v2 search constraints (`patient/Observation.rs?category=laboratory`)
    /// for one record: a fact about the record that the policy decides on.
    pub fn within_scope_constraints(&self, record: &Record, action: Action) -> bool {
        let interaction = interaction_of(action);
        let allowing: Vec<_> = self
            .caller
            .scopes
            .iter()
            .filter(|s| self.counts(s.context) && s.covers(record.resource_type, interaction))
            .collect();
        if allowing.iter().any(|s| s.constraints.is_empty()) {
            return true;
        }
        allowing.iter().any(|s| {
            let mut pairs = s.constraints.clone();
            if record.resource_type != "Patient" {
                pairs.push(("patient".into(), record.nhs_number.clone()));
            }
            // A constraint the facade cannot evaluate allows nothing.
            scr_fhir::search::parse(record.resource_type, &pairs, false)
                .is_ok_and(|req| req.matches(&record.resource))
        })
    }
}

impl Grants for Access {
    fn allows(&self, resource_type: &str, action: Action) -> bool {
        let interaction = interaction_of(action);
        self.caller
            .scopes
            .iter()
            .any(|s| self.counts(s.context) && s.covers(resource_type, interaction))
    }
}
