//! SMART App Launch 2.x (docs/smart-apps.md): the user-facing steps of the authorization code
//! flow for registered apps (`[[auth.apps]]`).
//!
//! - `GET /auth/authorize`: the app's request (response_type=code, client_id, redirect_uri,
//!   scope, state, aud, PKCE S256, optional `launch`) is checked, an EHR launch is resolved, and
//!   the user is sent to sign in at the app's login provider (`[[auth.login]]`).
//! - `GET /auth/callback`: the provider sends the user back; the code is exchanged and the id
//!   token verified (`scr-login`). An EHR launch started for another user is refused.
//! - `POST /auth/role`: a staff member with more than one role confirms, on first sign-in, the
//!   role to act in (it decides organisation and profile).
//! - `POST /auth/patient`: in a standalone launch asking `launch/patient`, the user chooses a
//!   patient they may open (the policy's decision; an unknown patient and a refused one read
//!   the same).
//!
//! Then the user agent goes back to the app with an authorization code (60 s, single use) that
//! the token endpoint redeems with the PKCE verifier (`handlers/token.rs`).
//!
//! Errors the app may hear of go back to its redirect URI (`error`, `error_description`,
//! `state`); an unknown app or an unregistered redirect URI is never redirected to: the user
//! sees a page saying why (400). Pages are plain HTML, everything echoed is escaped, and none
//! may be framed.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use scr_auth::apps::{self, AppGrant, AuthorizeError, AuthorizeRequest};
use scr_auth::CallerKind;
use scr_login::{IssuedCode, PendingLogin, SignedIn};

use crate::access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::query_pairs;
use crate::state::AppState;

use scr_auth::apps::escape_html as escape;

/// A page of the sign-in, not cacheable and never framed.
fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
             .error{{border-left:4px solid #d5281b;padding:.5rem 1rem;background:#fde8e6}}\
             button{{font-size:1rem;padding:.5rem 1rem;margin-top:1rem}}label{{display:block;margin:.5rem 0}}</style></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = escape(title)
        ))
}

fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    page(
        status,
        "Sign-in could not continue",
        &format!(
            "<p class=\"error\" id=\"error\">{}</p><p>Start again from your app.</p>",
            escape(message)
        ),
    )
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Back to the app with an error (RFC 6749 §4.1.2.1).
fn back_to_app(
    request: &AuthorizeRequest,
    error: &'static str,
    description: &'static str,
) -> HttpResponse {
    let e = AuthorizeError::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        state: Some(request.state.clone()),
        error,
        description,
    };
    match e.redirect_url() {
        Some(url) => found(&url),
        None => error_page(StatusCode::BAD_REQUEST, description),
    }
}

/// 429 with `Retry-After` for an address starting too many sign-ins; other addresses are
/// unaffected.
fn too_many_sign_ins(retry_after: u64) -> HttpResponse {
    let mut page = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-ins were started from your network address. Try again shortly.",
    );
    if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}

/// The sign-in state could not be read or written: nothing is lost, the user starts again.
fn state_unavailable(e: &scr_login::SessionError) -> HttpResponse {
    log::warn!("sign-in state unavailable: {e}");
    let mut page = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The sign-in service is unavailable. Try again shortly.",
    );
    page.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    page
}

/// The client's address, as the throttle and the per-address cap of sign-ins key it.
fn client_address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

fn callback_uri(state: &AppState) -> String {
    format!("{}/auth/callback", state.base_url)
}

fn login_of<'s>(
    state: &'s AppState,
    request: &AuthorizeRequest,
) -> Option<&'s std::sync::Arc<scr_login::LoginProvider>> {
    let app = state.token_service.as_ref()?.app(&request.client_id)?;
    state.logins.iter().find(|l| l.name == app.login)
}

/// `GET /auth/authorize`.
pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(service) = state
        .token_service
        .as_ref()
        .filter(|s| !s.apps().is_empty())
    else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No SMART apps are registered with this server.",
        );
    };
    // Limited per address before anything is parsed or kept (issue 22: a flood of sign-ins
    // from one address must never keep users at other addresses out).
    let address = client_address(&req);
    if let Some(ip) = address {
        if let Err(retry_after) = state.throttle.authorize(ip) {
            log::warn!("authorize: sign-ins from one address over the limit; 429");
            return too_many_sign_ins(retry_after);
        }
    }
    let pairs = match query_pairs(req.query_string()) {
        Ok(p) => p,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "The request is malformed."),
    };
    let request = match apps::authorize_request(&pairs, service.apps(), &state.base_url) {
        Ok(r) => r,
        Err(e) => {
            log::info!("authorize: refused a request: {}", e.description());
            return match e.redirect_url() {
                Some(url) => found(&url),
                None => error_page(StatusCode::BAD_REQUEST, e.description()),
            };
        }
    };
    let launch =
        match &request.launch {
            None => None,
            Some(id) => match state.sessions.use_launch(id).await {
                Err(e) => return state_unavailable(&e),
                Ok(Some(l)) => Some(l),
                Ok(None) => return back_to_app(
                    &request,
                    "invalid_request",
                    "the launch is unknown, used or expired: launch the app again from the record",
                ),
            },
        };
    if request.asks(apps::LAUNCH) && launch.is_none() {
        return back_to_app(
            &request,
            "invalid_scope",
            "the launch scope needs a launch from the host system",
        );
    }
    let Some(provider) = login_of(&state, &request) else {
        return back_to_app(
            &request,
            "server_error",
            "the app's login provider is not configured",
        );
    };
    let provider = provider.clone();
    let nonce = scr_login::random_token();
    let verifier = scr_login::random_token();
    let pending = PendingLogin {
        request: request.clone(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        launch,
    };
    let client = address.map(|ip| ip.to_string()).unwrap_or_default();
    let login_state = match state.sessions.start_login(&pending, &client).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            log::warn!("authorize: one address holds its most sign-ins in progress; 429");
            return too_many_sign_ins(60);
        }
        Err(e) => return state_unavailable(&e),
    };
    match provider
        .authorization_url(&callback_uri(&state), &login_state, &nonce, &verifier)
        .await
    {
        Ok(url) => found(&url),
        Err(e) => {
            log::warn!("authorize: {e}");
            state.sessions.finish_login(&login_state).await.ok();
            back_to_app(
                &request,
                "temporarily_unavailable",
                "the login provider could not be reached",
            )
        }
    }
}

/// `GET /auth/callback`.
pub async fn callback(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let pairs = query_pairs(req.query_string()).unwrap_or_default();
    let field = |name: &str| scr_auth::token_endpoint::form_field(&pairs, name);
    let found = match field("state") {
        Some(s) => state.sessions.finish_login(s).await,
        None => Ok(None),
    };
    let pending = match found {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown or has expired.",
            )
        }
        Err(e) => return state_unavailable(&e),
    };
    let request = pending.request;
    if field("error").is_some() {
        return back_to_app(&request, "access_denied", "the user did not sign in");
    }
    let Some(code) = field("code") else {
        return back_to_app(&request, "access_denied", "the login provider sent no code");
    };
    let Some(provider) = login_of(&state, &request).cloned() else {
        return back_to_app(
            &request,
            "server_error",
            "the app's login provider is not configured",
        );
    };
    let now = scr_fhir::build::unix_now();
    let (caller, claims) = match provider
        .sign_in(
            code,
            &pending.verifier,
            &callback_uri(&state),
            &pending.nonce,
            now,
        )
        .await
    {
        Ok(signed_in) => signed_in,
        Err(e) => {
            log::warn!("sign-in at login provider {} failed: {e}", provider.name);
            let failed = match e {
                scr_login::LoginError::IdToken { source } => ApiError::Unauthenticated(source),
                other => ApiError::Unavailable {
                    detail: other.to_string(),
                },
            };
            let app = &request.client_id;
            audit::finish_sign_in_step(&state, &req, None, Subtype::Login, app, Err(failed))
                .await
                .ok();
            return back_to_app(
                &request,
                "access_denied",
                "the sign-in at the login provider could not be verified",
            );
        }
    };
    let access = access::of_request(caller.clone(), &req);
    let signed_in_as = match &pending.launch {
        // The launch is bound to the user the host system started it for.
        Some(launch) if launch.user != caller.subject => {
            log::info!("authorize: a launch was used by another user than it was started for");
            Err(ApiError::Forbidden {
                rule: scr_policy::Rule::Launch1,
                reason: "the launch was started for another user".into(),
            })
        }
        _ => Ok(()),
    };
    let app = &request.client_id;
    let step = Subtype::Login;
    match audit::finish_sign_in_step(&state, &req, Some(&access), step, app, signed_in_as).await {
        Ok(()) => {}
        Err(ApiError::Forbidden { .. } | ApiError::TooManyRequests { .. }) => {
            return back_to_app(
                &request,
                "access_denied",
                "this launch was started for another user",
            )
        }
        Err(e) => {
            log::warn!("sign-in not recorded, so not continued: {e}");
            return back_to_app(
                &request,
                "temporarily_unavailable",
                "the sign-in could not be recorded; try again shortly",
            );
        }
    }
    let signed_in = SignedIn {
        request,
        launch: pending.launch,
        caller,
        claims,
        role: None,
    };
    next_step(&state, signed_in, None).await
}

#[derive(serde::Deserialize)]
pub struct RoleForm {
    session: String,
    role: Option<String>,
}

/// `POST /auth/role`.
pub async fn confirm_role(state: web::Data<AppState>, form: web::Form<RoleForm>) -> HttpResponse {
    let mut signed_in = match taken_choice(&state, &form.session).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let roles = apps::staff_roles(&signed_in.claims);
    match &form.role {
        Some(role) if roles.iter().any(|(id, _, _)| id == role) => {
            if let Some(provider) = login_of(&state, &signed_in.request) {
                let (name, user) = (&provider.name, &signed_in.caller.subject);
                if let Err(e) = state.sessions.confirm_role(name, user, role).await {
                    return state_unavailable(&e);
                }
            }
            signed_in.role = Some(role.clone());
            next_step(&state, signed_in, None).await
        }
        _ => choose_role(&state, signed_in, Some("Choose one of your roles.")).await,
    }
}

/// The signed-in user awaiting a choice under `session`, or the page to answer instead.
async fn taken_choice(state: &AppState, session: &str) -> Result<SignedIn, HttpResponse> {
    match state.sessions.take_choice(session).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is unknown or has expired.",
        )),
        Err(e) => Err(state_unavailable(&e)),
    }
}

#[derive(serde::Deserialize)]
pub struct PatientForm {
    session: String,
    nhs_number: Option<String>,
}

/// `POST /auth/patient`. The decision is audited, allowed or refused (R-AUD-1), before the
/// user goes on; if it cannot be, they do not (R-AUD-2).
pub async fn choose_patient(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<PatientForm>,
) -> HttpResponse {
    let signed_in = match taken_choice(&state, &form.session).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let nhs: String = form
        .nhs_number
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !scr_fhir::nhs_number::is_valid(&nhs) {
        return pick_patient(
            &state,
            signed_in,
            Some("That is not a valid NHS number (10 digits)."),
        )
        .await;
    }
    let Ok(caller) = acting(&signed_in) else {
        return back_to_app(
            &signed_in.request,
            "access_denied",
            "the user's role is not valid",
        );
    };
    let access = access::of_request(caller, &req);
    let decided = match state.records.may_open(&access, &nhs).await {
        Ok(true) => Ok(()),
        // Refused and unknown read the same, to the user and in the audit's outcome; the
        // audit's rule column says which rule refused a known patient.
        Ok(false) => Err(ApiError::not_found("Patient", &nhs)),
        Err(e) => Err(ApiError::from(e)),
    };
    let app = signed_in.request.client_id.clone();
    let step = Subtype::PatientChoice;
    match audit::finish_sign_in_step(&state, &req, Some(&access), step, &app, decided).await {
        Ok(()) => next_step(&state, signed_in, Some(nhs)).await,
        Err(ApiError::NotFound { .. }) => pick_patient(
            &state,
            signed_in,
            Some("You may not open this patient's record here (no legitimate relationship, or no record). Choose another patient."),
        )
        .await,
        Err(e) => {
            log::warn!("patient picker: the decision could not be made or recorded: {e}");
            pick_patient(
                &state,
                signed_in,
                Some("The record service could not answer; try again shortly."),
            ).await
        }
    }
}

/// The caller acting in the confirmed role (staff), as the tokens will carry it.
fn acting(signed_in: &SignedIn) -> Result<scr_auth::Caller, scr_auth::AuthError> {
    match (&signed_in.role, signed_in.caller.kind) {
        (Some(role), CallerKind::Staff) => signed_in.caller.in_role(&signed_in.claims, role),
        _ => Ok(signed_in.caller.clone()),
    }
}

/// The role page: a staff member's roles, the one CIS2 selected checked.
async fn choose_role(state: &AppState, signed_in: SignedIn, problem: Option<&str>) -> HttpResponse {
    let roles = apps::staff_roles(&signed_in.claims);
    let selected = signed_in
        .claims
        .get("selected_roleid")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let name = signed_in
        .claims
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let session = match state.sessions.await_choice(&signed_in).await {
        Ok(id) => id,
        Err(e) => return state_unavailable(&e),
    };
    let mut options = String::new();
    for (id, org, role) in &roles {
        options.push_str(&format!(
            "<label><input type=\"radio\" name=\"role\" value=\"{id}\"{checked}> {role} at {org}</label>",
            id = escape(id),
            checked = if *id == selected { " checked" } else { "" },
            role = escape(role.rsplit(':').next().unwrap_or(role)),
            org = escape(org),
        ));
    }
    page(
        StatusCode::OK,
        "Confirm your role",
        &format!(
            "{problem}<p>{name}, you hold more than one role. The role you act in decides which \
             organisation you act for and what you may see. This is asked once.</p>\
             <form method=\"post\" action=\"role\"><input type=\"hidden\" name=\"session\" value=\"{session}\">\
             {options}<button type=\"submit\" id=\"confirm-role\">Continue in this role</button></form>",
            problem = problem
                .map(|p| format!("<p class=\"error\">{}</p>", escape(p)))
                .unwrap_or_default(),
            name = escape(&name),
            session = escape(&session),
        ),
    )
}

/// The patient picker of a standalone launch.
async fn pick_patient(
    state: &AppState,
    signed_in: SignedIn,
    problem: Option<&str>,
) -> HttpResponse {
    let session = match state.sessions.await_choice(&signed_in).await {
        Ok(id) => id,
        Err(e) => return state_unavailable(&e),
    };
    page(
        StatusCode::OK,
        "Choose a patient",
        &format!(
            "{problem}<p>Enter the NHS number of the patient whose record the app should open. \
             You can open only patients you have a legitimate relationship with.</p>\
             <form method=\"post\" action=\"patient\"><input type=\"hidden\" name=\"session\" value=\"{session}\">\
             <label for=\"nhs-number\">NHS number</label>\
             <input id=\"nhs-number\" name=\"nhs_number\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"12\">\
             <button type=\"submit\" id=\"choose-patient\">Open this patient</button></form>",
            problem = problem
                .map(|p| format!("<p class=\"error\" id=\"refusal\">{}</p>", escape(p)))
                .unwrap_or_default(),
            session = escape(&session),
        ),
    )
}

/// After sign-in: confirm the role, choose the patient, then issue the code. `chosen` is the
/// patient the picker just allowed.
async fn next_step(
    state: &AppState,
    mut signed_in: SignedIn,
    chosen: Option<String>,
) -> HttpResponse {
    let kind = signed_in.caller.kind;
    let provider_name = login_of(state, &signed_in.request)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    if kind == CallerKind::Staff && signed_in.role.is_none() {
        let roles = apps::staff_roles(&signed_in.claims);
        let confirmed = match state
            .sessions
            .confirmed_role(&provider_name, &signed_in.caller.subject)
            .await
        {
            Ok(r) => r.filter(|r| roles.iter().any(|(id, _, _)| id == r)),
            Err(e) => return state_unavailable(&e),
        };
        match confirmed {
            Some(role) => signed_in.role = Some(role),
            None if roles.len() > 1 => return choose_role(state, signed_in, None).await,
            None => {
                signed_in.role = signed_in
                    .claims
                    .get("selected_roleid")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            }
        }
    }
    let request = signed_in.request.clone();
    let patient = match (&signed_in.launch, kind, chosen) {
        (Some(launch), _, _) => Some(launch.patient.clone()),
        (None, CallerKind::Patient, _) => signed_in.caller.nhs_number.clone(),
        (None, _, Some(nhs)) => Some(nhs),
        (None, _, None) if request.asks(apps::LAUNCH_PATIENT) => {
            return pick_patient(state, signed_in, None).await
        }
        _ => None,
    };
    if let (Some(launch), CallerKind::Patient) = (&signed_in.launch, kind) {
        if signed_in.caller.nhs_number.as_deref() != Some(launch.patient.as_str()) {
            return back_to_app(
                &request,
                "access_denied",
                "this launch is for another patient",
            );
        }
    }
    let Ok(caller) = acting(&signed_in) else {
        return back_to_app(&request, "access_denied", "the user's role is not valid");
    };
    let access = access::Access::new(caller);
    let Some(grantable) = scr_policy::grantable(&access.subject, state.records.policy()) else {
        return back_to_app(
            &request,
            "access_denied",
            "the user's role is not mapped to an access profile here",
        );
    };
    let (Some(service), Some(app)) = (
        state.token_service.as_ref(),
        state
            .token_service
            .as_ref()
            .and_then(|s| s.app(&request.client_id)),
    ) else {
        return back_to_app(&request, "server_error", "the app is no longer registered");
    };
    let scope = apps::grant_scopes(
        &request.scope,
        app,
        kind,
        signed_in.launch.is_some(),
        patient.is_some(),
        grantable,
    );
    let now = scr_fhir::build::unix_now();
    let grant = AppGrant {
        client_id: request.client_id.clone(),
        subject: signed_in.caller.subject.clone(),
        identity: apps::identity_claims(&signed_in.claims, kind, signed_in.role.as_deref()),
        scope: scope.join(" "),
        patient,
        family: scr_login::random_token(),
        family_expires_at: now + service.refresh_seconds(),
        nonce: request.nonce.clone(),
    };
    let issued = IssuedCode {
        grant,
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
    };
    let code = match state.sessions.issue_code(&issued).await {
        Ok(code) => code,
        Err(e) => {
            log::warn!("authorize: no code could be kept: {e}");
            return back_to_app(
                &request,
                "temporarily_unavailable",
                "the sign-in could not be completed; try again shortly",
            );
        }
    };
    found(&apps::with_query(
        &request.redirect_uri,
        &[("code", &code), ("state", &request.state)],
    ))
}

/// `POST /auth/launch`: a host system (a backend service with its own token) registers an EHR
/// launch: JSON `{"patient": "<NHS number>", "user": "<the user's id at the login provider>"}`.
/// 201 `{"launch": "<id>", "expires_in": 300}`; the host then opens the app with `iss` and
/// `launch`. Only that user may use it, once, within five minutes. 400 (body), 401, 403 (not
/// a backend service), 404 (no apps registered), 415.
pub async fn launch(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if state
        .token_service
        .as_ref()
        .is_none_or(|s| s.apps().is_empty())
    {
        return Err(ApiError::UnknownEndpoint {
            what: "the launch endpoint (no [[auth.apps]] configured)".into(),
        });
    }
    let access = crate::access::authenticate(&state, &req)?;
    if access.caller.kind != CallerKind::System {
        return Err(ApiError::Forbidden {
            rule: scr_policy::Rule::Launch1,
            reason: "only a host system (a backend service) registers launches".into(),
        });
    }
    crate::respond::require_media_type(&req, &["application/json"])?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("body", "the body is not a JSON object"))?;
    let patient = v["patient"].as_str().unwrap_or("");
    if !scr_fhir::nhs_number::is_valid(patient) {
        return Err(ApiError::invalid(
            "patient",
            "patient must be a valid NHS number",
        ));
    }
    let user = v["user"].as_str().unwrap_or("");
    if user.is_empty() || user.len() > 256 || !user.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "user",
            "user must be the user's id at the login provider (1 to 256 visible characters)",
        ));
    }
    let launch = scr_login::Launch {
        patient: patient.to_owned(),
        user: user.to_owned(),
        host: access.caller.subject.clone(),
    };
    let id = state
        .sessions
        .register_launch(&launch)
        .await
        .map_err(|e| ApiError::Unavailable {
            detail: e.to_string(),
        })?;
    log::info!("launch registered by host system {}", access.caller.subject);
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "launch": id,
            "expires_in": scr_login::LAUNCH_SECONDS,
        })))
}
