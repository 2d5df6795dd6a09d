//! Alerts written through FHIR (R-WRITE-1..4): `POST /Flag`, `PUT /Flag/{id}` with `If-Match`,
//! `GET /Flag/{id}/_history` and `GET /Flag/{id}/_history/{version}`. An alert is ended by
//! updating it to `inactive` with `period.end`. Every version is kept.
//!
//! Statuses: 201 (created, `Location` and `ETag`); 200 (updated, read); 400 (the alert does not
//! fit the profile: the element is named); 401; 403 (R-WRITE-1/2, R-ROLE-2, R-LR-5, scopes);
//! 404; 405 (writing any other type); 412 (`If-Match` is not the current version: nothing is
//! stored); 415; 428 (no `If-Match`); 503.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use scr_auth::CallerKind;
use scr_fhir::bundle::searchset;
use scr_policy::{Action, Ask, ExistingAlert};
use scr_store::flags::{Author, FlagWriteError};

use crate::access::{authenticate, Access};
use crate::audit::{self, Subtype};
use crate::error::{ApiError, FHIR_JSON};
use crate::respond::{fhir_json, require_media_type};
use crate::state::AppState;
use scr_record::own_flags::{self, parse_flag_id, served, storable, PATIENT_AUTHORED_ORG};

fn only_flags(type_name: &str, method: &str) -> Result<(), ApiError> {
    if type_name == "Flag" {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.into(),
            allow: "GET",
        })
    }
}

fn parse_body(
    req: &HttpRequest,
    body: &[u8],
) -> Result<(Value, scr_fhir::alerts::AlertStatement), ApiError> {
    require_media_type(req, &["application/fhir+json", "application/json"])?;
    let flag: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("Flag", format!("the body is not JSON: {e}")))?;
    let statement = scr_fhir::alerts::check_alert(&flag).map_err(ApiError::Invalid)?;
    Ok((flag, statement))
}

fn author_kind(access: &Access) -> &'static str {
    match access.caller.kind {
        CallerKind::Patient => "patient",
        CallerKind::Staff => "staff",
        CallerKind::System => "system",
    }
}

fn author_org(access: &Access) -> String {
    match access.caller.kind {
        CallerKind::Patient => PATIENT_AUTHORED_ORG.to_owned(),
        _ => access.caller.organisation.clone().unwrap_or_default(),
    }
}

/// Refuses the write unless the policy allows it: scopes, profile, category, relationship, and
/// for an update who wrote the alert and what it is now (R-WRITE-1/2, R-ROLE-1/2).
async fn authorise(
    state: &AppState,
    access: &Access,
    nhs: &str,
    category: &str,
    existing: Option<ExistingAlert<'_>>,
) -> Result<(), ApiError> {
    state
        .records
        .authorise(access, nhs, Ask::WriteAlert { category, existing })
        .await?;
    Ok(())
}

fn written(status: StatusCode, base_url: &str, resource: &Value) -> HttpResponse {
    let id = resource["id"].as_str().unwrap_or_default();
    let version = resource["meta"]["versionId"].as_str().unwrap_or("1");
    HttpResponse::build(status)
        .insert_header((
            header::LOCATION,
            format!("{base_url}/Flag/{id}/_history/{version}"),
        ))
        .insert_header((header::ETAG, format!("W/\"{version}\"")))
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(resource.to_string())
}

/// `POST /Flag`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    only_flags(&path.into_inner(), "POST")?;
    let (flag, statement) = parse_body(&req, &body)?;
    let access = match authenticate(&state, &req) {
        Ok(a) => a,
        Err(e) => return audit::finish(&state, &req, None, Subtype::Create, Err(e)).await,
    };
    let decided = authorise(
        &state,
        &access,
        &statement.nhs_number,
        statement.category.code(),
        None,
    )
    .await;
    // Audited first, stored second: an alert never exists unaudited.
    audit::finish(
        &state,
        &req,
        Some(&access),
        Subtype::Create,
        decided.map(|_| HttpResponse::Accepted().finish()),
    )
    .await?;
    let (kind, org, user) = (
        author_kind(&access),
        author_org(&access),
        access.caller.subject.clone(),
    );
    let (_, now) = scr_fhir::build::today_and_now();
    let text = storable(flag);
    let nhs = statement.nhs_number.clone();
    let resource = state
        .records
        .with_store(move |conn| {
            let author = Author {
                kind,
                user: &user,
                org: &org,
            };
            let id = scr_store::flags::create_flag(conn, &nhs, &author, &now, &text)?;
            let row =
                scr_store::flags::flag_by_id(conn, id)?.ok_or(scr_store::StoreError::NotFound {
                    entity: "flag",
                    id: id.to_string(),
                })?;
            let version = scr_store::flags::current_version(conn, id)?.ok_or(
                scr_store::StoreError::NotFound {
                    entity: "flag version",
                    id: id.to_string(),
                },
            )?;
            Ok(served(&row, &version))
        })
        .await?
        .map_err(ApiError::internal)?;
    Ok(written(StatusCode::CREATED, &state.base_url, &resource))
}

fn if_match(req: &HttpRequest) -> Result<i32, ApiError> {
    let value = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::PreconditionRequired(
                "an update needs If-Match: W/\"{versionId}\" with the version it replaces".into(),
            )
        })?;
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            ApiError::invalid(
                "If-Match",
                format!("'{value}' is not a version such as W/\"3\""),
            )
        })
}

/// `PUT /Flag/{id}` with `If-Match`.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (type_name, id) = path.into_inner();
    only_flags(&type_name, "PUT")?;
    let flag_id = parse_flag_id(&id).ok_or_else(|| ApiError::MethodNotAllowed {
        method: "PUT".into(),
        allow: "GET",
    })?;
    let (flag, statement) = parse_body(&req, &body)?;
    if flag.get("id").is_some_and(|v| v != id.as_str()) {
        return Err(ApiError::invalid(
            "Flag.id",
            "the id in the body is not the id in the URL",
        ));
    }
    let expected = if_match(&req)?;
    let access = match authenticate(&state, &req) {
        Ok(a) => a,
        Err(e) => return audit::finish(&state, &req, None, Subtype::Update, Err(e)).await,
    };
    let (existing, current) = state
        .records
        .with_store(move |conn| {
            let row = scr_store::flags::flag_by_id(conn, flag_id)?;
            let version = scr_store::flags::current_version(conn, flag_id)?;
            Ok(row.zip(version))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Flag", &id))?;
    // The stored alert's category decides as much as the new one: an update may not take an
    // alert out of the writer's categories any more than into them.
    let current: Value = serde_json::from_str(&current.resource).map_err(ApiError::internal)?;
    let current_category = scr_fhir::alerts::check_alert(&current)
        .map(|s| s.category.code())
        .map_err(|_| ApiError::internal("a stored alert does not fit the alert profile"))?;
    let decided = if existing.nhs_number != statement.nhs_number {
        Err(ApiError::invalid(
            "Flag.subject",
            "an alert cannot move to another patient",
        ))
    } else {
        let stored = ExistingAlert {
            author_kind: &existing.author_kind,
            author_org: &existing.author_org,
            category: current_category,
        };
        authorise(
            &state,
            &access,
            &existing.nhs_number,
            statement.category.code(),
            Some(stored),
        )
        .await
    };
    if let Err(ApiError::Invalid(i)) = decided {
        return Err(ApiError::Invalid(i));
    }
    audit::finish(
        &state,
        &req,
        Some(&access),
        Subtype::Update,
        decided.map(|_| HttpResponse::Accepted().finish()),
    )
    .await?;
    let (kind, org, user) = (
        author_kind(&access),
        author_org(&access),
        access.caller.subject.clone(),
    );
    let (_, now) = scr_fhir::build::today_and_now();
    let text = storable(flag);
    let store = state.store.clone();
    let outcome = web::block(move || {
        let mut conn = store.conn()?;
        let author = Author {
            kind,
            user: &user,
            org: &org,
        };
        match scr_store::flags::update_flag(&mut conn, flag_id, expected, &author, &now, &text) {
            Ok(_) => {
                let version = scr_store::flags::current_version(&mut conn, flag_id)?.ok_or(
                    scr_store::StoreError::NotFound {
                        entity: "flag version",
                        id: flag_id.to_string(),
                    },
                )?;
                Ok(Ok(served(&existing, &version)))
            }
            Err(FlagWriteError::Store(e)) => Err(e),
            Err(other) => Ok(Err(other)),
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::Unavailable {
        detail: e.to_string(),
    })?;
    match outcome {
        Ok(resource) => Ok(written(StatusCode::OK, &state.base_url, &resource.map_err(ApiError::internal)?)),
        Err(FlagWriteError::VersionConflict { current, .. }) => Err(ApiError::PreconditionFailed(format!("version {expected} is not current (it is {current}): read the alert again and reapply the change"))),
        Err(_) => Err(ApiError::not_found("Flag", &own_flags::flag_id(flag_id))),
    }
}

async fn readable_flag(state: &AppState, access: &Access, id: &str) -> Result<i64, ApiError> {
    let flag_id = parse_flag_id(id).ok_or_else(|| ApiError::not_found("Flag", id))?;
    // The history is shown only to whoever may read the alert now, through the same policy.
    state.records.require(access, "Flag", Action::Read)?;
    state.records.read(access, "Flag", id).await?;
    Ok(flag_id)
}

/// `GET /Flag/{id}/_history`: every version, newest first, as a `history` Bundle.
pub async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (type_name, id) = path.into_inner();
    if type_name != "Flag" {
        return Err(ApiError::UnknownEndpoint {
            what: format!("history of {type_name}"),
        });
    }
    audit::audited(&state, &req, Subtype::Read, async |access| {
        let flag_id = readable_flag(&state, access, &id).await?;
        let (row, versions) = state.records.with_store(move |conn| {
            let row = scr_store::flags::flag_by_id(conn, flag_id)?.ok_or(scr_store::StoreError::NotFound { entity: "flag", id: flag_id.to_string() })?;
            Ok((row, scr_store::flags::history(conn, flag_id)?))
        })
        .await?;
        let mut entries = Vec::new();
        for v in &versions {
            let resource = served(&row, v).map_err(ApiError::internal)?;
            let (method, url, status) = if v.version == 1 { ("POST", "Flag".to_owned(), "201 Created") } else { ("PUT", format!("Flag/{id}"), "200 OK") };
            entries.push(json!({
                "fullUrl": format!("{}/Flag/{id}/_history/{}", state.base_url, v.version),
                "resource": resource,
                "request": { "method": method, "url": url },
                "response": { "status": status, "etag": format!("W/\"{}\"", v.version), "lastModified": v.recorded_at },
            }));
        }
        let (_, now) = scr_fhir::build::today_and_now();
        let mut bundle = searchset(&access.request_id, &now, Some(entries.len()), &[], Vec::new());
        bundle["type"] = "history".into();
        bundle["entry"] = Value::Array(entries);
        Ok(fhir_json(StatusCode::OK, &bundle))
    })
    .await
}

/// `GET /Flag/{id}/_history/{version}`: one version.
pub async fn vread(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (type_name, id, version) = path.into_inner();
    if type_name != "Flag" {
        return Err(ApiError::UnknownEndpoint {
            what: format!("history of {type_name}"),
        });
    }
    audit::audited(&state, &req, Subtype::Read, async |access| {
        let flag_id = readable_flag(&state, access, &id).await?;
        let wanted: i32 = version
            .parse()
            .map_err(|_| ApiError::not_found("Flag", &format!("{id}/_history/{version}")))?;
        let (row, versions) = state
            .records
            .with_store(move |conn| {
                let row = scr_store::flags::flag_by_id(conn, flag_id)?.ok_or(
                    scr_store::StoreError::NotFound {
                        entity: "flag",
                        id: flag_id.to_string(),
                    },
                )?;
                Ok((row, scr_store::flags::history(conn, flag_id)?))
            })
            .await?;
        let v = versions
            .iter()
            .find(|v| v.version == wanted)
            .ok_or_else(|| ApiError::not_found("Flag", &format!("{id}/_history/{version}")))?;
        let resource = served(&row, v).map_err(ApiError::internal)?;
        Ok(HttpResponse::Ok()
            .insert_header((header::ETAG, format!("W/\"{wanted}\"")))
            .insert_header((header::CONTENT_TYPE, FHIR_JSON))
            .body(resource.to_string()))
    })
    .await
}
