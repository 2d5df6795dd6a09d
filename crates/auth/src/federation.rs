//! Federation (docs/federation.md): the end user's context a neighbouring shared care record
//! ("the peer") sends in an RFC 8693 subject token, and the `scr_federation` part of the access
//! token this server mints for it.
//!
//! Both shapes are read here, so the token endpoint (reading the peer's subject token) and the
//! verifier (reading the access token this server minted) hold every claim to the same rules:
//! a valid NHS number, a purpose of use of `TREAT`, `ETREAT` or `BTG`, a written reason under
//! break glass, bounded printable text everywhere else. Errors name the claim, never its value.

use serde_json::{json, Map, Value};

use crate::jwt::string_claim;
use crate::AuthError;

/// The claim of access tokens minted for a federated caller.
pub const FEDERATION_CLAIM: &str = "scr_federation";
/// RFC 8693 §4.1: the actor (the peer's client) of a delegated token.
pub const ACTOR_CLAIM: &str = "act";

/// Why the peer's user asks (HL7 v3 ActReason): treatment under a relationship, or break glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurposeOfUse {
    /// `TREAT`: the peer's user has a legitimate relationship there.
    Treatment,
    /// `ETREAT`: emergency treatment, self-claimed (break glass).
    EmergencyTreatment,
    /// `BTG`: break the glass.
    BreakTheGlass,
}

impl PurposeOfUse {
    pub fn from_code(code: &str) -> Option<PurposeOfUse> {
        match code {
            "TREAT" => Some(PurposeOfUse::Treatment),
            "ETREAT" => Some(PurposeOfUse::EmergencyTreatment),
            "BTG" => Some(PurposeOfUse::BreakTheGlass),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::BreakTheGlass => "BTG",
        }
    }

    /// `ETREAT` and `BTG`: a self-claimed relationship on the asking side (R-LR-4).
    pub fn is_break_glass(self) -> bool {
        !matches!(self, PurposeOfUse::Treatment)
    }
}

/// The relationship the asking side established for its user: the rule id that gave it there
/// (`R-LR-2`) and its organisation. What it counts for here is the policy's business (R-FED-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertedRelationship {
    pub rule: String,
    pub org: String,
}

/// The end user's context, as the peer asserts it in its subject token (and as this server
/// repeats it in the access token it mints).
#[derive(Clone, PartialEq, Eq)]
pub struct UserContext {
    /// The end user's id at the peer (`sub`).
    pub user: String,
    pub name: String,
    /// ODS code of the organisation they act for.
    pub org_code: String,
    /// National RBAC job role code (`R8000`).
    pub role_code: String,
    pub purpose: PurposeOfUse,
    /// The one patient the exchange is for (a valid NHS number).
    pub patient: String,
    /// The peer's id of the request, for joining both sides' audit trails.
    pub request_id: String,
    pub relationship: Option<AssertedRelationship>,
    /// The written reason, required under break glass.
    pub reason: Option<String>,
}

/// Redacts the name, the patient and the reason, so that `{:?}` is safe in a log line.
impl std::fmt::Debug for UserContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserContext")
            .field("user", &self.user)
            .field("org_code", &self.org_code)
            .field("role_code", &self.role_code)
            .field("purpose", &self.purpose)
            .field("request_id", &self.request_id)
            .field("relationship", &self.relationship)
            .finish_non_exhaustive()
    }
}

/// What a federated [`crate::Caller`] carries beyond a staff caller: who vouched for them and
/// for what.
#[derive(Clone, PartialEq, Eq)]
pub struct Federation {
    /// The peer's name as this server's configuration gives it (`[[auth.peers]] name`).
    pub peer: String,
    /// The peer's client id (`act.sub`).
    pub actor: String,
    /// The end user's name.
    pub user_name: String,
    pub purpose: PurposeOfUse,
    /// The one patient the token opens (R-FED-2).
    pub patient: String,
    pub request_id: String,
    pub relationship: Option<AssertedRelationship>,
    pub reason: Option<String>,
}

/// Redacts the name, the patient and the reason, so that `{:?}` is safe in a log line.
impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("peer", &self.peer)
            .field("actor", &self.actor)
            .field("purpose", &self.purpose)
            .field("request_id", &self.request_id)
            .field("relationship", &self.relationship)
            .finish_non_exhaustive()
    }
}

fn invalid(claim: &'static str, reason: &'static str) -> AuthError {
    AuthError::InvalidClaim { claim, reason }
}

/// Non-blank text of at most `max` characters with no control characters.
fn text(value: &str, claim: &'static str, max: usize) -> Result<String, AuthError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(claim, "empty"));
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(invalid(claim, "too long or has control characters"));
    }
    Ok(value.to_owned())
}

/// An identifier: 1 to `max` visible ASCII characters.
fn identifier(value: &str, claim: &'static str, max: usize) -> Result<String, AuthError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            claim,
            "not visible ASCII characters of a bounded length",
        ));
    }
    Ok(value.to_owned())
}

/// An ODS code: letters, digits and `-` (council codes such as `LA-DUD`).
fn ods_code(value: &str, claim: &'static str) -> Result<String, AuthError> {
    if value.is_empty()
        || value.len() > 16
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(claim, "not an ODS code"));
    }
    Ok(value.to_owned())
}

/// A national RBAC job role code: `R` and digits; a full `S..:G..:R..` role code is reduced to
/// its last job role code.
fn job_role(value: &str, claim: &'static str) -> Result<String, AuthError> {
    crate::caller::job_role_code(value)
        .map(str::to_owned)
        .ok_or(invalid(claim, "not a national RBAC job role code"))
}

/// Whether `nhs` is a valid NHS number: ten digits whose last is the modulus 11 check digit of
/// the first nine. The same check as `scr_fhir::nhs_number::is_valid`, repeated here because
/// this leaf crate does not depend on the FHIR crate (and its FHIR model).
pub fn is_valid_nhs_number(nhs: &str) -> bool {
    let digits: Vec<u32> = nhs.chars().filter_map(|c| c.to_digit(10)).collect();
    if nhs.len() != 10 || digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == digits[9]
}

fn relationship(value: Option<&Value>) -> Result<Option<AssertedRelationship>, AuthError> {
    let claim = "relationship";
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(r)) => {
            let rule = match r.get("rule") {
                Some(Value::String(s)) => identifier(s, claim, 32)?,
                _ => return Err(invalid(claim, "has no rule")),
            };
            let org = match r.get("org") {
                Some(Value::String(s)) => ods_code(s, claim)?,
                _ => return Err(invalid(claim, "has no org")),
            };
            Ok(Some(AssertedRelationship { rule, org }))
        }
        Some(_) => Err(invalid(claim, "not an object")),
    }
}

/// Reads the user's context from `claims` (`sub` given apart: the subject token's verified
/// subject, or the access token's).
pub fn user_context(user: &str, claims: &Map<String, Value>) -> Result<UserContext, AuthError> {
    let purpose = PurposeOfUse::from_code(string_claim(claims, "purpose_of_use")?)
        .ok_or(invalid("purpose_of_use", "not TREAT, ETREAT or BTG"))?;
    let patient = string_claim(claims, "patient")?;
    if !is_valid_nhs_number(patient) {
        return Err(invalid("patient", "not a valid NHS number"));
    }
    let reason = match claims.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(text(s, "reason", 1000)?),
        Some(_) => return Err(invalid("reason", "not a string")),
    };
    if purpose.is_break_glass() && reason.is_none() {
        return Err(AuthError::MissingClaim { claim: "reason" });
    }
    Ok(UserContext {
        user: identifier(user, "sub", 128)?,
        name: text(string_claim(claims, "name")?, "name", 200)?,
        org_code: ods_code(string_claim(claims, "org_code")?, "org_code")?,
        role_code: job_role(string_claim(claims, "role_code")?, "role_code")?,
        purpose,
        patient: patient.to_owned(),
        request_id: identifier(string_claim(claims, "request_id")?, "request_id", 128)?,
        relationship: relationship(claims.get("relationship"))?,
        reason,
    })
}

impl UserContext {
    /// The claims of the access token this server mints for the user, beyond the registered
    /// ones: `sub`, `name`, `act` and `scr_federation` (docs/federation.md).
    pub fn access_token_claims(&self, peer: &str, client_id: &str) -> Map<String, Value> {
        let relationship = self
            .relationship
            .as_ref()
            .map(|r| json!({ "rule": r.rule, "org": r.org }));
        let mut claims = Map::new();
        claims.insert("sub".into(), self.user.clone().into());
        claims.insert("name".into(), self.name.clone().into());
        claims.insert(ACTOR_CLAIM.into(), json!({ "sub": client_id }));
        claims.insert(
            FEDERATION_CLAIM.into(),
            json!({
                "peer": peer,
                "org_code": self.org_code,
                "role_code": self.role_code,
                "purpose_of_use": self.purpose.code(),
                "patient": self.patient,
                "request_id": self.request_id,
                "relationship": relationship,
                "reason": self.reason,
            }),
        );
        claims
    }
}

/// A federated caller's part of an access token: `act` and `scr_federation`, both required
/// once either is present. Returns the federation and the user's organisation and job role.
pub fn from_access_token(
    user: &str,
    claims: &Map<String, Value>,
) -> Result<(Federation, String, String), AuthError> {
    let actor = match claims.get(ACTOR_CLAIM) {
        Some(Value::Object(act)) => identifier(string_claim(act, "sub")?, ACTOR_CLAIM, 256)?,
        None | Some(Value::Null) => return Err(AuthError::MissingClaim { claim: ACTOR_CLAIM }),
        Some(_) => return Err(invalid(ACTOR_CLAIM, "not an object")),
    };
    let fed = match claims.get(FEDERATION_CLAIM) {
        Some(Value::Object(f)) => f,
        None | Some(Value::Null) => {
            return Err(AuthError::MissingClaim {
                claim: FEDERATION_CLAIM,
            })
        }
        Some(_) => return Err(invalid(FEDERATION_CLAIM, "not an object")),
    };
    let mut context_claims = fed.clone();
    context_claims.insert(
        "name".into(),
        claims.get("name").cloned().unwrap_or(Value::Null),
    );
    let context = user_context(user, &context_claims)?;
    let peer = text(string_claim(fed, "peer")?, FEDERATION_CLAIM, 128)?;
    Ok((
        Federation {
            peer,
            actor,
            user_name: context.name,
            purpose: context.purpose,
            patient: context.patient,
            request_id: context.request_id,
            relationship: context.relationship,
            reason: context.reason,
        },
        context.org_code,
        context.role_code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn good() -> Value {
        json!({
            "name": "Dr Asha Patel", "org_code": "RXK", "role_code": "R8000",
            "purpose_of_use": "TREAT", "patient": "9990000018", "request_id": "b-1f3c",
            "relationship": { "rule": "R-LR-2", "org": "RXK" },
        })
    }

    #[test]
    fn nhs_numbers_are_checked_by_their_check_digit() {
        assert!(is_valid_nhs_number("9990000018"));
        assert!(is_valid_nhs_number("9434765919"));
        assert!(!is_valid_nhs_number("9990000019"));
        assert!(!is_valid_nhs_number("999000001"));
        assert!(!is_valid_nhs_number("99900000１8"));
    }

    #[test]
    fn r_fed_1_a_subject_context_is_read_and_checked() -> Result<(), AuthError> {
        let c = user_context("555021935107", &claims(good()))?;
        assert_eq!(c.org_code, "RXK");
        assert_eq!(c.role_code, "R8000");
        assert_eq!(c.purpose, PurposeOfUse::Treatment);
        assert_eq!(
            c.relationship,
            Some(AssertedRelationship {
                rule: "R-LR-2".into(),
                org: "RXK".into()
            })
        );
        assert!(!format!("{c:?}").contains("9990000018"));
        assert!(!format!("{c:?}").contains("Asha"));
        let full_role = {
            let mut v = good();
            v["role_code"] = "S8000:G8000:R8001".into();
            v
        };
        assert_eq!(
            user_context("u", &claims(full_role))?.role_code,
            "R8001",
            "a full RBAC role code is reduced to its job role"
        );
        for (claim, value) in [
            ("patient", json!("9990000019")),
            ("patient", json!(9990000018_u64)),
            ("purpose_of_use", json!("RESEARCH")),
            ("org_code", json!("R X K")),
            ("role_code", json!("S8000:G8000")),
            ("request_id", json!("")),
            ("name", json!("a\u{0}b")),
            ("relationship", json!("R-LR-2")),
            ("relationship", json!({ "rule": "R-LR-2" })),
        ] {
            let mut v = good();
            v[claim] = value;
            let err = user_context("u", &claims(v)).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthError::InvalidClaim { .. } | AuthError::MissingClaim { .. }
                ),
                "{claim}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn r_fed_3_break_glass_needs_a_written_reason() {
        for purpose in ["ETREAT", "BTG"] {
            let mut v = good();
            v["purpose_of_use"] = purpose.into();
            for reason in [Value::Null, json!(""), json!("   ")] {
                v["reason"] = reason;
                assert!(matches!(
                    user_context("u", &claims(v.clone())),
                    Err(AuthError::MissingClaim { claim: "reason" })
                ));
            }
            v["reason"] = "unconscious in ED".into();
            let c = user_context("u", &claims(v)).expect("with a reason");
            assert!(c.purpose.is_break_glass());
            assert_eq!(c.reason.as_deref(), Some("unconscious in ED"));
        }
    }

    #[test]
    fn r_fed_1_the_access_token_claims_read_back() -> Result<(), AuthError> {
        let c = user_context("555021935107", &claims(good()))?;
        let minted = c.access_token_claims("BlackCountrySCR", "scr-b");
        let (fed, org, role) = from_access_token("555021935107", &minted)?;
        assert_eq!((org.as_str(), role.as_str()), ("RXK", "R8000"));
        assert_eq!(fed.peer, "BlackCountrySCR");
        assert_eq!(fed.actor, "scr-b");
        assert_eq!(fed.patient, "9990000018");
        assert_eq!(fed.user_name, "Dr Asha Patel");
        let mut no_act = minted.clone();
        no_act.remove(ACTOR_CLAIM);
        assert!(from_access_token("u", &no_act).is_err());
        let mut no_fed = minted;
        no_fed.remove(FEDERATION_CLAIM);
        assert!(from_access_token("u", &no_fed).is_err());
        Ok(())
    }
}
