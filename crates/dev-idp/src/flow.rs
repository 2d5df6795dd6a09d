//! The protocol, without HTTP: authorization codes (single use, 60 s), PKCE (S256), client
//! authentication with the one configured secret, and the id token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use scr_auth::dev::{self, PatientToken};

use crate::users::{Kind, User};

/// How long an authorization code may be redeemed.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Lifetime of the access and id tokens.
pub const TOKEN_SECONDS: i64 = 300;
/// The client secret when the configuration names none.
pub const DEFAULT_SECRET: &str = "dev-only-secret";

#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of the id tokens, e.g. `http://127.0.0.1:8080/dev-idp`.
    pub issuer: String,
    /// The secret every client authenticates with.
    pub client_secret: String,
}

impl Settings {
    /// The provider of a server whose FHIR base is `base_url`: its origin + `/dev-idp`.
    pub fn for_base_url(base_url: &str, client_secret: &str) -> Settings {
        let origin = base_url.split('/').take(3).collect::<Vec<_>>().join("/");
        Settings {
            issuer: format!("{origin}{}", crate::PATH),
            client_secret: client_secret.to_owned(),
        }
    }
}

/// An OAuth error (RFC 6749 §5.2): the `error` code and a description safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub error: &'static str,
    pub description: &'static str,
}

fn err(error: &'static str, description: &'static str) -> OAuthError {
    OAuthError { error, description }
}

/// What a code was issued for.
#[derive(Debug, Clone)]
struct Grant {
    user: &'static User,
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    issued: Instant,
    auth_time: i64,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    /// The S256 challenge, if the client sent one.
    pub code_challenge: Option<String>,
}

/// A token request's parameters after client authentication.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub code: String,
    pub redirect_uri: String,
    pub client_id: String,
    pub code_verifier: Option<String>,
}

/// The provider: settings and the codes not yet redeemed, shared by every worker.
#[derive(Clone)]
pub struct Provider {
    pub settings: Arc<Settings>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
}

impl Provider {
    pub fn new(settings: Settings) -> Provider {
        Provider {
            settings: Arc::new(settings),
            codes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Issues a code for `user` after they chose themselves on the sign-in page.
    pub fn issue_code(
        &self,
        request: &AuthorizeRequest,
        user: &'static User,
        now_unix: i64,
    ) -> Result<String, OAuthError> {
        let code = random_token()?;
        let grant = Grant {
            user,
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            issued: Instant::now(),
            auth_time: now_unix,
        };
        let mut codes = self
            .codes
            .lock()
            .map_err(|_| err("server_error", "the provider's state is unusable"))?;
        codes.retain(|_, g| g.issued.elapsed() < CODE_LIFETIME);
        codes.insert(code.clone(), grant);
        Ok(code)
    }

    /// Redeems a code: any attempt uses it up, right or wrong.
    pub fn redeem(&self, request: &TokenRequest, now_unix: i64) -> Result<Value, OAuthError> {
        let grant = self
            .codes
            .lock()
            .map_err(|_| err("server_error", "the provider's state is unusable"))?
            .remove(&request.code)
            .ok_or_else(|| err("invalid_grant", "unknown, used or expired code"))?;
        if grant.issued.elapsed() >= CODE_LIFETIME {
            return Err(err("invalid_grant", "unknown, used or expired code"));
        }
        if grant.client_id != request.client_id {
            return Err(err(
                "invalid_grant",
                "the code was issued to another client",
            ));
        }
        if grant.redirect_uri != request.redirect_uri {
            return Err(err(
                "invalid_grant",
                "redirect_uri differs from the authorization request's",
            ));
        }
        match (&grant.code_challenge, &request.code_verifier) {
            (Some(challenge), Some(verifier)) => {
                if !valid_verifier(verifier) || &s256(verifier) != challenge {
                    return Err(err("invalid_grant", "code_verifier does not match"));
                }
            }
            (Some(_), None) => return Err(err("invalid_grant", "code_verifier is required")),
            // A verifier for a request that sent no challenge: a downgrade attempt.
            (None, Some(_)) => {
                return Err(err(
                    "invalid_grant",
                    "code_verifier sent but no code_challenge was",
                ))
            }
            (None, None) => {}
        }
        let id_token = id_token(&self.settings.issuer, &grant, now_unix)?;
        Ok(json!({
            "access_token": random_token()?,
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "scope": "openid",
            "id_token": id_token,
        }))
    }

    /// Whether `secret` is the configured client secret (compared in constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let want = self.settings.client_secret.as_bytes();
        want.len() == secret.len() && openssl::memcmp::eq(want, secret.as_bytes())
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] [a-z] [0-9] - . _ ~`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()))
}

/// 256 random bits, URL-safe.
fn random_token() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).map_err(|_| err("server_error", "no random source"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The id token: RS256 with the development key; CIS2-shaped claims for staff, NHS login-shaped
/// for the patient (tokens.md).
fn id_token(issuer: &str, grant: &Grant, now: i64) -> Result<String, OAuthError> {
    let user = grant.user;
    let mut claims = match user.kind {
        Kind::Staff { roles } => {
            let selected = user.selected_role().map(|r| r.person_roleid);
            json!({
                "sub": user.id,
                "name": user.name,
                "selected_roleid": selected,
                "nhsid_nrbac_roles": roles.iter().map(|r| json!({
                    "person_roleid": r.person_roleid,
                    "org_code": r.org_code,
                    "role_code": r.role_code,
                    "role_name": r.role_name,
                    "activity_codes": [],
                })).collect::<Vec<_>>(),
            })
        }
        Kind::Patient {
            nhs_number,
            given_name,
            family_name,
        } => {
            // The claim builder of `scr token patient`, so both give the patient one `sub`.
            let mut c = dev::patient_claims(
                &PatientToken {
                    audience: grant.client_id.clone(),
                    nhs_number: nhs_number.to_owned(),
                    proofing_level: "P9".to_owned(),
                    scope: String::new(),
                    lifetime_seconds: TOKEN_SECONDS,
                },
                now,
            );
            if let Some(o) = c.as_object_mut() {
                o.remove("scope");
            }
            c["given_name"] = given_name.into();
            c["family_name"] = family_name.into();
            c
        }
    };
    claims["iss"] = issuer.into();
    claims["aud"] = grant.client_id.as_str().into();
    claims["iat"] = now.into();
    claims["exp"] = now.saturating_add(TOKEN_SECONDS).into();
    claims["auth_time"] = grant.auth_time.into();
    claims["jti"] = dev::new_jti().into();
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = nonce.as_str().into();
    }
    dev::sign_rs256(&claims, dev::dev_private_key_pem(), dev::DEV_KID)
        .map_err(|_| err("server_error", "the id token could not be signed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::user;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const NOW: i64 = 1_794_996_400;
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const REDIRECT: &str = "http://127.0.0.1:8080/fhir/auth/callback";

    fn provider() -> Provider {
        Provider::new(Settings::for_base_url(
            "http://127.0.0.1:8080/fhir",
            DEFAULT_SECRET,
        ))
    }

    fn authorize(challenge: Option<&str>) -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: "scr".into(),
            redirect_uri: REDIRECT.into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            code_challenge: challenge.map(str::to_owned),
        }
    }

    fn token(code: &str, verifier: Option<&str>) -> TokenRequest {
        TokenRequest {
            code: code.into(),
            redirect_uri: REDIRECT.into(),
            client_id: "scr".into(),
            code_verifier: verifier.map(str::to_owned),
        }
    }

    fn ben() -> Result<&'static User, String> {
        user("trust-ben").ok_or_else(|| "no trust-ben".to_owned())
    }

    /// RFC 7636 Appendix B's example.
    #[test]
    fn s256_matches_rfc_7636_example() {
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn issuer_is_the_origin_of_the_base_url_and_dev_idp() {
        assert_eq!(provider().settings.issuer, "http://127.0.0.1:8080/dev-idp");
    }

    #[test]
    fn pkce_wrong_verifier_is_refused() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(Some(&s256(VERIFIER))), ben()?, NOW)?;
        let wrong = "x".repeat(43);
        let e = p.redeem(&token(&code, Some(&wrong)), NOW).err();
        assert_eq!(e.map(|e| e.error), Some("invalid_grant"));
        let code = p.issue_code(&authorize(Some(&s256(VERIFIER))), ben()?, NOW)?;
        let e = p.redeem(&token(&code, None), NOW).err();
        assert_eq!(e.map(|e| e.error), Some("invalid_grant"));
        let code = p.issue_code(&authorize(Some(&s256(VERIFIER))), ben()?, NOW)?;
        assert!(p.redeem(&token(&code, Some(VERIFIER)), NOW).is_ok());
        Ok(())
    }

    #[test]
    fn pkce_verifier_without_a_challenge_is_refused() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(None), ben()?, NOW)?;
        let e = p.redeem(&token(&code, Some(VERIFIER)), NOW).err();
        assert_eq!(e.map(|e| e.error), Some("invalid_grant"));
        Ok(())
    }

    #[test]
    fn code_is_single_use() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(None), ben()?, NOW)?;
        assert!(p.redeem(&token(&code, None), NOW).is_ok());
        let e = p.redeem(&token(&code, None), NOW).err();
        assert_eq!(e.map(|e| e.error), Some("invalid_grant"));
        Ok(())
    }

    #[test]
    fn code_used_up_by_a_failed_attempt() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(Some(&s256(VERIFIER))), ben()?, NOW)?;
        assert!(p.redeem(&token(&code, Some(&"y".repeat(43))), NOW).is_err());
        assert!(p.redeem(&token(&code, Some(VERIFIER)), NOW).is_err());
        Ok(())
    }

    #[test]
    fn redirect_uri_mismatch_is_refused() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(None), ben()?, NOW)?;
        let mut t = token(&code, None);
        t.redirect_uri = "http://127.0.0.1:8080/fhir/auth/callback/x".into();
        let e = p.redeem(&t, NOW).err();
        assert_eq!(e.map(|e| e.error), Some("invalid_grant"));
        Ok(())
    }

    #[test]
    fn code_for_another_client_is_refused() -> TestResult {
        let p = provider();
        let code = p.issue_code(&authorize(None), ben()?, NOW)?;
        let mut t = token(&code, None);
        t.client_id = "other".into();
        assert_eq!(
            p.redeem(&t, NOW).err().map(|e| e.error),
            Some("invalid_grant")
        );
        Ok(())
    }

    #[test]
    fn only_the_configured_secret_matches() {
        let p = provider();
        assert!(p.secret_matches(DEFAULT_SECRET));
        assert!(!p.secret_matches("dev-only-secreT"));
        assert!(!p.secret_matches(""));
        assert!(!p.secret_matches("dev-only-secret2"));
    }

    /// The id token verifies with the development JWKS and carries CIS2-shaped claims.
    #[test]
    fn staff_id_token_verifies_with_the_dev_jwks() -> TestResult {
        let p = provider();
        let asha = user("gp-asha").ok_or("no gp-asha")?;
        let code = p.issue_code(&authorize(Some(&s256(VERIFIER))), asha, NOW)?;
        let answer = p.redeem(&token(&code, Some(VERIFIER)), NOW)?;
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 300);
        let id_token = answer["id_token"].as_str().ok_or("no id_token")?;
        let claims = verify(id_token)?;
        assert_eq!(claims["iss"], "http://127.0.0.1:8080/dev-idp");
        assert_eq!(claims["aud"], "scr");
        assert_eq!(claims["sub"], "gp-asha");
        assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(claims["exp"], NOW + 300);
        assert_eq!(claims["name"], "Dr Asha Patel");
        assert_eq!(claims["selected_roleid"], "555021936108");
        assert_eq!(
            claims["nhsid_nrbac_roles"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(claims["nhsid_nrbac_roles"][1]["org_code"], "RXK");
        Ok(())
    }

    #[test]
    fn patient_id_token_is_nhs_login_shaped() -> TestResult {
        let p = provider();
        let jane = user("patient-jane").ok_or("no patient-jane")?;
        let code = p.issue_code(&authorize(None), jane, NOW)?;
        let answer = p.redeem(&token(&code, None), NOW)?;
        let claims = verify(answer["id_token"].as_str().ok_or("no id_token")?)?;
        assert_eq!(claims["nhs_number"], "9990000018");
        assert_eq!(claims["identity_proofing_level"], "P9");
        assert_eq!(claims["given_name"], "Jane");
        assert_eq!(claims["family_name"], "Smith");
        assert!(claims.get("scope").is_none());
        assert!(!claims["sub"]
            .as_str()
            .unwrap_or("9990000018")
            .contains("9990000018"));
        Ok(())
    }

    /// Verifies the RS256 signature with the key in the development JWKS (by `kid`).
    fn verify(token: &str) -> Result<Value, Box<dyn std::error::Error>> {
        let mut parts = token.split('.');
        let (h, c, s) = (
            parts.next().ok_or("no header")?,
            parts.next().ok_or("no claims")?,
            parts.next().ok_or("no signature")?,
        );
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h)?)?;
        assert_eq!(header["alg"], "RS256");
        let jwks: Value = serde_json::from_str(dev::dev_jwks_json())?;
        let jwk = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kid"] == header["kid"])
            .ok_or("kid not in the dev JWKS")?;
        let n = openssl::bn::BigNum::from_slice(
            &URL_SAFE_NO_PAD.decode(jwk["n"].as_str().ok_or("n")?)?,
        )?;
        let e = openssl::bn::BigNum::from_slice(
            &URL_SAFE_NO_PAD.decode(jwk["e"].as_str().ok_or("e")?)?,
        )?;
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::from_public_components(n, e)?)?;
        let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)?;
        v.update(format!("{h}.{c}").as_bytes())?;
        assert!(v.verify(&URL_SAFE_NO_PAD.decode(s)?)?, "signature");
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c)?)?)
    }
}
