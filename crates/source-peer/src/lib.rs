//! A neighbouring shared care record as a live source (issue 12, `docs/federation.md`): any FHIR
//! R4 server read over REST, for one patient at a time, on behalf of one end user.
//!
//! With `auth = "exchange"` (a neighbouring `scr`), a fetch first exchanges a token at the
//! neighbour's token endpoint (RFC 8693): our client assertion is the actor, a short-lived signed
//! statement of the end user's context is the subject, so the neighbour applies its own rules to
//! that person and audits the access under their name. The token is reused for the same user,
//! context and patient until shortly before it expires; every fetch names our request in
//! `X-Request-Id`. `client_credentials` (a system token, cached until shortly before it expires)
//! and `none` read plain FHIR servers.
//!
//! What comes back is labelled, never trusted: each record keeps the neighbour's `meta.source`
//! and ODS tags and gains our source tag with the neighbour's name; its holder is its ODS tag (or
//! the neighbour itself when it has none), and a record coded in a sensitive value set or marked
//! restricted is labelled sensitive, so the asking side's policy decides on it like on any other
//! record. Nothing here decides who may see what.

mod translate;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use scr_fhir::systems;
use scr_source::{PatientRecords, SourceError, Wanted};

pub use translate::{translate, Sensitive};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Subject and actor tokens live this long: long enough for one exchange, never reusable later.
const ASSERTION_SECONDS: i64 = 120;
/// The most pages of one search followed, and the most entries kept: a neighbour cannot make us
/// hold an unbounded answer.
const MAX_PAGES: usize = 20;
const MAX_ENTRIES: usize = 5_000;
/// The largest answer body read from a neighbour.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// A token is renewed this long before it expires, so a request never starts with a dying one.
const RENEW_EARLY_SECONDS: i64 = 30;
/// The most exchanged tokens kept for reuse (one per user, context and patient).
const MAX_EXCHANGED_TOKENS: usize = 10_000;

/// How we authenticate at a neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// No token: an open FHIR server (tests, a neighbour behind a private network).
    None,
    /// SMART Backend Services: a system token for the whole facade, cached.
    ClientCredentials(ClientKey),
    /// RFC 8693: a token per end user and patient.
    Exchange(ClientKey),
}

/// Our client registration at a neighbour's token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub token_url: String,
    pub client_id: String,
    /// PEM private key (ES384 or RS384).
    pub key_pem: Vec<u8>,
    pub key_id: String,
    /// `ES384` or `RS384`, from the key's type.
    pub alg: &'static str,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The label on everything from this neighbour, and the prefix of its records' ids here.
    pub name: String,
    /// The neighbour's FHIR base URL, without a trailing `/`.
    pub base_url: String,
    pub auth: PeerAuth,
    /// The whole fetch, token included.
    pub timeout: Duration,
    /// Requests in flight to this neighbour at once.
    pub max_concurrent: usize,
    /// PEM trust anchors for the neighbour's TLS, besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// Who is asking, and why: what travels to the neighbour in the subject token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asking {
    pub user_id: String,
    pub name: Option<String>,
    pub org_code: String,
    pub role_code: String,
    /// `TREAT`, or the break-glass purpose (`ETREAT`, `BTG`).
    pub purpose_of_use: String,
    /// The written reason, under break glass.
    pub reason: Option<String>,
    /// The rule (`R-LR-2`) and organisation that gave the caller their relationship here.
    pub relationship: Option<(String, String)>,
    /// Ours, so both audit trails can be joined: in the subject token of an exchange, and in
    /// `X-Request-Id` of every request.
    pub request_id: String,
}

/// A bearer token for one fetch, and whether it was reused from an earlier exchange.
struct Bearer {
    token: Option<String>,
    reused: bool,
}

/// How one fetch calls the neighbour: its token and our request id.
struct Call<'a> {
    token: Option<&'a str>,
    request_id: &'a str,
}

/// Tokens exchanged for a user's context (everything of [`Asking`] but the request id) and a
/// patient, with when to stop using them (unix seconds).
#[derive(Default)]
struct Exchanged(Mutex<HashMap<(Asking, String), (String, i64)>>);

impl Exchanged {
    fn key(asking: &Asking, nhs: &str) -> (Asking, String) {
        let context = Asking {
            request_id: String::new(),
            ..asking.clone()
        };
        (context, nhs.to_owned())
    }

    fn get(&self, asking: &Asking, nhs: &str, now: i64) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::key(asking, nhs))
            .filter(|(_, until)| *until > now)
            .map(|(token, _)| token.clone())
    }

    /// Keeps a token until `until`; when full of live tokens, keeps none (the next fetch
    /// exchanges again).
    fn keep(&self, asking: &Asking, nhs: &str, token: &str, until: i64, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_EXCHANGED_TOKENS {
            map.retain(|_, (_, u)| *u > now);
        }
        if map.len() < MAX_EXCHANGED_TOKENS {
            map.insert(Self::key(asking, nhs), (token.to_owned(), until));
        }
    }

    fn forget(&self, asking: &Asking, nhs: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::key(asking, nhs));
    }
}

/// What a neighbour answered for one patient.
#[derive(Debug, Default)]
pub struct PeerAnswer {
    pub records: PatientRecords,
    /// The neighbour's own warnings (an objection there, withheld items, a source of theirs
    /// down), as text for our Bundle.
    pub warnings: Vec<String>,
}

pub struct PeerSource {
    config: PeerConfig,
    sensitive: Sensitive,
    client: reqwest::Client,
    in_flight: Semaphore,
    /// `client_credentials`: the token and when to stop using it (unix seconds).
    system_token: Mutex<Option<(String, i64)>>,
    /// `exchange`: the tokens of recent exchanges, for reuse.
    exchanged: Exchanged,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerConfigError {
    #[error("sources.peer {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl PeerSource {
    pub fn new(config: PeerConfig, sensitive: Sensitive) -> Result<PeerSource, PeerConfigError> {
        let invalid = |reason: String| PeerConfigError::Invalid {
            name: config.name.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.max_concurrent)
            // A token never follows a redirect to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scr/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("ca_file is not PEM certificates: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("the HTTP client could not be built: {e}")))?;
        Ok(PeerSource {
            in_flight: Semaphore::new(config.max_concurrent.max(1)),
            config,
            sensitive,
            client,
            system_token: Mutex::new(None),
            exchanged: Exchanged::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn description(&self) -> String {
        format!("neighbouring record {}", self.config.name)
    }

    /// Everything the neighbour lets `asking` see of `nhs`'s record that `wanted` names, and its
    /// Patient. Bounded by the configured timeout and concurrency; a neighbour that does not
    /// know the patient answers nothing.
    pub async fn fetch(
        &self,
        asking: &Asking,
        nhs: &str,
        wanted: Wanted,
    ) -> Result<PeerAnswer, SourceError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.fetch_unbounded(asking, nhs, wanted)).await {
            Ok(answer) => answer,
            Err(_) => Err(SourceError::Timeout {
                source_name: self.config.name.clone(),
            }),
        }
    }

    async fn fetch_unbounded(
        &self,
        asking: &Asking,
        nhs: &str,
        wanted: Wanted,
    ) -> Result<PeerAnswer, SourceError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| self.unavailable(e))?;
        let bearer = self.token(asking, nhs).await?;
        let call = Call {
            token: bearer.token.as_deref(),
            request_id: &asking.request_id,
        };
        match self.read(&call, nhs, wanted).await {
            // A reused token the neighbour no longer accepts (it restarted with another key,
            // say): forgotten, and the fetch made once more with a fresh token.
            Err(SourceError::Refused { status: 401, .. }) if bearer.reused => {
                self.forget_token(asking, nhs);
                let fresh = self.token(asking, nhs).await?;
                let call = Call {
                    token: fresh.token.as_deref(),
                    ..call
                };
                self.read(&call, nhs, wanted).await
            }
            answer => answer,
        }
    }

    /// The patient's records at the neighbour, with this call's token.
    async fn read(
        &self,
        call: &Call<'_>,
        nhs: &str,
        wanted: Wanted,
    ) -> Result<PeerAnswer, SourceError> {
        let base = &self.config.base_url;
        let mut resources = Vec::new();
        let mut warnings = Vec::new();
        // A neighbouring scr names patients by NHS number; any other server is asked who the
        // NHS number is first.
        let patient_id = match self.config.auth {
            PeerAuth::Exchange(_) => nhs.to_owned(),
            _ => {
                let url = format!(
                    "{base}/Patient?identifier={}",
                    encode(&format!("{}|{nhs}", systems::NHS_NUMBER))
                );
                let found = self.search(&url, call, &mut warnings).await?;
                let Some(patient) = found
                    .into_iter()
                    .find(|r| r["resourceType"] == "Patient" && r["id"].is_string())
                else {
                    return Ok(PeerAnswer {
                        warnings,
                        ..PeerAnswer::default()
                    });
                };
                let id = patient["id"].as_str().unwrap_or_default().to_owned();
                resources.push(patient);
                id
            }
        };
        let pid = encode(&patient_id);
        let more = match wanted {
            Wanted::Everything => Some(format!("{base}/Patient/{pid}/$everything")),
            Wanted::OfType(t) => Some(format!("{base}/{t}?patient={pid}")),
            Wanted::Context => None,
        };
        let need_patient = resources.is_empty();
        if need_patient && !matches!(wanted, Wanted::Everything) {
            match self.get(&format!("{base}/Patient/{pid}"), call).await? {
                Some(patient) => resources.push(patient),
                None => return Ok(PeerAnswer::default()),
            }
        }
        if let Some(url) = more {
            resources.extend(self.search(&url, call, &mut warnings).await?);
        }
        let records = translate(
            &self.config.name,
            nhs,
            &patient_id,
            resources,
            &self.sensitive,
        );
        Ok(PeerAnswer { records, warnings })
    }

    /// The bearer token for this fetch, if the neighbour wants one.
    async fn token(&self, asking: &Asking, nhs: &str) -> Result<Bearer, SourceError> {
        let now = scr_fhir::build::unix_now();
        let token = match &self.config.auth {
            PeerAuth::None => None,
            PeerAuth::ClientCredentials(key) => {
                if let Some((token, until)) = self.cached_system_token() {
                    if until > now {
                        return Ok(Bearer {
                            token: Some(token),
                            reused: true,
                        });
                    }
                }
                let form = vec![
                    ("grant_type", "client_credentials".to_owned()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                    ),
                    ("client_assertion", self.assertion(key, now)?),
                    ("scope", "system/*.rs".to_owned()),
                ];
                let (token, expires_in) = self.post_token(&key.token_url, &form).await?;
                let until = now + (expires_in - RENEW_EARLY_SECONDS).max(0);
                *self.system_token.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((token.clone(), until));
                Some(token)
            }
            PeerAuth::Exchange(key) => {
                if let Some(token) = self.exchanged.get(asking, nhs, now) {
                    return Ok(Bearer {
                        token: Some(token),
                        reused: true,
                    });
                }
                let subject = subject_token(key, asking, nhs, now)
                    .map_err(|e| self.unavailable(format!("the subject token: {e}")))?;
                let form = vec![
                    ("grant_type", TOKEN_EXCHANGE.to_owned()),
                    ("subject_token", subject),
                    ("subject_token_type", JWT_TOKEN_TYPE.to_owned()),
                    ("actor_token", self.assertion(key, now)?),
                    ("actor_token_type", JWT_TOKEN_TYPE.to_owned()),
                    ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
                    ("scope", "user/*.rs".to_owned()),
                ];
                let (token, expires_in) = self.post_token(&key.token_url, &form).await?;
                let until = now + (expires_in - RENEW_EARLY_SECONDS).max(0);
                self.exchanged.keep(asking, nhs, &token, until, now);
                Some(token)
            }
        };
        Ok(Bearer {
            token,
            reused: false,
        })
    }

    /// Stops reusing the token this fetch used.
    fn forget_token(&self, asking: &Asking, nhs: &str) {
        match &self.config.auth {
            PeerAuth::None => {}
            PeerAuth::ClientCredentials(_) => {
                *self.system_token.lock().unwrap_or_else(|p| p.into_inner()) = None
            }
            PeerAuth::Exchange(_) => self.exchanged.forget(asking, nhs),
        }
    }

    fn cached_system_token(&self) -> Option<(String, i64)> {
        self.system_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn assertion(&self, key: &ClientKey, now: i64) -> Result<String, SourceError> {
        scr_auth::dev::client_assertion(
            &key.client_id,
            &key.token_url,
            now,
            ASSERTION_SECONDS,
            &key.key_pem,
            key.alg,
            &key.key_id,
        )
        .map_err(|e| self.unavailable(format!("the client assertion: {e}")))
    }

    /// Posts a token request; the access token and its lifetime in seconds.
    async fn post_token(
        &self,
        url: &str,
        form: &[(&str, String)],
    ) -> Result<(String, i64), SourceError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let status = response.status();
        let answer = self.json(response).await?;
        if !status.is_success() {
            // The OAuth error code only: its description may echo what we sent.
            return Err(self.unavailable(format!(
                "its token endpoint refused us: {status} {}",
                answer["error"].as_str().unwrap_or("(no error code)")
            )));
        }
        let token = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.bad_data("the token response has no access_token"))?;
        Ok((
            token.to_owned(),
            answer["expires_in"].as_i64().unwrap_or(60),
        ))
    }

    /// One resource; `None` for 404 or 410.
    async fn get(&self, url: &str, call: &Call<'_>) -> Result<Option<Value>, SourceError> {
        let response = self.send(url, call).await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        let body = self.json(response).await?;
        if !status.is_success() {
            return Err(self.refused(status, &body));
        }
        Ok(Some(body))
    }

    /// Every resource of a search (or `$everything`), following `next` links within bounds;
    /// OperationOutcome warnings go to `warnings`.
    async fn search(
        &self,
        first: &str,
        call: &Call<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Value>, SourceError> {
        let mut out = Vec::new();
        let mut url = Some(first.to_owned());
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            let response = self.send(&u, call).await?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(out);
            }
            let bundle = self.json(response).await?;
            if !status.is_success() {
                return Err(self.refused(status, &bundle));
            }
            if bundle["resourceType"] != "Bundle" {
                return Err(self.bad_data("a search did not answer a Bundle"));
            }
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let resource = &entry["resource"];
                if resource["resourceType"] == "OperationOutcome" {
                    warnings.extend(outcome_texts(resource));
                } else if out.len() < MAX_ENTRIES {
                    out.push(resource.clone());
                }
            }
            url = next_link(&bundle, &self.config.base_url).filter(|_| pages < MAX_PAGES);
        }
        Ok(out)
    }

    async fn send(&self, url: &str, call: &Call<'_>) -> Result<reqwest::Response, SourceError> {
        let mut request = self
            .client
            .get(url)
            .header("Accept", "application/fhir+json")
            .header("X-Request-Id", call.request_id);
        if let Some(t) = call.token {
            request = request.bearer_auth(t);
        }
        request.send().await.map_err(|e| self.failed(e))
    }

    /// The body as JSON, refusing more than [`MAX_BODY_BYTES`].
    async fn json(&self, mut response: reqwest::Response) -> Result<Value, SourceError> {
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(self.bad_data("the answer is too large"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(self.bad_data("the answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| self.bad_data("the answer is not JSON"))
    }

    fn failed(&self, e: reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout {
                source_name: self.config.name.clone(),
            }
        } else {
            // Without the URL: it carries the NHS number.
            self.unavailable(e.without_url())
        }
    }

    fn refused(&self, status: reqwest::StatusCode, body: &Value) -> SourceError {
        let why = outcome_texts(body).into_iter().next().unwrap_or_default();
        SourceError::Refused {
            source_name: self.config.name.clone(),
            status: status.as_u16(),
            reason: why,
        }
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.config.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn bad_data(&self, detail: &str) -> SourceError {
        SourceError::BadData {
            source_name: self.config.name.clone(),
            detail: detail.to_owned(),
        }
    }
}

/// The end user's context, signed with our key, for the neighbour's token endpoint.
fn subject_token(
    key: &ClientKey,
    asking: &Asking,
    nhs: &str,
    now: i64,
) -> Result<String, scr_auth::AuthError> {
    let mut claims = json!({
        "iss": key.client_id, "aud": key.token_url,
        "iat": now, "exp": now + ASSERTION_SECONDS, "jti": scr_auth::dev::new_jti(),
        "sub": asking.user_id,
        "org_code": asking.org_code,
        "role_code": asking.role_code,
        "purpose_of_use": asking.purpose_of_use,
        "patient": nhs,
        "request_id": asking.request_id,
    });
    if let Some(name) = &asking.name {
        claims["name"] = name.as_str().into();
    }
    if let Some(reason) = &asking.reason {
        claims["reason"] = reason.as_str().into();
    }
    if let Some((rule, org)) = &asking.relationship {
        claims["relationship"] = json!({ "rule": rule, "org": org });
    }
    scr_auth::dev::sign(&claims, key.alg, &key.key_pem, &key.key_id)
}

/// The texts of an OperationOutcome's issues.
fn outcome_texts(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["diagnostics"]
                .as_str()
                .or(i["details"]["text"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// The Bundle's `next` link, only when it stays on the neighbour's own base URL: a neighbour
/// cannot send our token elsewhere.
fn next_link(bundle: &Value, base: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .filter(|u| u.starts_with(&format!("{base}/")) || u.starts_with(&format!("{base}?")))
        .map(str::to_owned)
}

/// Percent-encodes a query or form value (`application/x-www-form-urlencoded`).
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_that_leave_the_neighbour_are_not_followed() {
        let base = "https://a.example/fhir";
        let bundle = |url: &str| json!({"link": [{"relation": "next", "url": url}]});
        assert_eq!(
            next_link(&bundle("https://a.example/fhir/Observation?page=2"), base).as_deref(),
            Some("https://a.example/fhir/Observation?page=2")
        );
        assert_eq!(
            next_link(&bundle("https://evil.example/fhir/x"), base),
            None
        );
        assert_eq!(
            next_link(&bundle("https://a.example/fhirx/Observation"), base),
            None
        );
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(
            encode("https://fhir.nhs.uk/Id/nhs-number|9990000018"),
            "https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018"
        );
    }

    fn asking(user: &str, purpose: &str, request_id: &str) -> Asking {
        Asking {
            user_id: user.into(),
            name: Some("Dr Test".into()),
            org_code: "RXK".into(),
            role_code: "R8000".into(),
            purpose_of_use: purpose.into(),
            reason: None,
            relationship: Some(("R-LR-2".into(), "RXK".into())),
            request_id: request_id.into(),
        }
    }

    #[test]
    fn r_fed_5_an_exchanged_token_is_reused_only_for_the_same_user_context_and_patient() {
        let kept = Exchanged::default();
        let first = asking("u1", "TREAT", "req-1");
        kept.keep(&first, "9990000018", "token-1", 1_270, 1_000);
        // Another request of the same user, context and patient: reused.
        let again = asking("u1", "TREAT", "req-2");
        assert_eq!(
            kept.get(&again, "9990000018", 1_100).as_deref(),
            Some("token-1")
        );
        // Anything else of the context differs: a new exchange.
        assert_eq!(kept.get(&again, "9990000026", 1_100), None, "patient");
        assert_eq!(
            kept.get(&asking("u2", "TREAT", "req-3"), "9990000018", 1_100),
            None,
            "user"
        );
        let glass = Asking {
            reason: Some("unconscious".into()),
            ..asking("u1", "ETREAT", "req-4")
        };
        assert_eq!(kept.get(&glass, "9990000018", 1_100), None, "purpose");
        let elsewhere = Asking {
            relationship: None,
            ..asking("u1", "TREAT", "req-5")
        };
        assert_eq!(
            kept.get(&elsewhere, "9990000018", 1_100),
            None,
            "relationship"
        );
        // Not at or after the time to renew it, and not once forgotten.
        assert_eq!(kept.get(&again, "9990000018", 1_270), None, "expired");
        kept.forget(&again, "9990000018");
        assert_eq!(kept.get(&again, "9990000018", 1_100), None, "forgotten");
    }

    #[test]
    fn exchanged_tokens_kept_are_bounded_and_expired_ones_make_room() {
        let kept = Exchanged::default();
        for i in 0..MAX_EXCHANGED_TOKENS {
            kept.keep(
                &asking(&format!("u{i}"), "TREAT", "r"),
                "9990000018",
                "t",
                1_100,
                1_000,
            );
        }
        let late = asking("late", "TREAT", "r");
        kept.keep(&late, "9990000018", "t", 1_100, 1_000);
        assert_eq!(kept.get(&late, "9990000018", 1_050), None, "full: not kept");
        // Once the others have expired, a new one fits.
        kept.keep(&late, "9990000018", "t", 1_400, 1_200);
        assert_eq!(kept.get(&late, "9990000018", 1_300).as_deref(), Some("t"));
        assert_eq!(kept.0.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
