//! The development-only token issuer, for the demo (`scr token`) and the tests.
//!
//! **Its private key is public** (it is in the repository, `examples/dev-issuer/`), so anyone can
//! mint any token with it. The server must refuse its issuer unless the configuration enables it
//! explicitly (tokens.md, "Development tokens"); nothing in this module trusts it by itself. The
//! issuer URL uses the `.invalid` top-level domain, which can never resolve, so it cannot be
//! confused with a real issuer.
//!
//! The claim builders produce the shapes of tokens.md (CIS2, NHS login, backend services), so
//! tests exercise the same claims code as production tokens. The signers also serve tests that
//! need tokens from other keys and algorithms.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey};
use serde_json::{json, Value};

use crate::jwks::Jwks;
use crate::jwt::{sanitise_alg, Algorithm, Issuer, IssuerLimits};
use crate::AuthError;

/// The development issuer's `iss`. Development only.
pub const DEV_ISSUER: &str = "https://dev-issuer.scr.invalid";
/// The `kid` of the development key in [`dev_jwks_json`].
pub const DEV_KID: &str = "scr-dev-rs256-1";

/// The development issuer's public JWKS (`examples/dev-issuer/dev-only-jwks.json`).
pub fn dev_jwks_json() -> &'static str {
    include_str!("../../../examples/dev-issuer/dev-only-jwks.json")
}

/// The development issuer's private key, PKCS#8 PEM
/// (`examples/dev-issuer/DEVELOPMENT-ONLY-private-key.pem`). **Public; development only.**
pub fn dev_private_key_pem() -> &'static [u8] {
    include_bytes!("../../../examples/dev-issuer/DEVELOPMENT-ONLY-private-key.pem")
}

/// The development backend client's key (EC P-384, PKCS#8 PEM) and its JWKS
/// (`examples/dev-issuer/`). **Public; development only.**
pub fn dev_client_private_key_pem() -> &'static [u8] {
    include_bytes!("../../../examples/dev-issuer/DEVELOPMENT-ONLY-client-es384.pem")
}

pub const DEV_CLIENT_KID: &str = "scr-dev-client-es384-1";
pub const DEV_CLIENT_ID: &str = "dev-backend-client";

/// A SMART Backend Services client assertion (RFC 7523) for `client_id` to the token endpoint
/// `token_url`, valid for `lifetime_seconds` (at most 300 is accepted).
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    now: i64,
    lifetime_seconds: i64,
    private_key_pem: &[u8],
    alg: &str,
    kid: &str,
) -> Result<String, AuthError> {
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": token_url,
        "iat": now, "exp": now + lifetime_seconds, "jti": new_jti(),
    });
    sign(&claims, alg, private_key_pem, kid)
}

/// The longest token the development issuer's tokens may live.
pub const DEV_MAX_LIFETIME_SECONDS: i64 = 24 * 3600;

/// The development issuer with its key set, for a configuration that enables it.
pub fn dev_issuer() -> Result<Issuer, AuthError> {
    Ok(Issuer {
        iss: DEV_ISSUER.to_owned(),
        jwks: Jwks::from_json(dev_jwks_json())?,
        // Demos and tests mint every kind of token, for any organisation; the demo's printed
        // token lasts a working day.
        limits: IssuerLimits::any(DEV_MAX_LIFETIME_SECONDS),
    })
}

/// Signs `claims` as an RS256 JWS with `private_key_pem`, header `kid` = `kid`.
pub fn sign_rs256(claims: &Value, private_key_pem: &[u8], kid: &str) -> Result<String, AuthError> {
    sign(claims, "RS256", private_key_pem, kid)
}

/// Signs `claims` as a JWS compact token with `alg` (RS256, RS384, ES256 or ES384).
///
/// The key must fit the algorithm (RSA for RS*, a P-256 key for ES256, P-384 for ES384). ECDSA
/// signatures are written as raw `r || s`, each left-padded to the curve size (RFC 7518 §3.4),
/// not in openssl's DER form.
pub fn sign(
    claims: &Value,
    alg: &str,
    private_key_pem: &[u8],
    kid: &str,
) -> Result<String, AuthError> {
    let alg = Algorithm::from_name(alg).ok_or_else(|| AuthError::UnsupportedAlgorithm {
        alg: sanitise_alg(alg),
    })?;
    let key =
        PKey::private_key_from_pem(private_key_pem).map_err(|_| AuthError::InvalidSigningKey {
            reason: "not a PEM private key",
        })?;
    let fits = match alg.ec_coordinate_len() {
        None => key.id() == Id::RSA,
        Some(_) => {
            key.ec_key().ok().and_then(|ec| ec.group().curve_name())
                == Some(match alg {
                    Algorithm::ES256 => Nid::X9_62_PRIME256V1,
                    _ => Nid::SECP384R1,
                })
        }
    };
    if !fits {
        return Err(AuthError::KeyMismatch { alg: alg.name() });
    }
    let header = json!({ "alg": alg.name(), "typ": "JWT", "kid": kid });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let mut signer = openssl::sign::Signer::new(alg.digest(), &key)?;
    signer.update(signing_input.as_bytes())?;
    let der_or_rsa = signer.sign_to_vec()?;
    let signature = match alg.ec_coordinate_len() {
        None => der_or_rsa,
        Some(len) => {
            let sig = EcdsaSig::from_der(&der_or_rsa)?;
            let mut raw = sig.r().to_vec_padded(len as i32)?;
            raw.extend(sig.s().to_vec_padded(len as i32)?);
            raw
        }
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// A CIS2-shaped staff token to mint.
#[derive(Debug, Clone)]
pub struct StaffToken {
    pub audience: String,
    /// The CIS2 user id (`sub`), e.g. `555021935107`.
    pub subject: String,
    /// The ODS code of the organisation of the selected role, e.g. `M85001`.
    pub org: String,
    /// The job role code, e.g. `R8000`; a full `S…:G…:R…` code is used as given.
    pub role_code: String,
    pub scope: String,
    pub name: Option<String>,
    pub lifetime_seconds: i64,
}

/// An NHS login-shaped patient token to mint.
#[derive(Debug, Clone)]
pub struct PatientToken {
    pub audience: String,
    pub nhs_number: String,
    /// `P9` for fully verified; lower levels let tests check the 403.
    pub proofing_level: String,
    pub scope: String,
    pub lifetime_seconds: i64,
}

/// A backend-services access token to mint.
#[derive(Debug, Clone)]
pub struct SystemToken {
    pub audience: String,
    pub client_id: String,
    /// The client's organisation, sent as `org_code`.
    pub org: String,
    pub scope: String,
    pub lifetime_seconds: i64,
}

/// Claims of a CIS2 staff token (tokens.md): one `nhsid_nrbac_roles` entry, selected by
/// `selected_roleid`.
pub fn staff_claims(t: &StaffToken, now: i64) -> Value {
    let role_code = if t.role_code.contains(':') {
        t.role_code.clone()
    } else {
        format!("S8000:G8000:{}", t.role_code)
    };
    let role_id = format!("dev-role-{}-{}", t.org, t.role_code.replace(':', "-"));
    let mut claims = json!({
        "iss": DEV_ISSUER,
        "aud": t.audience,
        "sub": t.subject,
        "exp": now.saturating_add(t.lifetime_seconds),
        "iat": now,
        "jti": new_jti(),
        "scope": t.scope,
        "fhirUser": format!("Practitioner/{}", t.subject),
        "selected_roleid": role_id,
        "nhsid_nrbac_roles": [{
            "person_roleid": role_id,
            "org_code": t.org,
            "role_code": role_code,
            "activity_codes": [],
        }],
    });
    if let Some(name) = &t.name {
        claims["name"] = name.as_str().into();
    }
    claims
}

/// Claims of an NHS login patient token (tokens.md). `sub` is derived from the NHS number by a
/// hash, so repeated tokens for one patient share a subject without the subject revealing it.
pub fn patient_claims(t: &PatientToken, now: i64) -> Value {
    json!({
        "iss": DEV_ISSUER,
        "aud": t.audience,
        "sub": patient_subject(&t.nhs_number),
        "exp": now.saturating_add(t.lifetime_seconds),
        "iat": now,
        "jti": new_jti(),
        "scope": t.scope,
        "nhs_number": t.nhs_number,
        "identity_proofing_level": t.proofing_level,
    })
}

/// Claims of a backend-services access token (tokens.md): `sub` is the client id.
pub fn system_claims(t: &SystemToken, now: i64) -> Value {
    json!({
        "iss": DEV_ISSUER,
        "aud": t.audience,
        "sub": t.client_id,
        "client_id": t.client_id,
        "exp": now.saturating_add(t.lifetime_seconds),
        "iat": now,
        "jti": new_jti(),
        "scope": t.scope,
        "org_code": t.org,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh token id: 128 random bits, or (should the random source fail) process id and counter.
pub fn new_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    match openssl::rand::rand_bytes(&mut bytes) {
        Ok(()) => hex(&bytes),
        Err(_) => format!(
            "dev-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// A UUID-shaped subject derived from the NHS number (SHA-256, first 128 bits).
fn patient_subject(nhs_number: &str) -> String {
    let digest = openssl::sha::sha256(format!("scr-dev-patient:{nhs_number}").as_bytes());
    let h = hex(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::CallerKind;
    use crate::jwks::public_jwk_json;
    use crate::jwt::Verifier;
    use crate::scopes::Interaction;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const AUD: &str = "https://scr.example.nhs.uk/fhir";
    const NOW: i64 = 1_794_996_400;

    fn dev_verifier() -> Result<Verifier, AuthError> {
        Ok(Verifier::new(vec![dev_issuer()?], AUD.to_owned(), 60))
    }

    /// How `dev-only-jwks.json` was derived: the public half of the private key, as a JWK.
    #[test]
    fn dev_jwks_matches_development_private_key() -> TestResult {
        let private = PKey::private_key_from_pem(dev_private_key_pem())?;
        let public = PKey::public_key_from_pem(&private.public_key_to_pem()?)?;
        let derived = public_jwk_json(&public, DEV_KID, Some(Algorithm::RS256))?;
        let shipped: Value = serde_json::from_str(dev_jwks_json())?;
        assert_eq!(shipped["keys"].as_array().map(Vec::len), Some(1));
        assert_eq!(shipped["keys"][0], derived);
        assert_eq!(private.bits(), 2048);
        Ok(())
    }

    #[test]
    fn dev_issuer_is_clearly_not_a_real_one() {
        assert!(DEV_ISSUER.ends_with(".invalid"));
    }

    #[test]
    fn dev_staff_token_verifies_as_staff() -> TestResult {
        let claims = staff_claims(
            &StaffToken {
                audience: AUD.to_owned(),
                subject: "555021935107".to_owned(),
                org: "M85001".to_owned(),
                role_code: "R8000".to_owned(),
                scope: "user/*.rs user/Flag.cu".to_owned(),
                name: Some("Dr Asha Patel".to_owned()),
                lifetime_seconds: 3600,
            },
            NOW,
        );
        assert_eq!(
            claims["nhsid_nrbac_roles"][0]["role_code"],
            "S8000:G8000:R8000"
        );
        let token = sign_rs256(&claims, dev_private_key_pem(), DEV_KID)?;
        let caller = dev_verifier()?.verify(&token, NOW)?;
        assert_eq!(caller.kind, CallerKind::Staff);
        assert_eq!(caller.subject, "555021935107");
        assert_eq!(caller.organisation.as_deref(), Some("M85001"));
        assert_eq!(caller.role_code.as_deref(), Some("R8000"));
        assert_eq!(
            caller.fhir_user.as_deref(),
            Some("Practitioner/555021935107")
        );
        assert_eq!(caller.expires_at, NOW + 3600);
        assert!(caller.scopes.allows("Flag", Interaction::Create));
        Ok(())
    }

    #[test]
    fn dev_patient_token_verifies_as_patient() -> TestResult {
        let claims = patient_claims(
            &PatientToken {
                audience: AUD.to_owned(),
                nhs_number: "9990000018".to_owned(),
                proofing_level: "P9".to_owned(),
                scope: "patient/*.rs patient/Flag.cu".to_owned(),
                lifetime_seconds: 600,
            },
            NOW,
        );
        let token = sign_rs256(&claims, dev_private_key_pem(), DEV_KID)?;
        let caller = dev_verifier()?.verify(&token, NOW)?;
        assert_eq!(caller.kind, CallerKind::Patient);
        assert_eq!(caller.nhs_number.as_deref(), Some("9990000018"));
        assert_eq!(caller.identity_proofing_level.as_deref(), Some("P9"));
        assert!(!caller.subject.contains("9990000018"));
        assert_eq!(caller.subject.len(), 36);
        Ok(())
    }

    #[test]
    fn dev_system_token_verifies_as_system() -> TestResult {
        let claims = system_claims(
            &SystemToken {
                audience: AUD.to_owned(),
                client_id: "ambulance-ehr".to_owned(),
                org: "RX9".to_owned(),
                scope: "system/Patient.rs system/Flag.rs".to_owned(),
                lifetime_seconds: 300,
            },
            NOW,
        );
        let token = sign_rs256(&claims, dev_private_key_pem(), DEV_KID)?;
        let caller = dev_verifier()?.verify(&token, NOW)?;
        assert_eq!(caller.kind, CallerKind::System);
        assert_eq!(caller.subject, "ambulance-ehr");
        assert_eq!(caller.organisation.as_deref(), Some("RX9"));
        Ok(())
    }

    #[test]
    fn each_minted_token_has_a_fresh_jti() {
        let t = SystemToken {
            audience: AUD.to_owned(),
            client_id: "c".to_owned(),
            org: "X".to_owned(),
            scope: "system/*.rs".to_owned(),
            lifetime_seconds: 60,
        };
        let a = system_claims(&t, NOW);
        let b = system_claims(&t, NOW);
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!(a["jti"].as_str().map(str::len), Some(32));
    }

    #[test]
    fn signing_refuses_unknown_alg_and_wrong_key_type() {
        let claims = json!({ "sub": "x" });
        assert!(matches!(
            sign(&claims, "HS256", dev_private_key_pem(), DEV_KID),
            Err(AuthError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            sign(&claims, "ES256", dev_private_key_pem(), DEV_KID),
            Err(AuthError::KeyMismatch { alg: "ES256" })
        ));
        assert!(matches!(
            sign(&claims, "RS256", b"not a key", DEV_KID),
            Err(AuthError::InvalidSigningKey { .. })
        ));
    }
}
