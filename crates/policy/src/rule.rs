//! The rules of the information sharing agreement (`access-rules.md`) as typed values. A decision
//! carries the [`Rule`] that made it, so the refusal, the audit and an explanation can say why;
//! nothing outside this crate compares rule ids as text.

use std::fmt;

/// One numbered rule of the agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// R-ROLE-1: the profile and the token's scopes must both allow the request.
    Role1,
    /// R-ROLE-2: view-only organisations never write.
    Role2,
    /// R-ROLE-3: social care sees demographics, alerts and key professionals only.
    Role3,
    /// R-LR-1: current GP registration.
    Lr1,
    /// R-LR-2: hospital or mental health visit, open or recently ended.
    Lr2,
    /// R-LR-3: social care allocation to the worker or their team.
    Lr3,
    /// R-LR-4: a self-claimed ("break glass") relationship.
    Lr4,
    /// R-LR-5: no relationship, no record.
    Lr5,
    /// R-OBJ-1: objections are registered by the patient's practice; the latest statement wins.
    Obj1,
    /// R-OBJ-2: while an objection stands (or cannot be checked), only the caller's own
    /// organisation's records leave.
    Obj2,
    /// R-OBJ-6: the patient still sees their own record and whether an objection stands.
    Obj6,
    /// R-SENS-1: sensitive codes (and, R-SENS-2, sensitive services) stay with the holder.
    Sens1,
    /// R-SENS-3: GP-confidential entries stay with the recording practice.
    Sens3,
    /// R-SENS-5: entries the GP marked not to be shown to the patient.
    Sens5,
    /// R-WRITE-1: clinicians (and social care, in their categories) write alerts.
    Write1,
    /// R-WRITE-2: patients write their own communication needs and wishes only.
    Write2,
    /// R-AUD-4: privacy officers search the audit trail.
    Aud4,
    /// R-AUD-5: a patient sees who accessed their own record.
    Aud5,
    /// R-FED-1: only a configured neighbouring record exchanges tokens here (the token
    /// endpoint's rule: `invalid_client` otherwise).
    Fed1,
    /// R-FED-2: an exchanged token opens only the patient it names, and reads nothing else.
    Fed2,
    /// R-FED-3: a neighbour's asserted relationship counts only if the neighbour is trusted;
    /// break glass travels as its purpose of use and is audited as break glass.
    Fed3,
    /// R-FED-4: objection and sensitivity rules apply to the neighbour's user as to a local one.
    Fed4,
    /// R-FED-5: the audit names the end user, their organisation, role and purpose, the
    /// neighbour and its request id.
    Fed5,
    /// R-LAUNCH-1: a token an app was granted with a patient launch context (SMART App Launch)
    /// reads, and writes alerts for, that one patient only.
    Launch1,
}

impl Rule {
    /// Every rule, in the agreement's order.
    pub const ALL: [Rule; 24] = [
        Rule::Role1,
        Rule::Role2,
        Rule::Role3,
        Rule::Lr1,
        Rule::Lr2,
        Rule::Lr3,
        Rule::Lr4,
        Rule::Lr5,
        Rule::Obj1,
        Rule::Obj2,
        Rule::Obj6,
        Rule::Sens1,
        Rule::Sens3,
        Rule::Sens5,
        Rule::Write1,
        Rule::Write2,
        Rule::Aud4,
        Rule::Aud5,
        Rule::Fed1,
        Rule::Fed2,
        Rule::Fed3,
        Rule::Fed4,
        Rule::Fed5,
        Rule::Launch1,
    ];

    /// The agreement's id, as refusals and the audit trail print it.
    pub fn id(self) -> &'static str {
        match self {
            Rule::Role1 => "R-ROLE-1",
            Rule::Role2 => "R-ROLE-2",
            Rule::Role3 => "R-ROLE-3",
            Rule::Lr1 => "R-LR-1",
            Rule::Lr2 => "R-LR-2",
            Rule::Lr3 => "R-LR-3",
            Rule::Lr4 => "R-LR-4",
            Rule::Lr5 => "R-LR-5",
            Rule::Obj1 => "R-OBJ-1",
            Rule::Obj2 => "R-OBJ-2",
            Rule::Obj6 => "R-OBJ-6",
            Rule::Sens1 => "R-SENS-1",
            Rule::Sens3 => "R-SENS-3",
            Rule::Sens5 => "R-SENS-5",
            Rule::Write1 => "R-WRITE-1",
            Rule::Write2 => "R-WRITE-2",
            Rule::Aud4 => "R-AUD-4",
            Rule::Aud5 => "R-AUD-5",
            Rule::Fed1 => "R-FED-1",
            Rule::Fed2 => "R-FED-2",
            Rule::Fed3 => "R-FED-3",
            Rule::Fed4 => "R-FED-4",
            Rule::Fed5 => "R-FED-5",
            Rule::Launch1 => "R-LAUNCH-1",
        }
    }

    /// The rule with this id, if there is one.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Whether this rule establishes a legitimate relationship (R-LR-1..4).
    pub fn is_relationship(self) -> bool {
        matches!(self, Rule::Lr1 | Rule::Lr2 | Rule::Lr3 | Rule::Lr4)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_id(r.id()), Some(r));
        }
        assert_eq!(Rule::from_id("R-NOPE-1"), None);
    }
}
