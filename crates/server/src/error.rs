//! The server's one error type, and the one place that turns any error into an HTTP status and an
//! OperationOutcome. Handlers return `ApiError`; they never build error responses.
//!
//! | variant              | status | issue code      | notes                                       |
//! |----------------------|--------|-----------------|---------------------------------------------|
//! | `Invalid`            | 400    | invalid / the issue's own | unknown parameter, bad NHS number or date |
//! | `Unauthenticated`    | 401    | login           | `WWW-Authenticate: Bearer error=...`        |
//! | `Forbidden`          | 403    | forbidden       | names the rule that refused                 |
//! | `NotFound`           | 404    | not-found       | also for records the caller may not see     |
//! | `MethodNotAllowed`   | 405    | not-supported   | `Allow` header                              |
//! | `NotAcceptable`      | 406    | not-supported   | only `application/fhir+json` is served      |
//! | `UnsupportedMediaType` | 415  | not-supported   |                                             |
//! | `PreconditionFailed` | 412    | conflict        | an update of a version that is not current  |
//! | `PreconditionRequired` | 428  | required        | an update without `If-Match`                |
//! | `TooManyRequests`    | 429    | throttled       | `Retry-After`; refusals beyond the limit    |
//! | `Unavailable`        | 503    | transient       | `Retry-After: 5`; details only in the log   |
//! | `Timeout`            | 504    | timeout         |                                             |
//! | `Internal`           | 500    | exception       | cause chain logged, nothing internal sent   |

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use scr_fhir::bundle::{operation_outcome, Issue, Severity};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Invalid(Vec<Issue>),
    #[error("authentication failed: {0}")]
    Unauthenticated(#[from] scr_auth::AuthError),
    #[error("refused by {rule}: {reason}")]
    Forbidden {
        rule: scr_policy::Rule,
        reason: String,
    },
    #[error("{resource_type}/{id} not found")]
    NotFound { resource_type: String, id: String },
    #[error("no such resource type or endpoint: {what}")]
    UnknownEndpoint { what: String },
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("version conflict: {0}")]
    PreconditionFailed(String),
    #[error("precondition required: {0}")]
    PreconditionRequired(String),
    #[error("too many refused requests; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("timed out: {detail}")]
    Timeout { detail: String },
    #[error("internal error: {detail}")]
    Internal { detail: String },
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![
            Issue::new(Severity::Error, "invalid", message).at(param.to_owned())
        ])
    }

    pub fn not_found(resource_type: &str, id: &str) -> ApiError {
        ApiError::NotFound {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal {
            detail: detail.to_string(),
        }
    }

    /// The issues the client is told about. 5xx say nothing internal.
    fn issues(&self) -> Vec<Issue> {
        match self {
            ApiError::Invalid(issues) => issues.clone(),
            ApiError::Unauthenticated(e) => vec![Issue::new(
                Severity::Error,
                "login",
                format!("authentication required: {}", e.description()),
            )],
            ApiError::Forbidden { rule, reason } => vec![Issue::new(
                Severity::Error,
                "forbidden",
                format!("{reason} ({rule})"),
            )],
            ApiError::NotFound { resource_type, id } => vec![Issue::new(
                Severity::Error,
                "not-found",
                format!("{resource_type}/{id} is not known to this server"),
            )],
            ApiError::UnknownEndpoint { what } => vec![Issue::new(
                Severity::Error,
                "not-supported",
                format!("{what} is not supported by this server; see /metadata"),
            )],
            ApiError::MethodNotAllowed { method, allow } => vec![Issue::new(
                Severity::Error,
                "not-supported",
                format!("{method} is not allowed here; allowed: {allow}"),
            )],
            ApiError::NotAcceptable(what) => vec![Issue::new(
                Severity::Error,
                "not-supported",
                format!("{what}: this server answers application/fhir+json only"),
            )],
            ApiError::UnsupportedMediaType(what) => vec![Issue::new(
                Severity::Error,
                "not-supported",
                format!("content type {what} is not supported here"),
            )],
            ApiError::PreconditionFailed(m) => {
                vec![Issue::new(Severity::Error, "conflict", m.clone())]
            }
            ApiError::PreconditionRequired(m) => {
                vec![Issue::new(Severity::Error, "required", m.clone())]
            }
            ApiError::TooManyRequests { retry_after } => vec![Issue::new(
                Severity::Error,
                "throttled",
                format!("too many refused requests from this address; retry after {retry_after} seconds"),
            )],
            ApiError::Unavailable { .. } => vec![Issue::new(
                Severity::Error,
                "transient",
                "a service this request needs is unavailable; try again shortly",
            )],
            ApiError::Timeout { .. } => vec![Issue::new(
                Severity::Error,
                "timeout",
                "the request took too long to answer",
            )],
            ApiError::Internal { .. } => vec![Issue::new(
                Severity::Fatal,
                "exception",
                "an internal error occurred; it has been logged",
            )],
        }
    }
}

/// Opening a record: each of its errors is one of ours. A store failure is a 503 (its cause is
/// logged where it is turned into the response), never a missing record.
impl From<scr_record::RecordError> for ApiError {
    fn from(e: scr_record::RecordError) -> ApiError {
        use scr_record::RecordError as E;
        match e {
            E::NotFound { resource_type, id } => ApiError::NotFound { resource_type, id },
            E::Refused { rule, reason } => ApiError::Forbidden { rule, reason },
            E::Invalid { element, message } => ApiError::invalid(&element, message),
            E::Unavailable { detail } => ApiError::Unavailable { detail },
            E::Timeout { detail } => ApiError::Timeout { detail },
            E::Store(e) => ApiError::Unavailable {
                detail: scr_store::error_chain(&e),
            },
            other => ApiError::Internal {
                detail: other.to_string(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::UnknownEndpoint { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("{status}: {self}");
        }
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, FHIR_JSON));
        match self {
            ApiError::Unauthenticated(e) => {
                response.insert_header((header::WWW_AUTHENTICATE, e.www_authenticate()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Unavailable { .. } => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            ApiError::TooManyRequests { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.body(serde_json::to_vec(&operation_outcome(&self.issues())).unwrap_or_default())
    }
}

/// A request still unanswered at `server.request_timeout_ms`: the 503 of
/// [`ApiError::Unavailable`] (Retry-After, an OperationOutcome, no data), carrying the request's
/// `X-Request-Id` as every other answer does.
#[derive(Debug)]
pub struct PastDeadline {
    pub request_id: Option<String>,
}

impl std::fmt::Display for PastDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request did not complete within server.request_timeout_ms")
    }
}

impl ResponseError for PastDeadline {
    fn status_code(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = ApiError::Unavailable {
            detail: self.to_string(),
        }
        .error_response();
        if let Some(value) = self
            .request_id
            .as_deref()
            .and_then(|id| header::HeaderValue::from_str(id).ok())
        {
            response.headers_mut().insert(
                header::HeaderName::from_static(crate::request_id::HEADER),
                value,
            );
        }
        response
    }
}
