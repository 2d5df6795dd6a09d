//! SMART App Launch 2.x for registered apps: the authorization server's decisions, with no I/O
//! (docs/smart-apps.md).
//!
//! - [`authorize_request`] checks an `authorize` request against the registered apps: an unknown
//!   client or a redirect URI that is not registered is never redirected to (the user sees the
//!   error); every other error goes back to the app's redirect URI (RFC 6749 §4.1.2.1). PKCE with
//!   `S256` is required of every app (RFC 7636, SMART 2.x).
//! - [`pkce_matches`] checks a `code_verifier` against the `code_challenge`.
//! - [`grant_scopes`] grants what was asked, intersected with what the app may ask for, the
//!   contexts the user's kind allows and what the user's profile may ever read or write.
//! - [`AppGrant`] is what an authorization code or a refresh token stands for; the token service
//!   mints access, refresh and id tokens from it ([`crate::token_endpoint::TokenService::mint_app`]).
//!
//! Signing a user in at the upstream OpenID Connect provider, and the short-lived state of a
//! sign-in, are the `scr-login` crate's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::scopes::{Interaction, Scope, ScopeContext};
use crate::CallerKind;

/// An app registered in configuration (`[[auth.apps]]`).
#[derive(Debug, Clone)]
pub struct RegisteredApp {
    pub client_id: String,
    /// A confidential app's secret (`client_secret_basic` or `client_secret_post`); `None` for a
    /// public app (a browser app), which proves itself by PKCE alone.
    pub secret: Option<String>,
    /// Exact redirect URIs; nothing else is ever redirected to.
    pub redirect_uris: Vec<String>,
    /// The most it may ask for.
    pub scopes: Vec<String>,
    /// The name of the `[[auth.login]]` provider its users sign in at.
    pub login: String,
}

/// Scopes that are not about resources, and that an app may be granted when registered for them.
pub const OPENID: &str = "openid";
pub const FHIR_USER: &str = "fhirUser";
pub const LAUNCH: &str = "launch";
pub const LAUNCH_PATIENT: &str = "launch/patient";
pub const ONLINE_ACCESS: &str = "online_access";
pub const OFFLINE_ACCESS: &str = "offline_access";
const NON_RESOURCE: [&str; 7] = [
    OPENID,
    FHIR_USER,
    "profile",
    LAUNCH,
    LAUNCH_PATIENT,
    ONLINE_ACCESS,
    OFFLINE_ACCESS,
];

/// A checked `authorize` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes asked for, in order, without duplicates.
    pub scope: Vec<String>,
    pub state: String,
    pub code_challenge: String,
    /// The EHR launch id the host system registered, if any.
    pub launch: Option<String>,
    /// The app's OpenID Connect `nonce`, returned in the id token (OIDC Core 3.1.2.1).
    #[serde(default)]
    pub nonce: Option<String>,
}

impl AuthorizeRequest {
    pub fn asks(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

/// Why an `authorize` request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: shown to the user, never redirected to.
    NoRedirect(&'static str),
    /// Sent back to the app: `redirect_uri?error=..&error_description=..&state=..`.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

impl AuthorizeError {
    /// The URL to send the user agent to, for errors the app may hear of.
    pub fn redirect_url(&self) -> Option<String> {
        match self {
            AuthorizeError::NoRedirect(_) => None,
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![("error", *error), ("error_description", *description)];
                if let Some(state) = state {
                    pairs.push(("state", state.as_str()));
                }
                Some(with_query(redirect_uri, &pairs))
            }
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            AuthorizeError::NoRedirect(d) => d,
            AuthorizeError::Redirect { description, .. } => description,
        }
    }
}

/// `url` with `pairs` appended to its query, each percent-encoded.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = url.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        out.push(sep);
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
        sep = '&';
    }
    out
}

/// Escapes text for HTML content and attribute values (the sign-in pages of this server and
/// of the development identity provider).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const MAX_PARAM: usize = 2048;

/// Checks an `authorize` request (its query pairs) against the registered apps. `audience` is
/// the FHIR base URL the app must name as `aud`.
pub fn authorize_request(
    pairs: &[(String, String)],
    apps: &[RegisteredApp],
    audience: &str,
) -> Result<AuthorizeRequest, AuthorizeError> {
    let field = |name: &str| -> Result<Option<&str>, ()> {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(()),
            (Some(v), None) if v.len() > MAX_PARAM => Err(()),
            (Some(v), None) => Ok(Some(v.as_str())),
            _ => Ok(None),
        }
    };
    let client_id = field("client_id")
        .ok()
        .flatten()
        .ok_or(AuthorizeError::NoRedirect(
            "client_id is missing or repeated",
        ))?;
    let app = apps
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or(AuthorizeError::NoRedirect(
            "this app is not registered here",
        ))?;
    let redirect_uri = field("redirect_uri")
        .ok()
        .flatten()
        .ok_or(AuthorizeError::NoRedirect(
            "redirect_uri is missing or repeated",
        ))?;
    if !app.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(AuthorizeError::NoRedirect(
            "redirect_uri is not one registered for this app",
        ));
    }
    let state = field("state").ok().flatten().map(str::to_owned);
    let back = |error: &'static str, description: &'static str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description,
    };
    let one = |name: &str| {
        field(name).map_err(|_| back("invalid_request", "a parameter is repeated or too long"))
    };
    let Some(state) = one("state")?.map(str::to_owned) else {
        return Err(back("invalid_request", "state is required"));
    };
    match one("response_type")? {
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(back("invalid_request", "response_type is required")),
    }
    if one("code_challenge_method")? != Some("S256") {
        return Err(back(
            "invalid_request",
            "PKCE is required: code_challenge_method must be S256",
        ));
    }
    let code_challenge = one("code_challenge")?
        .filter(|c| c.len() == 43 && c.bytes().all(is_base64url))
        .ok_or(back(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the code verifier",
        ))?
        .to_owned();
    match one("aud")? {
        Some(aud) if aud.trim_end_matches('/') == audience.trim_end_matches('/') => {}
        Some(_) => {
            return Err(back(
                "invalid_request",
                "aud is not this FHIR server's base URL",
            ))
        }
        None => return Err(back("invalid_request", "aud is required")),
    }
    let mut scope: Vec<String> = Vec::new();
    for s in one("scope")?.unwrap_or("").split_whitespace() {
        if s.len() > 200 || scope.len() >= 64 {
            return Err(back("invalid_scope", "too many or too long scopes"));
        }
        if !scope.iter().any(|t| t == s) {
            scope.push(s.to_owned());
        }
    }
    if scope.is_empty() {
        return Err(back("invalid_scope", "scope is required"));
    }
    let nonce = one("nonce")?.map(str::to_owned);
    let launch = match one("launch")? {
        Some(l) if l.len() <= 128 && l.bytes().all(is_base64url) => Some(l.to_owned()),
        Some(_) => return Err(back("invalid_request", "launch is not a launch id")),
        None => None,
    };
    Ok(AuthorizeRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state,
        code_challenge,
        launch,
        nonce,
    })
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time. A
/// verifier outside 43..=128 unreserved characters never matches.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
        return false;
    }
    let digest = openssl::sha::sha256(verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest);
    computed.len() == challenge.len()
        && openssl::memcmp::eq(computed.as_bytes(), challenge.as_bytes())
}

/// The S256 challenge of a verifier (for this server as a client of its login provider, and
/// for tests).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()))
}

/// What the user's profile may ever do (`scr_policy::grantable`): types read, types written.
pub type Grantable<'a> = (&'a [&'a str], &'a [&'a str]);

/// The scopes granted: those asked for, intersected with the app's, kept to the contexts the
/// user's kind allows (patients `patient/`; staff `user/`, and `patient/` when a patient is in
/// context) and narrowed to the types the profile reads or writes (a wildcard becomes one
/// scope per type). `launch` is granted only with an EHR launch, `launch/patient` only when the
/// user chose a patient.
pub fn grant_scopes(
    asked: &[String],
    app: &RegisteredApp,
    kind: CallerKind,
    ehr_launch: bool,
    patient_in_context: bool,
    profile: Grantable<'_>,
) -> Vec<String> {
    let app_allows = |s: &str| app.scopes.iter().any(|a| a == s);
    let mut granted: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !granted.contains(&s) {
            granted.push(s)
        }
    };
    for s in asked {
        if NON_RESOURCE.contains(&s.as_str()) {
            let wanted = match s.as_str() {
                LAUNCH => ehr_launch,
                LAUNCH_PATIENT => patient_in_context && !ehr_launch,
                _ => true,
            };
            if wanted && app_allows(s) {
                push(s.clone());
            }
            continue;
        }
        let Some(scope) = Scope::parse(s) else {
            continue;
        };
        let context_ok = match (kind, scope.context) {
            (CallerKind::Patient, ScopeContext::Patient) => true,
            (CallerKind::Staff, ScopeContext::User) => true,
            (CallerKind::Staff, ScopeContext::Patient) => patient_in_context,
            _ => false,
        };
        if !context_ok {
            continue;
        }
        for allowed in app.scopes.iter().filter_map(|a| Scope::parse(a)) {
            let Some(both) = scope.intersect(&allowed) else {
                continue;
            };
            let (reads, writes) = profile;
            let mut types: Vec<&str> = reads.to_vec();
            types.extend(writes.iter().filter(|w| !reads.contains(w)));
            for t in types {
                let mut interactions = Vec::new();
                if reads.contains(&t) {
                    interactions.extend([Interaction::Read, Interaction::Search]);
                }
                if writes.contains(&t) {
                    interactions.extend([Interaction::Create, Interaction::Update]);
                }
                if let Some(narrow) = both.narrowed(t, &interactions) {
                    push(narrow.to_string());
                }
            }
        }
    }
    granted
}

/// What an authorization code or a refresh token stands for: the app, the signed-in user (the
/// identity claims the access token will carry), the scope granted, the patient in context, and
/// the refresh token family with its absolute expiry. (No `Debug`: it holds identity claims.)
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AppGrant {
    pub client_id: String,
    pub subject: String,
    pub identity: Map<String, Value>,
    pub scope: String,
    /// The patient in context (NHS number): from the EHR launch, the patient picker, or the
    /// patient themselves.
    pub patient: Option<String>,
    pub family: String,
    pub family_expires_at: i64,
    /// The app's OpenID Connect `nonce` from its authorize request, returned in every id token
    /// of this sign-in (OIDC Core 3.1.2.1 and 12.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl AppGrant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split_whitespace().any(|s| s == scope)
    }

    /// Whether a refresh token is issued (SMART: `online_access` or `offline_access`).
    pub fn refreshable(&self) -> bool {
        self.has_scope(ONLINE_ACCESS) || self.has_scope(OFFLINE_ACCESS)
    }
}

/// The identity claims an access token carries for a user signed in at the login provider:
/// CIS2's name and roles, with `selected_roleid` set to the role the user confirmed; NHS
/// login's NHS number and proofing level. Nothing else of the id token is copied.
pub fn identity_claims(
    signed_in: &Map<String, Value>,
    kind: CallerKind,
    role: Option<&str>,
) -> Map<String, Value> {
    let keep: &[&str] = match kind {
        CallerKind::Staff => &["name", "nhsid_nrbac_roles", "selected_roleid"],
        CallerKind::Patient => &[
            "nhs_number",
            "identity_proofing_level",
            "given_name",
            "family_name",
        ],
        CallerKind::System => &[],
    };
    let mut out: Map<String, Value> = signed_in
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let (CallerKind::Staff, Some(role)) = (kind, role) {
        out.insert("selected_roleid".into(), Value::String(role.to_owned()));
    }
    out
}

/// The person roles (`person_roleid`, organisation, role code) in a CIS2-shaped claim set.
pub fn staff_roles(claims: &Map<String, Value>) -> Vec<(String, String, String)> {
    claims
        .get("nhsid_nrbac_roles")
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| {
                    Some((
                        r.get("person_roleid")?.as_str()?.to_owned(),
                        r.get("org_code")?.as_str()?.to_owned(),
                        r.get("role_code")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> RegisteredApp {
        RegisteredApp {
            client_id: "viewer".into(),
            secret: None,
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec![
                "launch".into(),
                "launch/patient".into(),
                "openid".into(),
                "fhirUser".into(),
                "online_access".into(),
                "patient/*.rs".into(),
                "user/*.rs".into(),
            ],
            login: "dev".into(),
        }
    }

    const AUD: &str = "https://scr.example/fhir";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn pairs(extra: &[(&str, &str)], without: &[&str]) -> Vec<(String, String)> {
        let challenge = pkce_challenge(VERIFIER);
        let mut p: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", "viewer"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "launch openid patient/*.rs"),
            ("state", "s1"),
            ("aud", AUD),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .filter(|(k, _)| !without.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    #[test]
    fn a_good_request_is_accepted() {
        let r = authorize_request(&pairs(&[("launch", "abc")], &[]), &[app()], AUD);
        let r = r.expect("accepted");
        assert_eq!(r.scope, vec!["launch", "openid", "patient/*.rs"]);
        assert_eq!(r.launch.as_deref(), Some("abc"));
        assert_eq!(r.nonce, None);
        let r = authorize_request(&pairs(&[("nonce", "n-1")], &[]), &[app()], AUD);
        assert_eq!(r.expect("accepted").nonce.as_deref(), Some("n-1"));
    }

    #[test]
    fn an_unknown_client_or_unregistered_redirect_uri_is_never_redirected_to() {
        let mut p = pairs(&[], &["redirect_uri"]);
        p.push(("redirect_uri".into(), "https://evil.example/cb".into()));
        let e = authorize_request(&p, &[app()], AUD).unwrap_err();
        assert!(matches!(e, AuthorizeError::NoRedirect(_)));
        assert_eq!(e.redirect_url(), None);
        let mut p = pairs(&[], &["client_id"]);
        p.push(("client_id".into(), "someone".into()));
        assert!(matches!(
            authorize_request(&p, &[app()], AUD),
            Err(AuthorizeError::NoRedirect(_))
        ));
    }

    #[test]
    fn pkce_is_required_and_other_errors_go_back_to_the_app_with_state() {
        for without in ["code_challenge", "code_challenge_method", "aud", "scope"] {
            let e = authorize_request(&pairs(&[], &[without]), &[app()], AUD).unwrap_err();
            let url = e.redirect_url().expect(without);
            assert!(url.starts_with("https://app.example/cb?error="), "{url}");
            assert!(url.ends_with("&state=s1"), "{url}");
        }
        let mut p = pairs(&[], &["code_challenge_method"]);
        p.push(("code_challenge_method".into(), "plain".into()));
        assert!(authorize_request(&p, &[app()], AUD).is_err());
        let mut p = pairs(&[], &["aud"]);
        p.push(("aud".into(), "https://other.example/fhir".into()));
        assert!(authorize_request(&p, &[app()], AUD).is_err());
        // A repeated parameter is refused.
        assert!(authorize_request(&pairs(&[("state", "s2")], &[]), &[app()], AUD).is_err());
    }

    #[test]
    fn pkce_wrong_verifier_is_refused() {
        let challenge = pkce_challenge(VERIFIER);
        assert!(pkce_matches(VERIFIER, &challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            &challenge
        ));
        assert!(!pkce_matches("short", &pkce_challenge("short")));
        // RFC 7636 appendix B's example.
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    const CLINICAL: Grantable<'static> = (
        &[
            "Patient",
            "AllergyIntolerance",
            "MedicationStatement",
            "Observation",
            "Flag",
        ],
        &["Flag", "Consent"],
    );

    #[test]
    fn r_role_1_scopes_are_the_intersection_of_asked_app_and_profile() {
        let asked: Vec<String> = [
            "patient/*.rs",
            "user/*.rs",
            "system/*.rs",
            "launch",
            "openid",
            "offline_access",
        ]
        .map(String::from)
        .to_vec();
        // A staff user in an EHR launch: patient/ narrowed to the profile's types, read and
        // search only (the app may not write); system/ never; offline_access not the app's.
        let g = grant_scopes(&asked, &app(), CallerKind::Staff, true, true, CLINICAL);
        assert!(g.contains(&"patient/Observation.rs".to_owned()), "{g:?}");
        assert!(g.contains(&"user/Flag.rs".to_owned()), "{g:?}");
        assert!(!g.iter().any(|s| s.starts_with("system/")), "{g:?}");
        assert!(!g.iter().any(|s| s.contains("Consent")), "{g:?}");
        assert!(g.contains(&"launch".to_owned()));
        assert!(!g.contains(&"offline_access".to_owned()));
        // Social care: Patient and Flag only.
        let social: Grantable<'static> = (&["Patient", "Flag"], &["Flag"]);
        let g = grant_scopes(&asked, &app(), CallerKind::Staff, true, true, social);
        assert!(g.iter().all(|s| !s.contains("Observation")), "{g:?}");
        assert!(g.contains(&"patient/Flag.rs".to_owned()), "{g:?}");
        // Without a patient in context, staff get no patient/ scopes and no launch.
        let g = grant_scopes(&asked, &app(), CallerKind::Staff, false, false, CLINICAL);
        assert!(
            !g.iter().any(|s| s.starts_with("patient/") || s == "launch"),
            "{g:?}"
        );
        // A patient gets patient/ only.
        let g = grant_scopes(&asked, &app(), CallerKind::Patient, false, true, CLINICAL);
        assert!(g.iter().all(|s| !s.starts_with("user/")), "{g:?}");
        assert!(g.contains(&"patient/Patient.rs".to_owned()), "{g:?}");
    }

    #[test]
    fn identity_claims_keep_the_confirmed_role_and_nothing_else() {
        let signed_in: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "u", "nonce": "n", "name": "Dr A", "selected_roleid": "r1",
            "nhsid_nrbac_roles": [{"person_roleid": "r1", "org_code": "M85001", "role_code": "S:G:R8000"},
                                  {"person_roleid": "r2", "org_code": "RXK", "role_code": "S:G:R8000"}],
        }))
        .unwrap_or_default();
        let c = identity_claims(&signed_in, CallerKind::Staff, Some("r2"));
        assert_eq!(c["selected_roleid"], "r2");
        assert!(!c.contains_key("nonce"));
        assert_eq!(staff_roles(&signed_in).len(), 2);
    }
}
