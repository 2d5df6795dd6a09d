//! Bearer tokens for the shared care record facade (see `shared/specs/tokens.md`).
//!
//! The facade is an OAuth 2.0 resource server. Staff (CIS2), patients (NHS login) and backend
//! systems (SMART Backend Services) each present a signed JWT; this crate turns one into a
//! [`Caller`] or refuses it with an [`AuthError`]:
//!
//! - [`jwt`]: JWS compact parsing and signature verification done directly with openssl (no
//!   general-purpose JWT crate, so the accepted algorithms are exactly the four the spec names),
//!   plus the registered claims (`iss`, `aud`, `exp`, `nbf`, `iat`, `jti`, `sub`).
//! - [`jwks`]: an issuer's public keys, by `kid`.
//! - [`scopes`]: SMART v1 and v2 scopes and their search constraints.
//! - [`caller`]: CIS2 / NHS login / backend-services claims to a [`Caller`].
//! - [`dev`]: the development-only issuer used by the demo and the tests.
//! - [`federation`]: the user context a neighbouring shared care record sends by token exchange,
//!   and the federated caller of the access token minted for it (docs/federation.md).
//! - [`token_endpoint`]: the token endpoint's logic: SMART Backend Services client credentials
//!   and RFC 8693 token exchange for configured peers.
//!
//! The crate does no I/O: fetching a JWKS URL and deciding what a caller may see belong to the
//! server and the policy crate.
//!
//! Nothing here logs or formats token contents: errors carry only fixed descriptions and claim
//! names, so they are safe to log and to send back in `WWW-Authenticate`.

pub mod apps;
pub mod caller;
pub mod dev;
pub mod federation;
pub mod jwks;
pub mod jwt;
pub mod scopes;
pub mod token_endpoint;

pub use caller::{Caller, CallerKind};
pub use federation::{AssertedRelationship, Federation, PurposeOfUse};
pub use jwks::{Jwk, Jwks};
pub use jwt::{Algorithm, Issuer, IssuerLimits, Verifier};
pub use scopes::{Interaction, Scope, ScopeContext, Scopes};

/// Why a bearer token (or the `Authorization` header carrying it) was refused, or why key material
/// could not be loaded.
///
/// Every variant's message is fixed text plus, at most, a claim name or a sanitised algorithm name:
/// never token contents, so an error can be logged and audited as it is.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum AuthError {
    /// The request carries no `Authorization` header.
    #[error("no bearer token")]
    Missing,
    /// The `Authorization` header is present but is not `Bearer <token>`.
    #[error("malformed Authorization header: {reason}")]
    MalformedHeader { reason: &'static str },
    /// The token is not a well-formed JWS compact serialisation with JSON header and claims.
    #[error("malformed token: {reason}")]
    Malformed { reason: &'static str },
    /// The header's `alg` is not RS256, RS384, ES256 or ES384 (`none` and `HS*` included).
    /// `alg` is sanitised (ASCII alphanumerics, at most 16 characters).
    #[error("unsupported signing algorithm {alg:?}")]
    UnsupportedAlgorithm { alg: String },
    /// The unverified `iss` names no configured issuer.
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    /// The header's `kid` names no key in the issuer's key set.
    #[error("signing key not found in the issuer's key set")]
    UnknownKey,
    /// The key named by `kid` is of another type or curve than `alg` needs, or is restricted to
    /// another `alg`.
    #[error("signing key does not match algorithm {alg}")]
    KeyMismatch { alg: &'static str },
    /// The signature does not verify against the selected key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the allowed clock skew).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the allowed clock skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this server.
    #[error("token audience is not this server")]
    WrongAudience,
    /// A required claim (or header parameter) is absent.
    #[error("token has no {claim} claim")]
    MissingClaim { claim: &'static str },
    /// A claim is present but has the wrong type or form.
    #[error("token claim {claim} is invalid: {reason}")]
    InvalidClaim {
        claim: &'static str,
        reason: &'static str,
    },
    /// A verified token asserts what its issuer is not configured to vouch for (a caller kind,
    /// an organisation, a lifetime).
    #[error("token beyond its issuer's limits: {reason}")]
    BeyondIssuer { reason: &'static str },
    /// A staff token's `selected_roleid` matches no entry of `nhsid_nrbac_roles`.
    #[error("selected role not found among the user's roles")]
    RoleNotFound,
    /// The token is neither a patient token, a staff token, nor a token with `system/` scopes.
    #[error("token is not a staff, patient or system token")]
    UnrecognisedCaller,
    /// A JWKS document could not be used (configuration error, not a token error).
    #[error("invalid JWKS: {reason}")]
    InvalidJwks { reason: String },
    /// A private key could not be loaded or used for signing (development issuer).
    #[error("signing key unusable: {reason}")]
    InvalidSigningKey { reason: &'static str },
    /// openssl failed while verifying or signing.
    #[error("cryptographic library error")]
    Crypto {
        #[from]
        source: openssl::error::ErrorStack,
    },
    /// Claims could not be serialised while signing (development issuer).
    #[error("claims could not be serialised")]
    Json {
        #[from]
        source: serde_json::Error,
    },
}

impl AuthError {
    /// The RFC 6750 §3.1 error code, or `None` when the request had no credentials at all (the
    /// RFC says the challenge should then carry no error code).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::MalformedHeader { .. } => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }

    /// A short, fixed, human-readable reason for `error_description` and OperationOutcome
    /// diagnostics. Never contains token contents.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::Missing => "no bearer token",
            AuthError::MalformedHeader { .. } => "Authorization header is not 'Bearer <token>'",
            AuthError::Malformed { .. } => "token is malformed",
            AuthError::UnsupportedAlgorithm { .. } => "token signing algorithm not accepted",
            AuthError::UnknownIssuer => "token issuer not trusted",
            AuthError::UnknownKey => "token signing key not known",
            AuthError::KeyMismatch { .. } => "token signing key does not match its algorithm",
            AuthError::BadSignature => "token signature invalid",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::WrongAudience => "token audience is not this server",
            AuthError::MissingClaim { .. } => "token lacks a required claim",
            AuthError::InvalidClaim { .. } => "token has an invalid claim",
            AuthError::RoleNotFound => "selected role not found in token",
            AuthError::BeyondIssuer { reason } => reason,
            AuthError::UnrecognisedCaller => "token is not a staff, patient or system token",
            AuthError::InvalidJwks { .. }
            | AuthError::InvalidSigningKey { .. }
            | AuthError::Crypto { .. }
            | AuthError::Json { .. } => "token could not be verified",
        }
    }

    /// The `WWW-Authenticate` header value for a 401 answer, e.g.
    /// `Bearer error="invalid_token", error_description="token expired"`.
    ///
    /// A request with no token at all gets a bare `Bearer` challenge (RFC 6750 §3.1); a header
    /// that is not `Bearer <token>` gets `invalid_request`; every token failure `invalid_token`.
    /// The description is fixed text, so no token content and no quote can leak into the header.
    pub fn www_authenticate(&self) -> String {
        match self.error_code() {
            None => "Bearer".to_owned(),
            Some(code) => format!(
                "Bearer error=\"{code}\", error_description=\"{}\"",
                self.description()
            ),
        }
    }
}

/// Extracts the token from an `Authorization` header value (`None` when the header is absent).
///
/// The scheme is matched case-insensitively (RFC 7235); the token must be non-empty and use only
/// the RFC 6750 `b64token` characters, so nothing else (a second credential, spaces) slips through.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedHeader {
        reason: "expected 'Bearer <token>'",
    })?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(AuthError::MalformedHeader {
            reason: "scheme is not Bearer",
        });
    }
    let token = token.trim_start();
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(b64token) {
        return Err(AuthError::MalformedHeader {
            reason: "bearer token has characters outside b64token",
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn bearer_token_is_taken_from_the_header() -> TestResult {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi"))?, "abc.def.ghi");
        assert_eq!(bearer_token(Some("bearer abc.def.ghi"))?, "abc.def.ghi");
        Ok(())
    }

    #[test]
    fn absent_header_is_missing_with_bare_challenge() {
        let err = bearer_token(None).unwrap_err();
        assert!(matches!(err, AuthError::Missing));
        assert_eq!(err.www_authenticate(), "Bearer");
    }

    #[test]
    fn non_bearer_header_is_invalid_request() {
        for header in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
        ] {
            let err = bearer_token(Some(header)).unwrap_err();
            assert!(matches!(err, AuthError::MalformedHeader { .. }), "{header}");
            assert!(err
                .www_authenticate()
                .starts_with("Bearer error=\"invalid_request\""));
        }
    }

    #[test]
    fn expired_challenge_names_the_error() {
        assert_eq!(
            AuthError::Expired.www_authenticate(),
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
    }
}
