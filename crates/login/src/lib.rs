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
//!   each single use with its own expiry; plus the role each user confirmed and the refresh
//!   token families revoked after a reuse. It is held in the store (`scr_store::sign_in`), so a
//!   restart or another instance on the same store carries every step on, and never revives a
//!   spent code or a revoked family. Sign-ins in progress are capped per client address.
//!
//! Nothing here logs a token, a code or a claim value.

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
#[derive(Clone, serde::Serialize, serde::Deserialize)]
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

/// [`SignedIn`] as it is stored: the verified id token's claims, from which the caller is
/// built again exactly as at sign-in.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSignedIn {
    request: AuthorizeRequest,
    launch: Option<Launch>,
    issuer: String,
    subject: String,
    token_id: String,
    expires_at: i64,
    claims: Map<String, Value>,
    role: Option<String>,
}

impl StoredSignedIn {
    fn of(s: &SignedIn) -> StoredSignedIn {
        StoredSignedIn {
            request: s.request.clone(),
            launch: s.launch.clone(),
            issuer: s.caller.issuer.clone(),
            subject: s.caller.subject.clone(),
            token_id: s.caller.token_id.clone(),
            expires_at: s.caller.expires_at,
            claims: s.claims.clone(),
            role: s.role.clone(),
        }
    }

    fn signed_in(self) -> Result<SignedIn, SessionError> {
        let mut claims = self.claims.clone();
        claims.insert("scope".to_owned(), Value::String("openid".to_owned()));
        let caller = Caller::from_claims(scr_auth::jwt::VerifiedClaims {
            issuer: self.issuer,
            subject: self.subject,
            token_id: self.token_id,
            expires_at: self.expires_at,
            issued_at: 0,
            claims,
        })
        .map_err(|_| SessionError::Corrupt)?;
        Ok(SignedIn {
            request: self.request,
            launch: self.launch,
            caller,
            claims: self.claims,
            role: self.role,
        })
    }
}

/// An authorization code's grant, for the app that asked. (No `Debug`: it holds claims.)
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct IssuedCode {
    pub grant: AppGrant,
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// An EHR launch registered by a host system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
pub const LOGIN_SECONDS: i64 = 600;
pub const CODE_SECONDS: i64 = 60;
pub const LAUNCH_SECONDS: i64 = 300;
/// How long a confirmed role is remembered (the user confirms again after it).
pub const ROLE_SECONDS: i64 = 90 * 24 * 3600;

/// Why sign-in state could not be kept or read: the user is told to try again shortly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("the sign-in state could not be read or written")]
    Store {
        #[from]
        source: scr_store::StoreError,
    },
    #[error("stored sign-in state could not be read back")]
    Corrupt,
    #[error("the sign-in state task did not finish")]
    Task,
}

/// The state of sign-ins, in the store (see the crate documentation): every step is single
/// use and expires; nothing is held in this process, so a restart or another instance on the
/// same store carries on, and a revocation holds everywhere.
#[derive(Clone)]
pub struct Sessions {
    store: scr_store::Store,
    /// The most sign-ins one client address may have on their way to the login provider.
    logins_per_address: i64,
}

use scr_store::sign_in::{self as stored, Kind, Put};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, SessionError> {
    serde_json::to_string(value).map_err(|_| SessionError::Corrupt)
}

fn decode<T: serde::de::DeserializeOwned>(body: Option<String>) -> Result<Option<T>, SessionError> {
    body.map(|b| serde_json::from_str(&b).map_err(|_| SessionError::Corrupt))
        .transpose()
}

impl Sessions {
    /// `logins_per_address`: the most sign-ins one address may have in progress at once.
    pub fn new(store: scr_store::Store, logins_per_address: u32) -> Sessions {
        Sessions {
            store,
            logins_per_address: i64::from(logins_per_address.max(1)),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        mut work: impl FnMut(&mut scr_store::DbConnection) -> Result<T, scr_store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, SessionError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.conn()?;
            scr_store::retry_busy(|| work(&mut conn))
        })
        .await
        .map_err(|_| SessionError::Task)?
        .map_err(SessionError::from)
    }

    async fn put(
        &self,
        kind: Kind,
        id: String,
        client: String,
        body: String,
        ttl: i64,
        cap: Option<i64>,
    ) -> Result<bool, SessionError> {
        let t = now();
        let put = self
            .run(move |c| stored::put(c, kind, &id, &client, &body, t + ttl, t, cap))
            .await?;
        Ok(put == Put::Kept)
    }

    async fn take(&self, kind: Kind, id: &str) -> Result<Option<String>, SessionError> {
        let id = id.to_owned();
        let t = now();
        self.run(move |c| stored::take(c, kind, &id, t)).await
    }

    async fn get(&self, kind: Kind, id: String) -> Result<Option<String>, SessionError> {
        let t = now();
        self.run(move |c| stored::get(c, kind, &id, t)).await
    }

    /// Keeps a pending login under a new state; `None` when `client` (the user agent's
    /// address) already has as many sign-ins in progress as it may.
    pub async fn start_login(
        &self,
        login: &PendingLogin,
        client: &str,
    ) -> Result<Option<String>, SessionError> {
        let state = random_token();
        let cap = Some(self.logins_per_address);
        let kept = self
            .put(
                Kind::Login,
                state.clone(),
                client.to_owned(),
                encode(login)?,
                LOGIN_SECONDS,
                cap,
            )
            .await?;
        Ok(kept.then_some(state))
    }

    pub async fn finish_login(&self, state: &str) -> Result<Option<PendingLogin>, SessionError> {
        decode(self.take(Kind::Login, state).await?)
    }

    /// Keeps a signed-in user awaiting a choice under a new session id.
    pub async fn await_choice(&self, signed_in: &SignedIn) -> Result<String, SessionError> {
        let id = random_token();
        let body = encode(&StoredSignedIn::of(signed_in))?;
        self.put(
            Kind::Choice,
            id.clone(),
            String::new(),
            body,
            LOGIN_SECONDS,
            None,
        )
        .await?;
        Ok(id)
    }

    pub async fn take_choice(&self, id: &str) -> Result<Option<SignedIn>, SessionError> {
        decode::<StoredSignedIn>(self.take(Kind::Choice, id).await?)?
            .map(StoredSignedIn::signed_in)
            .transpose()
    }

    /// Issues an authorization code.
    pub async fn issue_code(&self, code: &IssuedCode) -> Result<String, SessionError> {
        let id = random_token();
        self.put(
            Kind::Code,
            id.clone(),
            String::new(),
            encode(code)?,
            CODE_SECONDS,
            None,
        )
        .await?;
        Ok(id)
    }

    /// Redeems a code: single use, even when the redemption then fails.
    pub async fn redeem_code(&self, code: &str) -> Result<Option<IssuedCode>, SessionError> {
        decode(self.take(Kind::Code, code).await?)
    }

    /// Registers an EHR launch.
    pub async fn register_launch(&self, launch: &Launch) -> Result<String, SessionError> {
        let id = random_token();
        let body = encode(launch)?;
        self.put(
            Kind::Launch,
            id.clone(),
            String::new(),
            body,
            LAUNCH_SECONDS,
            None,
        )
        .await?;
        Ok(id)
    }

    /// Uses a launch: single use.
    pub async fn use_launch(&self, id: &str) -> Result<Option<Launch>, SessionError> {
        decode(self.take(Kind::Launch, id).await?)
    }

    fn role_key(provider: &str, user: &str) -> String {
        format!("{provider}\u{0}{user}")
    }

    pub async fn confirmed_role(
        &self,
        provider: &str,
        user: &str,
    ) -> Result<Option<String>, SessionError> {
        self.get(Kind::Role, Self::role_key(provider, user)).await
    }

    pub async fn confirm_role(
        &self,
        provider: &str,
        user: &str,
        role: &str,
    ) -> Result<(), SessionError> {
        let key = Self::role_key(provider, user);
        self.put(
            Kind::Role,
            key,
            String::new(),
            role.to_owned(),
            ROLE_SECONDS,
            None,
        )
        .await?;
        Ok(())
    }

    /// Revokes a refresh token family (a used refresh token was presented again) until its
    /// absolute expiry, for every instance and across restarts.
    pub async fn revoke_family(&self, family: &str, until: i64) -> Result<(), SessionError> {
        let ttl = (until - now()).max(1);
        self.put(
            Kind::Revoked,
            family.to_owned(),
            String::new(),
            String::new(),
            ttl,
            None,
        )
        .await?;
        Ok(())
    }

    pub async fn family_revoked(&self, family: &str) -> Result<bool, SessionError> {
        Ok(self.get(Kind::Revoked, family.to_owned()).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scr_store::test_support::test_databases;

    fn launch() -> Launch {
        Launch {
            patient: "9990000018".into(),
            user: "gp-asha".into(),
            host: "host".into(),
        }
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

    #[actix_rt::test]
    async fn launches_are_single_use_and_survive_a_new_sessions_on_the_same_store(
    ) -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("login_launch")? {
            let store = scr_store::Store::open(&db.url, 2)?;
            let id = Sessions::new(store.clone(), 5)
                .register_launch(&launch())
                .await?;
            // Another instance (or this one restarted) on the same store.
            let other = Sessions::new(scr_store::Store::open(&db.url, 2)?, 5);
            assert_eq!(other.use_launch(&id).await?, Some(launch()), "{}", db.label);
            assert_eq!(other.use_launch(&id).await?, None, "{}", db.label);
            assert_eq!(other.use_launch("made-up").await?, None);
        }
        Ok(())
    }

    #[actix_rt::test]
    async fn a_revoked_family_stays_revoked_after_a_restart_until_its_expiry(
    ) -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("login_revoked")? {
            let s = Sessions::new(scr_store::Store::open(&db.url, 2)?, 5);
            s.revoke_family("f1", now() + 3600).await?;
            s.revoke_family("f2", now() - 1).await?;
            let restarted = Sessions::new(scr_store::Store::open(&db.url, 2)?, 5);
            assert!(restarted.family_revoked("f1").await?, "{}", db.label);
            assert!(!restarted.family_revoked("f3").await?, "{}", db.label);
            restarted.confirm_role("dev", "gp-asha", "r2").await?;
            assert_eq!(
                s.confirmed_role("dev", "gp-asha").await?.as_deref(),
                Some("r2")
            );
        }
        Ok(())
    }
}
