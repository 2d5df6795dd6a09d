//! The request id: every response carries `X-Request-Id`, the id the request came with when it
//! is well formed, else one generated here. The same id names the request in its log line, its
//! AuditEvents (the request entity's `request-id` detail), the Bundle it returns (`Bundle.id`)
//! and the token exchange with neighbouring records, so an operator can join all four.

use actix_web::{HttpMessage, HttpRequest};

/// The header, in the lower case HTTP/2 requires.
pub const HEADER: &str = "x-request-id";

/// This request's id, kept in the request's extensions by the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A well-formed incoming id: 1 to 64 letters, digits, `-` and `.`, so that it is also a
/// valid FHIR id (it becomes `Bundle.id`) and safe in a log line. Anything else is replaced.
pub fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A new id: 128 random bits in hex.
pub fn generate() -> String {
    scr_auth::dev::new_jti()
}

/// The id a request arrived with, if it is well formed; else a new one.
pub fn choose(incoming: Option<&str>) -> String {
    match incoming {
        Some(id) if well_formed(id) => id.to_owned(),
        _ => generate(),
    }
}

/// The id the middleware gave this request (a new one outside the middleware, as in tests).
pub fn of(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_a_well_formed_incoming_id_is_kept_anything_else_replaced() {
        assert_eq!(choose(Some("abc-123.4")), "abc-123.4");
        for bad in ["", "a b", "a/b", "ä", "x\r\ny", &"a".repeat(65)] {
            let chosen = choose(Some(bad));
            assert_ne!(chosen, bad);
            assert!(well_formed(&chosen), "{chosen}");
        }
        let a = choose(None);
        assert!(well_formed(&a) && a.len() == 32, "{a}");
        assert_ne!(a, choose(None), "generated ids differ");
    }
}
