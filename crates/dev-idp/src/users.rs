//! The demo users: one table, fixed ids (the authorization server's tests sign in as them).

/// One CIS2 role of a staff user (`nhsid_nrbac_roles` entry, tokens.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub person_roleid: &'static str,
    /// ODS code of the organisation the role is held at.
    pub org_code: &'static str,
    pub org_name: &'static str,
    pub role_code: &'static str,
    pub role_name: &'static str,
}

/// What kind of person signs in, and the claims that follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CIS2-shaped: roles, the first one selected.
    Staff { roles: &'static [Role] },
    /// NHS login-shaped, verified to P9.
    Patient {
        nhs_number: &'static str,
        given_name: &'static str,
        family_name: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// The id on the sign-in page (`user=<id>`), and the id token's `sub` for staff: the user id
    /// a host system names when it registers an EHR launch (docs/smart-apps.md). Patients' `sub`
    /// is derived from the NHS number, as `scr token patient` does.
    pub id: &'static str,
    pub name: &'static str,
    pub kind: Kind,
}

impl User {
    /// The role in force at sign-in (`selected_roleid`): the first one.
    pub fn selected_role(&self) -> Option<&'static Role> {
        match self.kind {
            Kind::Staff { roles } => roles.first(),
            Kind::Patient { .. } => None,
        }
    }
}

const CLINICAL: &str = "\"Clinical\":\"Clinical Provision\":\"Clinical Practitioner Access Role\"";

const ASHA: &[Role] = &[
    Role {
        person_roleid: "555021936108",
        org_code: "M85001",
        org_name: "GP practice M85001",
        role_code: "S8000:G8000:R8000",
        role_name: CLINICAL,
    },
    Role {
        person_roleid: "555021937109",
        org_code: "RXK",
        org_name: "Acute trust RXK",
        role_code: "S8000:G8000:R8000",
        role_name: CLINICAL,
    },
];

const BEN: &[Role] = &[Role {
    person_roleid: "555022936201",
    org_code: "RXK",
    org_name: "Acute trust RXK",
    role_code: "S8000:G8000:R8000",
    role_name: CLINICAL,
}];

const CARA: &[Role] = &[Role {
    person_roleid: "555023936301",
    org_code: "RYA",
    org_name: "Ambulance service RYA",
    role_code: "S8000:G8000:R8003",
    role_name:
        "\"Clinical\":\"Clinical Provision\":\"Health Professional Access Role\" (paramedic)",
}];

const DAN: &[Role] = &[Role {
    person_roleid: "555024936401",
    org_code: "LA-DUD",
    org_name: "Dudley Council",
    role_code: "S8000:G8000:R8014",
    role_name: "Social Worker",
}];

const EVE: &[Role] = &[Role {
    person_roleid: "555025936501",
    org_code: "M85002",
    org_name: "GP practice M85002",
    role_code: "S8000:G8000:R8000",
    role_name: CLINICAL,
}];

const USERS: &[User] = &[
    User {
        id: "gp-asha",
        name: "Dr Asha Patel",
        kind: Kind::Staff { roles: ASHA },
    },
    User {
        id: "trust-ben",
        name: "Dr Ben Okafor",
        kind: Kind::Staff { roles: BEN },
    },
    User {
        id: "ambulance-cara",
        name: "Cara Hughes",
        kind: Kind::Staff { roles: CARA },
    },
    User {
        id: "social-dan",
        name: "Dan Price",
        kind: Kind::Staff { roles: DAN },
    },
    User {
        id: "gp-eve",
        name: "Dr Eve Marsh",
        kind: Kind::Staff { roles: EVE },
    },
    User {
        id: "patient-jane",
        name: "Jane Smith",
        kind: Kind::Patient {
            nhs_number: "9990000018",
            given_name: "Jane",
            family_name: "Smith",
        },
    },
];

/// Every demo user, in the order the sign-in page lists them.
pub fn users() -> &'static [User] {
    USERS
}

/// The demo user with this id.
pub fn user(id: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_and_role_ids_are_unique() {
        let mut ids: Vec<&str> = users().iter().map(|u| u.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), users().len());
        let mut roles: Vec<&str> = users()
            .iter()
            .filter_map(|u| match u.kind {
                Kind::Staff { roles } => Some(roles),
                Kind::Patient { .. } => None,
            })
            .flatten()
            .map(|r| r.person_roleid)
            .collect();
        let n = roles.len();
        roles.sort_unstable();
        roles.dedup();
        assert_eq!(roles.len(), n);
    }

    /// The lead's role-confirmation page appears for a user with more than one role.
    #[test]
    fn gp_asha_has_two_roles_with_the_gp_practice_selected() {
        let asha = user("gp-asha");
        assert_eq!(
            asha.and_then(User::selected_role).map(|r| r.org_code),
            Some("M85001")
        );
        assert!(matches!(asha.map(|u| u.kind), Some(Kind::Staff { roles }) if roles.len() == 2));
    }
}
