//! Signing users in for SMART apps (docs/smart-apps.md).
//!
//! - [`LoginProvider`]: an upstream OpenID Connect provider configured by issuer
//!   (`[[auth.login]]`): CIS2-shaped for staff, NHS login-shaped for patients. Its discovery
//!   document and JWKS are fetched on first use and cached; an id token signed with a `kid` the
//!   cached JWKS lacks makes it refetch the JWKS once (at most every
//!   [`JWKS_REFETCH_SECONDS`]), and a key that is still unknown is refused. The authorization
//!   code is exchanged with PKCE; the id token is verified by `scr-auth` (the same algorithms
//!   as every token) against the provider's keys, with its nonce.
//! - [`Sessions`]: the short-lived state between the steps of a sign-in (the pending login, the
//!   signed-in user awaiting a role or patient choice, the authorization code, the EHR launch),
//!   each single use with its own expiry, bounded in number; plus the role each user confirmed
//!   and the refresh token families revoked after a reuse. It is held in memory: a restart ends
//!   sign-ins in progress (apps start again) and forgets confirmed roles (users confirm again).
//!
//! Nothing here logs a token, a code or a claim value.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scr_auth::apps::{AppGrant, AuthorizeRequest};
use scr_auth::{Caller, Issuer, IssuerLimits, Jwks, Verifier};
use serde_json::{Map, Value};

/// The least time between two JWKS fetches caused by unknown `kid`s.
pub const JWKS_REFETCH_SECONDS: u64 = 30;
/// How long a discovery document is trusted before it is fetched again.
const DISCOVERY_SECONDS: u64 = 3600;

/// Why a sign-in failed. Messages are fixed text: safe to log and to show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error("the login provider {provider} could not be reached or answered badly: {reason}")]
    Unavailable {
        provider: String,
        reason: &'static str,
    },
    #[error("the login provider's answer was refused: {reason}")]
    Refused { reason: &'static str },
    #[error("the id token was refused: {source}")]
    IdToken {
        #[from]
        source: scr_auth::AuthError,
    },
}

/// A configured upstream OpenID Connect provider.
pub struct LoginProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    client_secret: String,
    limits: IssuerLimits,
    leeway_seconds: i64,
    jwks_refetch: Duration,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Discovered>>,
}

#[derive(Clone)]
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    jwks: Jwks,
    discovered_at: Instant,
    jwks_fetched_at: Instant,
}

/// The settings of one provider.
pub struct ProviderSettings {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// What its id tokens may assert: caller kinds, organisations, lifetime.
    pub limits: IssuerLimits,
    pub leeway_seconds: i64,
    pub timeout: Duration,
    /// The least time between two JWKS fetches caused by unknown `kid`s
    /// ([`JWKS_REFETCH_SECONDS`] in service).
    pub jwks_refetch: Duration,
}

impl LoginProvider {
    pub fn new(settings: ProviderSettings) -> Result<LoginProvider, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(LoginProvider {
            name: settings.name,
            issuer: settings.issuer.trim_end_matches('/').to_owned(),
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            limits: settings.limits,
            leeway_seconds: settings.leeway_seconds,
            jwks_refetch: settings.jwks_refetch,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    fn unavailable(&self, reason: &'static str) -> LoginError {
        LoginError::Unavailable {
            provider: self.name.clone(),
            reason,
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, LoginError> {
        let response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|_| self.unavailable("no answer"))?;
        if !response.status().is_success() {
            return Err(self.unavailable("an error status"));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| self.unavailable("the answer broke off"))?;
        if bytes.len() > 1 << 20 {
            return Err(self.unavailable("the answer is too large"));
        }
        serde_json::from_slice(&bytes).map_err(|_| self.unavailable("the answer is not JSON"))
    }

    async fn fetch_jwks(&self, uri: &str) -> Result<Jwks, LoginError> {
        let doc = self.get_json(uri).await?;
        Jwks::from_json(&doc.to_string()).map_err(|_| self.unavailable("the JWKS is not usable"))
    }

    /// The discovery document and keys, fetched when missing or older than an hour.
    async fn discovered(&self) -> Result<Discovered, LoginError> {
        let mut cache = self.cache.lock().await;
        if let Some(d) = cache.as_ref() {
            if d.discovered_at.elapsed() < Duration::from_secs(DISCOVERY_SECONDS) {
                return Ok(d.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc = self.get_json(&url).await?;
        if doc["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(self.issuer.as_str()) {
            return Err(LoginError::Refused {
                reason: "the discovery document names another issuer",
            });
        }
        let endpoint = |key: &str| -> Result<String, LoginError> {
            doc[key]
                .as_str()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .map(str::to_owned)
                .ok_or(LoginError::Refused {
                    reason: "the discovery document lacks an endpoint",
                })
        };
        let jwks_uri = endpoint("jwks_uri")?;
        let jwks = self.fetch_jwks(&jwks_uri).await?;
        let d = Discovered {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            jwks_uri,
            jwks,
            discovered_at: Instant::now(),
            jwks_fetched_at: Instant::now(),
        };
        *cache = Some(d.clone());
        Ok(d)
    }

    /// Where to send the user to sign in, with this server's `redirect_uri`, the `state` and
    /// `nonce` of this sign-in and the PKCE challenge of `verifier`.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, LoginError> {
        let d = self.discovered().await?;
        let challenge = scr_auth::apps::pkce_challenge(verifier);
        Ok(scr_auth::apps::with_query(
            &d.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", redirect_uri),
                ("scope", "openid profile"),
                ("state", state),
                ("nonce", nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
    }

    /// Exchanges the authorization code and verifies the id token: signature (the JWKS is
    /// refetched once for an unknown `kid`), issuer, audience (this server's client id),
    /// expiry, nonce, and the provider's limits. Returns the signed-in user and the id token's
    /// claims.
    pub async fn sign_in(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
        now: i64,
    ) -> Result<(Caller, Map<String, Value>), LoginError> {
        let d = self.discovered().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("code_verifier", verifier),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&d.token_endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| self.unavailable("no answer from the token endpoint"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| self.unavailable("the token answer broke off"))?;
        if !status.is_success() {
            return Err(LoginError::Refused {
                reason: "the provider refused the authorization code",
            });
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| LoginError::Refused {
            reason: "the token answer is not JSON",
        })?;
        let id_token = answer["id_token"].as_str().ok_or(LoginError::Refused {
            reason: "the token answer has no id_token",
        })?;
        let (caller, claims) = match self.verify(id_token, &d.jwks, now) {
            Err(LoginError::IdToken {
                source: scr_auth::AuthError::UnknownKey,
            }) => {
                // The provider may have rotated its keys: fetch them again, once, not too often.
                let jwks = self.refetch_jwks(&d).await?;
                self.verify(id_token, &jwks, now)?
            }
            other => other?,
        };
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(LoginError::Refused {
                reason: "the id token's nonce is not this sign-in's",
            });
        }
        Ok((caller, claims))
    }

    fn verify(
        &self,
        id_token: &str,
        jwks: &Jwks,
        now: i64,
    ) -> Result<(Caller, Map<String, Value>), LoginError> {
        let verifier = Verifier::new(
            vec![Issuer {
                iss: self.issuer.clone(),
                jwks: jwks.clone(),
                limits: self.limits.clone(),
            }],
            self.client_id.clone(),
            self.leeway_seconds,
        );
        Ok(verifier.verify_sign_in(id_token, now)?)
    }

    async fn refetch_jwks(&self, seen: &Discovered) -> Result<Jwks, LoginError> {
        let mut cache = self.cache.lock().await;
        let Some(current) = cache.as_mut() else {
            return Err(self.unavailable("no discovery document"));
        };
        // Another sign-in may have refetched already.
        if current.jwks_fetched_at > seen.jwks_fetched_at {
            return Ok(current.jwks.clone());
        }
        if current.jwks_fetched_at.elapsed() < self.jwks_refetch {
            return Err(LoginError::IdToken {
                source: scr_auth::AuthError::UnknownKey,
            });
        }
        log::info!(
            "login provider {}: an unknown signing key; fetching its JWKS again",
            self.name
        );
        let jwks = self.fetch_jwks(&current.jwks_uri).await?;
        current.jwks = jwks.clone();
        current.jwks_fetched_at = Instant::now();
        Ok(jwks)
    }
}

/// A random, URL-safe, unguessable value (256 bits) for states, nonces, codes and launch ids.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        // openssl's CSPRNG failing is not recoverable; a predictable value would be worse.
        std::process::abort();
    }
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A sign-in on its way to the login provider.
#[derive(Clone)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub nonce: String,
    /// Our PKCE verifier at the login provider.
    pub verifier: String,
    /// The EHR launch the app named, already resolved.
    pub launch: Option<Launch>,
}

/// A user signed in, before the role or patient is chosen. (No `Debug`: it holds claims.)
#[derive(Clone)]
pub struct SignedIn {
    pub request: AuthorizeRequest,
    pub launch: Option<Launch>,
    pub caller: Caller,
    pub claims: Map<String, Value>,
    /// The confirmed role (staff), once chosen.
    pub role: Option<String>,
}

/// An authorization code's grant, for the app that asked. (No `Debug`: it holds claims.)
#[derive(Clone)]
pub struct IssuedCode {
    pub grant: AppGrant,
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// An EHR launch registered by a host system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The patient in context (NHS number).
    pub patient: String,
    /// The user the host system says is launching (their user id at the login provider);
    /// only that user may use the launch.
    pub user: String,
    /// The host system's client id.
    pub host: String,
}

/// How long each kind of state lives.
pub const LOGIN_SECONDS: u64 = 600;
pub const CODE_SECONDS: u64 = 60;
pub const LAUNCH_SECONDS: u64 = 300;
/// The most entries of each kind held at once; beyond it new sign-ins wait (503).
pub const MAX_ENTRIES: usize = 20_000;

struct Expiring<T> {
    entries: HashMap<String, (T, Instant)>,
}

impl<T> Expiring<T> {
    fn new() -> Self {
        Expiring {
            entries: HashMap::new(),
        }
    }

    fn put(&mut self, key: String, value: T, ttl: Duration) -> bool {
        let now = Instant::now();
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= MAX_ENTRIES {
                return false;
            }
        }
        self.entries.insert(key, (value, now + ttl));
        true
    }

    /// Takes the value out (single use), if it has not expired.
    fn take(&mut self, key: &str) -> Option<T> {
        let (value, until) = self.entries.remove(key)?;
        (until > Instant::now()).then_some(value)
    }
}

/// The short-lived state of sign-ins, in memory (see the crate documentation).
pub struct Sessions {
    logins: Mutex<Expiring<PendingLogin>>,
    signed_in: Mutex<Expiring<SignedIn>>,
    codes: Mutex<Expiring<IssuedCode>>,
    launches: Mutex<Expiring<Launch>>,
    /// (provider, user) to the `person_roleid` confirmed.
    roles: Mutex<HashMap<(String, String), String>>,
    /// Refresh token families revoked after a reuse, until their absolute expiry.
    revoked: Mutex<HashMap<String, i64>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions {
            logins: Mutex::new(Expiring::new()),
            signed_in: Mutex::new(Expiring::new()),
            codes: Mutex::new(Expiring::new()),
            launches: Mutex::new(Expiring::new()),
            roles: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a pending login under a new state; `None` when full.
    pub fn start_login(&self, login: PendingLogin) -> Option<String> {
        let state = random_token();
        lock(&self.logins)
            .put(state.clone(), login, Duration::from_secs(LOGIN_SECONDS))
            .then_some(state)
    }

    pub fn finish_login(&self, state: &str) -> Option<PendingLogin> {
        lock(&self.logins).take(state)
    }

    /// Keeps a signed-in user awaiting a choice under a new session id; `None` when full.
    pub fn await_choice(&self, signed_in: SignedIn) -> Option<String> {
        let id = random_token();
        lock(&self.signed_in)
            .put(id.clone(), signed_in, Duration::from_secs(LOGIN_SECONDS))
            .then_some(id)
    }

    pub fn take_choice(&self, id: &str) -> Option<SignedIn> {
        lock(&self.signed_in).take(id)
    }

    /// Issues an authorization code; `None` when full.
    pub fn issue_code(&self, code: IssuedCode) -> Option<String> {
        let id = random_token();
        lock(&self.codes)
            .put(id.clone(), code, Duration::from_secs(CODE_SECONDS))
            .then_some(id)
    }

    /// Redeems a code: single use, even when the redemption then fails.
    pub fn redeem_code(&self, code: &str) -> Option<IssuedCode> {
        lock(&self.codes).take(code)
    }

    /// Registers an EHR launch; `None` when full.
    pub fn register_launch(&self, launch: Launch) -> Option<String> {
        let id = random_token();
        lock(&self.launches)
            .put(id.clone(), launch, Duration::from_secs(LAUNCH_SECONDS))
            .then_some(id)
    }

    /// Uses a launch: single use.
    pub fn use_launch(&self, id: &str) -> Option<Launch> {
        lock(&self.launches).take(id)
    }

    pub fn confirmed_role(&self, provider: &str, user: &str) -> Option<String> {
        lock(&self.roles)
            .get(&(provider.to_owned(), user.to_owned()))
            .cloned()
    }

    pub fn confirm_role(&self, provider: &str, user: &str, role: &str) {
        let mut roles = lock(&self.roles);
        if roles.len() >= MAX_ENTRIES {
            roles.clear();
        }
        roles.insert((provider.to_owned(), user.to_owned()), role.to_owned());
    }

    /// Revokes a refresh token family (a used refresh token was presented again).
    pub fn revoke_family(&self, family: &str, until: i64, now: i64) {
        let mut revoked = lock(&self.revoked);
        revoked.retain(|_, until| *until > now);
        revoked.insert(family.to_owned(), until);
    }

    pub fn family_revoked(&self, family: &str) -> bool {
        lock(&self.revoked).contains_key(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            patient: "9990000018".into(),
            user: "gp-asha".into(),
            host: "host".into(),
        }
    }

    #[test]
    fn launches_and_codes_are_single_use() {
        let s = Sessions::new();
        let id = s.register_launch(launch()).unwrap_or_default();
        assert_eq!(s.use_launch(&id), Some(launch()));
        assert_eq!(s.use_launch(&id), None);
        assert_eq!(s.use_launch("made-up"), None);
    }

    #[test]
    fn random_tokens_differ_and_are_url_safe() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn a_revoked_family_stays_revoked_until_its_expiry() {
        let s = Sessions::new();
        s.revoke_family("f1", 200, 100);
        assert!(s.family_revoked("f1"));
        s.revoke_family("f2", 400, 300);
        assert!(!s.family_revoked("f1"));
        assert!(s.family_revoked("f2"));
    }
}
