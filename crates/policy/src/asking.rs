//! Asking the neighbouring records (issue 12, `docs/federation.md`): whether an access this side
//! permitted may fetch from them at all, and what travels with the request so the neighbour can
//! apply its own rules to the same person.

use crate::decide::{Decision, Notice};
use crate::rule::Rule;
use crate::Subject;

/// What a neighbour is told about an access this side permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAsk {
    /// `TREAT`, or the break-glass purpose (`ETREAT`, `BTG`) under R-LR-4.
    pub purpose_of_use: String,
    /// The written reason, under break glass.
    pub reason: Option<String>,
    /// The rule that gave the caller their relationship here, and its organisation (none
    /// under break glass).
    pub relationship: Option<(Rule, String)>,
}

/// Whether a permitted access may fetch the patient's records from the neighbours, and what
/// they are told. `None`:
/// - refused here: nothing to fetch for;
/// - an objection stands or cannot be checked (R-OBJ-2): the caller sees only their own
///   organisation's records, and a neighbour holds none of them, so none is asked;
/// - the caller is a patient or a backend system: a neighbour applies its rules to a person
///   with an organisation and a role, and these have neither;
/// - the request arrived by federation (R-FED-2): it never fans out again, so two records
///   federated both ways cannot loop.
pub fn peer_ask(subject: &Subject, decision: &Decision) -> Option<PeerAsk> {
    if !decision.permitted || crate::federation_of(subject).is_some() {
        return None;
    }
    let restricted = decision.notices.iter().any(|n| {
        matches!(
            n,
            Notice::ObjectionRestricts | Notice::ObjectionUnknown { .. }
        )
    });
    if restricted {
        return None;
    }
    let Subject::Staff { org, .. } = subject else {
        return None;
    };
    Some(match &decision.claim {
        Some(claim) if decision.rule == Rule::Lr4 => PeerAsk {
            purpose_of_use: claim.purpose.clone(),
            reason: Some(claim.reason.clone()),
            relationship: None,
        },
        _ => PeerAsk {
            purpose_of_use: "TREAT".into(),
            reason: None,
            relationship: Some((decision.rule, org.clone())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Claim;

    fn staff() -> Subject {
        Subject::Staff {
            user: "u1".into(),
            org: "RXK".into(),
            role_code: "R8000".into(),
            federation: None,
            patient_context: None,
        }
    }

    fn permitted(rule: Rule, notices: Vec<Notice>, claim: Option<Claim>) -> Decision {
        Decision {
            permitted: true,
            rule,
            reason: String::new(),
            verdicts: Vec::new(),
            notices,
            trace: Vec::new(),
            claim,
        }
    }

    #[test]
    fn r_lr_2_a_relationship_travels_with_its_rule_and_organisation() {
        let ask = peer_ask(&staff(), &permitted(Rule::Lr2, vec![], None)).unwrap();
        assert_eq!(ask.purpose_of_use, "TREAT");
        assert_eq!(ask.relationship, Some((Rule::Lr2, "RXK".to_owned())));
        assert_eq!(ask.reason, None);
    }

    #[test]
    fn r_lr_4_break_glass_travels_as_its_purpose_with_the_written_reason() {
        let claim = Claim {
            user: "u1".into(),
            org: "RXK".into(),
            purpose: "ETREAT".into(),
            reason: "unconscious in ED".into(),
            expires_at: "2026-12-03T20:00:00Z".into(),
        };
        let ask = peer_ask(&staff(), &permitted(Rule::Lr4, vec![], Some(claim))).unwrap();
        assert_eq!(ask.purpose_of_use, "ETREAT");
        assert_eq!(ask.reason.as_deref(), Some("unconscious in ED"));
        assert_eq!(ask.relationship, None);
    }

    #[test]
    fn r_obj_2_no_neighbour_is_asked_while_an_objection_stands_or_cannot_be_checked() {
        for notice in [
            Notice::ObjectionRestricts,
            Notice::ObjectionUnknown {
                sources: vec!["gp-main".into()],
            },
        ] {
            assert_eq!(
                peer_ask(&staff(), &permitted(Rule::Lr2, vec![notice], None)),
                None
            );
        }
        // Withheld items alone do not stop the neighbours being asked.
        assert!(peer_ask(
            &staff(),
            &permitted(Rule::Lr2, vec![Notice::SomeWithheld], None)
        )
        .is_some());
    }

    #[test]
    fn r_fed_2_a_request_that_arrived_by_federation_never_asks_a_neighbour() {
        let federated = Subject::Staff {
            user: "u1".into(),
            org: "RXK".into(),
            role_code: "R8000".into(),
            federation: Some(crate::Federation {
                peer: "B-REGION".into(),
                patient: "9990000018".into(),
                purpose: crate::Purpose::Treatment,
                relationship: Some(("R-LR-2".into(), "RXK".into())),
                reason: None,
                expires_at: "2026-12-03T20:00:00Z".into(),
            }),
            patient_context: None,
        };
        assert_eq!(
            peer_ask(&federated, &permitted(Rule::Fed3, vec![], None)),
            None
        );
        assert!(peer_ask(&staff(), &permitted(Rule::Lr2, vec![], None)).is_some());
    }

    #[test]
    fn r_lr_5_refusals_patients_and_systems_never_ask_a_neighbour() {
        let mut refused = permitted(Rule::Lr5, vec![], None);
        refused.permitted = false;
        assert_eq!(peer_ask(&staff(), &refused), None);
        let patient = Subject::Patient {
            nhs_number: "9990000018".into(),
            proofing_level: Some("P9".into()),
        };
        assert_eq!(
            peer_ask(&patient, &permitted(Rule::Obj6, vec![], None)),
            None
        );
        let system = Subject::System {
            client_id: "c".into(),
            org: Some("RXK".into()),
        };
        assert_eq!(
            peer_ask(&system, &permitted(Rule::Role1, vec![], None)),
            None
        );
    }
}
