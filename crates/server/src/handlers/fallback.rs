//! Answers for requests no interaction matches: 405 for a known path with the wrong method,
//! 404 for anything else. Both are OperationOutcomes.

use actix_web::HttpRequest;

use crate::error::ApiError;

pub async fn method_not_allowed(
    req: HttpRequest,
    allow: &'static str,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    })
}

pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::UnknownEndpoint {
        what: format!(
            "{} {}",
            req.method(),
            req.match_pattern().unwrap_or_else(|| "this path".into())
        ),
    })
}
