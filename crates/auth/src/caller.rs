//! Who is calling: verified claims of a CIS2, NHS login or backend-services token turned into one
//! [`Caller`] shape, so that the policy crate never reads raw claims.
//!
//! The kind is decided by the claims each issuer alone sends (tokens.md): `nhs_number` only comes
//! from NHS login, `nhsid_nrbac_roles` only from CIS2, and a token with neither is a backend
//! service, which must then hold at least one `system/` scope. A token that fits none of these is
//! refused rather than given a default kind.

use serde_json::{Map, Value};

use crate::federation::{self, Federation, ACTOR_CLAIM, FEDERATION_CLAIM};
use crate::jwt::{optional_string_claim, string_claim, VerifiedClaims};
use crate::scopes::{ScopeContext, Scopes};
use crate::AuthError;

/// The three kinds of caller, each mapped to access profiles by R-ROLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKind {
    /// A professional logged in through CIS2, acting in one selected role.
    Staff,
    /// A patient logged in through NHS login.
    Patient,
    /// A registered backend system (SMART Backend Services).
    System,
}

/// A verified caller.
#[derive(Clone, PartialEq)]
pub struct Caller {
    pub kind: CallerKind,
    /// `sub`: the CIS2 user id, the NHS login subject, or the backend client id.
    pub subject: String,
    /// `iss`: which configured issuer vouched for the caller.
    pub issuer: String,
    /// Staff: `org_code` of the role in force. System: the `org_code` claim, if present.
    pub organisation: Option<String>,
    /// Staff: the last `R` code of the role in force's `role_code`, e.g. `R8000`.
    pub role_code: Option<String>,
    /// Patient tokens: the patient's NHS number (10 digits).
    pub nhs_number: Option<String>,
    /// Patient tokens: NHS login's `identity_proofing_level` (`P9` = fully verified); the policy
    /// refuses lower levels with 403, so it is carried, not checked, here.
    pub identity_proofing_level: Option<String>,
    /// `fhirUser`, e.g. `Practitioner/555021935107`.
    pub fhir_user: Option<String>,
    /// `name`: the user's display name (CIS2), told to a neighbouring record asked on their
    /// behalf.
    pub name: Option<String>,
    /// `jti`.
    pub token_id: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    pub scopes: Scopes,
    /// A user of a neighbouring shared care record, asking through it (docs/federation.md):
    /// present only in access tokens this server's token endpoint minted by token exchange;
    /// the verifier refuses them from any other issuer. Such a caller is [`CallerKind::Staff`],
    /// with the end user's organisation and job role.
    pub federation: Option<Federation>,
    /// The one patient (NHS number) an app launched with patient context may read
    /// (`scr_patient_context`, set by this server's authorization server for SMART App Launch).
    /// It only ever narrows: its `patient/` scopes count for that patient and no other.
    pub patient_context: Option<String>,
}

/// The claim carrying an app's patient launch context in access tokens this server mints.
pub const PATIENT_CONTEXT_CLAIM: &str = "scr_patient_context";

/// Redacts the NHS number, so that `{:?}` of a caller is safe in a log line.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("organisation", &self.organisation)
            .field("role_code", &self.role_code)
            .field(
                "nhs_number",
                &self.nhs_number.as_ref().map(|_| "<redacted>"),
            )
            .field("identity_proofing_level", &self.identity_proofing_level)
            .field("fhir_user", &self.fhir_user)
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes.as_string())
            .field("federation", &self.federation)
            .field(
                "patient_context",
                &self.patient_context.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Caller {
    /// Builds the caller from a token whose signature and registered claims are already verified.
    pub fn from_claims(verified: VerifiedClaims) -> Result<Caller, AuthError> {
        let claims = &verified.claims;
        let scopes = Scopes::parse(string_claim(claims, "scope")?);
        let mut caller = Caller {
            kind: CallerKind::System,
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
            organisation: None,
            role_code: None,
            nhs_number: None,
            identity_proofing_level: None,
            fhir_user: optional_string_claim(claims, "fhirUser")?,
            name: optional_string_claim(claims, "name")?,
            token_id: verified.token_id.clone(),
            expires_at: verified.expires_at,
            scopes,
            federation: None,
            patient_context: match is_present(claims, PATIENT_CONTEXT_CLAIM) {
                true => Some(ten_digits(claims, PATIENT_CONTEXT_CLAIM)?),
                false => None,
            },
        };
        if is_present(claims, FEDERATION_CLAIM) || is_present(claims, ACTOR_CLAIM) {
            // A user of a neighbouring record, whatever else the token says.
            let (fed, org, role) = federation::from_access_token(&verified.subject, claims)?;
            caller.kind = CallerKind::Staff;
            caller.organisation = Some(org);
            caller.role_code = Some(role);
            caller.federation = Some(fed);
        } else if is_present(claims, "nhs_number") {
            caller.kind = CallerKind::Patient;
            caller.nhs_number = Some(ten_digits(claims, "nhs_number")?);
            caller.identity_proofing_level =
                optional_string_claim(claims, "identity_proofing_level")?;
        } else if is_present(claims, "nhsid_nrbac_roles") {
            let (org, role) = role_in_force(claims)?;
            caller.kind = CallerKind::Staff;
            caller.organisation = Some(org);
            caller.role_code = Some(role);
        } else if caller.scopes.has_context(ScopeContext::System) {
            caller.kind = CallerKind::System;
            caller.organisation = optional_string_claim(claims, "org_code")?;
        } else {
            return Err(AuthError::UnrecognisedCaller);
        }
        Ok(caller)
    }
}

impl Caller {
    /// The same staff member acting in another of their roles (`person_roleid` in `claims`'
    /// `nhsid_nrbac_roles`): its organisation and job role. A role not among theirs is refused.
    pub fn in_role(&self, claims: &Map<String, Value>, role: &str) -> Result<Caller, AuthError> {
        let mut claims = claims.clone();
        claims.insert("selected_roleid".to_owned(), Value::String(role.to_owned()));
        let (org, role_code) = role_in_force(&claims)?;
        let mut caller = self.clone();
        caller.organisation = Some(org);
        caller.role_code = Some(role_code);
        Ok(caller)
    }
}

fn is_present(claims: &Map<String, Value>, claim: &str) -> bool {
    claims.get(claim).is_some_and(|v| !v.is_null())
}

/// An NHS number claim as 10 ASCII digits (its check digit is the FHIR crate's business).
fn ten_digits(claims: &Map<String, Value>, claim: &'static str) -> Result<String, AuthError> {
    let number = string_claim(claims, claim)?;
    if number.len() != 10 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::InvalidClaim {
            claim,
            reason: "not 10 digits",
        });
    }
    Ok(number.to_owned())
}

/// The CIS2 role in force: the `nhsid_nrbac_roles` entry whose `person_roleid` equals
/// `selected_roleid`, as (organisation code, job role code).
fn role_in_force(claims: &Map<String, Value>) -> Result<(String, String), AuthError> {
    let selected = string_claim(claims, "selected_roleid")?;
    let Some(Value::Array(roles)) = claims.get("nhsid_nrbac_roles") else {
        return Err(AuthError::InvalidClaim {
            claim: "nhsid_nrbac_roles",
            reason: "not an array",
        });
    };
    let role = roles
        .iter()
        .filter_map(Value::as_object)
        .find(|role| role.get("person_roleid").and_then(Value::as_str) == Some(selected))
        .ok_or(AuthError::RoleNotFound)?;
    let org = string_claim(role, "org_code").map_err(|_| AuthError::InvalidClaim {
        claim: "nhsid_nrbac_roles",
        reason: "role in force has no org_code",
    })?;
    let role_code = string_claim(role, "role_code").map_err(|_| AuthError::InvalidClaim {
        claim: "nhsid_nrbac_roles",
        reason: "role in force has no role_code",
    })?;
    let job_role = job_role_code(role_code).ok_or(AuthError::InvalidClaim {
        claim: "nhsid_nrbac_roles",
        reason: "role_code has no R job role code",
    })?;
    Ok((org.to_owned(), job_role.to_owned()))
}

/// The last colon-separated part of an RBAC `role_code` (`S8000:G8000:R8000`) that is a job role
/// code: `R` followed by digits.
pub(crate) fn job_role_code(role_code: &str) -> Option<&str> {
    role_code.split(':').rev().map(str::trim).find(|part| {
        part.len() > 1 && part.starts_with('R') && part[1..].bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn verified(claims: Value) -> VerifiedClaims {
        VerifiedClaims {
            issuer: "https://cis2.example.nhs.uk".to_owned(),
            subject: "555021935107".to_owned(),
            token_id: "jti-1".to_owned(),
            expires_at: 1_795_000_000,
            issued_at: 1_794_996_400,
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    fn cis2_claims(selected: &str) -> Value {
        json!({
            "sub": "555021935107", "scope": "user/*.rs user/Flag.cu",
            "fhirUser": "Practitioner/555021935107", "name": "Dr Asha Patel",
            "selected_roleid": selected,
            "nhsid_nrbac_roles": [
                { "person_roleid": "555021936108", "org_code": "M85001",
                  "role_code": "S8000:G8000:R8000", "activity_codes": ["B0264"] },
                { "person_roleid": "555021937109", "org_code": "RXK",
                  "role_code": "S8000:G8001:R8001", "activity_codes": [] }
            ]
        })
    }

    #[test]
    fn staff_role_in_force_is_the_selected_role() -> TestResult {
        let caller = Caller::from_claims(verified(cis2_claims("555021937109")))?;
        assert_eq!(caller.kind, CallerKind::Staff);
        assert_eq!(caller.organisation.as_deref(), Some("RXK"));
        assert_eq!(caller.role_code.as_deref(), Some("R8001"));
        assert_eq!(
            caller.fhir_user.as_deref(),
            Some("Practitioner/555021935107")
        );
        let caller = Caller::from_claims(verified(cis2_claims("555021936108")))?;
        assert_eq!(caller.organisation.as_deref(), Some("M85001"));
        assert_eq!(caller.role_code.as_deref(), Some("R8000"));
        Ok(())
    }

    #[test]
    fn staff_selected_roleid_matching_no_role_is_refused() {
        let err = Caller::from_claims(verified(cis2_claims("999999999999"))).unwrap_err();
        assert!(matches!(err, AuthError::RoleNotFound));
    }

    #[test]
    fn staff_token_without_selected_roleid_is_refused() {
        let mut claims = cis2_claims("x");
        claims.as_object_mut().map(|c| c.remove("selected_roleid"));
        let err = Caller::from_claims(verified(claims)).unwrap_err();
        assert!(matches!(
            err,
            AuthError::MissingClaim {
                claim: "selected_roleid"
            }
        ));
    }

    #[test]
    fn job_role_is_last_r_code() {
        assert_eq!(job_role_code("S8000:G8000:R8000"), Some("R8000"));
        assert_eq!(job_role_code("R5105"), Some("R5105"));
        assert_eq!(job_role_code("S0080:G0450:R5105:R0001"), Some("R0001"));
        assert_eq!(job_role_code("S8000:G8000"), None);
        assert_eq!(job_role_code("S8000:RXK"), None);
    }

    #[test]
    fn patient_token_is_parsed() -> TestResult {
        let caller = Caller::from_claims(verified(json!({
            "scope": "patient/*.rs patient/Flag.cu",
            "nhs_number": "9990000018",
            "identity_proofing_level": "P9",
        })))?;
        assert_eq!(caller.kind, CallerKind::Patient);
        assert_eq!(caller.nhs_number.as_deref(), Some("9990000018"));
        assert_eq!(caller.identity_proofing_level.as_deref(), Some("P9"));
        assert_eq!(caller.organisation, None);
        assert!(caller.scopes.has_context(ScopeContext::Patient));
        assert!(!format!("{caller:?}").contains("9990000018"));
        Ok(())
    }

    #[test]
    fn patient_token_with_malformed_nhs_number_is_refused() {
        for bad in [json!("999 000 0018"), json!(9990000018_u64), json!("")] {
            let err = Caller::from_claims(verified(json!({
                "scope": "patient/*.rs", "nhs_number": bad,
            })))
            .unwrap_err();
            assert!(matches!(err, AuthError::InvalidClaim { .. }), "{err:?}");
        }
    }

    #[test]
    fn system_token_takes_org_code() -> TestResult {
        let caller = Caller::from_claims(verified(json!({
            "scope": "system/Patient.rs", "org_code": "RXK",
        })))?;
        assert_eq!(caller.kind, CallerKind::System);
        assert_eq!(caller.organisation.as_deref(), Some("RXK"));
        assert_eq!(caller.role_code, None);
        Ok(())
    }

    #[test]
    fn token_of_no_known_kind_is_refused() {
        let err = Caller::from_claims(verified(json!({ "scope": "user/*.rs" }))).unwrap_err();
        assert!(matches!(err, AuthError::UnrecognisedCaller));
        let err = Caller::from_claims(verified(json!({ "nhs_number": "9990000018" }))).unwrap_err();
        assert!(matches!(err, AuthError::MissingClaim { claim: "scope" }));
    }
}
