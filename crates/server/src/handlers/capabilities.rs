//! `GET /metadata`: the CapabilityStatement, generated from what is implemented (the search
//! parameter table in `scr_fhir::search`), so it cannot claim more than works. The interactions
//! listed are exactly those routed (a black-box test asks each one, and each one not listed,
//! of the running server), and `rest.security` names SMART on FHIR with the `oauth-uris`
//! extension holding the token endpoint where one is configured.
//!
//! Statuses: 200.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use scr_fhir::search::{params_for, ParamKind};

use super::SERVED_TYPES;
use crate::respond::fhir_json;
use crate::state::AppState;

/// The SMART `oauth-uris` extension's URL.
pub const OAUTH_URIS: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// `rest.security`: SMART on FHIR, and the OAuth endpoints this server serves (`token` where the
/// token endpoint is configured).
fn security(token_url: Option<&str>, authorize_url: Option<&str>) -> Value {
    let mut security = json!({
        "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }], "text": "SMART on FHIR" }],
        "description": "OAuth2 bearer tokens verified against the configured issuers' keys (RS256, RS384, ES256, ES384); SMART on FHIR v1/v2 scopes. See .well-known/smart-configuration.",
    });
    let mut uris = Vec::new();
    if let Some(token) = token_url {
        uris.push(json!({ "url": "token", "valueUri": token }));
    }
    if let Some(authorize) = authorize_url {
        uris.push(json!({ "url": "authorize", "valueUri": authorize }));
    }
    if !uris.is_empty() {
        security["extension"] = json!([{ "url": OAUTH_URIS, "extension": uris }]);
    }
    security
}

/// `authorize_url` is given when SMART apps are registered (`[[auth.apps]]`).
pub fn capability_statement(
    base_url: &str,
    token_url: Option<&str>,
    authorize_url: Option<&str>,
) -> Value {
    let mut resources: Vec<Value> = SERVED_TYPES
        .iter()
        .map(|rt| {
            let params: Vec<Value> = params_for(rt)
                .iter()
                .map(|p| {
                    let kind = match p.kind {
                        ParamKind::Token => "token",
                        ParamKind::Date => "date",
                        ParamKind::String => "string",
                        ParamKind::Reference => "reference",
                    };
                    json!({ "name": p.name, "type": kind, "documentation": p.documentation })
                })
                .collect();
            let mut r = json!({
                "type": rt,
                "profile": scr_fhir::systems::uk_core_profile(rt),
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "versioning": "no-version",
                "readHistory": false,
                "updateCreate": false,
                // Last-Modified from meta.lastUpdated; If-Modified-Since answers 304.
                "conditionalRead": "modified-since",
                "searchParam": params,
            });
            if *rt == "Flag" {
                r["interaction"] = json!([
                    { "code": "read" }, { "code": "vread" }, { "code": "search-type" },
                    { "code": "create" }, { "code": "update" }, { "code": "history-instance" },
                ]);
                r["versioning"] = "versioned-update".into();
                r["readHistory"] = true.into();
                r["documentation"] = "Alerts from every source are read and searched; alerts written here (ids scr.flag-N) are created, updated with If-Match, ended by status inactive with period.end, and keep every version.".into();
            }
            if *rt != "Patient" {
                r["searchInclude"] = json!([format!("{rt}:patient")]);
            } else {
                r["operation"] = json!([
                    { "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" },
                    { "name": "break-glass", "definition": "https://scr.example.nhs.uk/OperationDefinition/break-glass" },
                    { "name": "explain", "definition": "https://scr.example.nhs.uk/OperationDefinition/explain" },
                ]);
            }
            r
        })
        .collect();
    resources.push(json!({
        "type": "Consent",
        "documentation": "Objections to sharing (provision deny) and their withdrawal (permit), registered by the patient's registered practice (R-OBJ-1, R-OBJ-5). Read by privacy officers and by the patient.",
        "interaction": [{ "code": "read" }, { "code": "create" }, { "code": "search-type" }],
        "searchParam": [{ "name": "patient", "type": "reference", "documentation": "Required: Patient/{NHS number}" }],
    }));
    resources.push(json!({
        "type": "AuditEvent",
        "documentation": "The audit trail: privacy officers search it (R-AUD-4); a patient sees the accesses to their own record (R-AUD-5).",
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "searchParam": [
            { "name": "patient", "type": "reference", "documentation": "Patient/{NHS number}" },
            { "name": "agent", "type": "token", "documentation": "The user's id (token sub); 'unauthenticated' for refused tokens" },
            { "name": "agent-org", "type": "token", "documentation": "ODS code of the user's organisation (facade extension)" },
            { "name": "outcome", "type": "token", "documentation": "0 success, 4 refused, 8 failed" },
            { "name": "date", "type": "date", "documentation": "eq, ge, le" },
            { "name": "break-glass", "type": "token", "documentation": "true: accesses under a self-claimed relationship (facade extension)" },
        ],
    }));
    json!({
        "resourceType": "CapabilityStatement",
        "id": "scr",
        "url": format!("{base_url}/metadata"),
        "name": "SharedCareRecordFacade",
        "title": "Regional shared care record: FHIR R4 facade",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "scr contributors",
        "description": "FHIR R4 facade over GP, social care and hospital (HL7 v2) records, read live from each source; alerts (Flag) and objections (Consent) are also written here. Every response passes the information sharing agreement's access policy.",
        "kind": "instance",
        "software": { "name": "scr", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Shared care record facade", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Bearer tokens (SMART on FHIR v1/v2 scopes; CIS2 staff, NHS login patients, backend services) are required on every endpoint except this one and .well-known/smart-configuration.",
            "security": security(token_url, authorize_url),
            "resource": resources,
            "searchParam": [
                { "name": "_count", "type": "number", "documentation": "Page size (default 50, at most 500)" },
                { "name": "_summary", "type": "token", "documentation": "count only" },
            ],
        }],
    })
}

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let token_url = state.token_service.as_ref().map(|ts| ts.token_url());
    let authorize_url = state
        .token_service
        .as_ref()
        .filter(|ts| !ts.apps().is_empty())
        .map(|_| format!("{}/auth/authorize", state.base_url));
    fhir_json(
        StatusCode::OK,
        &capability_statement(&state.base_url, token_url, authorize_url.as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth_uris(cs: &Value) -> Option<&Value> {
        cs["rest"][0]["security"]["extension"]
            .as_array()?
            .iter()
            .find(|e| e["url"] == OAUTH_URIS)
    }

    #[test]
    fn capability_security_names_smart_and_the_token_endpoint_only_when_configured() {
        let with = capability_statement(
            "https://scr.example/fhir",
            Some("https://scr.example/fhir/auth/token"),
            Some("https://scr.example/fhir/auth/authorize"),
        );
        let security = &with["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let uris = oauth_uris(&with).expect("oauth-uris");
        assert_eq!(uris["extension"][0]["url"], "token");
        assert_eq!(
            uris["extension"][0]["valueUri"],
            "https://scr.example/fhir/auth/token"
        );
        assert_eq!(uris["extension"][1]["url"], "authorize");
        let without = capability_statement("https://scr.example/fhir", None, None);
        assert!(
            oauth_uris(&without).is_none(),
            "no token endpoint, no oauth-uris"
        );
        assert_eq!(
            without["rest"][0]["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
    }
}
