//! JSON Web Key Sets (RFC 7517): an issuer's public signing keys, selected by `kid`.
//!
//! Only what the accepted algorithms need is understood: RSA keys (`n`, `e`, at least 2048 bits)
//! and EC keys on P-256 or P-384 (`crv`, `x`, `y`). Keys the facade can never use (other key
//! types or curves, `use: "enc"`, no `kid`) are skipped, so a provider's published set that also
//! lists such keys still loads; a usable-looking key that is malformed is an error, because it
//! means the configuration is wrong.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use serde::Deserialize;

use crate::jwt::Algorithm;
use crate::AuthError;

/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: u32 = 2048;

/// The kind of a key, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

/// One public key from a JWKS.
#[derive(Clone)]
pub struct Jwk {
    kid: String,
    kind: KeyKind,
    /// The key's own `alg`, if it declares one: it may then verify only that algorithm.
    alg: Option<Algorithm>,
    key: PKey<Public>,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    pub(crate) fn public_key(&self) -> &PKey<Public> {
        &self.key
    }

    /// Whether this key may verify a token signed with `alg`: the key type and curve must be the
    /// ones `alg` uses (so an RSA key can never be used as an HMAC secret or an EC key, and a P-384
    /// key never for ES256), and a key that names its `alg` is held to it.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        let kind_fits = matches!(
            (alg, self.kind),
            (Algorithm::RS256 | Algorithm::RS384, KeyKind::Rsa)
                | (Algorithm::ES256, KeyKind::EcP256)
                | (Algorithm::ES384, KeyKind::EcP384)
        );
        kind_fits && self.alg.is_none_or(|own| own == alg)
    }
}

/// An issuer's key set, indexed by `kid`.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: HashMap<String, Jwk>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn invalid(kid: &str, what: &str) -> AuthError {
    AuthError::InvalidJwks {
        reason: format!("key {kid:?}: {what}"),
    }
}

fn b64_field(kid: &str, name: &str, value: Option<&str>) -> Result<Vec<u8>, AuthError> {
    let value = value.ok_or_else(|| invalid(kid, &format!("no {name}")))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| invalid(kid, &format!("{name} is not base64url without padding")))
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn from_json(json: &str) -> Result<Jwks, AuthError> {
        let raw: RawJwks = serde_json::from_str(json).map_err(|e| AuthError::InvalidJwks {
            reason: format!("not a JWKS document: {e}"),
        })?;
        let mut keys = HashMap::new();
        for raw_key in raw.keys {
            let Some(jwk) = Jwk::from_raw(raw_key)? else {
                continue;
            };
            if keys.contains_key(&jwk.kid) {
                return Err(invalid(&jwk.kid, "kid appears twice"));
            }
            keys.insert(jwk.kid.clone(), jwk);
        }
        Ok(Jwks { keys })
    }

    /// The key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.get(kid)
    }

    /// The usable keys' ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Jwk {
    /// `Ok(None)` for a key the facade can never use; `Err` for a usable key that is malformed.
    fn from_raw(raw: RawJwk) -> Result<Option<Jwk>, AuthError> {
        let Some(kid) = raw.kid else {
            log::warn!("JWKS: skipping a key without kid");
            return Ok(None);
        };
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            log::info!("JWKS: skipping key {kid:?}, not a signing key");
            return Ok(None);
        }
        let alg = match raw.alg.as_deref() {
            None => None,
            Some(name) => match Algorithm::from_name(name) {
                Some(alg) => Some(alg),
                None => {
                    log::info!("JWKS: skipping key {kid:?}, alg not accepted");
                    return Ok(None);
                }
            },
        };
        let (kind, key) = match raw.kty.as_deref() {
            Some("RSA") => {
                let n = BigNum::from_slice(&b64_field(&kid, "n", raw.n.as_deref())?)?;
                let e = BigNum::from_slice(&b64_field(&kid, "e", raw.e.as_deref())?)?;
                if n.num_bits() < MIN_RSA_BITS as i32 {
                    return Err(invalid(&kid, "RSA modulus shorter than 2048 bits"));
                }
                if e.num_bits() < 2 || !e.is_bit_set(0) {
                    return Err(invalid(&kid, "RSA exponent is not an odd number above 1"));
                }
                let rsa = Rsa::from_public_components(n, e)?;
                (KeyKind::Rsa, PKey::from_rsa(rsa)?)
            }
            Some("EC") => {
                let (kind, nid, len) = match raw.crv.as_deref() {
                    Some("P-256") => (KeyKind::EcP256, Nid::X9_62_PRIME256V1, 32),
                    Some("P-384") => (KeyKind::EcP384, Nid::SECP384R1, 48),
                    _ => {
                        log::info!("JWKS: skipping key {kid:?}, EC curve not accepted");
                        return Ok(None);
                    }
                };
                let x = b64_field(&kid, "x", raw.x.as_deref())?;
                let y = b64_field(&kid, "y", raw.y.as_deref())?;
                // RFC 7518 §6.2.1.2: coordinates are the full octet length of the curve.
                if x.len() != len || y.len() != len {
                    return Err(invalid(&kid, "EC coordinate has the wrong length"));
                }
                let group = EcGroup::from_curve_name(nid)?;
                let ec = EcKey::from_public_key_affine_coordinates(
                    &group,
                    &*BigNum::from_slice(&x)?,
                    &*BigNum::from_slice(&y)?,
                )
                .map_err(|_| invalid(&kid, "EC point is not on the curve"))?;
                ec.check_key()
                    .map_err(|_| invalid(&kid, "EC point is not a valid public key"))?;
                (kind, PKey::from_ec_key(ec)?)
            }
            _ => {
                log::info!("JWKS: skipping key {kid:?}, key type not accepted");
                return Ok(None);
            }
        };
        let jwk = Jwk {
            kid,
            kind,
            alg,
            key,
        };
        if let Some(alg) = alg {
            if !jwk.accepts(alg) {
                return Err(invalid(&jwk.kid, "alg does not fit the key type or curve"));
            }
        }
        Ok(Some(jwk))
    }
}

/// Builds the public JWK (as JSON) of an EC P-256/P-384 or RSA public key. Used by the tests and
/// the development issuer to publish a key they generated; never needed to verify.
pub fn public_jwk_json(
    key: &PKey<impl openssl::pkey::HasPublic>,
    kid: &str,
    alg: Option<Algorithm>,
) -> Result<serde_json::Value, AuthError> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let mut jwk = if let Ok(rsa) = key.rsa() {
        serde_json::json!({
            "kty": "RSA",
            "n": b64(&rsa.n().to_vec()),
            "e": b64(&rsa.e().to_vec()),
        })
    } else if let Ok(ec) = key.ec_key() {
        let (crv, len) = match ec.group().curve_name() {
            Some(Nid::X9_62_PRIME256V1) => ("P-256", 32),
            Some(Nid::SECP384R1) => ("P-384", 48),
            _ => {
                return Err(AuthError::InvalidSigningKey {
                    reason: "EC curve is not P-256 or P-384",
                })
            }
        };
        let mut ctx = BigNumContext::new()?;
        let mut x = BigNum::new()?;
        let mut y = BigNum::new()?;
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
        serde_json::json!({
            "kty": "EC",
            "crv": crv,
            "x": b64(&x.to_vec_padded(len)?),
            "y": b64(&y.to_vec_padded(len)?),
        })
    } else {
        return Err(AuthError::InvalidSigningKey {
            reason: "key is neither RSA nor EC",
        });
    };
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    if let Some(alg) = alg {
        jwk["alg"] = alg.name().into();
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::EcKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ec_jwk(nid: Nid, kid: &str) -> Result<serde_json::Value, AuthError> {
        let group = EcGroup::from_curve_name(nid)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        public_jwk_json(&key, kid, None)
    }

    #[test]
    fn ec_and_rsa_keys_load_by_kid() -> TestResult {
        let set = serde_json::json!({ "keys": [
            ec_jwk(Nid::X9_62_PRIME256V1, "p256")?,
            ec_jwk(Nid::SECP384R1, "p384")?,
        ]});
        let jwks = Jwks::from_json(&set.to_string())?;
        assert_eq!(jwks.kids(), vec!["p256", "p384"]);
        let p256 = jwks.get("p256").ok_or("p256 missing")?;
        assert_eq!(p256.kind(), KeyKind::EcP256);
        assert!(p256.accepts(Algorithm::ES256));
        assert!(!p256.accepts(Algorithm::ES384));
        assert!(!p256.accepts(Algorithm::RS256));
        let dev = Jwks::from_json(crate::dev::dev_jwks_json())?;
        let rsa = dev.get(crate::dev::DEV_KID).ok_or("dev key missing")?;
        assert!(rsa.accepts(Algorithm::RS256));
        assert!(!rsa.accepts(Algorithm::RS384), "key's own alg is RS256");
        Ok(())
    }

    #[test]
    fn keys_never_usable_are_skipped() -> TestResult {
        let set = serde_json::json!({ "keys": [
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA" },
            { "kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AAAA", "y": "AAAA" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AAAA", "e": "AQAB" },
            { "kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AAAA", "e": "AQAB" },
        ]});
        assert!(Jwks::from_json(&set.to_string())?.is_empty());
        Ok(())
    }

    #[test]
    fn short_rsa_key_is_refused() -> TestResult {
        let rsa = Rsa::generate(1024)?;
        let jwk = public_jwk_json(&PKey::from_rsa(rsa)?, "short", None)?;
        let err = Jwks::from_json(&serde_json::json!({ "keys": [jwk] }).to_string());
        assert!(matches!(err, Err(AuthError::InvalidJwks { .. })));
        Ok(())
    }

    #[test]
    fn ec_point_off_the_curve_is_refused() -> TestResult {
        let mut jwk = ec_jwk(Nid::X9_62_PRIME256V1, "bad")?;
        jwk["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        let err = Jwks::from_json(&serde_json::json!({ "keys": [jwk] }).to_string());
        assert!(matches!(err, Err(AuthError::InvalidJwks { .. })));
        Ok(())
    }

    #[test]
    fn duplicate_kid_is_refused() -> TestResult {
        let set = serde_json::json!({ "keys": [
            ec_jwk(Nid::X9_62_PRIME256V1, "same")?,
            ec_jwk(Nid::X9_62_PRIME256V1, "same")?,
        ]});
        assert!(Jwks::from_json(&set.to_string()).is_err());
        Ok(())
    }

    #[test]
    fn key_alg_must_fit_its_type() -> TestResult {
        let mut jwk = ec_jwk(Nid::X9_62_PRIME256V1, "mislabelled")?;
        jwk["alg"] = "ES384".into();
        let err = Jwks::from_json(&serde_json::json!({ "keys": [jwk] }).to_string());
        assert!(matches!(err, Err(AuthError::InvalidJwks { .. })));
        Ok(())
    }

    #[test]
    fn garbage_is_not_a_jwks() {
        assert!(Jwks::from_json("not json").is_err());
        assert!(Jwks::from_json("{\"kid\": \"x\"}").is_err());
    }
}
