//! `GET /metadata`: the CapabilityStatement, generated from what is implemented (the search
//! parameter table in `scr_fhir::search`), so it cannot claim more than works.
//!
//! Statuses: 200.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use scr_fhir::search::{params_for, ParamKind};

use super::SERVED_TYPES;
use crate::respond::fhir_json;
use crate::state::AppState;

pub fn capability_statement(base_url: &str) -> Value {
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
        "interaction": [{ "code": "search-type" }],
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
        "description": "Read-only FHIR R4 facade over GP, social care and hospital (HL7 v2) records. Every response passes the information sharing agreement's access policy.",
        "kind": "instance",
        "software": { "name": "scr", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Shared care record facade", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Bearer tokens (SMART on FHIR v1/v2 scopes; CIS2 staff, NHS login patients, backend services) are required on every endpoint except this one and .well-known/smart-configuration.",
            "security": {
                "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
                "description": "OAuth2 bearer tokens verified against the configured issuers' keys (RS256, RS384, ES256, ES384)."
            },
            "resource": resources,
            "searchParam": [
                { "name": "_count", "type": "number", "documentation": "Page size (default 50, at most 500)" },
                { "name": "_summary", "type": "token", "documentation": "count only" },
            ],
        }],
    })
}

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    fhir_json(StatusCode::OK, &capability_statement(&state.base_url))
}
