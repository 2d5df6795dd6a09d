//! JWS compact tokens (RFC 7515) verified directly with openssl, and the registered JWT claims
//! (RFC 7519).
//!
//! Written by hand rather than with a general JWT crate so that the whole attack surface is on one
//! page: exactly four algorithms, a key chosen by `kid` from the issuer named in the token and held
//! to its own type and curve (no RSA-key-as-HMAC-secret confusion, no `none`), and no header
//! parameter that could pull a key from the token itself (`jwk`, `jku`, `x5u` are ignored;
//! `crit` is refused because no extension is understood).
//!
//! Order of checks: shape and `alg` first (cheap, and a forged `none` never reaches a key), then
//! issuer and key, then the signature, and only then the claims, so no claim of an unsigned token
//! ever influences the answer beyond choosing which key to try.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use serde_json::{Map, Value};

use crate::caller::{Caller, CallerKind};
use crate::jwks::{Jwk, Jwks};
use crate::AuthError;

/// Tokens longer than this are refused before any decoding (an 8 KiB header limit is common;
/// this leaves room for CIS2 tokens with many roles while bounding the work an attacker causes).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The accepted signing algorithms (tokens.md): RSASSA-PKCS1-v1_5 and ECDSA, SHA-256 or SHA-384.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    ES256,
    ES384,
}

impl Algorithm {
    /// The algorithm with this JOSE name; `None` for everything else, `none` and `HS*` included.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "RS256" => Some(Algorithm::RS256),
            "RS384" => Some(Algorithm::RS384),
            "ES256" => Some(Algorithm::ES256),
            "ES384" => Some(Algorithm::ES384),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
        }
    }

    pub(crate) fn digest(self) -> MessageDigest {
        match self {
            Algorithm::RS256 | Algorithm::ES256 => MessageDigest::sha256(),
            Algorithm::RS384 | Algorithm::ES384 => MessageDigest::sha384(),
        }
    }

    /// For ECDSA, the byte length of each of r and s in the JWS signature (RFC 7518 §3.4).
    pub(crate) fn ec_coordinate_len(self) -> Option<usize> {
        match self {
            Algorithm::ES256 => Some(32),
            Algorithm::ES384 => Some(48),
            Algorithm::RS256 | Algorithm::RS384 => None,
        }
    }
}

/// A trusted token issuer: its `iss` value, its public keys, and what it may vouch for.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub iss: String,
    pub jwks: Jwks,
    pub limits: IssuerLimits,
}

/// What one issuer may assert: an NHS login issuer vouches for patients, not for staff at any
/// organisation it names; a trust's own issuer for that trust's staff. A token beyond its
/// issuer's limits is refused (401), however well signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerLimits {
    /// The caller kinds its tokens may be.
    pub kinds: Vec<CallerKind>,
    /// The organisations (ODS codes) its staff and system tokens may name; `None`: any.
    pub organisations: Option<Vec<String>>,
    /// The longest `exp - iat` accepted.
    pub max_lifetime_seconds: i64,
    /// Whether its tokens may carry a federated caller (`act`, `scr_federation`): true only
    /// for this server's own token endpoint, which mints them by token exchange
    /// (docs/federation.md). Any other issuer's such token is refused.
    pub federation: bool,
}

impl IssuerLimits {
    /// Any caller kind, any organisation, tokens of up to `max_lifetime_seconds`.
    pub fn any(max_lifetime_seconds: i64) -> IssuerLimits {
        IssuerLimits {
            kinds: vec![CallerKind::Staff, CallerKind::Patient, CallerKind::System],
            organisations: None,
            max_lifetime_seconds,
            federation: false,
        }
    }

    fn check(&self, caller: &Caller, issued_at: i64) -> Result<(), AuthError> {
        if caller.federation.is_some() {
            // The neighbour's user acts for an organisation of the neighbour's region, which
            // the token endpoint accepted from a configured peer (R-FED-1): the issuer's own
            // kinds and organisations are for its other callers.
            if !self.federation {
                return Err(AuthError::BeyondIssuer {
                    reason: "only this server's token endpoint issues federated tokens",
                });
            }
        } else {
            self.check_kind_and_organisation(caller)?;
        }
        if caller.expires_at.saturating_sub(issued_at) > self.max_lifetime_seconds {
            return Err(AuthError::BeyondIssuer {
                reason: "the token lives longer than its issuer's tokens may",
            });
        }
        Ok(())
    }

    fn check_kind_and_organisation(&self, caller: &Caller) -> Result<(), AuthError> {
        if !self.kinds.contains(&caller.kind) {
            return Err(AuthError::BeyondIssuer {
                reason: "the token's issuer may not assert this kind of caller",
            });
        }
        if let (Some(allowed), Some(org)) = (&self.organisations, &caller.organisation) {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(org)) {
                return Err(AuthError::BeyondIssuer {
                    reason: "the token's issuer may not assert this organisation",
                });
            }
        }
        if self.organisations.is_some()
            && caller.organisation.is_none()
            && caller.kind != CallerKind::Patient
        {
            return Err(AuthError::BeyondIssuer {
                reason: "the token's issuer may assert only named organisations",
            });
        }
        Ok(())
    }
}

/// Verifies bearer tokens for one audience (the server's base URL) against the configured issuers.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuers: Vec<Issuer>,
    audience: String,
    leeway_seconds: i64,
    /// Callers of tokens already verified, with their `exp`. A portal sends the same token with
    /// every request for up to an hour; checking its signature each time (ES384 especially) was
    /// a measurable share of a request. A token's signature and claims cannot change, so a hit
    /// only has to check that it has not expired since. Bounded: emptied when full.
    verified: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, (Caller, i64)>>>,
}

/// Tokens [`Verifier`] remembers; a region's busy hour has a few thousand staff signed in.
const VERIFIED_CACHE_MAX: usize = 20_000;

/// The algorithm a compact JWS says it is signed with, read without verifying anything (the
/// token endpoint accepts client assertions in RS384 and ES384 only).
pub fn declared_algorithm(token: &str) -> Result<Algorithm, AuthError> {
    let parts = JwsParts::parse(token)?;
    header_alg(&parts.header()?)
}

/// The `iss` a compact JWS claims, unverified: only to choose which key set verifies it.
pub fn declared_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

/// A token whose signature has been verified and whose registered claims have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    pub issuer: String,
    pub subject: String,
    pub token_id: String,
    pub expires_at: i64,
    pub issued_at: i64,
    /// All claims, for the caller-specific ones (`scope`, `nhs_number`, roles ...).
    pub claims: Map<String, Value>,
}

impl Verifier {
    /// `leeway_seconds` is the clock skew allowed on `exp`, `nbf` and `iat`; negative counts as 0.
    pub fn new(issuers: Vec<Issuer>, audience: String, leeway_seconds: i64) -> Verifier {
        Verifier {
            issuers,
            audience,
            leeway_seconds: leeway_seconds.max(0),
            verified: Default::default(),
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Whether `iss` is one of the trusted issuers.
    pub fn trusts(&self, iss: &str) -> bool {
        self.issuers.iter().any(|i| i.iss == iss)
    }

    /// Verifies `token` at time `now_unix` and turns it into the [`Caller`] it stands for.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<Caller, AuthError> {
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .cloned();
        if let Some((caller, exp)) = remembered {
            if now_unix >= exp.saturating_add(self.leeway_seconds) {
                return Err(AuthError::Expired);
            }
            return Ok(caller);
        }
        let verified = self.verify_claims(token, now_unix)?;
        let (exp, iat) = (verified.expires_at, verified.issued_at);
        let limits = self.limits_of(&verified.issuer)?;
        let caller = Caller::from_claims(verified)?;
        limits.check(&caller, iat)?;
        let mut cache = self
            .verified
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_owned(), (caller.clone(), exp));
        Ok(caller)
    }

    /// What the trusted issuer `iss` may vouch for.
    fn limits_of(&self, iss: &str) -> Result<IssuerLimits, AuthError> {
        self.issuers
            .iter()
            .find(|i| i.iss == iss)
            .map(|i| i.limits.clone())
            .ok_or(AuthError::UnknownIssuer)
    }

    /// Verifies signature and registered claims only, for token shapes that are not callers
    /// (e.g. a backend client's `client_assertion`, whose `aud` is the token endpoint).
    pub fn verify_claims(&self, token: &str, now_unix: i64) -> Result<VerifiedClaims, AuthError> {
        self.verify_registered(token, now_unix, true)
    }

    /// Verifies an OpenID Connect id token from a login provider (this verifier's audience is
    /// the client id this server has there): signature, `iss`, `aud`, `exp`, `iat`, `sub` (`jti`
    /// is optional in id tokens), then the user it names as a [`Caller`] of no scope, within
    /// the provider's limits (caller kinds, organisations, lifetime). Returns the caller and
    /// all the claims.
    pub fn verify_sign_in(
        &self,
        id_token: &str,
        now_unix: i64,
    ) -> Result<(Caller, Map<String, Value>), AuthError> {
        let mut verified = self.verify_registered(id_token, now_unix, false)?;
        // OIDC Core 3.1.3.7: an id token for several audiences must name this client as its
        // authorised party, and an `azp` present must be this client.
        let several = matches!(verified.claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
        match verified.claims.get("azp") {
            Some(Value::String(azp)) if *azp == self.audience => {}
            None if !several => {}
            _ => return Err(AuthError::WrongAudience),
        }
        let limits = self.limits_of(&verified.issuer)?;
        let claims = verified.claims.clone();
        verified
            .claims
            .insert("scope".to_owned(), Value::String("openid".to_owned()));
        let iat = verified.issued_at;
        let caller = Caller::from_claims(verified)?;
        if caller.kind == crate::CallerKind::System {
            return Err(AuthError::UnrecognisedCaller);
        }
        limits.check(&caller, iat)?;
        Ok((caller, claims))
    }

    fn verify_registered(
        &self,
        token: &str,
        now_unix: i64,
        require_jti: bool,
    ) -> Result<VerifiedClaims, AuthError> {
        let parts = JwsParts::parse(token)?;
        let header = parts.header()?;
        let alg = header_alg(&header)?;
        if header.contains_key("crit") {
            return Err(AuthError::Malformed {
                reason: "crit header parameter not supported",
            });
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid.as_str(),
            Some(_) => {
                return Err(AuthError::Malformed {
                    reason: "kid header parameter is not a string",
                })
            }
            None => return Err(AuthError::MissingClaim { claim: "kid" }),
        };
        let claims = parts.claims()?;
        let iss = string_claim(&claims, "iss")?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.iss == iss)
            .ok_or(AuthError::UnknownIssuer)?;
        let key = issuer.jwks.get(kid).ok_or(AuthError::UnknownKey)?;
        if !key.accepts(alg) {
            return Err(AuthError::KeyMismatch { alg: alg.name() });
        }
        verify_signature(alg, key, parts.signing_input.as_bytes(), &parts.signature)?;

        // The signature holds: the claims are the issuer's.
        let leeway = self.leeway_seconds;
        let exp = numeric_date(&claims, "exp")?;
        if now_unix >= exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        if claims.contains_key("nbf") {
            let nbf = numeric_date(&claims, "nbf")?;
            if now_unix.saturating_add(leeway) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        let iat = numeric_date(&claims, "iat")?;
        if now_unix.saturating_add(leeway) < iat {
            return Err(AuthError::NotYetValid);
        }
        if !audience_matches(claims.get("aud"), &self.audience)? {
            return Err(AuthError::WrongAudience);
        }
        let jti = match require_jti {
            true => string_claim(&claims, "jti")?.to_owned(),
            false => optional_string_claim(&claims, "jti")?.unwrap_or_default(),
        };
        let sub = string_claim(&claims, "sub")?.to_owned();
        Ok(VerifiedClaims {
            issuer: iss.to_owned(),
            subject: sub,
            token_id: jti,
            expires_at: exp,
            issued_at: iat,
            claims,
        })
    }
}

/// The three parts of a compact JWS, the signature already decoded.
struct JwsParts<'a> {
    /// `BASE64URL(header) "." BASE64URL(payload)`, the bytes that were signed.
    signing_input: &'a str,
    header_b64: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
}

fn b64decode(part: &str, reason: &'static str) -> Result<Vec<u8>, AuthError> {
    // URL_SAFE_NO_PAD refuses padding and non-canonical trailing bits, as RFC 7515 requires.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed { reason })
}

fn json_object(bytes: &[u8], reason: &'static str) -> Result<Map<String, Value>, AuthError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::Malformed { reason }),
    }
}

impl<'a> JwsParts<'a> {
    fn parse(token: &'a str) -> Result<JwsParts<'a>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed {
                reason: "token too long",
            });
        }
        let (signing_input, signature_b64) =
            token.rsplit_once('.').ok_or(AuthError::Malformed {
                reason: "not a JWS compact serialisation",
            })?;
        let (header_b64, payload_b64) =
            signing_input.split_once('.').ok_or(AuthError::Malformed {
                reason: "not a JWS compact serialisation",
            })?;
        if payload_b64.contains('.') {
            // Five parts would be a JWE; anything else is garbage.
            return Err(AuthError::Malformed {
                reason: "not a JWS compact serialisation",
            });
        }
        Ok(JwsParts {
            signing_input,
            header_b64,
            payload_b64,
            signature: b64decode(signature_b64, "signature is not base64url")?,
        })
    }

    fn header(&self) -> Result<Map<String, Value>, AuthError> {
        let bytes = b64decode(self.header_b64, "header is not base64url")?;
        json_object(&bytes, "header is not a JSON object")
    }

    fn claims(&self) -> Result<Map<String, Value>, AuthError> {
        let bytes = b64decode(self.payload_b64, "payload is not base64url")?;
        json_object(&bytes, "payload is not a JSON object")
    }
}

/// Keeps an attacker-chosen `alg` printable and short before it goes into an error message.
pub(crate) fn sanitise_alg(alg: &str) -> String {
    alg.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect()
}

fn header_alg(header: &Map<String, Value>) -> Result<Algorithm, AuthError> {
    match header.get("alg") {
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or_else(|| AuthError::UnsupportedAlgorithm {
                alg: sanitise_alg(name),
            })
        }
        Some(_) => Err(AuthError::Malformed {
            reason: "alg header parameter is not a string",
        }),
        None => Err(AuthError::MissingClaim { claim: "alg" }),
    }
}

fn verify_signature(
    alg: Algorithm,
    key: &Jwk,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    let der;
    let signature = match alg.ec_coordinate_len() {
        // JWS carries ECDSA signatures as raw r || s; openssl wants DER.
        Some(len) => {
            if signature.len() != 2 * len {
                return Err(AuthError::BadSignature);
            }
            let r = BigNum::from_slice(&signature[..len])?;
            let s = BigNum::from_slice(&signature[len..])?;
            der = EcdsaSig::from_private_components(r, s)?.to_der()?;
            der.as_slice()
        }
        None => signature,
    };
    let mut verifier = openssl::sign::Verifier::new(alg.digest(), key.public_key())?;
    // RSA keys default to PKCS#1 v1.5 padding, which RS256/RS384 are.
    verifier.update(signing_input)?;
    // openssl reports a mismatch either as Ok(false) or as an error (e.g. bad DER, r or s out of
    // range): both mean the signature is not valid.
    match verifier.verify(signature) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(AuthError::BadSignature),
    }
}

/// A required non-empty string claim.
pub(crate) fn string_claim<'c>(
    claims: &'c Map<String, Value>,
    claim: &'static str,
) -> Result<&'c str, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(AuthError::MissingClaim { claim }),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(AuthError::InvalidClaim {
            claim,
            reason: "not a non-empty string",
        }),
    }
}

/// An optional string claim: absent is `None`, present but not a string is an error.
pub(crate) fn optional_string_claim(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<String>, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::InvalidClaim {
            claim,
            reason: "not a string",
        }),
    }
}

/// A required NumericDate (seconds since the epoch; a fraction is truncated).
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<i64, AuthError> {
    let invalid = AuthError::InvalidClaim {
        claim,
        reason: "not a NumericDate",
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Err(AuthError::MissingClaim { claim }),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(f.trunc() as i64),
            _ => Err(invalid),
        },
        Some(_) => Err(invalid),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); it must contain `audience` exactly.
fn audience_matches(aud: Option<&Value>, audience: &str) -> Result<bool, AuthError> {
    let invalid = AuthError::InvalidClaim {
        claim: "aud",
        reason: "not a string or an array of strings",
    };
    match aud {
        None | Some(Value::Null) => Err(AuthError::MissingClaim { claim: "aud" }),
        Some(Value::String(s)) => Ok(s == audience),
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                match item {
                    Value::String(s) => found |= s == audience,
                    _ => return Err(invalid),
                }
            }
            Ok(found)
        }
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use serde_json::json;

    use super::*;
    use crate::caller::CallerKind;
    use crate::dev;
    use crate::jwks::public_jwk_json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const AUD: &str = "https://scr.example.nhs.uk/fhir";
    const ISS: &str = "https://issuer.test.invalid";
    const NOW: i64 = 1_794_996_400;

    /// Test keys, generated once per test run: (kid, alg, private key PEM).
    struct TestKeys {
        keys: Vec<(&'static str, Algorithm, Vec<u8>)>,
        jwks_json: String,
    }

    fn test_keys() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| generate_test_keys().expect("test key generation"))
    }

    fn generate_test_keys() -> Result<TestKeys, Box<dyn std::error::Error>> {
        let rsa: PKey<Private> = PKey::from_rsa(Rsa::generate(2048)?)?;
        let p256 = PKey::from_ec_key(EcKey::generate(&*EcGroup::from_curve_name(
            Nid::X9_62_PRIME256V1,
        )?)?)?;
        let p384 = PKey::from_ec_key(EcKey::generate(&*EcGroup::from_curve_name(
            Nid::SECP384R1,
        )?)?)?;
        let specs = [
            ("rsa-1", Algorithm::RS384, &rsa, None),
            ("p256-1", Algorithm::ES256, &p256, Some(Algorithm::ES256)),
            ("p384-1", Algorithm::ES384, &p384, None),
        ];
        let mut keys = Vec::new();
        let mut jwks = Vec::new();
        for (kid, alg, key, jwk_alg) in specs {
            keys.push((kid, alg, key.private_key_to_pem_pkcs8()?));
            jwks.push(public_jwk_json(key, kid, jwk_alg)?);
        }
        Ok(TestKeys {
            keys,
            jwks_json: json!({ "keys": jwks }).to_string(),
        })
    }

    fn key_for(kid: &str) -> &'static [u8] {
        let keys = test_keys();
        let (_, _, pem) = keys.keys.iter().find(|(k, _, _)| *k == kid).expect("kid");
        pem
    }

    fn verifier() -> Result<Verifier, AuthError> {
        Ok(Verifier::new(
            vec![
                Issuer {
                    iss: ISS.to_owned(),
                    jwks: Jwks::from_json(&test_keys().jwks_json)?,
                    limits: IssuerLimits::any(24 * 3600),
                },
                dev::dev_issuer()?,
            ],
            AUD.to_owned(),
            60,
        ))
    }

    fn system_claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "client-1", "exp": NOW + 300, "iat": NOW,
            "jti": "jti-1", "scope": "system/*.rs", "org_code": "RXK",
        })
    }

    fn sign_b64(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn expect_err(result: Result<Caller, AuthError>) -> AuthError {
        match result {
            Ok(caller) => panic!("token accepted: {caller:?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn rs256_dev_token_verifies() -> TestResult {
        let claims = dev::staff_claims(
            &dev::StaffToken {
                audience: AUD.to_owned(),
                subject: "555021935107".to_owned(),
                org: "M85001".to_owned(),
                role_code: "R8000".to_owned(),
                scope: "user/*.rs".to_owned(),
                name: None,
                lifetime_seconds: 3600,
            },
            NOW,
        );
        let token = dev::sign_rs256(&claims, dev::dev_private_key_pem(), dev::DEV_KID)?;
        let caller = verifier()?.verify(&token, NOW + 10)?;
        assert_eq!(caller.kind, CallerKind::Staff);
        assert_eq!(caller.issuer, dev::DEV_ISSUER);
        Ok(())
    }

    #[test]
    fn rs384_es256_es384_tokens_verify() -> TestResult {
        for (kid, alg, pem) in &test_keys().keys {
            let token = dev::sign(&system_claims(), alg.name(), pem, kid)?;
            let caller = verifier()?.verify(&token, NOW)?;
            assert_eq!(caller.kind, CallerKind::System, "{kid}");
            assert_eq!(caller.subject, "client-1");
            assert_eq!(caller.organisation.as_deref(), Some("RXK"));
            assert_eq!(caller.expires_at, NOW + 300);
        }
        Ok(())
    }

    #[test]
    fn an_id_token_for_several_audiences_must_name_this_client_as_azp() -> TestResult {
        let (kid, alg, pem) = &test_keys().keys[0];
        let id = |aud: Value, azp: Option<&str>| {
            let mut c = json!({
                "iss": ISS, "aud": aud, "sub": "gp-asha", "exp": NOW + 300, "iat": NOW,
                "nhs_number": "9990000018", "identity_proofing_level": "P9",
            });
            if let Some(azp) = azp {
                c["azp"] = json!(azp);
            }
            dev::sign(&c, alg.name(), pem, kid)
        };
        let v = verifier()?;
        assert!(v.verify_sign_in(&id(json!(AUD), None)?, NOW).is_ok());
        assert!(v
            .verify_sign_in(&id(json!([AUD, "other"]), Some(AUD))?, NOW)
            .is_ok());
        for (aud, azp) in [
            (json!([AUD, "other"]), None),
            (json!([AUD, "other"]), Some("other")),
            (json!(AUD), Some("other")),
        ] {
            let refused = v.verify_sign_in(&id(aud, azp)?, NOW);
            assert!(matches!(refused, Err(AuthError::WrongAudience)), "{azp:?}");
        }
        Ok(())
    }

    #[test]
    fn alg_none_is_refused() -> TestResult {
        let token = format!(
            "{}.",
            sign_b64(&json!({"alg": "none", "kid": "rsa-1"}), &system_claims())
        );
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::UnsupportedAlgorithm { ref alg } if alg == "none"));
        Ok(())
    }

    #[test]
    fn hs256_signed_with_public_key_is_refused() -> TestResult {
        // The classic confusion attack: HMAC keyed with the issuer's published RSA key.
        let input = sign_b64(
            &json!({"alg": "HS256", "kid": dev::DEV_KID}),
            &system_claims(),
        );
        let secret = PKey::hmac(dev::dev_jwks_json().as_bytes())?;
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &secret)?;
        signer.update(input.as_bytes())?;
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signer.sign_to_vec()?));
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::UnsupportedAlgorithm { .. }));
        Ok(())
    }

    #[test]
    fn other_algorithms_are_refused() -> TestResult {
        for alg in ["PS256", "RS512", "EdDSA", "rs256", ""] {
            let token = format!(
                "{}.AAAA",
                sign_b64(&json!({"alg": alg, "kid": "rsa-1"}), &system_claims())
            );
            let err = expect_err(verifier()?.verify(&token, NOW));
            assert!(
                matches!(err, AuthError::UnsupportedAlgorithm { .. }),
                "{alg}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_one_is_not_remembered() -> TestResult {
        let v = verifier()?;
        let token = dev::sign(&system_claims(), "ES256", key_for("p256-1"), "p256-1")?;
        assert_eq!(v.verify(&token, NOW)?.subject, "client-1");
        // Second use: from the cache, same caller.
        assert_eq!(v.verify(&token, NOW + 1)?.subject, "client-1");
        // The cache does not outlive `exp` (plus the leeway).
        assert!(matches!(
            expect_err(v.verify(&token, NOW + 300 + 60)),
            AuthError::Expired
        ));
        // A token differing in one signature character is a different key, fully verified.
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap_or('A');
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(v.verify(&tampered, NOW).is_err());
        Ok(())
    }

    #[test]
    fn expired_token_is_refused() -> TestResult {
        let token = dev::sign(&system_claims(), "ES256", key_for("p256-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&token, NOW + 300 + 60));
        assert!(matches!(err, AuthError::Expired));
        // Within the leeway it is still accepted.
        verifier()?.verify(&token, NOW + 300 + 59)?;
        Ok(())
    }

    #[test]
    fn token_with_nbf_in_future_is_refused() -> TestResult {
        let mut claims = system_claims();
        claims["nbf"] = json!(NOW + 120);
        let token = dev::sign(&claims, "ES256", key_for("p256-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::NotYetValid));
        verifier()?.verify(&token, NOW + 61)?;
        Ok(())
    }

    #[test]
    fn token_for_another_audience_is_refused() -> TestResult {
        let mut claims = system_claims();
        claims["aud"] = json!("https://other.example.nhs.uk/fhir");
        let token = dev::sign(&claims, "ES384", key_for("p384-1"), "p384-1")?;
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::WrongAudience));
        Ok(())
    }

    #[test]
    fn audience_array_containing_server_is_accepted() -> TestResult {
        let mut claims = system_claims();
        claims["aud"] = json!(["https://other.example.nhs.uk", AUD]);
        let token = dev::sign(&claims, "ES384", key_for("p384-1"), "p384-1")?;
        verifier()?.verify(&token, NOW)?;
        Ok(())
    }

    #[test]
    fn unknown_kid_is_refused() -> TestResult {
        let token = dev::sign(&system_claims(), "ES256", key_for("p256-1"), "p256-2")?;
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::UnknownKey));
        Ok(())
    }

    #[test]
    fn unknown_issuer_is_refused() -> TestResult {
        let mut claims = system_claims();
        claims["iss"] = json!("https://evil.example");
        let token = dev::sign(&claims, "ES256", key_for("p256-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::UnknownIssuer));
        Ok(())
    }

    #[test]
    fn key_of_another_type_than_alg_is_refused() -> TestResult {
        // An RS256 token naming the P-256 key, and an ES384 token naming the P-256 key.
        let rs = dev::sign(&system_claims(), "RS384", key_for("rsa-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&rs, NOW));
        assert!(matches!(err, AuthError::KeyMismatch { alg: "RS384" }));
        let es = dev::sign(&system_claims(), "ES384", key_for("p384-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&es, NOW));
        assert!(matches!(err, AuthError::KeyMismatch { alg: "ES384" }));
        Ok(())
    }

    #[test]
    fn tampered_claims_are_refused() -> TestResult {
        for (kid, alg, pem) in &test_keys().keys {
            let token = dev::sign(&system_claims(), alg.name(), pem, kid)?;
            let mut parts: Vec<&str> = token.split('.').collect();
            let mut claims = system_claims();
            claims["scope"] = json!("system/*.cruds");
            let forged = URL_SAFE_NO_PAD.encode(claims.to_string());
            parts[1] = &forged;
            let err = expect_err(verifier()?.verify(&parts.join("."), NOW));
            assert!(matches!(err, AuthError::BadSignature), "{kid}");
        }
        Ok(())
    }

    #[test]
    fn tampered_signature_is_refused() -> TestResult {
        for (kid, alg, pem) in &test_keys().keys {
            let token = dev::sign(&system_claims(), alg.name(), pem, kid)?;
            let (input, sig) = token.rsplit_once('.').ok_or("no signature")?;
            let mut sig = URL_SAFE_NO_PAD.decode(sig)?;
            sig[5] ^= 0x01;
            let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
            let err = expect_err(verifier()?.verify(&tampered, NOW));
            assert!(matches!(err, AuthError::BadSignature), "{kid}");
        }
        Ok(())
    }

    #[test]
    fn der_encoded_ecdsa_signature_is_refused() -> TestResult {
        // JWS requires raw r || s; a DER signature (what openssl produces) must not verify.
        let input = sign_b64(&json!({"alg": "ES256", "kid": "p256-1"}), &system_claims());
        let key = PKey::private_key_from_pem(key_for("p256-1"))?;
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key)?;
        signer.update(input.as_bytes())?;
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signer.sign_to_vec()?));
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::BadSignature));
        Ok(())
    }

    #[test]
    fn missing_registered_claims_are_refused() -> TestResult {
        for claim in ["exp", "iat", "jti", "sub", "aud"] {
            let mut claims = system_claims();
            claims.as_object_mut().ok_or("object")?.remove(claim);
            let token = dev::sign(&claims, "ES256", key_for("p256-1"), "p256-1")?;
            let err = expect_err(verifier()?.verify(&token, NOW));
            assert!(
                matches!(err, AuthError::MissingClaim { claim: c } if c == claim),
                "{claim}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn token_issued_in_the_future_is_refused() -> TestResult {
        let mut claims = system_claims();
        claims["iat"] = json!(NOW + 3600);
        claims["exp"] = json!(NOW + 7200);
        let token = dev::sign(&claims, "ES256", key_for("p256-1"), "p256-1")?;
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::NotYetValid));
        Ok(())
    }

    #[test]
    fn malformed_tokens_are_refused() -> TestResult {
        let good = dev::sign(&system_claims(), "ES256", key_for("p256-1"), "p256-1")?;
        let padded = format!("{good}=");
        let five_parts = format!("{good}.a.b");
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for token in ["abc", "a.b", "!!.??.##", &padded, &five_parts, &long] {
            let err = expect_err(verifier()?.verify(token, NOW));
            assert!(matches!(err, AuthError::Malformed { .. }), "{err:?}");
        }
        let not_object = format!("{}.AA", sign_b64(&json!(["alg"]), &json!({})));
        let err = expect_err(verifier()?.verify(&not_object, NOW));
        assert!(matches!(err, AuthError::Malformed { .. }));
        Ok(())
    }

    #[test]
    fn crit_header_is_refused() -> TestResult {
        let token = format!(
            "{}.AAAA",
            sign_b64(
                &json!({"alg": "ES256", "kid": "p256-1", "crit": ["exp"]}),
                &system_claims()
            )
        );
        let err = expect_err(verifier()?.verify(&token, NOW));
        assert!(matches!(err, AuthError::Malformed { .. }));
        Ok(())
    }

    #[test]
    fn refusal_never_echoes_token_contents() -> TestResult {
        let hostile = "HS256\"><script>";
        let token = format!(
            "{}.AAAA",
            sign_b64(&json!({"alg": hostile, "kid": "k"}), &system_claims())
        );
        let err = expect_err(verifier()?.verify(&token, NOW));
        let challenge = err.www_authenticate();
        assert!(!challenge.contains("<script") && !challenge.contains("HS256"));
        assert_eq!(challenge.matches('"').count(), 4);
        assert!(!err.to_string().contains('<'));
        Ok(())
    }
}
