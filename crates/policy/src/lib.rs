//! The information sharing agreement (`access-rules.md`) as pure functions: every access rule,
//! behind one decision entry point, [`decide`]. Who is asking, what they ask, what is known of
//! the patient and of each record in; permit, withhold or refuse with the typed [`Rule`] that
//! decided out. No I/O, no HTTP, no database: every rule can be tested as a table.
//!
//! Facts carry their source ([`Sourced`]); a source that did not answer makes its facts unknown
//! ([`Unanswered`]), and every rule fails closed on them: an objection status that cannot be
//! checked restricts as an objection does, a relationship is never assumed, a record whose
//! sensitivity is unknown is treated as sensitive.

use std::collections::BTreeMap;

use serde::Deserialize;

pub mod asking;
pub mod decide;
pub mod facts;
pub mod rule;

pub use asking::{peer_ask, PeerAsk};
pub use decide::{
    decide, objection_status, own_org, patient_scope, Action, AllGrants, Ask, Decision,
    ExistingAlert, Grants, Notice, ObjectionStatus, Request, Step, StepResult, Verdict,
    PATIENT_ALERT_CATEGORIES, SOCIAL_CARE_ALERT_CATEGORIES,
};
pub use facts::{
    CareLink, Claim, PatientFacts, RecordFacts, RecordLabels, Sensitivity, Sourced, Statement,
    Unanswered,
};
pub use rule::Rule;

/// Access profiles (R-ROLE), chosen from the caller's national RBAC job role by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    Clinical,
    ClinicalSupport,
    SocialCare,
    PrivacyOfficer,
    Patient,
    System,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Clinical => "clinical",
            Profile::ClinicalSupport => "clinical-support",
            Profile::SocialCare => "social-care",
            Profile::PrivacyOfficer => "privacy-officer",
            Profile::Patient => "patient",
            Profile::System => "system",
        }
    }

    /// Resource types the profile may read (R-ROLE table). `System` reads what its scopes grant.
    pub fn readable(self) -> &'static [&'static str] {
        match self {
            Profile::Clinical | Profile::System => &[
                "Patient",
                "AllergyIntolerance",
                "MedicationStatement",
                "Observation",
                "Flag",
            ],
            // A patient also reads who accessed their record (R-AUD-5) and their consents.
            Profile::Patient => &[
                "Patient",
                "AllergyIntolerance",
                "MedicationStatement",
                "Observation",
                "Flag",
                "AuditEvent",
                "Consent",
            ],
            Profile::ClinicalSupport => &[
                "Patient",
                "AllergyIntolerance",
                "MedicationStatement",
                "Flag",
            ],
            Profile::SocialCare => &["Patient", "Flag"],
            Profile::PrivacyOfficer => &["AuditEvent", "Consent"],
        }
    }

    /// Resource types the profile may ever write (R-WRITE-1/2 alerts, R-OBJ-1 objections);
    /// whether a given write is allowed is still decided per request.
    pub fn writable(self) -> &'static [&'static str] {
        match self {
            Profile::Clinical => &["Flag", "Consent"],
            Profile::ClinicalSupport => &["Consent"],
            Profile::SocialCare | Profile::Patient => &["Flag"],
            Profile::PrivacyOfficer | Profile::System => &[],
        }
    }
}

/// What a token for `subject` may usefully be granted, for an authorization server that grants
/// no more than the caller's profile allows (R-ROLE-1): the resource types it reads and those it
/// may write (none for view-only organisations, R-ROLE-2). `None` when the role maps to no
/// profile: such a user may be granted nothing.
pub fn grantable(
    subject: &Subject,
    config: &PolicyConfig,
) -> Option<(&'static [&'static str], &'static [&'static str])> {
    let profile = profile_of(subject, config)?;
    let view_only = match subject {
        Subject::Staff { org, .. } => config.view_only_orgs.contains(org),
        _ => false,
    };
    Some((
        profile.readable(),
        if view_only { &[] } else { profile.writable() },
    ))
}

/// The profile mapping and organisation lists from the deployment's policy configuration.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// National RBAC job role code (`R8000`) to profile.
    pub role_profiles: BTreeMap<String, Profile>,
    /// Organisations that read but never write (R-ROLE-2).
    pub view_only_orgs: Vec<String>,
    /// Days after discharge that a hospital visit still is a relationship (R-LR-2).
    pub visit_window_days: i64,
    /// Hours a self-claimed relationship lasts (R-LR-4).
    pub break_glass_hours: i64,
    /// Neighbouring shared care records (by their configured names) whose asserted
    /// relationships count here (R-FED-3: `[[auth.peers]] trust_relationships`).
    pub trusted_peers: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let roles = [
            ("R8000", Profile::Clinical),
            ("R8001", Profile::Clinical),
            ("R8003", Profile::Clinical),
            ("R8008", Profile::ClinicalSupport),
            ("R8004", Profile::ClinicalSupport),
            ("R8014", Profile::SocialCare),
            ("R0001", Profile::PrivacyOfficer),
            ("R5105", Profile::PrivacyOfficer),
        ];
        PolicyConfig {
            role_profiles: roles.iter().map(|(r, p)| (r.to_string(), *p)).collect(),
            view_only_orgs: vec!["RYA".into()],
            visit_window_days: 90,
            break_glass_hours: 12,
            trusted_peers: Vec::new(),
        }
    }
}

/// Who is asking, as the policy needs to know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Staff {
        user: String,
        org: String,
        role_code: String,
        /// Set when the staff member is a user of a neighbouring shared care record asking
        /// through it (docs/federation.md): `org` and `role_code` are theirs there.
        federation: Option<Federation>,
        /// The one patient (NHS number) an app launched with patient context may open
        /// (R-LAUNCH-1).
        patient_context: Option<String>,
    },
    Patient {
        nhs_number: String,
        proofing_level: Option<String>,
    },
    System {
        client_id: String,
        org: Option<String>,
    },
}

/// Why a federated caller asks: their purpose of use as the asking side sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `TREAT`: under a relationship the asking side established.
    Treatment,
    /// `ETREAT`: emergency treatment, self-claimed there (break glass).
    EmergencyTreatment,
    /// `BTG`: break the glass, self-claimed there.
    BreakTheGlass,
}

impl Purpose {
    /// The HL7 v3 ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treatment => "TREAT",
            Purpose::EmergencyTreatment => "ETREAT",
            Purpose::BreakTheGlass => "BTG",
        }
    }

    pub fn is_break_glass(self) -> bool {
        !matches!(self, Purpose::Treatment)
    }
}

/// What a neighbouring record asserts about its user, who asks here through it (R-FED-1..5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The neighbour's name as this deployment configures it.
    pub peer: String,
    /// The one patient the exchanged token names (R-FED-2).
    pub patient: String,
    pub purpose: Purpose,
    /// The relationship the neighbour established: the rule id that gave it there, as sent
    /// (`R-LR-2`), and its organisation. It counts here only if the neighbour is trusted
    /// (R-FED-3).
    pub relationship: Option<(String, String)>,
    /// The written reason, under break glass.
    pub reason: Option<String>,
    /// When the exchanged token expires (an instant): a break-glass access lasts no longer.
    pub expires_at: String,
}

/// The federation part of a subject, if it asks through a neighbouring record.
pub fn federation_of(subject: &Subject) -> Option<&Federation> {
    match subject {
        Subject::Staff { federation, .. } => federation.as_ref(),
        _ => None,
    }
}

/// The profile a subject acts under, if the configuration knows their role.
pub fn profile_of(subject: &Subject, config: &PolicyConfig) -> Option<Profile> {
    match subject {
        Subject::Staff { role_code, .. } => config.role_profiles.get(role_code).copied(),
        Subject::Patient { .. } => Some(Profile::Patient),
        Subject::System { .. } => Some(Profile::System),
    }
}

#[cfg(test)]
mod tests;
