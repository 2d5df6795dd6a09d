//! Writes the audit trail (R-AUD-1, R-AUD-2): one AuditEvent per patient a request touched, and
//! one for every refusal, in the IHE Basic Audit Log Patterns shape, committed to the store
//! before the response leaves. If the audit cannot be written, the data is not sent: 503.
//!
//! A user of a neighbouring shared care record asking through it (docs/federation.md, R-FED-5)
//! is named with their id, name, organisation, role and purpose of use; the neighbour is an
//! agent of its own, and the request entity carries its name and request id.
//!
//! Not audited: requests refused for their form (400, 405, 406, 415) before any patient or
//! caller was considered, and the capability endpoints.

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use serde_json::{json, Value};

use scr_auth::{CallerKind, Federation};
use scr_fhir::systems;
use scr_store::audit::NewAuditEvent;

use scr_policy::Rule;
use scr_record::{Access, Touched};

use crate::error::ApiError;
use crate::state::AppState;
use crate::throttle::Refusal;

/// What was audited, as `AuditEvent.type` and `subtype` name it: a RESTful interaction, or a
/// step of an app's sign-in (docs/smart-apps.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtype {
    Create,
    Update,
    Read,
    Search,
    Operation,
    /// A user signed in for an app (DICOM 110114 User Authentication, 110122 Login).
    Login,
    /// A user chose a patient in a standalone launch's patient picker: the policy's decision
    /// whether they may open the record.
    PatientChoice,
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

impl Subtype {
    fn event_type(self) -> Value {
        match self {
            Subtype::Login => {
                json!({ "system": DCM, "code": "110114", "display": "User Authentication" })
            }
            _ => {
                json!({ "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" })
            }
        }
    }

    fn subtype(self) -> Value {
        let rest = |code: &str| json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": code });
        match self {
            Subtype::Create => rest("create"),
            Subtype::Update => rest("update"),
            Subtype::Read => rest("read"),
            Subtype::Search => rest("search-type"),
            Subtype::Operation => rest("operation"),
            Subtype::Login => json!({ "system": DCM, "code": "110122", "display": "Login" }),
            Subtype::PatientChoice => json!({
                "system": "https://scr.example.nhs.uk/CodeSystem/audit-subtype",
                "code": "patient-choice",
                "display": "Patient chosen for an app",
            }),
        }
    }

    /// BALP: R for a read, E (execute) for searches and operations.
    fn action(self) -> &'static str {
        match self {
            Subtype::Create => "C",
            Subtype::Update => "U",
            Subtype::Read => "R",
            _ => "E",
        }
    }
}

struct Outcome {
    code: &'static str,
    rule: Option<&'static str>,
    description: String,
}

/// Which results are audited, and how.
fn outcome_of(result: &Result<HttpResponse, ApiError>) -> Option<Outcome> {
    match result {
        Ok(_) => Some(Outcome {
            code: "0",
            rule: None,
            description: "success".into(),
        }),
        Err(ApiError::Forbidden { rule, reason }) => Some(Outcome {
            code: "4",
            rule: Some(rule.id()),
            description: format!("refused: {reason} ({rule})"),
        }),
        Err(ApiError::Unauthenticated(e)) => Some(Outcome {
            code: "4",
            rule: Some("tokens"),
            description: format!("refused: {}", e.description()),
        }),
        Err(ApiError::NotFound { .. }) => Some(Outcome {
            code: "4",
            rule: None,
            description: "not found, or not visible to this caller".into(),
        }),
        Err(e) if e.status_code().is_server_error() => Some(Outcome {
            code: "8",
            rule: None,
            description: "failed".into(),
        }),
        Err(_) => None,
    }
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "system": system, "code": code })
}

/// The purpose of use of an access: the self-claimed relationship's (ETREAT or BTG) when one
/// was in force or declared, else the one a neighbouring record sent for its user (R-FED-5),
/// else treatment.
fn purpose_of<'a>(access: Option<&'a Access>, touched: Option<&'a Touched>) -> &'a str {
    touched
        .and_then(|t| t.claim.as_ref())
        .map(|c| c.purpose.as_str())
        .or_else(|| {
            access
                .and_then(|a| a.caller.federation.as_ref())
                .map(|f| f.purpose.code())
        })
        .unwrap_or("TREAT")
}

/// Where a federated access came from (R-FED-5): the neighbouring record as an agent (its
/// configured name, its client id), for the user agent to name alongside.
fn peer_agent(f: &Federation) -> Value {
    json!({
        "type": { "coding": [coding(DCM, "110150")], "text": "neighbouring shared care record" },
        "who": { "identifier": { "system": FEDERATION_PEER_SYSTEM, "value": f.peer }, "display": f.peer },
        "altId": f.actor,
        "requestor": false,
    })
}

/// The identifier system of neighbouring shared care records, by their configured names.
pub const FEDERATION_PEER_SYSTEM: &str = "https://scr.example.nhs.uk/Id/federation-peer";

/// What a federated access adds to the request entity (R-FED-5): the peer and its request id,
/// so both sides' trails can be joined.
fn federation_details(f: &Federation) -> Vec<Value> {
    vec![
        json!({ "type": "federation-peer", "valueString": f.peer }),
        json!({ "type": "federation-request-id", "valueString": f.request_id }),
        json!({ "type": "federation-purpose-of-use", "valueString": f.purpose.code() }),
    ]
}

/// What the decision about one patient adds to the patient entity (`entity.detail`): the rule
/// that decided, how many records were withheld under which rule (never which), and, under a
/// self-claimed relationship, its written reason (R-AUD-4).
fn decision_details(t: &Touched) -> Vec<Value> {
    let mut details = vec![json!({ "type": "decided-by", "valueString": t.rule.id() })];
    for (rule, n) in &t.withheld {
        details.push(
            json!({ "type": format!("withheld-{}", rule.id()), "valueString": n.to_string() }),
        );
    }
    if let Some(c) = &t.claim {
        details.push(json!({ "type": "break-glass-reason", "valueString": c.reason }));
        details.push(json!({ "type": "break-glass-expires", "valueString": c.expires_at }));
    }
    details
}

/// What was done: the interaction, and what it adds to the request entity's details.
struct Activity<'a> {
    subtype: Subtype,
    details: &'a [Value],
}

/// One AuditEvent (BALP RESTful activity), without `id`: the id is its sequence number.
fn event_json(
    state: &AppState,
    req: &HttpRequest,
    access: Option<&Access>,
    activity: &Activity<'_>,
    outcome: &Outcome,
    touched: Option<&Touched>,
    recorded: &str,
) -> Value {
    let purpose = purpose_of(access, touched);
    let federation = access.and_then(|a| a.caller.federation.as_ref());
    let (who, role, org) = match access {
        Some(a) => {
            let role = match a.caller.kind {
                CallerKind::Patient => "patient".to_owned(),
                CallerKind::System => "system".to_owned(),
                CallerKind::Staff => a.caller.role_code.clone().unwrap_or_default(),
            };
            (
                json!({ "identifier": { "system": a.caller.issuer, "value": a.caller.subject } }),
                role,
                a.caller.organisation.clone(),
            )
        }
        None => (
            json!({ "display": "unauthenticated caller" }),
            String::new(),
            None,
        ),
    };
    let mut user = json!({
        "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser")] },
        "who": who,
        "requestor": true,
    });
    if let Some(f) = federation {
        // The end user, as the neighbouring record named them (R-FED-5).
        user["who"]["display"] = f.user_name.clone().into();
        user["name"] = f.user_name.clone().into();
        user["purposeOfUse"] = json!([{ "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", f.purpose.code())] }]);
    }
    if access.is_some_and(|a| a.caller.kind == CallerKind::System) {
        user["type"] = json!({ "coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "dataprocessor")] });
    }
    if !role.is_empty() {
        user["role"] = json!([{ "coding": [coding("https://scr.example.nhs.uk/CodeSystem/access-role", &role)], "text": role }]);
    }
    if let Some(addr) = req.peer_addr() {
        user["network"] = json!({ "address": addr.ip().to_string(), "type": "2" });
    }
    let mut agents = vec![user];
    if let Some(ods) = org.filter(|o| !o.is_empty()) {
        agents.push(json!({
            "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")] },
            "who": { "identifier": { "system": systems::ODS_CODE, "value": ods } },
            "requestor": false,
        }));
    }
    agents.extend(federation.map(peer_agent));
    let mut entities = Vec::new();
    if let Some(t) = touched {
        entities.push(json!({
            "what": { "reference": format!("Patient/{}", t.nhs_number) },
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1"),
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
            "detail": decision_details(t),
        }));
    }
    let query = req.query_string();
    let description = format!(
        "{} {}",
        req.method(),
        req.match_pattern().unwrap_or_default()
    );
    let mut request = json!({
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2"),
        "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "24"),
        "description": description,
    });
    // The request's id (X-Request-Id), as in its log line and the Bundle it returned.
    let request_id = access
        .map(|a| a.request_id.clone())
        .unwrap_or_else(|| crate::request_id::of(req));
    let mut request_details = vec![json!({ "type": "request-id", "valueString": request_id })];
    request_details.extend(federation.map(federation_details).unwrap_or_default());
    request_details.extend(activity.details.iter().cloned());
    if !query.is_empty() {
        // What a refused (or unauthenticated) caller sent is kept only in part: enough to see
        // what was tried, not whatever fills the header limit.
        let kept = if outcome.code != "0" && query.len() > REFUSED_QUERY_KEPT {
            let mut end = REFUSED_QUERY_KEPT;
            while !query.is_char_boundary(end) {
                end -= 1;
            }
            request_details.push(json!({
                "type": "query-truncated",
                "valueString": format!("{} bytes, the first {end} kept", query.len()),
            }));
            &query[..end]
        } else {
            query
        };
        request["query"] = base64::engine::general_purpose::STANDARD
            .encode(kept)
            .into();
    }
    request["detail"] = request_details.into();
    entities.push(request);
    json!({
        "resourceType": "AuditEvent",
        "type": activity.subtype.event_type(),
        "subtype": [activity.subtype.subtype()],
        "action": activity.subtype.action(),
        "recorded": recorded,
        "outcome": outcome.code,
        "outcomeDesc": outcome.description,
        "purposeOfEvent": [{ "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose)] }],
        "agent": agents,
        "source": {
            "site": state.base_url,
            "observer": { "display": "scr shared care record facade" },
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
        "entity": entities,
    })
}

/// Bytes of a refused request's query string kept in its AuditEvent.
pub const REFUSED_QUERY_KEPT: usize = 512;

/// Authenticates the caller, runs `body` for them, and audits the outcome, a refused token
/// included: the shape of every audited read.
pub async fn audited(
    state: &AppState,
    req: &HttpRequest,
    subtype: Subtype,
    body: impl AsyncFnOnce(&Access) -> Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let access = match crate::access::authenticate(state, req) {
        Ok(access) => access,
        Err(e) => return finish(state, req, None, subtype, Err(e)).await,
    };
    let result = body(&access).await;
    finish(state, req, Some(&access), subtype, result).await
}

/// Audits the request and returns its result, or 503 if the audit could not be committed.
pub async fn finish(
    state: &AppState,
    req: &HttpRequest,
    access: Option<&Access>,
    subtype: Subtype,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let activity = Activity {
        subtype,
        details: &[],
    };
    finish_activity(state, req, access, &activity, result).await
}

/// Audits a step of an app's sign-in ([`Subtype::Login`], [`Subtype::PatientChoice`]) like a
/// request, naming the app (`client_id`) in the request entity; the step's outcome is `result`
/// (`Ok` done, a refusal, or a failure). Returns `result`, or the error to answer instead: 503
/// if the audit could not be committed (the step must not go on, R-AUD-2), 429 if refusals from
/// this address are over the limit.
pub async fn finish_sign_in_step(
    state: &AppState,
    req: &HttpRequest,
    access: Option<&Access>,
    step: Subtype,
    app: &str,
    result: Result<(), ApiError>,
) -> Result<(), ApiError> {
    let details = [json!({ "type": "client-id", "valueString": app })];
    let activity = Activity {
        subtype: step,
        details: &details,
    };
    let result = result.map(|()| HttpResponse::NoContent().finish());
    finish_activity(state, req, access, &activity, result)
        .await
        .map(drop)
}

async fn finish_activity(
    state: &AppState,
    req: &HttpRequest,
    access: Option<&Access>,
    activity: &Activity<'_>,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let Some(mut outcome) = outcome_of(&result) else {
        return result;
    };
    // Refusals are limited per client address: beyond the limit the caller is told to wait,
    // and only the first such refusal is audited, so they cannot grow the trail without bound.
    let refused = matches!(
        result,
        Err(ApiError::Forbidden { .. } | ApiError::Unauthenticated(_))
    );
    let mut result = result;
    if let (true, Some(address)) = (refused, req.peer_addr().map(|a| a.ip())) {
        match state.throttle.refusal(address) {
            Refusal::Allowed => {}
            Refusal::FirstThrottled { retry_after } => {
                log::warn!("refusals from one client address are over the limit; further ones are answered 429 and not audited for {retry_after} s");
                outcome.description.push_str(&format!(
                    "; refusals from this address are over the limit: further ones are answered 429 and not audited for {retry_after} s"
                ));
                result = Err(ApiError::TooManyRequests { retry_after });
            }
            Refusal::Throttled { retry_after } => {
                log::debug!("refusal over the limit answered 429, not audited");
                return Err(ApiError::TooManyRequests { retry_after });
            }
        }
    }
    let (_, recorded) = scr_fhir::build::today_and_now();
    let touched = access.map(Access::touched).unwrap_or_default();
    let agent_user = access
        .map(|a| a.caller.subject.clone())
        .unwrap_or_else(|| "unauthenticated".into());
    let agent_org = access.and_then(|a| a.caller.organisation.clone());
    let mut events = Vec::new();
    let mut add = |t: Option<&Touched>, rule: Option<&'static str>| {
        let resource = event_json(state, req, access, activity, &outcome, t, &recorded);
        events.push(NewAuditEvent {
            recorded: recorded.clone(),
            patient_nhs: t.map(|t| t.nhs_number.clone()),
            agent_user: agent_user.clone(),
            agent_org: agent_org.clone(),
            outcome: outcome.code.to_owned(),
            rule: rule.map(str::to_owned),
            // A self-claimed relationship (R-LR-4), or break glass sent by a neighbouring
            // record as its user's purpose of use (R-FED-3): the decision carries the claim.
            break_glass: t
                .is_some_and(|t| t.permitted && (t.rule == Rule::Lr4 || t.claim.is_some())),
            resource: resource.to_string(),
        });
    };
    if touched.is_empty() {
        add(None, outcome.rule);
    }
    for t in &touched {
        let rule = if t.permitted {
            outcome.rule.or(Some(t.rule.id()))
        } else {
            Some(t.rule.id())
        };
        add(Some(t), rule);
    }
    let store = state.store.clone();
    match web::block(move || store.append_audit(&events)).await {
        Ok(Ok(_)) => result,
        Ok(Err(e)) => {
            log::error!(
                "audit write failed, response withheld: {}",
                scr_store::error_chain(&e)
            );
            Err(ApiError::Unavailable {
                detail: "the audit trail cannot be written".into(),
            })
        }
        Err(e) => {
            log::error!("audit write failed, response withheld: {e}");
            Err(ApiError::Unavailable {
                detail: "the audit trail cannot be written".into(),
            })
        }
    }
}
