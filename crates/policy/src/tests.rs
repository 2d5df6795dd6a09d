//! Decision tables for every rule family, through the one entry point, including unknown facts.

use super::*;

fn staff(org: &str, role: &str, user: &str) -> Subject {
    Subject::Staff {
        user: user.into(),
        org: org.into(),
        role_code: role.into(),
        federation: None,
        patient_context: None,
    }
}

fn me(nhs: &str) -> Subject {
    Subject::Patient {
        nhs_number: nhs.into(),
        proofing_level: Some("P9".into()),
    }
}

fn facts(links: Vec<CareLink>) -> PatientFacts {
    PatientFacts {
        links: links.into_iter().map(|l| Sourced::new("src", l)).collect(),
        today: 20_000,
        ..Default::default()
    }
}

fn registered(org: &str) -> CareLink {
    CareLink::Registration {
        org: org.into(),
        current: true,
    }
}

fn statement(objects: bool, effective: &str) -> Sourced<Statement> {
    Sourced::new(
        "gp",
        Statement {
            objects,
            effective: effective.into(),
            recorded_at: effective.into(),
            org: "M85001".into(),
            sequence: None,
        },
    )
}

fn gp_down() -> Unanswered {
    Unanswered {
        source: "gp".into(),
        description: "GP replica gp".into(),
        relationships: true,
        objections: true,
    }
}

fn record<'a>(rt: &'a str, org: &'a str) -> RecordFacts<'a> {
    RecordFacts {
        resource_type: rt,
        labels: RecordLabels {
            source_org: org,
            sensitivity: Sensitivity::NotSensitive,
            confidential: false,
            hidden_from_patient: false,
        },
        within_scope_constraints: true,
    }
}

/// Scopes that grant only what is listed.
struct Only(&'static [&'static str]);

impl Grants for Only {
    fn allows(&self, resource_type: &str, _: Action) -> bool {
        self.0.contains(&resource_type)
    }
}

fn ask(subject: &Subject, ask: Ask<'_>) -> Decision {
    decide(
        &Request {
            subject,
            grants: &AllGrants,
            ask,
            patient: Some("p"),
            facts: None,
            records: &[],
        },
        &PolicyConfig::default(),
    )
}

fn open_with(subject: &Subject, f: &PatientFacts, records: &[RecordFacts<'_>]) -> Decision {
    decide(
        &Request {
            subject,
            grants: &AllGrants,
            ask: Ask::Open {
                action: Action::Search,
            },
            patient: Some("p"),
            facts: Some(f),
            records,
        },
        &PolicyConfig::default(),
    )
}

fn read_type(subject: &Subject, rt: &str, grants: &dyn Grants) -> Decision {
    decide(
        &Request {
            subject,
            grants,
            ask: Ask::Type {
                resource_type: rt,
                action: Action::Read,
            },
            patient: None,
            facts: None,
            records: &[],
        },
        &PolicyConfig::default(),
    )
}

#[test]
fn r_role_1_unknown_role_gets_nothing() {
    let d = read_type(&staff("M85001", "R9999", "u"), "Patient", &AllGrants);
    assert_eq!((d.permitted, d.rule), (false, Rule::Role1));
}

#[test]
fn r_role_1_profile_and_scopes_intersect() {
    let gp = staff("M85001", "R8000", "u");
    assert!(read_type(&gp, "Observation", &AllGrants).permitted);
    assert!(!read_type(&gp, "Observation", &Only(&["Patient"])).permitted);
    assert!(!read_type(&staff("M85001", "R8008", "u"), "Observation", &AllGrants).permitted);
}

#[test]
fn r_role_3_social_care_sees_no_medications() {
    let sw = staff("LA-DUD", "R8014", "sw");
    let d = read_type(&sw, "MedicationStatement", &AllGrants);
    assert_eq!((d.permitted, d.rule), (false, Rule::Role3));
    assert!(read_type(&sw, "Flag", &AllGrants).permitted);
    // In an opened record too: the medication is withheld under R-ROLE-3.
    let f = facts(vec![CareLink::Allocation {
        org: "LA-DUD".into(),
        worker: Some("sw".into()),
        team_members: vec![],
        open: true,
    }]);
    let d = open_with(
        &sw,
        &f,
        &[record("MedicationStatement", "RXK"), record("Flag", "RXK")],
    );
    assert_eq!(
        d.verdicts,
        vec![Verdict::Withhold(Rule::Role3), Verdict::Show]
    );
}

#[test]
fn r_role_1_patients_see_only_their_own_record_and_only_at_p9() {
    let f = facts(vec![]);
    assert!(open_with(&me("p"), &f, &[]).permitted);
    assert!(!open_with(&me("q"), &f, &[]).permitted);
    let p5 = Subject::Patient {
        nhs_number: "p".into(),
        proofing_level: Some("P5".into()),
    };
    assert!(!read_type(&p5, "Patient", &AllGrants).permitted);
}

#[test]
fn r_lr_1_current_registration_only() {
    let gp = staff("M85001", "R8000", "u");
    assert_eq!(
        open_with(&gp, &facts(vec![registered("M85001")]), &[]).rule,
        Rule::Lr1
    );
    let left = facts(vec![CareLink::Registration {
        org: "M85001".into(),
        current: false,
    }]);
    assert_eq!(open_with(&gp, &left, &[]).rule, Rule::Lr5);
}

#[test]
fn r_lr_2_visit_window_is_configuration() {
    let trust = staff("RXK", "R8000", "u");
    let visit = |ended_day| {
        facts(vec![CareLink::Visit {
            org: "RXK".into(),
            ended_day,
        }])
    };
    assert!(open_with(&trust, &visit(Some(20_000 - 90)), &[]).permitted);
    assert!(!open_with(&trust, &visit(Some(20_000 - 91)), &[]).permitted);
    assert_eq!(open_with(&trust, &visit(None), &[]).rule, Rule::Lr2);
}

#[test]
fn r_lr_3_allocation_to_worker_or_team() {
    let f = facts(vec![CareLink::Allocation {
        org: "LA-DUD".into(),
        worker: Some("sw1".into()),
        team_members: vec!["sw2".into()],
        open: true,
    }]);
    assert_eq!(
        open_with(&staff("LA-DUD", "R8014", "sw1"), &f, &[]).rule,
        Rule::Lr3
    );
    assert!(open_with(&staff("LA-DUD", "R8014", "sw2"), &f, &[]).permitted);
    assert!(!open_with(&staff("LA-DUD", "R8014", "sw3"), &f, &[]).permitted);
}

#[test]
fn r_lr_4_break_glass_only_for_clinical_profiles_at_the_claiming_org() {
    let mut f = facts(vec![]);
    f.claims.push(Sourced::new(
        "scr",
        Claim {
            user: "u".into(),
            org: "RYA".into(),
            purpose: "ETREAT".into(),
            reason: "collapsed at home".into(),
            expires_at: "2026-12-03T20:00:00Z".into(),
        },
    ));
    let d = open_with(&staff("RYA", "R8000", "u"), &f, &[]);
    assert_eq!(d.rule, Rule::Lr4);
    assert_eq!(d.claim.as_ref().map(|c| c.purpose.as_str()), Some("ETREAT"));
    assert!(!open_with(&staff("RYA", "R8008", "u"), &f, &[]).permitted);
    assert!(!open_with(&staff("RYA", "R8000", "other"), &f, &[]).permitted);
    assert!(
        !open_with(&staff("RXK", "R8000", "u"), &f, &[]).permitted,
        "a claim made at one organisation is not carried to another"
    );
    assert!(ask(&staff("RYA", "R8000", "u"), Ask::SelfClaim).permitted);
    let d = ask(&staff("LA-DUD", "R8014", "u"), Ask::SelfClaim);
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr4));
}

#[test]
fn r_lr_5_refusal_says_how_to_self_claim() {
    let d = open_with(&staff("RXK", "R8000", "u"), &facts(vec![]), &[]);
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
    assert!(d.reason.contains("$break-glass"), "{}", d.reason);
}

#[test]
fn r_lr_5_relationship_unknown_is_never_assumed_and_names_the_source() {
    let mut f = facts(vec![]);
    f.unanswered.push(gp_down());
    let d = open_with(&staff("M85001", "R8000", "u"), &f, &[]);
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
    assert!(
        d.reason.contains("GP replica gp did not answer"),
        "{}",
        d.reason
    );
    assert!(d.trace.iter().any(|s| s.result == StepResult::Unknown));
    // A relationship from a source that did answer still holds.
    let mut f = facts(vec![CareLink::Visit {
        org: "RXK".into(),
        ended_day: None,
    }]);
    f.unanswered.push(gp_down());
    assert_eq!(
        open_with(&staff("RXK", "R8000", "u"), &f, &[]).rule,
        Rule::Lr2
    );
}

#[test]
fn r_obj_1_only_the_registered_practice_registers_objections() {
    let f = facts(vec![registered("M85001")]);
    let write = |s: &Subject, f: &PatientFacts| {
        decide(
            &Request {
                subject: s,
                grants: &AllGrants,
                ask: Ask::WriteObjection,
                patient: Some("p"),
                facts: Some(f),
                records: &[],
            },
            &PolicyConfig::default(),
        )
    };
    assert!(write(&staff("M85001", "R8008", "u"), &f).permitted);
    assert_eq!(write(&staff("RXK", "R8000", "u"), &f).rule, Rule::Obj1);
    assert_eq!(write(&staff("RYA", "R8000", "u"), &f).rule, Rule::Role2);
    assert!(!write(&staff("M85001", "R8014", "u"), &f).permitted);
    let mut down = facts(vec![]);
    down.unanswered.push(gp_down());
    let d = write(&staff("M85001", "R8000", "u"), &down);
    assert!(
        !d.permitted && d.reason.contains("could not be checked"),
        "{}",
        d.reason
    );
}

#[test]
fn r_obj_1_latest_statement_wins() {
    let mut f = facts(vec![]);
    f.statements = vec![
        statement(true, "2026-01-01"),
        statement(false, "2026-02-01"),
    ];
    assert!(matches!(
        objection_status(&f),
        ObjectionStatus::Clear(Some(_))
    ));
    f.statements.push(statement(true, "2026-03-01"));
    assert!(matches!(objection_status(&f), ObjectionStatus::Stands(_)));
}

#[test]
fn r_obj_2_objection_shows_only_own_org_data_and_r_obj_6_the_patient_sees_all() {
    let mut f = facts(vec![registered("M85001")]);
    f.statements.push(statement(true, "2026-01-01"));
    let records = [
        record("Patient", "M85001"),
        record("Patient", "LA-DUD"),
        record("Observation", "M85001"),
        record("Observation", "RXK"),
    ];
    let d = open_with(&staff("M85001", "R8000", "u"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Show,
            Verdict::Withhold(Rule::Obj2),
            Verdict::Show,
            Verdict::Withhold(Rule::Obj2)
        ]
    );
    assert_eq!(d.notices, vec![Notice::ObjectionRestricts]);
    let d = open_with(&me("p"), &f, &records);
    assert!(d.verdicts.iter().all(|v| *v == Verdict::Show));
    assert_eq!(d.notices, vec![Notice::ObjectionToldToPatient]);
    // R-OBJ-5: a later withdrawal restores sharing at once.
    f.statements.push(statement(false, "2026-02-01"));
    let d = open_with(&staff("M85001", "R8000", "u"), &f, &records);
    assert!(d.verdicts.iter().all(|v| *v == Verdict::Show));
    assert!(d.notices.is_empty());
}

#[test]
fn r_obj_2_objection_unknown_restricts_as_an_objection_and_names_the_source() {
    let mut f = facts(vec![CareLink::Visit {
        org: "RXK".into(),
        ended_day: None,
    }]);
    f.unanswered.push(gp_down());
    let records = [
        record("Patient", "RXK"),
        record("Patient", "LA-DUD"),
        record("Observation", "RXK"),
        record("Flag", "LA-DUD"),
    ];
    let d = open_with(&staff("RXK", "R8000", "u"), &f, &records);
    assert!(d.permitted);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Show,
            Verdict::Withhold(Rule::Obj2),
            Verdict::Show,
            Verdict::Withhold(Rule::Obj2)
        ]
    );
    assert_eq!(
        d.notices,
        vec![Notice::ObjectionUnknown {
            sources: vec!["GP replica gp".into()]
        }]
    );
    assert!(d.notices[0].text().contains("GP replica gp"));
    // A withdrawal known from the store does not clear an unknown GP record.
    f.statements.push(statement(false, "2026-02-01"));
    assert!(objection_status(&f).restricts());
    // The patient still sees their own record.
    let d = open_with(&me("p"), &f, &records);
    assert!(d.verdicts.iter().all(|v| *v == Verdict::Show));
    // A source that holds no objections being down changes nothing.
    let mut g = facts(vec![]);
    g.unanswered.push(Unanswered {
        objections: false,
        ..gp_down()
    });
    assert!(!objection_status(&g).restricts());
}

#[test]
fn r_sens_1_and_3_keep_records_inside_the_holder() {
    let f = facts(vec![
        registered("M85001"),
        CareLink::Visit {
            org: "RXK".into(),
            ended_day: None,
        },
    ]);
    let mut sensitive = record("Observation", "RXK");
    sensitive.labels.sensitivity = Sensitivity::Sensitive;
    let mut unknown = record("Observation", "RXK");
    unknown.labels.sensitivity = Sensitivity::Unknown;
    let mut confidential = record("Observation", "M85001");
    confidential.labels.confidential = true;
    let records = [sensitive, unknown, confidential];
    let d = open_with(&staff("M85001", "R8000", "u"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Withhold(Rule::Sens1),
            Verdict::Withhold(Rule::Sens1),
            Verdict::Show
        ]
    );
    assert!(d.notices.is_empty(), "no trace of R-SENS-1 withholding");
    let d = open_with(&staff("RXK", "R8000", "u"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![Verdict::Show, Verdict::Show, Verdict::Withhold(Rule::Sens3)]
    );
    assert_eq!(d.notices, vec![Notice::SomeWithheld]);
    assert_eq!(d.withheld().get(&Rule::Sens3), Some(&1));
}

#[test]
fn r_sens_3_confidential_entries_are_withheld_from_the_patient_too() {
    let mut confidential = record("Observation", "M85001");
    confidential.labels.confidential = true;
    let d = open_with(&me("p"), &facts(vec![]), &[confidential]);
    assert_eq!(d.verdicts, vec![Verdict::Withhold(Rule::Sens3)]);
    assert_eq!(d.notices, vec![Notice::SomeWithheld]);
}

#[test]
fn r_sens_5_a_patient_does_not_see_entries_the_gp_kept_from_them() {
    let mut hidden = record("Observation", "M85001");
    hidden.labels.hidden_from_patient = true;
    let mut sensitive = record("Observation", "RXK");
    sensitive.labels.sensitivity = Sensitivity::Sensitive;
    let d = open_with(&me("p"), &facts(vec![]), &[hidden, sensitive]);
    assert_eq!(
        d.verdicts,
        vec![Verdict::Withhold(Rule::Sens5), Verdict::Show]
    );
}

#[test]
fn r_role_1_scope_constraints_withhold_records_outside_them() {
    let mut outside = record("Observation", "M85001");
    outside.within_scope_constraints = false;
    let d = open_with(&me("p"), &facts(vec![]), &[outside]);
    assert_eq!(d.verdicts, vec![Verdict::Withhold(Rule::Role1)]);
}

fn write(
    s: &Subject,
    f: &PatientFacts,
    category: &str,
    existing: Option<ExistingAlert<'_>>,
) -> Decision {
    decide(
        &Request {
            subject: s,
            grants: &AllGrants,
            ask: Ask::WriteAlert { category, existing },
            patient: Some("p"),
            facts: Some(f),
            records: &[],
        },
        &PolicyConfig::default(),
    )
}

#[test]
fn r_write_1_and_2_who_writes_which_alerts() {
    let f = facts(vec![
        registered("M85001"),
        CareLink::Allocation {
            org: "LA-DUD".into(),
            worker: Some("sw".into()),
            team_members: vec![],
            open: true,
        },
    ]);
    assert!(write(&staff("M85001", "R8000", "u"), &f, "safeguarding", None).permitted);
    assert_eq!(
        write(&staff("RXK", "R8000", "u"), &f, "other", None).rule,
        Rule::Lr5
    );
    assert!(write(&staff("RXK", "R8000", "u"), &f, "other", None)
        .reason
        .starts_with("a legitimate relationship with this patient is required to write an alert"));
    assert_eq!(
        write(&staff("RYA", "R8000", "u"), &f, "other", None).rule,
        Rule::Role2
    );
    let sw = staff("LA-DUD", "R8014", "sw");
    assert!(write(&sw, &f, "safeguarding", None).permitted);
    assert!(!write(&sw, &f, "severe-allergy-condition", None).permitted);
    let clinicians = ExistingAlert {
        author_kind: "staff",
        author_org: "M85001",
        category: "severe-allergy-condition",
    };
    assert!(
        !write(&sw, &f, "safeguarding", Some(clinicians)).permitted,
        "social care cannot turn a clinician's alert into one of its own"
    );
    assert!(write(&me("p"), &f, "end-of-life-wishes", None).permitted);
    assert!(!write(&me("p"), &f, "safeguarding", None).permitted);
    let professional = ExistingAlert {
        author_kind: "staff",
        author_org: "M85001",
        category: "communication-support",
    };
    assert!(!write(&me("p"), &f, "communication-support", Some(professional)).permitted);
    assert!(!write(&me("q"), &f, "communication-support", None).permitted);
}

#[test]
fn item2_r_write_1_social_care_writes_other_but_never_changes_a_clinicians_alert() {
    let f = facts(vec![
        registered("M85001"),
        CareLink::Allocation {
            org: "LA-DUD".into(),
            worker: Some("sw".into()),
            team_members: vec![],
            open: true,
        },
    ]);
    let sw = staff("LA-DUD", "R8014", "sw");
    assert!(
        write(&sw, &f, "other", None).permitted,
        "social-care.md: 'other' is a social care category"
    );
    let clinicians_safeguarding = ExistingAlert {
        author_kind: "staff",
        author_org: "M85001",
        category: "safeguarding",
    };
    let d = write(&sw, &f, "safeguarding", Some(clinicians_safeguarding));
    assert_eq!(
        (d.permitted, d.rule),
        (false, Rule::Write1),
        "even in a social care category, a clinician's alert is not social care's to change"
    );
    let own = ExistingAlert {
        author_kind: "staff",
        author_org: "LA-DUD",
        category: "safeguarding",
    };
    assert!(write(&sw, &f, "other", Some(own)).permitted);
}

#[test]
fn item8_r_role_2_backend_services_of_view_only_organisations_never_write() {
    let f = facts(vec![registered("M85001")]);
    let system = |org: Option<&str>| Subject::System {
        client_id: "c".into(),
        org: org.map(Into::into),
    };
    let d = write(&system(Some("RYA")), &f, "other", None);
    assert_eq!((d.permitted, d.rule), (false, Rule::Role2));
    let d = write(&system(None), &f, "other", None);
    assert_eq!((d.permitted, d.rule), (false, Rule::Role2));
    assert!(write(&system(Some("RXK")), &f, "other", None).permitted);
}

#[test]
fn r_write_1_scopes_must_grant_the_write() {
    let f = facts(vec![registered("M85001")]);
    let d = decide(
        &Request {
            subject: &staff("M85001", "R8000", "u"),
            grants: &Only(&["Patient"]),
            ask: Ask::WriteAlert {
                category: "other",
                existing: None,
            },
            patient: Some("p"),
            facts: Some(&f),
            records: &[],
        },
        &PolicyConfig::default(),
    );
    assert_eq!((d.permitted, d.rule), (false, Rule::Role1));
}

#[test]
fn r_aud_4_and_5_who_reads_the_audit_trail() {
    let officer = staff("M85001", "R0001", "po");
    assert_eq!(ask(&officer, Ask::AuditTrail).rule, Rule::Aud4);
    assert_eq!(ask(&me("p"), Ask::AuditTrail).rule, Rule::Aud5);
    let d = ask(&me("q"), Ask::AuditTrail);
    assert_eq!((d.permitted, d.rule), (false, Rule::Aud5));
    assert!(!ask(&staff("M85001", "R8000", "u"), Ask::AuditTrail).permitted);
    assert!(
        !ask(
            &me("q"),
            Ask::Consents {
                action: Action::Read
            }
        )
        .permitted
    );
    assert!(
        ask(
            &officer,
            Ask::Consents {
                action: Action::Search
            }
        )
        .permitted
    );
}

#[test]
fn every_decision_traces_the_rule_that_decided() {
    let mut f = facts(vec![registered("M85001")]);
    f.unanswered.push(Unanswered {
        source: "sc".into(),
        description: "social care replica sc".into(),
        relationships: true,
        objections: false,
    });
    let d = open_with(
        &staff("M85001", "R8000", "u"),
        &f,
        &[record("Observation", "M85001")],
    );
    assert!(d.trace.iter().any(|s| s.rule == Rule::Lr1
        && s.result == StepResult::Permit
        && s.facts[0].contains("M85001")));
    assert!(d.trace.iter().any(|s| s.rule == Rule::Obj2));
    let counts = d.counts_by_type(&[record("Observation", "M85001")]);
    assert_eq!(counts["Observation"].0, 1);
}

#[test]
fn r_aud_4_only_privacy_officers_ask_for_an_explanation() {
    assert_eq!(
        ask(&staff("M85001", "R0001", "po"), Ask::Explain).rule,
        Rule::Aud4
    );
    assert_eq!(
        ask(&staff("M85001", "R5105", "cg"), Ask::Explain).rule,
        Rule::Aud4
    );
    assert!(!ask(&staff("M85001", "R8000", "u"), Ask::Explain).permitted);
    assert!(!ask(&me("p"), Ask::Explain).permitted);
}

#[test]
fn visit_dates_read_as_dates_in_explanations() {
    assert_eq!(facts::civil_date(0), "1970-01-01");
    assert_eq!(facts::civil_date(20_425), "2025-12-03");
    assert_eq!(facts::civil_date(11_016), "2000-02-29");
    let link = CareLink::Visit {
        org: "RXK".into(),
        ended_day: Some(20_425),
    };
    assert_eq!(link.to_string(), "visit at RXK ended on 2025-12-03");
}

/// Found by the leak hunt (issue 11 item 13): CIS2 tokens carry every role of a person, so the
/// worker allocated at a council can select a clinical role at a trust.
#[test]
fn r_lr_3_an_allocation_is_a_relationship_only_at_its_council() {
    let f = facts(vec![CareLink::Allocation {
        org: "LA-DUD".into(),
        worker: Some("sw1".into()),
        team_members: vec!["sw2".into()],
        open: true,
    }]);
    assert_eq!(
        open_with(&staff("LA-DUD", "R8014", "sw1"), &f, &[]).rule,
        Rule::Lr3
    );
    for (org, role, user) in [
        ("RXK", "R8000", "sw1"),
        ("LA-SAN", "R8014", "sw1"),
        ("M85001", "R8000", "sw2"),
    ] {
        let d = open_with(&staff(org, role, user), &f, &[]);
        assert_eq!((d.permitted, d.rule), (false, Rule::Lr5), "{user} at {org}");
    }
}

fn stated(objects: bool, source: &str, effective: &str, recorded_at: &str) -> Sourced<Statement> {
    Sourced::new(
        source,
        Statement {
            objects,
            effective: effective.into(),
            recorded_at: recorded_at.into(),
            org: "M85001".into(),
            sequence: None,
        },
    )
}

/// Found by the leak hunt: a GP coded entry has a date, a Consent a date-time. As text,
/// `2026-03-01` sorts before `2026-03-01T09:00:00Z`, so an objection coded at the practice in
/// the afternoon lost to a withdrawal registered here that morning, and the record was shared.
#[test]
fn r_obj_1_a_date_and_a_date_time_of_the_same_day_are_ordered_by_recording_time() {
    let mut f = facts(vec![]);
    f.statements = vec![
        stated(true, "gp", "2026-03-01", "2026-03-01T17:00:00Z"),
        stated(false, "scr", "2026-03-01T09:00:00Z", "2026-03-01T09:00:00Z"),
    ];
    assert!(matches!(objection_status(&f), ObjectionStatus::Stands(_)));
    // R-OBJ-5: the other way round, the withdrawal coded later that day lifts the objection.
    f.statements = vec![
        stated(false, "gp", "2026-03-01", "2026-03-01T17:00:00Z"),
        stated(true, "scr", "2026-03-01T09:00:00Z", "2026-03-01T09:00:00Z"),
    ];
    assert!(matches!(
        objection_status(&f),
        ObjectionStatus::Clear(Some(_))
    ));
    // Two date-times are still ordered by their times, whatever was recorded when.
    f.statements = vec![
        stated(true, "scr", "2026-03-01T08:00:00Z", "2026-03-01T18:00:00Z"),
        stated(false, "scr", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
    ];
    assert!(!objection_status(&f).restricts());
}

/// Found by the leak hunt: a withdrawal and an objection with the same dates and recording
/// times were decided by the order the sources answered in.
#[test]
fn r_obj_1_statements_that_cannot_be_ordered_keep_the_objection() {
    let objection = stated(true, "gp", "2026-03-01", "2026-03-01T09:00:00Z");
    let withdrawal = stated(false, "scr", "2026-03-01", "2026-03-01T09:00:00Z");
    for statements in [
        vec![objection.clone(), withdrawal.clone()],
        vec![withdrawal, objection],
    ] {
        let mut f = facts(vec![]);
        f.statements = statements;
        assert!(matches!(objection_status(&f), ObjectionStatus::Stands(_)));
    }
}

/// Found by the leak hunt: demographics fragments skipped every label. No source labels them
/// today; should one, the label holds as it does for any record.
#[test]
fn r_sens_1_3_and_5_labels_on_demographics_are_honoured() {
    let f = facts(vec![
        registered("M85001"),
        CareLink::Visit {
            org: "RXK".into(),
            ended_day: None,
        },
    ]);
    let mut sensitive = record("Patient", "RXK");
    sensitive.labels.sensitivity = Sensitivity::Unknown;
    let mut confidential = record("Patient", "M85001");
    confidential.labels.confidential = true;
    let mut hidden = record("Patient", "M85001");
    hidden.labels.hidden_from_patient = true;
    let records = [sensitive, confidential, hidden];
    let d = open_with(&staff("M85001", "R8000", "u"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![Verdict::Withhold(Rule::Sens1), Verdict::Show, Verdict::Show]
    );
    let d = open_with(&staff("RXK", "R8000", "u"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![Verdict::Show, Verdict::Withhold(Rule::Sens3), Verdict::Show]
    );
    let d = open_with(&me("p"), &f, &records);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Show,
            Verdict::Withhold(Rule::Sens3),
            Verdict::Withhold(Rule::Sens5)
        ]
    );
}

#[test]
fn r_obj_5_statements_registered_here_in_the_same_second_are_ordered_by_the_log() {
    let at = "2026-11-25T10:00:00Z";
    let here = |objects: bool, sequence: i64| {
        Sourced::new(
            "scr",
            Statement {
                objects,
                effective: at.into(),
                recorded_at: at.into(),
                org: "M85001".into(),
                sequence: Some(sequence),
            },
        )
    };
    let mut f = facts(vec![registered("M85001")]);
    f.statements = vec![here(true, 1), here(false, 2)];
    assert!(
        !objection_status(&f).restricts(),
        "the withdrawal registered second lifts the objection"
    );
    f.statements = vec![here(false, 1), here(true, 2)];
    assert!(objection_status(&f).restricts());
}

#[test]
fn item8_r_lr_3_an_allocation_counts_only_in_a_social_care_role_at_its_council() {
    let f = facts(vec![CareLink::Allocation {
        org: "LA-DUD".into(),
        worker: Some("sw".into()),
        team_members: vec![],
        open: true,
    }]);
    let open = |s: &Subject| {
        decide(
            &Request {
                subject: s,
                grants: &AllGrants,
                ask: Ask::Open {
                    action: Action::Read,
                },
                patient: Some("p"),
                facts: Some(&f),
                records: &[],
            },
            &PolicyConfig::default(),
        )
    };
    assert!(open(&staff("LA-DUD", "R8014", "sw")).permitted);
    assert!(
        !open(&staff("LA-DUD", "R8008", "sw")).permitted,
        "the same person in an administrative role at the council"
    );
    assert!(!open(&staff("RXK", "R8000", "sw")).permitted);
}

// R-FED: users of a neighbouring shared care record, asking through it (docs/federation.md).

const FED_PATIENT: &str = "9990000018";

fn federated(
    org: &str,
    role: &str,
    purpose: Purpose,
    relationship: Option<(&str, &str)>,
) -> Subject {
    Subject::Staff {
        user: "555021935107".into(),
        org: org.into(),
        role_code: role.into(),
        federation: Some(Federation {
            peer: "BlackCountrySCR".into(),
            patient: FED_PATIENT.into(),
            purpose,
            relationship: relationship.map(|(r, o)| (r.to_owned(), o.to_owned())),
            reason: purpose
                .is_break_glass()
                .then(|| "unconscious in ED".to_owned()),
            expires_at: "2026-12-03T20:05:00Z".into(),
        }),
        patient_context: None,
    }
}

fn trusting(peers: &[&str]) -> PolicyConfig {
    PolicyConfig {
        trusted_peers: peers.iter().map(|p| (*p).to_owned()).collect(),
        ..PolicyConfig::default()
    }
}

fn fed_decide(
    subject: &Subject,
    ask: Ask<'_>,
    patient: &str,
    f: &PatientFacts,
    records: &[RecordFacts<'_>],
    config: &PolicyConfig,
) -> Decision {
    decide(
        &Request {
            subject,
            grants: &AllGrants,
            ask,
            patient: Some(patient),
            facts: Some(f),
            records,
        },
        config,
    )
}

fn fed_open(subject: &Subject, f: &PatientFacts, config: &PolicyConfig) -> Decision {
    let search = Ask::Open {
        action: Action::Search,
    };
    fed_decide(subject, search, FED_PATIENT, f, &[], config)
}

#[test]
fn r_fed_2_an_exchanged_token_opens_only_the_patient_it_names() {
    let rxk = federated("RXK", "R8000", Purpose::Treatment, Some(("R-LR-2", "RXK")));
    let config = trusting(&["BlackCountrySCR"]);
    let f = facts(vec![]);
    let search = Ask::Open {
        action: Action::Search,
    };
    assert!(fed_decide(&rxk, search, FED_PATIENT, &f, &[], &config).permitted);
    let other = fed_decide(&rxk, search, "9990000026", &f, &[], &config);
    assert_eq!((other.permitted, other.rule), (false, Rule::Fed2));
    assert!(
        other.reason.contains("only the patient it names"),
        "{}",
        other.reason
    );
    // A relationship here with the other patient changes nothing.
    let related = facts(vec![CareLink::Visit {
        org: "RXK".into(),
        ended_day: None,
    }]);
    let other = fed_decide(&rxk, search, "9990000026", &related, &[], &config);
    assert_eq!((other.permitted, other.rule), (false, Rule::Fed2));
    let read = Ask::Open {
        action: Action::Read,
    };
    assert_eq!(
        fed_decide(&rxk, read, "9990000026", &f, &[], &config).rule,
        Rule::Fed2
    );
}

#[test]
fn r_fed_2_an_exchanged_token_only_reads() {
    let rxk = federated("RXK", "R8000", Purpose::Treatment, Some(("R-LR-2", "RXK")));
    let config = trusting(&["BlackCountrySCR"]);
    let f = facts(vec![CareLink::Visit {
        org: "RXK".into(),
        ended_day: None,
    }]);
    for ask in [
        Ask::WriteAlert {
            category: "other",
            existing: None,
        },
        Ask::WriteObjection,
        Ask::AuditTrail,
        Ask::Explain,
        Ask::Consents {
            action: Action::Search,
        },
    ] {
        let d = fed_decide(&rxk, ask, FED_PATIENT, &f, &[], &config);
        assert_eq!((d.permitted, d.rule), (false, Rule::Fed2), "{ask:?}");
    }
    // Break glass is not self-claimed here: it travels as the purpose of use.
    let d = fed_decide(&rxk, Ask::SelfClaim, FED_PATIENT, &f, &[], &config);
    assert_eq!((d.permitted, d.rule), (false, Rule::Fed3));
    // Reading a type is decided as for a local caller of that role (R-ROLE-1).
    let t = read_type(&rxk, "Observation", &AllGrants);
    assert_eq!((t.permitted, t.rule), (true, Rule::Role1));
    let support = federated("RXK", "R8008", Purpose::Treatment, None);
    assert!(!read_type(&support, "Observation", &AllGrants).permitted);
}

#[test]
fn r_fed_3_an_asserted_relationship_counts_only_from_a_trusted_peer() {
    let rxk = federated("RXK", "R8000", Purpose::Treatment, Some(("R-LR-2", "RXK")));
    let f = facts(vec![]);
    let trusted = fed_open(&rxk, &f, &trusting(&["BlackCountrySCR"]));
    assert_eq!((trusted.permitted, trusted.rule), (true, Rule::Fed3));
    assert_eq!(trusted.claim, None, "a relationship is not break glass");
    assert!(trusted
        .trace
        .iter()
        .any(|s| s.rule == Rule::Fed3 && s.result == StepResult::Permit));
    for config in [PolicyConfig::default(), trusting(&["AnotherSCR"])] {
        let d = fed_open(&rxk, &f, &config);
        assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
        assert!(d
            .trace
            .iter()
            .any(|s| s.rule == Rule::Fed3 && s.detail.contains("not trusted")));
    }
}

#[test]
fn r_fed_3_without_trust_the_local_relationship_rules_apply() {
    let rxk = federated("RXK", "R8000", Purpose::Treatment, Some(("R-LR-2", "RXK")));
    let visit = facts(vec![CareLink::Visit {
        org: "RXK".into(),
        ended_day: None,
    }]);
    let d = fed_open(&rxk, &visit, &PolicyConfig::default());
    assert_eq!((d.permitted, d.rule), (true, Rule::Lr2));
    let elsewhere = facts(vec![CareLink::Visit {
        org: "RYW".into(),
        ended_day: None,
    }]);
    let d = fed_open(&rxk, &elsewhere, &PolicyConfig::default());
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
    // A self-claim made here by a user of the same id and organisation is not theirs.
    let mut claimed = facts(vec![]);
    claimed.claims.push(Sourced::new(
        "scr",
        Claim {
            user: "555021935107".into(),
            org: "RXK".into(),
            purpose: "ETREAT".into(),
            reason: "collapsed at home".into(),
            expires_at: "2026-12-03T20:00:00Z".into(),
        },
    ));
    let d = fed_open(&rxk, &claimed, &PolicyConfig::default());
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
    // A source that did not answer is named, as for a local caller.
    let mut down = facts(vec![]);
    down.unanswered.push(gp_down());
    let d = fed_open(&rxk, &down, &PolicyConfig::default());
    assert_eq!((d.permitted, d.rule), (false, Rule::Lr5));
    assert!(d.reason.contains("GP replica gp"), "{}", d.reason);
}

#[test]
fn r_fed_3_an_asserted_relationship_must_be_a_relationship_of_the_users_organisation() {
    let config = trusting(&["BlackCountrySCR"]);
    let f = facts(vec![]);
    for relationship in [
        ("R-LR-2", "RYW"),
        ("R-LR-4", "RXK"),
        ("R-LR-5", "RXK"),
        ("R-OBJ-2", "RXK"),
        ("R-LR-9", "RXK"),
    ] {
        let s = federated("RXK", "R8000", Purpose::Treatment, Some(relationship));
        let d = fed_open(&s, &f, &config);
        assert_eq!(
            (d.permitted, d.rule),
            (false, Rule::Lr5),
            "{relationship:?}"
        );
    }
    let none = federated("RXK", "R8000", Purpose::Treatment, None);
    assert!(!fed_open(&none, &f, &config).permitted);
}

#[test]
fn r_fed_3_break_glass_is_a_break_glass_access_for_clinical_profiles() {
    let f = facts(vec![]);
    for purpose in [Purpose::EmergencyTreatment, Purpose::BreakTheGlass] {
        let s = federated("RXK", "R8000", purpose, None);
        // Trusted or not: break glass is the user's own declaration, audited as such.
        for config in [PolicyConfig::default(), trusting(&["BlackCountrySCR"])] {
            let d = fed_open(&s, &f, &config);
            assert_eq!((d.permitted, d.rule), (true, Rule::Fed3));
            let claim = d.claim.expect("a break-glass access");
            assert_eq!(claim.purpose, purpose.code());
            assert_eq!(claim.reason, "unconscious in ED");
            assert_eq!(
                (claim.user.as_str(), claim.org.as_str()),
                ("555021935107", "RXK")
            );
        }
        for role in ["R8008", "R8014"] {
            let s = federated("RXK", role, purpose, None);
            let d = fed_open(&s, &f, &PolicyConfig::default());
            assert_eq!((d.permitted, d.rule), (false, Rule::Lr5), "{role}");
        }
    }
}

#[test]
fn r_fed_4_objection_and_sensitivity_apply_to_the_end_user() {
    let rxk = federated("RXK", "R8000", Purpose::Treatment, Some(("R-LR-2", "RXK")));
    let config = trusting(&["BlackCountrySCR"]);
    let mut f = facts(vec![]);
    let mut sensitive = record("Observation", "TAJ");
    sensitive.labels.sensitivity = Sensitivity::Sensitive;
    let mut confidential = record("Observation", "M85001");
    confidential.labels.confidential = true;
    let records = [
        record("Patient", "M85001"),
        record("Observation", "M85001"),
        sensitive,
        confidential,
    ];
    let search = Ask::Open {
        action: Action::Search,
    };
    let d = fed_decide(&rxk, search, FED_PATIENT, &f, &records, &config);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Show,
            Verdict::Show,
            Verdict::Withhold(Rule::Sens1),
            Verdict::Withhold(Rule::Sens3)
        ]
    );
    assert!(d.trace.iter().any(|s| s.rule == Rule::Fed4));
    f.statements.push(statement(true, "2026-01-01"));
    let d = fed_decide(&rxk, search, FED_PATIENT, &f, &records, &config);
    assert!(d.permitted);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Withhold(Rule::Obj2),
            Verdict::Withhold(Rule::Obj2),
            Verdict::Withhold(Rule::Sens1),
            Verdict::Withhold(Rule::Sens3)
        ],
        "this record holds none of the user's organisation's records"
    );
    assert_eq!(
        d.notices,
        vec![Notice::ObjectionRestricts, Notice::SomeWithheld]
    );
}

#[test]
fn r_fed_4_a_neighbour_naming_a_local_organisation_holds_none_of_its_records() {
    // An untrusted neighbour sends break glass for a user it says acts for RXK: RXK's
    // sensitive, confidential and (under an objection) other records still do not leave.
    let at_rxk = federated("RXK", "R8000", Purpose::BreakTheGlass, None);
    let mut sensitive = record("Observation", "RXK");
    sensitive.labels.sensitivity = Sensitivity::Sensitive;
    let mut confidential = record("Observation", "RXK");
    confidential.labels.confidential = true;
    let records = [record("Observation", "RXK"), sensitive, confidential];
    let mut f = facts(vec![]);
    let search = Ask::Open {
        action: Action::Search,
    };
    let d = fed_decide(
        &at_rxk,
        search,
        FED_PATIENT,
        &f,
        &records,
        &PolicyConfig::default(),
    );
    assert!(d.permitted);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::Show,
            Verdict::Withhold(Rule::Sens1),
            Verdict::Withhold(Rule::Sens3)
        ]
    );
    f.statements.push(statement(true, "2026-01-01"));
    let d = fed_decide(
        &at_rxk,
        search,
        FED_PATIENT,
        &f,
        &records,
        &PolicyConfig::default(),
    );
    assert_eq!(d.verdicts[0], Verdict::Withhold(Rule::Obj2));
    // The same records for a local RXK clinician: theirs.
    let local = open_with(
        &staff("RXK", "R8000", "u"),
        &facts(vec![CareLink::Visit {
            org: "RXK".into(),
            ended_day: None,
        }]),
        &records,
    );
    assert!(local.verdicts.iter().all(|v| *v == Verdict::Show));
}

fn launched(org: &str, patient: &str) -> Subject {
    Subject::Staff {
        user: "u-launch".into(),
        org: org.into(),
        role_code: "R8000".into(),
        federation: None,
        patient_context: Some(patient.into()),
    }
}

#[test]
fn r_launch_1_an_app_launched_for_one_patient_opens_that_patient_only() {
    // The caller has a relationship with "p" (registered there) and would see it unlaunched.
    let f = facts(vec![registered("M85001")]);
    let d = open_with(&launched("M85001", "p"), &f, &[]);
    assert!(d.permitted, "{d:?}");
    let d = open_with(&launched("M85001", "another"), &f, &[]);
    assert!(!d.permitted);
    assert_eq!(d.rule, Rule::Launch1);
    // Unlaunched, the same caller opens it.
    assert!(open_with(&staff("M85001", "R8000", "u"), &f, &[]).permitted);
}

#[test]
fn r_launch_1_a_launched_app_reads_no_audit_trail_and_registers_no_objection() {
    for a in [Ask::AuditTrail, Ask::WriteObjection, Ask::Explain] {
        let d = ask(&launched("M85001", "p"), a);
        assert!(!d.permitted);
        assert_eq!(d.rule, Rule::Launch1);
    }
}

#[test]
fn r_role_1_grantable_follows_the_profile_and_view_only_organisations() {
    let mut config = PolicyConfig::default();
    let (reads, writes) = grantable(&staff("LA-DUD", "R8014", "sw"), &config).unwrap_or_default();
    assert_eq!(reads, &["Patient", "Flag"]);
    assert_eq!(writes, &["Flag"]);
    config.view_only_orgs.push("RYA".into());
    let (reads, writes) = grantable(&staff("RYA", "R8000", "crew"), &config).unwrap_or_default();
    assert!(reads.contains(&"Observation"));
    assert!(writes.is_empty());
    assert!(grantable(&staff("M85001", "R9999", "u"), &config).is_none());
}
