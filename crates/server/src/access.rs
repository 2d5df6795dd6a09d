//! Who is asking: the bearer token verified into a caller. What they may do is asked of the
//! policy through the record service (`scr_record`), never decided here.

use actix_web::http::header;
use actix_web::HttpRequest;

pub use scr_record::Access;

use crate::error::ApiError;
use crate::state::AppState;

/// Verifies the bearer token; 401 with `WWW-Authenticate` on any failure.
pub fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Access, ApiError> {
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let token = scr_auth::bearer_token(header_value)?;
    let caller = state.verifier.verify(token, scr_fhir::build::unix_now())?;
    Ok(of_request(caller, req))
}

/// The access of `caller` in this request, under the request's own id (X-Request-Id), so its
/// AuditEvents, Bundle and any token exchange with a neighbouring record name the same request.
pub fn of_request(caller: scr_auth::Caller, req: &HttpRequest) -> Access {
    let mut access = Access::new(caller);
    access.request_id = crate::request_id::of(req);
    access
}
