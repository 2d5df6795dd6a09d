//! The SMART Backend Services token endpoint's logic (client credentials with a signed JWT
//! assertion, RFC 7523): checks a registered client's assertion, grants the intersection of the
//! scopes asked for and the scopes the client may have, and mints an access token signed with
//! the server's own key, which the server also trusts as an issuer.
//!
//! It also answers RFC 8693 token exchange for neighbouring shared care records configured as
//! peers (docs/federation.md, R-FED-1): the peer authenticates with an actor token (its client
//! assertion) and sends its user's context in a subject token, both signed with the peer's key;
//! the access token minted carries the user, the peer as `act` and the context as
//! `scr_federation`, and lives at most five minutes.
//!
//! Replay of an assertion's `jti` is refused by the caller, which remembers used `jti`s durably
//! (the server keeps them in its store); this module returns each `jti` and its expiry for that.

use openssl::pkey::{PKey, Private};
use serde_json::json;

use crate::apps::{AppGrant, RegisteredApp};
use crate::caller::PATIENT_CONTEXT_CLAIM;
use crate::dev::new_jti;
use crate::federation::{user_context, UserContext};
use crate::jwks::public_jwk_json;
use crate::jwt::IssuerLimits;
use crate::jwt::{declared_algorithm, declared_issuer};
use crate::{Algorithm, AuthError, CallerKind, Issuer, Jwks, Verifier};

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live (SMART Backend Services: at most five minutes ahead).
pub const MAX_ASSERTION_SECONDS: i64 = 300;
/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the type of both tokens a peer sends.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 §3: the type of the token this server issues by exchange.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The longest an access token minted by exchange lives (docs/federation.md).
pub const MAX_EXCHANGED_TOKEN_SECONDS: i64 = 300;
/// The scope an exchange is granted when it asks for none and its peer allows it.
pub const DEFAULT_PEER_SCOPE: &str = "user/*.rs";

/// `fhirUser` for a signed-in user: `Patient/{nhs}` for a patient, `Practitioner/{sub}` for staff.
fn fhir_user(grant: &AppGrant) -> Option<String> {
    if let Some(nhs) = grant.identity.get("nhs_number").and_then(|v| v.as_str()) {
        return Some(format!("Patient/{nhs}"));
    }
    grant
        .identity
        .contains_key("nhsid_nrbac_roles")
        .then(|| format!("Practitioner/{}", grant.subject))
}

/// A neighbouring shared care record allowed to exchange tokens here (`[[auth.peers]]`).
pub struct RegisteredPeer {
    /// How this server names it (its audit trail, the `scr_federation.peer` claim).
    pub name: String,
    /// `iss` (and `sub`) of its actor tokens, `iss` of its subject tokens.
    pub client_id: String,
    /// Its public keys: both its tokens verify against them.
    pub jwks: Jwks,
    /// The most an exchanged token may carry (`user/` scopes).
    pub allowed_scopes: Vec<String>,
}

/// The first value of a form (or query) field.
pub fn form_field<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

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
    peers: Vec<RegisteredPeer>,
    /// SMART apps (`[[auth.apps]]`) and the absolute lifetime of a refresh token family.
    apps: Vec<RegisteredApp>,
    refresh_seconds: i64,
}

/// The tokens minted for an app's grant (SMART App Launch).
#[derive(Clone)]
pub struct AppTokens {
    pub access_token: String,
    pub expires_in: i64,
    /// When the grant has `online_access` or `offline_access`.
    pub refresh_token: Option<String>,
    /// When the grant has `openid`.
    pub id_token: Option<String>,
}

/// The claim of a refresh token holding its grant.
const REFRESH_CLAIM: &str = "scr_refresh";

/// A refresh token presented and verified: its grant, and its `jti` and `exp` for the caller to
/// remember (a refresh token is used once: rotation).
#[derive(Clone)]
pub struct AcceptedRefresh {
    pub grant: AppGrant,
    pub jti: String,
    pub expires_at: i64,
}

/// A token request the endpoint accepted, before the access token is minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// `client_credentials` with a backend client's assertion.
    Assertion(AcceptedAssertion),
    /// Token exchange by a peer, for one of its users.
    Exchange(Box<AcceptedExchange>),
}

impl Accepted {
    /// Every `jti` (with the client it belongs to and its `exp`) that must never be accepted
    /// again: the caller remembers them all before minting, and refuses the request if any
    /// was seen before.
    pub fn jtis(&self) -> Vec<(String, String, i64)> {
        match self {
            Accepted::Assertion(a) => vec![(a.client_id.clone(), a.jti.clone(), a.expires_at)],
            Accepted::Exchange(e) => vec![
                (e.client_id.clone(), e.actor_jti.clone(), e.actor_expires_at),
                (
                    e.client_id.clone(),
                    e.subject_jti.clone(),
                    e.subject_expires_at,
                ),
            ],
        }
    }

    /// The client (backend client or peer) that asked.
    pub fn client_id(&self) -> &str {
        match self {
            Accepted::Assertion(a) => &a.client_id,
            Accepted::Exchange(e) => &e.client_id,
        }
    }

    pub fn scope(&self) -> &str {
        match self {
            Accepted::Assertion(a) => &a.scope,
            Accepted::Exchange(e) => &e.scope,
        }
    }
}

/// An accepted token exchange (R-FED-1): the peer, both tokens' `jti`s, the scope granted and
/// the user's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedExchange {
    /// The peer's configured name.
    pub peer: String,
    pub client_id: String,
    pub actor_jti: String,
    pub actor_expires_at: i64,
    pub subject_jti: String,
    pub subject_expires_at: i64,
    pub scope: String,
    pub user: UserContext,
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
            peers: Vec::new(),
            apps: Vec::new(),
            refresh_seconds: 12 * 3600,
        })
    }

    /// The SMART apps users sign in to, and the absolute lifetime of their refresh tokens.
    pub fn with_apps(mut self, apps: Vec<RegisteredApp>, refresh_seconds: i64) -> TokenService {
        self.apps = apps;
        self.refresh_seconds = refresh_seconds;
        self
    }

    pub fn apps(&self) -> &[RegisteredApp] {
        &self.apps
    }

    pub fn app(&self, client_id: &str) -> Option<&RegisteredApp> {
        self.apps.iter().find(|a| a.client_id == client_id)
    }

    pub fn refresh_seconds(&self) -> i64 {
        self.refresh_seconds
    }

    fn signed(&self, claims: &serde_json::Value) -> Result<String, AuthError> {
        crate::dev::sign(claims, "RS256", &self.signing_key_pem, &self.kid)
    }

    /// Mints the tokens for an app's grant: an access token for the signed-in user (their
    /// identity claims, the scope granted, the patient in context), a refresh token when the
    /// grant allows one (living at most until the family's absolute expiry), an id token when
    /// `openid` was granted.
    pub fn mint_app(&self, grant: &AppGrant, now: i64) -> Result<AppTokens, AuthError> {
        let mut claims = grant.identity.clone();
        for (k, v) in [
            ("iss", json!(self.base_url)),
            ("aud", json!(self.base_url)),
            ("sub", json!(grant.subject)),
            ("iat", json!(now)),
            ("exp", json!(now + self.lifetime_seconds)),
            ("jti", json!(new_jti())),
            ("scope", json!(grant.scope)),
            ("client_id", json!(grant.client_id)),
        ] {
            claims.insert(k.to_owned(), v);
        }
        if let Some(patient) = &grant.patient {
            claims.insert(PATIENT_CONTEXT_CLAIM.to_owned(), json!(patient));
        }
        let fhir_user = fhir_user(grant);
        if let Some(u) = &fhir_user {
            claims.insert("fhirUser".to_owned(), json!(u));
        }
        let access_token = self.signed(&serde_json::Value::Object(claims))?;
        let refresh_token = if grant.refreshable() && now < grant.family_expires_at {
            Some(self.signed(&json!({
                "iss": self.base_url, "aud": self.token_url, "sub": grant.subject,
                "iat": now, "exp": grant.family_expires_at, "jti": new_jti(),
                REFRESH_CLAIM: grant,
            }))?)
        } else {
            None
        };
        let id_token = if grant.has_scope(crate::apps::OPENID) {
            let mut id = json!({
                "iss": self.base_url, "aud": grant.client_id, "sub": grant.subject,
                "iat": now, "exp": now + self.lifetime_seconds, "jti": new_jti(),
            });
            if let Some(u) = fhir_user {
                id["fhirUser"] = json!(u);
            }
            if let Some(name) = grant.identity.get("name") {
                id["name"] = name.clone();
            }
            if let Some(nonce) = &grant.nonce {
                id["nonce"] = json!(nonce);
            }
            Some(self.signed(&id)?)
        } else {
            None
        };
        Ok(AppTokens {
            access_token,
            expires_in: self.lifetime_seconds,
            refresh_token,
            id_token,
        })
    }

    /// Checks a refresh token presented by `client_id`: this server's signature, its audience
    /// (the token endpoint), its expiry, and that it was issued to that app. Its `jti` is
    /// returned for the caller to refuse a second use.
    pub fn accept_refresh(
        &self,
        token: &str,
        client_id: &str,
        now: i64,
    ) -> Result<AcceptedRefresh, TokenError> {
        let own = self
            .own_issuer()
            .map_err(|_| TokenError::InvalidGrant("the refresh token could not be checked"))?;
        let verifier = Verifier::new(vec![own], self.token_url.clone(), self.leeway_seconds);
        let verified = verifier.verify_claims(token, now).map_err(|e| match e {
            AuthError::Expired => TokenError::InvalidGrant("the refresh token has expired"),
            _ => TokenError::InvalidGrant("the refresh token is not valid here"),
        })?;
        let grant: AppGrant = verified
            .claims
            .get(REFRESH_CLAIM)
            .cloned()
            .and_then(|g| serde_json::from_value(g).ok())
            .ok_or(TokenError::InvalidGrant("not a refresh token"))?;
        if grant.client_id != client_id {
            return Err(TokenError::InvalidGrant(
                "the refresh token was issued to another app",
            ));
        }
        if now >= grant.family_expires_at {
            return Err(TokenError::InvalidGrant("the refresh token has expired"));
        }
        Ok(AcceptedRefresh {
            grant,
            jti: verified.token_id,
            expires_at: verified.expires_at,
        })
    }

    /// The neighbouring records allowed to exchange tokens here.
    pub fn with_peers(mut self, peers: Vec<RegisteredPeer>) -> TokenService {
        self.peers = peers;
        self
    }

    /// Whether token exchange is served (some peer is configured).
    pub fn exchanges(&self) -> bool {
        !self.peers.is_empty()
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The public key this server signs with, as a JWKS document.
    pub fn public_jwks_json(&self) -> Result<String, AuthError> {
        let key: PKey<Private> =
            PKey::private_key_from_pem(&self.signing_key_pem).map_err(|_| {
                AuthError::InvalidSigningKey {
                    reason: "not a PEM private key",
                }
            })?;
        let jwk = public_jwk_json(&key, &self.kid, Some(Algorithm::RS256))?;
        Ok(json!({ "keys": [jwk] }).to_string())
    }

    /// The server as an issuer of the access tokens it mints, for its own verifier.
    pub fn own_issuer(&self) -> Result<Issuer, AuthError> {
        Ok(Issuer {
            iss: self.base_url.clone(),
            jwks: Jwks::from_json(&self.public_jwks_json()?)?,
            // It mints backend service tokens, each for its registered client's organisation,
            // and, when apps are registered, tokens for the users who signed in to them at a
            // configured login provider (whose own limits applied at sign-in).
            limits: IssuerLimits {
                kinds: if self.apps.is_empty() {
                    vec![CallerKind::System]
                } else {
                    vec![CallerKind::System, CallerKind::Staff, CallerKind::Patient]
                },
                organisations: match self.apps.is_empty() {
                    true => Some(self.clients.iter().map(|c| c.org.clone()).collect()),
                    false => None,
                },
                max_lifetime_seconds: self.lifetime_seconds,
                // Its exchanged tokens carry its peers' users (R-FED-1).
                federation: self.exchanges(),
            },
        })
    }

    /// Checks a token request of either grant (the form's fields) at `now`.
    pub fn accept_grant(
        &self,
        form: &[(String, String)],
        now: i64,
    ) -> Result<Accepted, TokenError> {
        if form_field(form, "grant_type") == Some(TOKEN_EXCHANGE) && self.exchanges() {
            self.accept_exchange(form, now)
                .map(|e| Accepted::Exchange(Box::new(e)))
        } else {
            self.accept(form, now).map(Accepted::Assertion)
        }
    }

    /// Checks an RFC 8693 token exchange by a configured peer (R-FED-1). A peer that is not
    /// configured, or whose actor token does not verify against its keys, is `invalid_client`;
    /// a subject token that does not verify, lives too long or lacks the user's context is
    /// `invalid_grant`.
    pub fn accept_exchange(
        &self,
        form: &[(String, String)],
        now: i64,
    ) -> Result<AcceptedExchange, TokenError> {
        let field = |name: &str| form_field(form, name);
        if field("grant_type") != Some(TOKEN_EXCHANGE) {
            return Err(TokenError::UnsupportedGrantType(
                "only client_credentials and token exchange are supported",
            ));
        }
        let actor = field("actor_token").ok_or(TokenError::InvalidRequest(
            "actor_token is required: the peer's client assertion",
        ))?;
        if field("actor_token_type") != Some(JWT_TOKEN_TYPE) {
            return Err(TokenError::InvalidRequest(
                "actor_token_type must be urn:ietf:params:oauth:token-type:jwt",
            ));
        }
        let subject = field("subject_token").ok_or(TokenError::InvalidRequest(
            "subject_token is required: the end user's context",
        ))?;
        if field("subject_token_type") != Some(JWT_TOKEN_TYPE) {
            return Err(TokenError::InvalidRequest(
                "subject_token_type must be urn:ietf:params:oauth:token-type:jwt",
            ));
        }
        // The actor token authenticates the peer (RFC 7523 client assertion).
        if !matches!(
            declared_algorithm(actor),
            Ok(Algorithm::RS384 | Algorithm::ES384)
        ) {
            return Err(TokenError::InvalidClient(
                "the actor token must be signed with RS384 or ES384",
            ));
        }
        let client_id = declared_issuer(actor)
            .ok_or(TokenError::InvalidClient("the actor token has no iss"))?;
        let peer = self
            .peers
            .iter()
            .find(|p| p.client_id == client_id)
            .ok_or(TokenError::InvalidClient("unknown client"))?;
        let verifier = Verifier::new(
            vec![Issuer {
                iss: peer.client_id.clone(),
                jwks: peer.jwks.clone(),
                // Checked as assertions (their lifetime below), never as callers.
                limits: IssuerLimits::any(MAX_ASSERTION_SECONDS),
            }],
            self.token_url.clone(),
            self.leeway_seconds,
        );
        let actor_claims = verifier
            .verify_claims(actor, now)
            .map_err(|_| TokenError::InvalidClient("the actor token could not be verified"))?;
        if actor_claims.subject != peer.client_id {
            return Err(TokenError::InvalidClient(
                "the actor token's sub must equal its iss",
            ));
        }
        if actor_claims.expires_at - now > MAX_ASSERTION_SECONDS + self.leeway_seconds {
            return Err(TokenError::InvalidClient(
                "the actor token's exp is more than five minutes ahead",
            ));
        }
        // The subject token: the same peer's key, for this endpoint, short-lived.
        if !matches!(
            declared_algorithm(subject),
            Ok(Algorithm::RS384 | Algorithm::ES384)
        ) {
            return Err(TokenError::InvalidGrant(
                "the subject token must be signed with RS384 or ES384",
            ));
        }
        if declared_issuer(subject).as_deref() != Some(peer.client_id.as_str()) {
            return Err(TokenError::InvalidGrant(
                "the subject token must be issued by the actor",
            ));
        }
        let subject_claims = verifier
            .verify_claims(subject, now)
            .map_err(|_| TokenError::InvalidGrant("the subject token could not be verified"))?;
        if subject_claims.expires_at - now > MAX_ASSERTION_SECONDS + self.leeway_seconds {
            return Err(TokenError::InvalidGrant(
                "the subject token's exp is more than five minutes ahead",
            ));
        }
        let user =
            user_context(&subject_claims.subject, &subject_claims.claims).map_err(|e| match e {
                crate::AuthError::MissingClaim { claim: "reason" } => TokenError::InvalidGrant(
                    "a break-glass purpose of use (ETREAT, BTG) needs a written reason",
                ),
                crate::AuthError::MissingClaim { .. } => TokenError::InvalidGrant(
                    "the subject token lacks a claim of the user's context (docs/federation.md)",
                ),
                _ => TokenError::InvalidGrant(
                    "the subject token has an invalid claim of the user's context",
                ),
            })?;
        let asked: Vec<&str> = match field("scope") {
            Some(scope) if !scope.trim().is_empty() => scope.split_whitespace().collect(),
            _ => peer.allowed_scopes.iter().map(String::as_str).collect(),
        };
        let mut granted: Vec<&str> = asked
            .into_iter()
            .filter(|s| peer.allowed_scopes.iter().any(|a| a == s))
            .collect();
        granted.sort_unstable();
        granted.dedup();
        if granted.is_empty() {
            return Err(TokenError::InvalidScope(
                "none of the scopes asked for may be granted to this peer",
            ));
        }
        Ok(AcceptedExchange {
            peer: peer.name.clone(),
            client_id: peer.client_id.clone(),
            actor_jti: actor_claims.token_id,
            actor_expires_at: actor_claims.expires_at,
            subject_jti: subject_claims.token_id,
            subject_expires_at: subject_claims.expires_at,
            scope: granted.join(" "),
            user,
        })
    }

    /// Mints the access token for an accepted exchange whose `jti`s were not seen before:
    /// signed with the server's own key, for the end user, at most five minutes. Returns the
    /// token and its lifetime in seconds.
    pub fn mint_exchanged(
        &self,
        accepted: &AcceptedExchange,
        now: i64,
    ) -> Result<(String, i64), AuthError> {
        let lifetime = self.lifetime_seconds.min(MAX_EXCHANGED_TOKEN_SECONDS);
        let mut claims = accepted
            .user
            .access_token_claims(&accepted.peer, &accepted.client_id);
        for (k, v) in [
            ("iss", json!(self.base_url)),
            ("aud", json!(self.base_url)),
            ("iat", json!(now)),
            ("exp", json!(now + lifetime)),
            ("jti", json!(new_jti())),
            ("scope", json!(accepted.scope)),
        ] {
            claims.insert(k.to_owned(), v);
        }
        Ok((
            crate::dev::sign(
                &serde_json::Value::Object(claims),
                "RS256",
                &self.signing_key_pem,
                &self.kid,
            )?,
            lifetime,
        ))
    }

    /// Mints the access token of either grant.
    pub fn mint_accepted(&self, accepted: &Accepted, now: i64) -> Result<(String, i64), AuthError> {
        match accepted {
            Accepted::Assertion(a) => self.mint(a, now),
            Accepted::Exchange(e) => self.mint_exchanged(e, now),
        }
    }

    /// Checks a token request (the form's fields) at `now`.
    pub fn accept(
        &self,
        form: &[(String, String)],
        now: i64,
    ) -> Result<AcceptedAssertion, TokenError> {
        let field = |name: &str| form_field(form, name);
        match field("grant_type") {
            Some(CLIENT_CREDENTIALS) => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType(
                "only client_credentials (and, for configured peers, token exchange) is supported",
            )),
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

    fn app_grant(family_expires_at: i64) -> AppGrant {
        AppGrant {
            client_id: "viewer".into(),
            subject: "trust-ben".into(),
            identity: serde_json::from_value(json!({
                "name": "Dr Ben", "selected_roleid": "r1",
                "nhsid_nrbac_roles": [{"person_roleid": "r1", "org_code": "RXK", "role_code": "S8000:G8000:R8000"}],
            }))
            .unwrap(),
            scope: "openid user/Patient.rs online_access".into(),
            patient: Some("9990000018".into()),
            family: "fam".into(),
            family_expires_at,
            nonce: Some("app-nonce".into()),
        }
    }

    fn app_service() -> TokenService {
        service().with_apps(
            vec![RegisteredApp {
                client_id: "viewer".into(),
                secret: None,
                redirect_uris: vec!["https://app.example/cb".into()],
                scopes: vec!["user/*.rs".into()],
                login: "dev".into(),
            }],
            3600,
        )
    }

    #[test]
    fn app_tokens_are_trusted_here_and_carry_the_patient_context() {
        let s = app_service();
        let now = 1_800_000_000;
        let tokens = s.mint_app(&app_grant(now + 3600), now).unwrap();
        let verifier = Verifier::new(vec![s.own_issuer().unwrap()], s.base_url.clone(), 30);
        let caller = verifier.verify(&tokens.access_token, now).unwrap();
        assert_eq!(caller.kind, CallerKind::Staff);
        assert_eq!(caller.organisation.as_deref(), Some("RXK"));
        assert_eq!(caller.patient_context.as_deref(), Some("9990000018"));
        let id_token = tokens.id_token.unwrap_or_default();
        let payload = id_token.split('.').nth(1).unwrap_or_default();
        let id_claims: serde_json::Value = {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap_or_default();
            serde_json::from_slice(&bytes).unwrap_or_default()
        };
        assert_eq!(id_claims["nonce"], "app-nonce", "OIDC Core 3.1.2.1");
        // The refresh token is no access token (its audience is the token endpoint).
        let refresh = tokens.refresh_token.unwrap();
        assert!(verifier.verify(&refresh, now).is_err());
        let accepted = s.accept_refresh(&refresh, "viewer", now).ok().unwrap();
        assert_eq!(accepted.grant.family, "fam");
        assert!(s.accept_refresh(&refresh, "another-app", now).is_err());
    }

    #[test]
    fn refresh_tokens_expire_with_their_sign_in() {
        let s = app_service();
        let now = 1_800_000_000;
        let tokens = s.mint_app(&app_grant(now + 120), now).unwrap();
        let refresh = tokens.refresh_token.unwrap();
        assert!(s.accept_refresh(&refresh, "viewer", now + 60).is_ok());
        assert_eq!(
            s.accept_refresh(&refresh, "viewer", now + 200).err(),
            Some(TokenError::InvalidGrant("the refresh token has expired"))
        );
        // A sign-in already over gets no refresh token at all.
        let late = s.mint_app(&app_grant(now - 1), now).unwrap();
        assert!(late.refresh_token.is_none());
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

/// Token exchange by a neighbouring record (docs/federation.md). Replay of a `jti` is the
/// server's to refuse (it remembers them in its store): here, that both are returned for it.
#[cfg(test)]
mod exchange_tests {
    use std::sync::OnceLock;

    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use serde_json::Value;

    use super::*;
    use crate::dev::sign;
    use crate::federation::PurposeOfUse;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const BASE: &str = "https://scr.example/fhir";
    const TOKEN_URL: &str = "https://scr.example/fhir/auth/token";
    const PEER: &str = "scr-b";
    const KID: &str = "scr-b-1";
    const NOW: i64 = 1_800_000_000;

    /// (peer private key PEM, its JWKS, another P-384 key's PEM, the server's RSA key PEM)
    type Keys = (Vec<u8>, String, Vec<u8>, Vec<u8>);

    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let p384 = || {
                let group = EcGroup::from_curve_name(Nid::SECP384R1).expect("P-384");
                PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("key")
            };
            let peer = p384();
            let jwk = public_jwk_json(&peer, KID, Some(Algorithm::ES384)).expect("jwk");
            let rsa = openssl::rsa::Rsa::generate(2048).expect("RSA key");
            (
                peer.private_key_to_pem_pkcs8().expect("pem"),
                json!({ "keys": [jwk] }).to_string(),
                p384().private_key_to_pem_pkcs8().expect("pem"),
                PKey::from_rsa(rsa)
                    .and_then(|k| k.private_key_to_pem_pkcs8())
                    .expect("pem"),
            )
        })
    }

    fn service() -> TokenService {
        let (_, jwks, _, server_key) = keys();
        TokenService::new(BASE, TOKEN_URL, server_key.clone(), 300, 30, Vec::new())
            .expect("service")
            .with_peers(vec![RegisteredPeer {
                name: "BlackCountrySCR".into(),
                client_id: PEER.into(),
                jwks: Jwks::from_json(jwks).expect("jwks"),
                allowed_scopes: vec!["user/*.rs".into()],
            }])
    }

    fn actor_claims(lifetime: i64) -> Value {
        json!({
            "iss": PEER, "sub": PEER, "aud": TOKEN_URL,
            "iat": NOW, "exp": NOW + lifetime, "jti": new_jti(),
        })
    }

    fn subject_claims(lifetime: i64) -> Value {
        json!({
            "iss": PEER, "aud": TOKEN_URL, "iat": NOW, "exp": NOW + lifetime, "jti": new_jti(),
            "sub": "555021935107", "name": "Dr Asha Patel",
            "org_code": "RXK", "role_code": "R8000", "purpose_of_use": "TREAT",
            "patient": "9990000018", "request_id": "b-1f3c",
            "relationship": { "rule": "R-LR-2", "org": "RXK" },
        })
    }

    fn signed(claims: &Value, key: &[u8]) -> String {
        sign(claims, "ES384", key, KID).expect("sign")
    }

    fn form(actor: &str, subject: &str, scope: Option<&str>) -> Vec<(String, String)> {
        let mut f = vec![
            ("grant_type".to_owned(), TOKEN_EXCHANGE.to_owned()),
            ("actor_token".into(), actor.into()),
            ("actor_token_type".into(), JWT_TOKEN_TYPE.into()),
            ("subject_token".into(), subject.into()),
            ("subject_token_type".into(), JWT_TOKEN_TYPE.into()),
        ];
        if let Some(scope) = scope {
            f.push(("scope".into(), scope.into()));
        }
        f
    }

    fn good_form() -> Vec<(String, String)> {
        let key = &keys().0;
        form(
            &signed(&actor_claims(120), key),
            &signed(&subject_claims(120), key),
            None,
        )
    }

    fn code(s: &TokenService, f: &[(String, String)]) -> &'static str {
        match s.accept_grant(f, NOW) {
            Ok(_) => "accepted",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn r_fed_1_a_configured_peer_gets_a_token_for_its_user_that_this_server_trusts() -> TestResult {
        let s = service();
        let Accepted::Exchange(accepted) = s.accept_grant(&good_form(), NOW)? else {
            return Err("not an exchange".into());
        };
        assert_eq!(accepted.peer, "BlackCountrySCR");
        assert_eq!(accepted.scope, "user/*.rs");
        let (token, lifetime) = s.mint_exchanged(&accepted, NOW)?;
        assert!(lifetime <= MAX_EXCHANGED_TOKEN_SECONDS);
        let verifier = Verifier::new(vec![s.own_issuer()?], BASE.into(), 30);
        let caller = verifier.verify(&token, NOW)?;
        assert_eq!(caller.kind, CallerKind::Staff);
        assert_eq!(caller.subject, "555021935107");
        assert_eq!(caller.organisation.as_deref(), Some("RXK"));
        assert_eq!(caller.role_code.as_deref(), Some("R8000"));
        assert!(caller.expires_at - NOW <= MAX_EXCHANGED_TOKEN_SECONDS);
        let fed = caller.federation.ok_or("no federation")?;
        assert_eq!(fed.peer, "BlackCountrySCR");
        assert_eq!(fed.actor, PEER);
        assert_eq!(fed.patient, "9990000018");
        assert_eq!(fed.purpose, PurposeOfUse::Treatment);
        assert_eq!(fed.request_id, "b-1f3c");
        assert_eq!(
            fed.relationship.map(|r| (r.rule, r.org)),
            Some(("R-LR-2".into(), "RXK".into()))
        );
        // The raw claims: act and scr_federation as docs/federation.md names them.
        let payload = token.split('.').nth(1).ok_or("no payload")?;
        let claims: Value = serde_json::from_slice(&base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            payload,
        )?)?;
        assert_eq!(claims["act"]["sub"], PEER);
        assert_eq!(claims["iss"], BASE);
        assert_eq!(claims["aud"], BASE);
        assert_eq!(claims["name"], "Dr Asha Patel");
        assert_eq!(claims["scr_federation"]["peer"], "BlackCountrySCR");
        assert_eq!(claims["scr_federation"]["purpose_of_use"], "TREAT");
        Ok(())
    }

    #[test]
    fn r_fed_1_both_jtis_are_returned_for_the_server_to_refuse_their_reuse() -> TestResult {
        let s = service();
        let accepted = s.accept_grant(&good_form(), NOW)?;
        let jtis = accepted.jtis();
        assert_eq!(jtis.len(), 2);
        assert!(jtis.iter().all(|(client, _, _)| client == PEER));
        assert_ne!(jtis[0].1, jtis[1].1);
        Ok(())
    }

    #[test]
    fn r_fed_1_an_unconfigured_client_is_invalid_client_401() {
        let s = service();
        let key = &keys().0;
        let mut actor = actor_claims(120);
        actor["iss"] = "scr-c".into();
        actor["sub"] = "scr-c".into();
        let f = form(
            &signed(&actor, key),
            &signed(&subject_claims(120), key),
            None,
        );
        let err = s.accept_grant(&f, NOW).unwrap_err();
        assert_eq!((err.code(), err.status()), ("invalid_client", 401));
        // Without any peer configured, the grant itself is not served.
        let (_, _, _, server_key) = keys();
        let none = TokenService::new(BASE, TOKEN_URL, server_key.clone(), 300, 30, Vec::new())
            .expect("service");
        assert_eq!(code(&none, &good_form()), "unsupported_grant_type");
    }

    #[test]
    fn r_fed_1_tokens_signed_with_another_key_are_refused() {
        let s = service();
        let (peer_key, _, other_key, _) = keys();
        let actor = form(
            &signed(&actor_claims(120), other_key),
            &signed(&subject_claims(120), peer_key),
            None,
        );
        assert_eq!(code(&s, &actor), "invalid_client");
        let subject = form(
            &signed(&actor_claims(120), peer_key),
            &signed(&subject_claims(120), other_key),
            None,
        );
        assert_eq!(code(&s, &subject), "invalid_grant");
        // RS256 (or any algorithm but RS384 and ES384) is refused before any key is tried.
        let rs256 = crate::dev::sign_rs256(&actor_claims(120), &keys().3, KID).expect("sign");
        let f = form(&rs256, &signed(&subject_claims(120), peer_key), None);
        assert_eq!(code(&s, &f), "invalid_client");
    }

    #[test]
    fn r_fed_1_tokens_living_beyond_five_minutes_are_refused() {
        let s = service();
        let key = &keys().0;
        let long_actor = form(
            &signed(&actor_claims(600), key),
            &signed(&subject_claims(120), key),
            None,
        );
        assert_eq!(code(&s, &long_actor), "invalid_client");
        let long_subject = form(
            &signed(&actor_claims(120), key),
            &signed(&subject_claims(600), key),
            None,
        );
        assert_eq!(code(&s, &long_subject), "invalid_grant");
        // Both expired.
        let later = form(
            &signed(&actor_claims(120), key),
            &signed(&subject_claims(120), key),
            None,
        );
        assert_eq!(
            s.accept_grant(&later, NOW + 600).unwrap_err().code(),
            "invalid_client"
        );
    }

    #[test]
    fn r_fed_1_tokens_for_another_audience_or_actor_are_refused() {
        let s = service();
        let key = &keys().0;
        let mut actor = actor_claims(120);
        actor["aud"] = BASE.into();
        let f = form(
            &signed(&actor, key),
            &signed(&subject_claims(120), key),
            None,
        );
        assert_eq!(code(&s, &f), "invalid_client");
        let mut actor = actor_claims(120);
        actor["sub"] = "someone-else".into();
        let f = form(
            &signed(&actor, key),
            &signed(&subject_claims(120), key),
            None,
        );
        assert_eq!(code(&s, &f), "invalid_client");
        let mut subject = subject_claims(120);
        subject["aud"] = BASE.into();
        let f = form(
            &signed(&actor_claims(120), key),
            &signed(&subject, key),
            None,
        );
        assert_eq!(code(&s, &f), "invalid_grant");
    }

    #[test]
    fn r_fed_3_break_glass_without_a_reason_is_invalid_grant() {
        let s = service();
        let key = &keys().0;
        for purpose in ["BTG", "ETREAT"] {
            let mut subject = subject_claims(120);
            subject["purpose_of_use"] = purpose.into();
            if let Some(o) = subject.as_object_mut() {
                o.remove("relationship");
            }
            let f = form(
                &signed(&actor_claims(120), key),
                &signed(&subject, key),
                None,
            );
            let err = s.accept_grant(&f, NOW).unwrap_err();
            assert_eq!(err.code(), "invalid_grant");
            assert!(err.description().contains("reason"), "{err}");
            subject["reason"] = "unconscious in ED".into();
            let f = form(
                &signed(&actor_claims(120), key),
                &signed(&subject, key),
                None,
            );
            assert_eq!(code(&s, &f), "accepted");
        }
    }

    #[test]
    fn r_fed_1_the_user_context_is_checked() {
        let s = service();
        let key = &keys().0;
        for (claim, value) in [
            ("patient", json!("9990000019")),
            ("purpose_of_use", json!("RESEARCH")),
            ("org_code", Value::Null),
            ("role_code", json!("nurse")),
            ("request_id", Value::Null),
            ("name", Value::Null),
        ] {
            let mut subject = subject_claims(120);
            subject[claim] = value;
            let f = form(
                &signed(&actor_claims(120), key),
                &signed(&subject, key),
                None,
            );
            assert_eq!(code(&s, &f), "invalid_grant", "{claim}");
        }
    }

    #[test]
    fn r_fed_1_malformed_requests_and_scopes_are_refused() {
        let s = service();
        let good = good_form();
        for (name, value, expected) in [
            ("actor_token_type", "urn:x", "invalid_request"),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
                "invalid_request",
            ),
            ("actor_token", "not-a-jwt", "invalid_client"),
            ("subject_token", "not-a-jwt", "invalid_grant"),
        ] {
            let f: Vec<(String, String)> = good
                .iter()
                .map(|(k, v)| {
                    if k == name {
                        (k.clone(), value.to_owned())
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect();
            assert_eq!(code(&s, &f), expected, "{name}");
        }
        let missing: Vec<(String, String)> = good
            .iter()
            .filter(|(k, _)| k != "subject_token")
            .cloned()
            .collect();
        assert_eq!(code(&s, &missing), "invalid_request");
        let key = &keys().0;
        let scoped = |scope: &str| {
            form(
                &signed(&actor_claims(120), key),
                &signed(&subject_claims(120), key),
                Some(scope),
            )
        };
        assert_eq!(
            code(&s, &scoped("system/*.rs user/Flag.cu")),
            "invalid_scope"
        );
        match s.accept_grant(&scoped("user/*.rs user/Flag.cu"), NOW) {
            Ok(a) => assert_eq!(a.scope(), "user/*.rs", "asked ∩ the peer's scopes"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn r_fed_1_federation_claims_from_any_other_issuer_are_refused() -> TestResult {
        // The development issuer (trusted in demos) signs a token carrying scr_federation and
        // act: still not minted by this server, so refused.
        let s = service();
        let Accepted::Exchange(accepted) = s.accept_grant(&good_form(), NOW)? else {
            return Err("not an exchange".into());
        };
        let mut claims = accepted.user.access_token_claims("BlackCountrySCR", PEER);
        for (k, v) in [
            ("iss", json!(crate::dev::DEV_ISSUER)),
            ("aud", json!(BASE)),
            ("iat", json!(NOW)),
            ("exp", json!(NOW + 60)),
            ("jti", json!("j")),
            ("scope", json!("user/*.rs")),
        ] {
            claims.insert(k.into(), v);
        }
        let forged = crate::dev::sign_rs256(
            &Value::Object(claims.clone()),
            crate::dev::dev_private_key_pem(),
            crate::dev::DEV_KID,
        )?;
        let verifier = Verifier::new(
            vec![crate::dev::dev_issuer()?, s.own_issuer()?],
            BASE.into(),
            30,
        );
        assert!(matches!(
            verifier.verify(&forged, NOW),
            Err(AuthError::BeyondIssuer { .. })
        ));
        // `act` alone (or scr_federation alone) is refused too.
        for drop in ["scr_federation", "act"] {
            let mut partial = claims.clone();
            partial.remove(drop);
            let token = crate::dev::sign_rs256(
                &Value::Object(partial),
                crate::dev::dev_private_key_pem(),
                crate::dev::DEV_KID,
            )?;
            assert!(verifier.verify(&token, NOW).is_err(), "without {drop}");
        }
        // The server's own client-credentials tokens still verify: only federation is special.
        let without_peers =
            TokenService::new(BASE, TOKEN_URL, keys().3.clone(), 300, 30, Vec::new())?;
        assert!(!without_peers.own_issuer()?.limits.federation);
        Ok(())
    }
}
