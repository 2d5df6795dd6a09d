//! Prometheus metrics (`GET /metrics`, text exposition format), for operators.
//!
//! The leaf crates count through the `metrics` facade (source calls in `scr_record`, audit group
//! commits in `scr_store`, MLLP acknowledgements in the `scr` binary); this module installs the
//! one process-wide Prometheus recorder, counts HTTP requests, and renders the page. Labels are a
//! small fixed set: an interaction name derived from the route (never a path, id or query), a
//! status code, a configured source name, an ACK code. Nothing here can name a patient.
//!
//! Served outside `/fhir`, without a token and without an AuditEvent (it is not a FHIR access),
//! when `server.metrics = true` (the default); see docs/operations.md for who should reach it.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Latency buckets, in seconds: from a cached read to a source at its timeout.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Audit group-commit sizes, in events (the group is capped at 1024).
const EVENTS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on first use (one per process: `scr demo`'s neighbouring
/// record in the same process shares it). `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("scr_audit_batch_events".into()), EVENTS)
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    log::error!("metrics: {e}");
                    return None;
                }
            };
            let handle = recorder.handle();
            match ::metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    log::error!("metrics: {e}");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "scr_http_requests_total",
        "HTTP requests answered, by interaction and status"
    );
    describe_histogram!(
        "scr_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by interaction"
    );
    describe_histogram!(
        "scr_source_duration_seconds",
        Unit::Seconds,
        "Time a source or neighbouring record took to answer (or to time out), by source"
    );
    describe_counter!(
        "scr_source_errors_total",
        "Source calls that failed (other than by timeout), by source"
    );
    describe_counter!(
        "scr_source_timeouts_total",
        "Source calls abandoned at the source timeout, by source"
    );
    describe_histogram!(
        "scr_audit_commit_duration_seconds",
        Unit::Seconds,
        "Time one audit group commit took"
    );
    describe_histogram!(
        "scr_audit_batch_events",
        Unit::Count,
        "AuditEvents written by one group commit"
    );
    describe_counter!(
        "scr_audit_commit_failures_total",
        "Audit group commits that failed (their requests were answered 503)"
    );
    describe_counter!(
        "scr_mllp_messages_total",
        "HL7 v2 messages received over MLLP, by the ACK code answered (AA, AE, AR)"
    );
    describe_counter!(
        "scr_mllp_unacknowledged_total",
        "HL7 v2 messages not acknowledged (the store failed; the connection was closed)"
    );
    describe_gauge!(
        "scr_hl7_quarantine_messages",
        Unit::Count,
        "HL7 v2 messages in the quarantine (AE/AR, unresolved), counted when scraped"
    );
}

/// The interaction a request was, from its route pattern and method: a fixed set of names.
pub fn interaction(method: &Method, pattern: Option<&str>) -> &'static str {
    let Some(pattern) = pattern else {
        return "other";
    };
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let put = method == Method::PUT;
    let path = pattern.strip_prefix("/fhir").unwrap_or(pattern);
    match path {
        "/health/live" | "/health/ready" => "health",
        "/metrics" => "metrics",
        "/metadata" if get => "capabilities",
        "/.well-known/smart-configuration" if get => "smart-configuration",
        "/auth/token" if post => "token",
        p if p.ends_with("/$everything") && get => "everything",
        p if p.ends_with("/$break-glass") && post => "break-glass",
        p if p.ends_with("/$explain") && post => "explain",
        p if p.ends_with("/_history/{version}") && get => "vread",
        p if p.ends_with("/_history") && get => "history",
        p if p.ends_with("/_search") && post => "search",
        "/{type}" | "/Consent" | "/AuditEvent" if get => "search",
        "/{type}" | "/Consent" if post => "create",
        "/{type}/{id}" | "/Consent/{id}" | "/AuditEvent/{id}" if get => "read",
        "/{type}/{id}" if put => "update",
        _ => "other",
    }
}

/// Counts one answered request.
pub fn record_request(interaction: &'static str, status: StatusCode, elapsed: Duration) {
    ::metrics::counter!(
        "scr_http_requests_total",
        "interaction" => interaction,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    ::metrics::histogram!("scr_http_request_duration_seconds", "interaction" => interaction)
        .record(elapsed.as_secs_f64());
}

/// `GET /metrics`: the text exposition format. The quarantine gauge is counted now (one query).
///
/// Statuses: 200; 404 when `server.metrics = false`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let Some(handle) = handle().filter(|_| state.metrics) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("metrics are not served (server.metrics = false)\n");
    };
    let store = state.store.clone();
    let quarantined = web::block(move || {
        let mut conn = store.conn().map_err(|e| scr_store::error_chain(&e))?;
        scr_store::hl7::count_all_quarantined(&mut conn).map_err(|e| e.to_string())
    })
    .await;
    match quarantined {
        Ok(Ok(n)) => ::metrics::gauge!("scr_hl7_quarantine_messages").set(n as f64),
        Ok(Err(e)) => log::warn!("metrics: the quarantine could not be counted: {e}"),
        Err(e) => log::warn!("metrics: the quarantine could not be counted: {e}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(handle.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_labels_are_a_fixed_set_of_interactions_never_a_path() {
        let cases = [
            (Method::GET, "/fhir/{type}/{id}", "read"),
            (Method::PUT, "/fhir/{type}/{id}", "update"),
            (Method::DELETE, "/fhir/{type}/{id}", "other"),
            (Method::GET, "/fhir/{type}", "search"),
            (Method::POST, "/fhir/{type}", "create"),
            (Method::POST, "/fhir/{type}/_search", "search"),
            (Method::GET, "/fhir/Patient/{id}/$everything", "everything"),
            (
                Method::POST,
                "/fhir/Patient/{id}/$break-glass",
                "break-glass",
            ),
            (Method::POST, "/fhir/Patient/{id}/$explain", "explain"),
            (Method::POST, "/fhir/auth/token", "token"),
            (Method::GET, "/fhir/metadata", "capabilities"),
            (Method::GET, "/fhir/{type}/{id}/_history", "history"),
            (Method::GET, "/fhir/{type}/{id}/_history/{version}", "vread"),
            (Method::GET, "/fhir/AuditEvent", "search"),
            (Method::GET, "/fhir/Consent/{id}", "read"),
            (Method::POST, "/fhir/Consent", "create"),
            (Method::GET, "/health/ready", "health"),
            (Method::GET, "/metrics", "metrics"),
        ];
        for (method, pattern, want) in cases {
            assert_eq!(
                interaction(&method, Some(pattern)),
                want,
                "{method} {pattern}"
            );
        }
        assert_eq!(interaction(&Method::GET, None), "other");
        assert_eq!(
            interaction(&Method::GET, Some("/fhir/Patient/9990000018")),
            "other",
            "a concrete path is never a label"
        );
    }
}
