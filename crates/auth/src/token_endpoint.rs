//! The SMART Backend Services token endpoint's logic (client credentials with a signed JWT
//! assertion, RFC 7523): checks a registered client's assertion, grants the intersection of the
//! scopes asked for and the scopes the client may have, and mints an access token signed with
//! the server's own key, which the server also trusts as an issuer.
//!
//! Replay of an assertion's `jti` is refused by the caller, which remembers used `jti`s durably
//! (the server keeps them in its store); this module returns the `jti` and its expiry for that.

use openssl::pkey::{PKey, Private};
use serde_json::json;

use crate::dev::new_jti;
use crate::jwks::public_jwk_json;
use crate::jwt::IssuerLimits;
use crate::jwt::{declared_algorithm, declared_issuer};
use crate::{Algorithm, AuthError, CallerKind, Issuer, Jwks, Verifier};

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live (SMART Backend Services: at most five minutes ahead).
pub const MAX_ASSERTION_SECONDS: i64 = 300;

/// A backend client registered in configuration.
pub struct RegisteredClient {
    pub client_id: String,
    /// The client's organisation (ODS code): its `system` callers act for it.
    pub org: String,
    pub jwks: Jwks,
    /// The `system/` scopes it may be granted.
    pub allowed_scopes: Vec<String>,
}

/// OAuth 2.0 token endpoint errors (RFC 6749 §5.2). The description never echoes the assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid_client: {0}")]
    InvalidClient(&'static str),
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(&'static str),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient(d)
            | TokenError::InvalidGrant(d)
            | TokenError::InvalidScope(d)
            | TokenError::UnsupportedGrantType(d) => d,
        }
    }

    /// 401 for a client that could not be authenticated, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::InvalidClient(_) => 401,
            _ => 400,
        }
    }
}

/// An accepted assertion, before the access token is minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAssertion {
    pub client_id: String,
    pub jti: String,
    pub expires_at: i64,
    pub scope: String,
}

pub struct TokenService {
    /// The server's own issuer name and audience: its FHIR base URL.
    base_url: String,
    token_url: String,
    signing_key_pem: Vec<u8>,
    kid: String,
    lifetime_seconds: i64,
    leeway_seconds: i64,
    clients: Vec<RegisteredClient>,
}

impl TokenService {
    pub fn new(
        base_url: &str,
        token_url: &str,
        signing_key_pem: Vec<u8>,
        lifetime_seconds: i64,
        leeway_seconds: i64,
        clients: Vec<RegisteredClient>,
    ) -> Result<TokenService, AuthError> {
        // Fails early on an unusable key.
        PKey::private_key_from_pem(&signing_key_pem).map_err(|_| AuthError::InvalidSigningKey {
            reason: "the token endpoint's signing key is not a PEM private key",
        })?;
        Ok(TokenService {
            base_url: base_url.to_owned(),
            token_url: token_url.to_owned(),
            signing_key_pem,
            kid: "scr-token-endpoint-1".to_owned(),
            lifetime_seconds,
            leeway_seconds,
            clients,
        })
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The server as an issuer of the access tokens it mints, for its own verifier.
    pub fn own_issuer(&self) -> Result<Issuer, AuthError> {
        let key: PKey<Private> =
            PKey::private_key_from_pem(&self.signing_key_pem).map_err(|_| {
                AuthError::InvalidSigningKey {
                    reason: "not a PEM private key",
                }
            })?;
        let jwk = public_jwk_json(&key, &self.kid, Some(Algorithm::RS256))?;
        Ok(Issuer {
            iss: self.base_url.clone(),
            jwks: Jwks::from_json(&json!({ "keys": [jwk] }).to_string())?,
            // It mints backend service tokens only, each for its registered client's
            // organisation.
            limits: IssuerLimits {
                kinds: vec![CallerKind::System],
                organisations: Some(self.clients.iter().map(|c| c.org.clone()).collect()),
                max_lifetime_seconds: self.lifetime_seconds,
            },
        })
    }

    /// Checks a token request (the form's fields) at `now`.
    pub fn accept(
        &self,
        form: &[(String, String)],
        now: i64,
    ) -> Result<AcceptedAssertion, TokenError> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match field("grant_type") {
            Some(CLIENT_CREDENTIALS) => {}
            Some(_) => {
                return Err(TokenError::UnsupportedGrantType(
                    "only client_credentials is supported",
                ))
            }
            None => return Err(TokenError::InvalidRequest("grant_type is required")),
        }
        if field("client_assertion_type") != Some(JWT_BEARER) {
            return Err(TokenError::InvalidRequest("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        }
        let assertion = field("client_assertion")
            .ok_or(TokenError::InvalidRequest("client_assertion is required"))?;
        match declared_algorithm(assertion) {
            Ok(Algorithm::RS384 | Algorithm::ES384) => {}
            _ => {
                return Err(TokenError::InvalidClient(
                    "the client assertion must be signed with RS384 or ES384",
                ))
            }
        }
        let client_id = declared_issuer(assertion)
            .ok_or(TokenError::InvalidClient("the client assertion has no iss"))?;
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .ok_or(TokenError::InvalidClient("unknown client"))?;
        let verifier = Verifier::new(
            vec![Issuer {
                iss: client.client_id.clone(),
                jwks: client.jwks.clone(),
                // Checked as an assertion (its lifetime below), never as a caller.
                limits: IssuerLimits::any(MAX_ASSERTION_SECONDS),
            }],
            self.token_url.clone(),
            self.leeway_seconds,
        );
        let claims = verifier
            .verify_claims(assertion, now)
            .map_err(|_| TokenError::InvalidClient("the client assertion could not be verified"))?;
        if claims.subject != client.client_id {
            return Err(TokenError::InvalidClient(
                "the client assertion's sub must equal its iss",
            ));
        }
        if claims.expires_at - now > MAX_ASSERTION_SECONDS + self.leeway_seconds {
            return Err(TokenError::InvalidClient(
                "the client assertion's exp is more than five minutes ahead",
            ));
        }
        let asked: Vec<&str> = field("scope").unwrap_or("").split_whitespace().collect();
        let granted: Vec<&str> = if asked.is_empty() {
            client.allowed_scopes.iter().map(String::as_str).collect()
        } else {
            asked
                .into_iter()
                .filter(|s| client.allowed_scopes.iter().any(|a| a == s))
                .collect()
        };
        if granted.is_empty() {
            return Err(TokenError::InvalidScope(
                "none of the scopes asked for may be granted to this client",
            ));
        }
        Ok(AcceptedAssertion {
            client_id: client.client_id.clone(),
            jti: claims.token_id,
            expires_at: claims.expires_at,
            scope: granted.join(" "),
        })
    }

    /// Mints the access token for an accepted assertion whose `jti` was not seen before.
    /// Returns the token and its lifetime in seconds.
    pub fn mint(&self, accepted: &AcceptedAssertion, now: i64) -> Result<(String, i64), AuthError> {
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == accepted.client_id)
            .ok_or(AuthError::UnknownIssuer)?;
        let claims = json!({
            "iss": self.base_url, "aud": self.base_url, "sub": client.client_id,
            "iat": now, "exp": now + self.lifetime_seconds, "jti": new_jti(),
            "scope": accepted.scope, "org_code": client.org,
        });
        Ok((
            crate::dev::sign(&claims, "RS256", &self.signing_key_pem, &self.kid)?,
            self.lifetime_seconds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{client_assertion, dev_client_private_key_pem, DEV_CLIENT_ID, DEV_CLIENT_KID};

    const TOKEN_URL: &str = "https://scr.example/fhir/auth/token";

    fn service() -> TokenService {
        let key = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = PKey::from_rsa(key)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let client = RegisteredClient {
            client_id: DEV_CLIENT_ID.into(),
            org: "RXK".into(),
            jwks: Jwks::from_json(include_str!(
                "../../../examples/dev-issuer/dev-client-jwks.json"
            ))
            .unwrap(),
            allowed_scopes: vec!["system/*.rs".into()],
        };
        TokenService::new(
            "https://scr.example/fhir",
            TOKEN_URL,
            pem,
            300,
            30,
            vec![client],
        )
        .unwrap()
    }

    fn form(assertion: &str, scope: &str) -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), CLIENT_CREDENTIALS.into()),
            ("client_assertion_type".into(), JWT_BEARER.into()),
            ("client_assertion".into(), assertion.into()),
            ("scope".into(), scope.into()),
        ]
    }

    fn assertion(now: i64, lifetime: i64) -> String {
        client_assertion(
            DEV_CLIENT_ID,
            TOKEN_URL,
            now,
            lifetime,
            dev_client_private_key_pem(),
            "ES384",
            DEV_CLIENT_KID,
        )
        .unwrap()
    }

    #[test]
    fn a_good_assertion_gets_a_token_the_server_trusts() {
        let s = service();
        let now = 1_800_000_000;
        let accepted = s
            .accept(&form(&assertion(now, 120), "system/*.rs"), now)
            .unwrap();
        let (token, _) = s.mint(&accepted, now).unwrap();
        let verifier = Verifier::new(
            vec![s.own_issuer().unwrap()],
            "https://scr.example/fhir".into(),
            30,
        );
        let caller = verifier.verify(&token, now).unwrap();
        assert_eq!(caller.subject, DEV_CLIENT_ID);
        assert_eq!(caller.organisation.as_deref(), Some("RXK"));
    }

    #[test]
    fn long_lived_assertions_scopes_and_wrong_grants_are_refused() {
        let s = service();
        let now = 1_800_000_000;
        assert_eq!(
            s.accept(&form(&assertion(now, 600), ""), now)
                .unwrap_err()
                .code(),
            "invalid_client"
        );
        assert_eq!(
            s.accept(&form(&assertion(now, 60), "user/*.rs"), now)
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
        let mut f = form(&assertion(now, 60), "");
        f[0].1 = "password".into();
        assert_eq!(
            s.accept(&f, now).unwrap_err().code(),
            "unsupported_grant_type"
        );
        let rs256 = crate::dev::sign_rs256(
            &json!({"iss": DEV_CLIENT_ID}),
            crate::dev::dev_private_key_pem(),
            "k",
        )
        .unwrap();
        assert_eq!(
            s.accept(&form(&rs256, ""), now).unwrap_err().code(),
            "invalid_client"
        );
    }
}
