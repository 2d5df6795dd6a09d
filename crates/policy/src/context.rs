//! The patient's side of a decision: who has a legitimate relationship with them (R-LR), whether
//! an objection stands (R-OBJ), and who has self-claimed a relationship (R-LR-4). Dates are whole
//! days since 1970-01-01, so the rules compare numbers, not text.

use crate::{profile_of, Decision, PolicyConfig, Profile, Subject};

/// One standing or recent link between the patient and an organisation or worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareLink {
    /// GP registration; `current` while not ended (R-LR-1).
    Registration { org: String, current: bool },
    /// Hospital or mental health visit; `ended_day` is the discharge day (R-LR-2).
    Visit { org: String, ended_day: Option<i64> },
    /// Social care allocation to a worker (token `sub`) and/or the members of a team (R-LR-3).
    Allocation {
        worker: Option<String>,
        team_members: Vec<String>,
        open: bool,
    },
}

/// What the policy knows about the patient whose record is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientContext {
    pub links: Vec<CareLink>,
    /// The latest objection statement says the patient objects (R-OBJ-1).
    pub objection_stands: bool,
    /// Users with an active self-claimed relationship with this patient (R-LR-4).
    pub break_glass_users: Vec<String>,
    /// Today, in days since 1970-01-01.
    pub today: i64,
}

/// Which relationship, if any, lets a staff member open the record.
pub fn relationship_rule(
    subject: &Subject,
    ctx: &PatientContext,
    config: &PolicyConfig,
) -> Option<&'static str> {
    let Subject::Staff { user, org, .. } = subject else {
        return None;
    };
    for link in &ctx.links {
        match link {
            CareLink::Registration {
                org: o,
                current: true,
            } if o == org => return Some("R-LR-1"),
            CareLink::Visit { org: o, ended_day }
                if o == org
                    && ended_day.is_none_or(|d| ctx.today - d <= config.visit_window_days) =>
            {
                return Some("R-LR-2")
            }
            CareLink::Allocation {
                worker,
                team_members,
                open: true,
            } if worker.as_deref() == Some(user) || team_members.contains(user) => {
                return Some("R-LR-3")
            }
            _ => {}
        }
    }
    if profile_of(subject, config) == Some(Profile::Clinical)
        && ctx.break_glass_users.contains(user)
    {
        return Some("R-LR-4");
    }
    None
}

/// May this subject open this patient's record at all? Patients: their own (and P9, checked
/// with the role). Staff: a legitimate relationship (R-LR-1..4), else a refusal (R-LR-5).
/// Backend services are bound by their scopes, R-OBJ and R-SENS, not by relationships.
pub fn authorise_patient(
    subject: &Subject,
    nhs_number: &str,
    ctx: &PatientContext,
    config: &PolicyConfig,
) -> Decision {
    match subject {
        Subject::Patient {
            nhs_number: own, ..
        } if own != nhs_number => {
            Decision::refuse("R-ROLE-1", "a patient may see only their own record")
        }
        Subject::Patient { .. } | Subject::System { .. } => Decision::allow("R-ROLE-1"),
        Subject::Staff { .. } => match relationship_rule(subject, ctx, config) {
            Some(rule) => Decision::allow(rule),
            None => {
                let how = if profile_of(subject, config) == Some(Profile::Clinical) {
                    "; a clinician directly involved in this patient's care may self-claim one with POST Patient/{id}/$break-glass, giving a purpose of use (ETREAT or BTG) and a reason, which is audited"
                } else {
                    "; this role cannot self-claim one"
                };
                Decision::refuse(
                    "R-LR-5",
                    format!("a legitimate relationship with this patient is required{how}"),
                )
            }
        },
    }
}

/// R-OBJ-1 (and R-ROLE-2): only a user of the patient's registered practice registers or
/// withdraws an objection in the shared care record; view-only organisations never write.
pub fn authorise_objection_write(
    subject: &Subject,
    ctx: &PatientContext,
    config: &PolicyConfig,
) -> Decision {
    let Subject::Staff { org, .. } = subject else {
        return Decision::refuse(
            "R-OBJ-1",
            "objections are registered by the patient's GP practice",
        );
    };
    if config.view_only_orgs.contains(org) {
        return Decision::refuse(
            "R-ROLE-2",
            "this organisation is view-only: it never writes",
        );
    }
    if !matches!(
        profile_of(subject, config),
        Some(Profile::Clinical | Profile::ClinicalSupport)
    ) {
        return Decision::refuse("R-OBJ-1", "this role may not register objections");
    }
    let registered = ctx
        .links
        .iter()
        .any(|l| matches!(l, CareLink::Registration { org: o, current: true } if o == org));
    if registered {
        Decision::allow("R-OBJ-1")
    } else {
        Decision::refuse("R-OBJ-1", "only a user of the patient's registered practice may register or withdraw an objection")
    }
}

/// Alert categories, as the write rules name them (the same codes as `scr_fhir::alerts`).
pub const PATIENT_ALERT_CATEGORIES: [&str; 2] = ["communication-support", "end-of-life-wishes"];
pub const SOCIAL_CARE_ALERT_CATEGORIES: [&str; 3] = [
    "safeguarding",
    "communication-support",
    "end-of-life-wishes",
];

/// R-WRITE-1/2 and R-ROLE-2: may the subject write an alert of `category` on this patient?
/// `existing_author` is who wrote the alert being updated (`staff`, `patient`, `system`), if
/// it is an update. Scopes are checked by the caller.
pub fn authorise_alert_write(
    subject: &Subject,
    nhs_number: &str,
    ctx: &PatientContext,
    category: &str,
    existing_author: Option<&str>,
    config: &PolicyConfig,
) -> Decision {
    match subject {
        Subject::Patient {
            nhs_number: own,
            proofing_level,
        } => {
            if own != nhs_number || proofing_level.as_deref() != Some("P9") {
                return Decision::refuse(
                    "R-WRITE-2",
                    "a patient may write only on their own record",
                );
            }
            if existing_author.is_some_and(|a| a != "patient") {
                return Decision::refuse(
                    "R-WRITE-2",
                    "a patient cannot change or end an alert a professional set",
                );
            }
            if !PATIENT_ALERT_CATEGORIES.contains(&category) {
                return Decision::refuse("R-WRITE-2", "patients record their communication needs and wishes (communication-support, end-of-life-wishes)");
            }
            Decision::allow("R-WRITE-2")
        }
        Subject::System { .. } => Decision::allow("R-WRITE-1"),
        Subject::Staff { org, .. } => {
            if config.view_only_orgs.contains(org) {
                return Decision::refuse(
                    "R-ROLE-2",
                    "this organisation is view-only: it never writes",
                );
            }
            let profile = profile_of(subject, config);
            let categories_ok = match profile {
                Some(Profile::Clinical) => true,
                Some(Profile::SocialCare) => SOCIAL_CARE_ALERT_CATEGORIES.contains(&category),
                _ => return Decision::refuse("R-WRITE-1", "this role may not write alerts"),
            };
            if !categories_ok {
                return Decision::refuse("R-WRITE-1", "social care writes safeguarding, communication-support and end-of-life-wishes alerts only");
            }
            match relationship_rule(subject, ctx, config) {
                Some(_) => Decision::allow("R-WRITE-1"),
                None => Decision::refuse(
                    "R-LR-5",
                    "a legitimate relationship with this patient is required to write an alert",
                ),
            }
        }
    }
}

/// The organisation whose own records an objection still lets the subject see (R-OBJ-2).
pub fn own_org(subject: &Subject) -> Option<&str> {
    match subject {
        Subject::Staff { org, .. } => Some(org),
        Subject::System { org, .. } => org.as_deref(),
        Subject::Patient { .. } => None,
    }
}

/// R-OBJ-2 for one record or demographics fragment: while an objection stands, only records held
/// by the caller's own organisation leave. The patient themself is not limited (R-OBJ-6).
pub fn objection_allows(subject: &Subject, ctx: &PatientContext, source_org: &str) -> bool {
    if !ctx.objection_stands || matches!(subject, Subject::Patient { .. }) {
        return true;
    }
    own_org(subject) == Some(source_org)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(org: &str, role: &str, user: &str) -> Subject {
        Subject::Staff {
            user: user.into(),
            org: org.into(),
            role_code: role.into(),
        }
    }

    fn ctx(links: Vec<CareLink>) -> PatientContext {
        PatientContext {
            links,
            today: 20_000,
            ..Default::default()
        }
    }

    #[test]
    fn r_lr_1_current_registration_only() {
        let cfg = PolicyConfig::default();
        let gp = staff("M85001", "R8000", "u");
        assert_eq!(
            authorise_patient(
                &gp,
                "x",
                &ctx(vec![CareLink::Registration {
                    org: "M85001".into(),
                    current: true
                }]),
                &cfg
            )
            .rule,
            "R-LR-1"
        );
        let left = ctx(vec![CareLink::Registration {
            org: "M85001".into(),
            current: false,
        }]);
        assert_eq!(authorise_patient(&gp, "x", &left, &cfg).rule, "R-LR-5");
    }

    #[test]
    fn r_lr_2_visit_window_is_configuration() {
        let cfg = PolicyConfig::default();
        let trust = staff("RXK", "R8000", "u");
        let recent = ctx(vec![CareLink::Visit {
            org: "RXK".into(),
            ended_day: Some(20_000 - 90),
        }]);
        assert!(authorise_patient(&trust, "x", &recent, &cfg).allowed);
        let old = ctx(vec![CareLink::Visit {
            org: "RXK".into(),
            ended_day: Some(20_000 - 91),
        }]);
        assert!(!authorise_patient(&trust, "x", &old, &cfg).allowed);
        let open = ctx(vec![CareLink::Visit {
            org: "RXK".into(),
            ended_day: None,
        }]);
        assert!(authorise_patient(&trust, "x", &open, &cfg).allowed);
    }

    #[test]
    fn r_lr_3_allocation_to_worker_or_team() {
        let cfg = PolicyConfig::default();
        let links = vec![CareLink::Allocation {
            worker: Some("sw1".into()),
            team_members: vec!["sw2".into()],
            open: true,
        }];
        assert_eq!(
            authorise_patient(
                &staff("LA-DUD", "R8014", "sw1"),
                "x",
                &ctx(links.clone()),
                &cfg
            )
            .rule,
            "R-LR-3"
        );
        assert!(
            authorise_patient(
                &staff("LA-DUD", "R8014", "sw2"),
                "x",
                &ctx(links.clone()),
                &cfg
            )
            .allowed
        );
        assert!(
            !authorise_patient(&staff("LA-DUD", "R8014", "sw3"), "x", &ctx(links), &cfg).allowed
        );
        let closed = vec![CareLink::Allocation {
            worker: Some("sw1".into()),
            team_members: vec![],
            open: false,
        }];
        assert!(
            !authorise_patient(&staff("LA-DUD", "R8014", "sw1"), "x", &ctx(closed), &cfg).allowed
        );
    }

    #[test]
    fn r_lr_4_break_glass_only_for_clinical_profiles() {
        let cfg = PolicyConfig::default();
        let mut c = ctx(vec![]);
        c.break_glass_users = vec!["u".into()];
        assert_eq!(
            authorise_patient(&staff("RYA", "R8000", "u"), "x", &c, &cfg).rule,
            "R-LR-4"
        );
        assert!(!authorise_patient(&staff("RYA", "R8008", "u"), "x", &c, &cfg).allowed);
        assert!(!authorise_patient(&staff("RYA", "R8000", "other"), "x", &c, &cfg).allowed);
    }

    #[test]
    fn r_obj_1_only_the_registered_practice_registers_objections() {
        let cfg = PolicyConfig::default();
        let c = ctx(vec![CareLink::Registration {
            org: "M85001".into(),
            current: true,
        }]);
        assert!(authorise_objection_write(&staff("M85001", "R8008", "u"), &c, &cfg).allowed);
        assert_eq!(
            authorise_objection_write(&staff("RXK", "R8000", "u"), &c, &cfg).rule,
            "R-OBJ-1"
        );
        assert_eq!(
            authorise_objection_write(&staff("RYA", "R8000", "u"), &c, &cfg).rule,
            "R-ROLE-2"
        );
        assert!(!authorise_objection_write(&staff("M85001", "R8014", "u"), &c, &cfg).allowed);
    }

    #[test]
    fn r_write_1_and_2_who_writes_which_alerts() {
        let cfg = PolicyConfig::default();
        let c = ctx(vec![
            CareLink::Registration {
                org: "M85001".into(),
                current: true,
            },
            CareLink::Allocation {
                worker: Some("sw".into()),
                team_members: vec![],
                open: true,
            },
        ]);
        assert!(
            authorise_alert_write(
                &staff("M85001", "R8000", "u"),
                "p",
                &c,
                "safeguarding",
                None,
                &cfg
            )
            .allowed
        );
        assert_eq!(
            authorise_alert_write(&staff("RXK", "R8000", "u"), "p", &c, "other", None, &cfg).rule,
            "R-LR-5"
        );
        assert_eq!(
            authorise_alert_write(&staff("RYA", "R8000", "u"), "p", &c, "other", None, &cfg).rule,
            "R-ROLE-2"
        );
        assert!(
            authorise_alert_write(
                &staff("LA-DUD", "R8014", "sw"),
                "p",
                &c,
                "safeguarding",
                None,
                &cfg
            )
            .allowed
        );
        assert!(
            !authorise_alert_write(
                &staff("LA-DUD", "R8014", "sw"),
                "p",
                &c,
                "severe-allergy-condition",
                None,
                &cfg
            )
            .allowed
        );
        let me = Subject::Patient {
            nhs_number: "p".into(),
            proofing_level: Some("P9".into()),
        };
        assert!(authorise_alert_write(&me, "p", &c, "end-of-life-wishes", None, &cfg).allowed);
        assert!(!authorise_alert_write(&me, "p", &c, "safeguarding", None, &cfg).allowed);
        assert!(
            !authorise_alert_write(&me, "p", &c, "communication-support", Some("staff"), &cfg)
                .allowed
        );
        assert!(!authorise_alert_write(&me, "q", &c, "communication-support", None, &cfg).allowed);
    }

    #[test]
    fn r_obj_2_objection_shows_only_own_org_data() {
        let mut c = ctx(vec![]);
        c.objection_stands = true;
        let gp = staff("M85001", "R8000", "u");
        assert!(objection_allows(&gp, &c, "M85001"));
        assert!(!objection_allows(&gp, &c, "RXK"));
        let patient = Subject::Patient {
            nhs_number: "x".into(),
            proofing_level: Some("P9".into()),
        };
        assert!(objection_allows(&patient, &c, "RXK"), "R-OBJ-6");
        c.objection_stands = false;
        assert!(objection_allows(&gp, &c, "RXK"), "R-OBJ-5");
    }
}
