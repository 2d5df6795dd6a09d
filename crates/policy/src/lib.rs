//! The information sharing agreement (`access-rules.md`) as pure functions: who is asking, what
//! they ask for, and the labels of each record in; a decision and the id of the rule that made it
//! out. No I/O, no HTTP, no database: every rule can be tested as a table.
//!
//! Implemented so far: R-ROLE-1 (profile and SMART scopes intersect; unknown roles get nothing),
//! R-ROLE-3 (social care sees demographics and alerts only), the patient profile's own-record
//! limit and `P9` requirement, and R-SENS-1..3 (sensitive and confidential records never leave
//! the organisation that holds them). Legitimate relationships (R-LR), objections (R-OBJ) and the
//! audit (R-AUD) come with the access rules issue; the server already asks [`record_visibility`]
//! for every record, so they slot in here.

use std::collections::BTreeMap;

use serde::Deserialize;

pub mod context;

pub use context::{
    authorise_alert_write, authorise_objection_write, authorise_patient, objection_allows,
    CareLink, PatientContext,
};

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

/// The answer to a question, with the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: &'static str,
    pub reason: String,
}

impl Decision {
    pub(crate) fn allow(rule: &'static str) -> Decision {
        Decision {
            allowed: true,
            rule,
            reason: String::new(),
        }
    }

    pub(crate) fn refuse(rule: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            rule,
            reason: reason.into(),
        }
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

/// R-ROLE-1 and R-ROLE-3: may the subject read this resource type at all? `scopes_allow` is
/// whether the token's SMART scopes (of the caller's own context) grant it.
pub fn authorise_read(
    subject: &Subject,
    resource_type: &str,
    scopes_allow: bool,
    config: &PolicyConfig,
) -> Decision {
    let Some(profile) = profile_of(subject, config) else {
        return Decision::refuse(
            "R-ROLE-1",
            "the caller's role is not mapped to an access profile",
        );
    };
    if !profile.readable().contains(&resource_type) {
        let rule = if profile == Profile::SocialCare {
            "R-ROLE-3"
        } else {
            "R-ROLE-1"
        };
        return Decision::refuse(
            rule,
            format!(
                "the {} profile may not read {resource_type}",
                profile.as_str()
            ),
        );
    }
    if !scopes_allow {
        return Decision::refuse(
            "R-ROLE-1",
            format!("the token's scopes do not grant reading {resource_type}"),
        );
    }
    if let Subject::Patient { proofing_level, .. } = subject {
        if proofing_level.as_deref() != Some("P9") {
            return Decision::refuse(
                "R-ROLE-1",
                "only fully verified (P9) NHS login users may see their record",
            );
        }
    }
    Decision::allow("R-ROLE-1")
}

/// What the policy knows of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLabels<'a> {
    pub source_org: &'a str,
    pub sensitive: bool,
    pub confidential: bool,
    pub hidden_from_patient: bool,
}

/// Whether one record may leave, and if not, which rule withholds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Show,
    Withhold { rule: &'static str },
}

/// R-SENS-1..3, R-SENS-5 and R-OBJ-2 for one record.
pub fn record_visibility(
    subject: &Subject,
    labels: &RecordLabels,
    ctx: &PatientContext,
) -> Visibility {
    if let Subject::Patient { .. } = subject {
        if labels.hidden_from_patient {
            return Visibility::Withhold { rule: "R-SENS-5" };
        }
        return Visibility::Show;
    }
    let holder = context::own_org(subject) == Some(labels.source_org);
    if labels.sensitive && !holder {
        return Visibility::Withhold { rule: "R-SENS-1" };
    }
    if labels.confidential && !holder {
        return Visibility::Withhold { rule: "R-SENS-3" };
    }
    if !objection_allows(subject, ctx, labels.source_org) {
        return Visibility::Withhold { rule: "R-OBJ-2" };
    }
    Visibility::Show
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clinician(org: &str, role: &str) -> Subject {
        Subject::Staff {
            user: "u1".into(),
            org: org.into(),
            role_code: role.into(),
        }
    }

    #[test]
    fn r_role_1_unknown_role_gets_nothing() {
        let d = authorise_read(
            &clinician("M85001", "R9999"),
            "Patient",
            true,
            &PolicyConfig::default(),
        );
        assert!(!d.allowed);
        assert_eq!(d.rule, "R-ROLE-1");
    }

    #[test]
    fn r_role_1_profile_and_scopes_intersect() {
        let cfg = PolicyConfig::default();
        assert!(authorise_read(&clinician("M85001", "R8000"), "Observation", true, &cfg).allowed);
        assert!(!authorise_read(&clinician("M85001", "R8000"), "Observation", false, &cfg).allowed);
        assert!(!authorise_read(&clinician("M85001", "R8008"), "Observation", true, &cfg).allowed);
    }

    #[test]
    fn r_role_3_social_care_sees_no_medications() {
        let d = authorise_read(
            &clinician("LA-DUD", "R8014"),
            "MedicationStatement",
            true,
            &PolicyConfig::default(),
        );
        assert_eq!((d.allowed, d.rule), (false, "R-ROLE-3"));
        assert!(
            authorise_read(
                &clinician("LA-DUD", "R8014"),
                "Flag",
                true,
                &PolicyConfig::default()
            )
            .allowed
        );
    }

    #[test]
    fn patients_see_only_their_own_record_and_only_at_p9() {
        let p = Subject::Patient {
            nhs_number: "9990000018".into(),
            proofing_level: Some("P9".into()),
        };
        let cfg = PolicyConfig::default();
        let ctx = PatientContext::default();
        assert!(authorise_patient(&p, "9990000018", &ctx, &cfg).allowed);
        assert!(!authorise_patient(&p, "9990000026", &ctx, &cfg).allowed);
        let p5 = Subject::Patient {
            nhs_number: "9990000018".into(),
            proofing_level: Some("P5".into()),
        };
        assert!(!authorise_read(&p5, "Patient", true, &PolicyConfig::default()).allowed);
    }

    #[test]
    fn r_sens_5_a_patient_does_not_see_entries_the_gp_kept_from_them() {
        let me = Subject::Patient {
            nhs_number: "9990000018".into(),
            proofing_level: Some("P9".into()),
        };
        let hidden = RecordLabels {
            source_org: "M85001",
            sensitive: false,
            confidential: false,
            hidden_from_patient: true,
        };
        assert_eq!(
            record_visibility(&me, &hidden, &PatientContext::default()),
            Visibility::Withhold { rule: "R-SENS-5" }
        );
        let shown = RecordLabels {
            hidden_from_patient: false,
            sensitive: true,
            ..hidden
        };
        assert_eq!(
            record_visibility(&me, &shown, &PatientContext::default()),
            Visibility::Show,
            "their own sensitive records included"
        );
    }

    #[test]
    fn r_sens_1_and_3_keep_records_inside_the_holder() {
        let sensitive = RecordLabels {
            source_org: "RXK",
            sensitive: true,
            confidential: false,
            hidden_from_patient: false,
        };
        assert_eq!(
            record_visibility(
                &clinician("M85001", "R8000"),
                &sensitive,
                &PatientContext::default()
            ),
            Visibility::Withhold { rule: "R-SENS-1" }
        );
        assert_eq!(
            record_visibility(
                &clinician("RXK", "R8000"),
                &sensitive,
                &PatientContext::default()
            ),
            Visibility::Show
        );
        let confidential = RecordLabels {
            source_org: "M85001",
            sensitive: false,
            confidential: true,
            hidden_from_patient: false,
        };
        assert_eq!(
            record_visibility(
                &clinician("RXK", "R8000"),
                &confidential,
                &PatientContext::default()
            ),
            Visibility::Withhold { rule: "R-SENS-3" }
        );
        assert_eq!(
            record_visibility(
                &clinician("M85001", "R8000"),
                &confidential,
                &PatientContext::default()
            ),
            Visibility::Show
        );
    }
}
