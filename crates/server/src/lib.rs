//! The FHIR REST server, HTTP only: routes, one handler per interaction (parse, ask the record
//! service and the policy, format), the single error mapping, the audit of every request, and
//! start-up. Opening a record is `scr_record`; every access rule is `scr_policy`.

pub mod access;
pub mod apps;
pub mod audit;
pub mod config;
pub mod config_env;
pub mod error;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod request_id;
pub mod respond;
pub mod state;
pub mod throttle;

use std::time::Instant;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};

use handlers::{
    audit_events, authorize, break_glass, capabilities, consent, everything, explain, fallback,
    flag_write, health, read, search, smart, token,
};
pub use state::AppState;

/// Every route of the FHIR endpoint, under `/fhir`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // 405 with the methods this route serves in `Allow`.
    let not_allowed = |allow: &'static str| {
        web::route().to(move |req: actix_web::HttpRequest| fallback::method_not_allowed(req, allow))
    };
    cfg.service(
        web::resource("/health/live")
            .route(web::get().to(health::live))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/health/ready")
            .route(web::get().to(health::ready))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(not_allowed("GET")),
    );
    cfg.service(
        web::scope("/fhir")
            .service(
                web::resource("/metadata")
                    .route(web::get().to(capabilities::metadata))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/.well-known/smart-configuration")
                    .route(web::get().to(smart::smart_configuration))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/Patient/{id}/$everything")
                    .route(web::get().to(everything::everything))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/Patient/{id}/$break-glass")
                    .route(web::post().to(break_glass::break_glass))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/Patient/{id}/$explain")
                    .route(web::post().to(explain::explain))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/auth/token")
                    .route(web::post().to(token::token))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/auth/authorize")
                    .route(web::get().to(authorize::authorize))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/auth/callback")
                    .route(web::get().to(authorize::callback))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/auth/role")
                    .route(web::post().to(authorize::confirm_role))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/auth/patient")
                    .route(web::post().to(authorize::choose_patient))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/auth/launch")
                    .route(web::post().to(authorize::launch))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/auth/jwks")
                    .route(web::get().to(smart::jwks))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/Consent")
                    .route(web::get().to(consent::search))
                    .route(web::post().to(consent::create))
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/Consent/{id}")
                    .route(web::get().to(consent::read))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/AuditEvent")
                    .route(web::get().to(audit_events::search))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/AuditEvent/{id}")
                    .route(web::get().to(audit_events::read))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/{type}/{id}/_history/{version}")
                    .route(web::get().to(flag_write::vread))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/{type}/{id}/_history")
                    .route(web::get().to(flag_write::history))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/{type}/_search")
                    .route(web::post().to(search::search_post))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/{type}/{id}")
                    .route(web::get().to(read::read))
                    .route(web::put().to(flag_write::update))
                    .default_service(not_allowed("GET, PUT")),
            )
            .service(
                web::resource("/{type}")
                    .route(web::get().to(search::search_get))
                    .route(web::post().to(flag_write::create))
                    .default_service(not_allowed("GET, POST")),
            )
            .default_service(web::route().to(fallback::not_found)),
    )
    .default_service(web::route().to(fallback::not_found));
}

/// Starts the HTTP(S) server and runs until stopped.
/// CORS for the configured browser origins only: a SMART app served elsewhere may call the API
/// with a bearer token; every other origin is refused by the browser.
fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::header;
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static("prefer"),
            header::HeaderName::from_static(request_id::HEADER),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static(request_id::HEADER),
        ])
        .max_age(600)
        // Another origin gets no CORS headers (so the browser lets its page read nothing), but
        // the request itself is answered as any other: refusals stay OperationOutcomes.
        .block_on_origin_mismatch(false);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

pub async fn serve(config: config::Config, state: AppState) -> std::io::Result<()> {
    if config.server.metrics {
        // Installed before the first request so that every count lands in it.
        metrics::handle();
    }
    let data = web::Data::new(state);
    // The server's own origin too: a browser sends `Origin` on a same-origin POST.
    let mut origins = config.server.cors_origins.clone();
    let own = config
        .server
        .base_url
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    origins.push(own);
    // Development only: the sign-in page lets anyone be anyone (docs/configuration.md).
    let dev_idp = config.auth.dev_identity_provider.then(|| {
        let settings = scr_dev_idp::Settings::for_base_url(
            &config.server.base_url,
            &config.auth.dev_identity_provider_secret,
        );
        log::warn!(
            "DEVELOPMENT IDENTITY PROVIDER ENABLED at {}: anyone can sign in as any demo user. \
             Never enable auth.dev_identity_provider outside a demo or a test.",
            settings.issuer
        );
        scr_dev_idp::Provider::new(settings)
    });
    let viewer_app = config.server.viewer_app;
    if viewer_app {
        log::info!(
            "serving the example SMART viewer app at {}/",
            apps::VIEWER_PATH
        );
    }
    let deadline = std::time::Duration::from_millis(config.server.request_timeout_ms);
    let server = HttpServer::new(move || {
        let dev_idp = dev_idp.clone();
        App::new()
            .app_data(data.clone())
            // One overall deadline per request (server.request_timeout_ms): a request still
            // unanswered then is a 503 with Retry-After and no data. Every wait inside is
            // bounded on its own too (sources, store statements, locks, pool checkouts).
            .wrap_fn(move |req, srv| {
                // The id the request-id middleware (outside this one) gave the request, for the
                // answer past the deadline. (The request itself cannot be kept: routing needs it
                // unshared.)
                let id = req
                    .extensions()
                    .get::<request_id::RequestId>()
                    .map(|r| r.0.clone());
                let fut = srv.call(req);
                async move {
                    match actix_web::rt::time::timeout(deadline, fut).await {
                        Ok(res) => res,
                        // Answered by the error's own response (503, Retry-After, X-Request-Id).
                        Err(_) => Err(error::PastDeadline { request_id: id }.into()),
                    }
                }
            })
            .wrap_fn(|req, srv| {
                // One line per request: method, route pattern (never the path: it may hold an
                // NHS number), status, duration and request id. Never a body, name or token.
                // The same place counts the request for `/metrics` and gives every response
                // its `X-Request-Id`.
                let started = Instant::now();
                let method = req.method().clone();
                let id = request_id::choose(
                    req.headers()
                        .get(request_id::HEADER)
                        .and_then(|v| v.to_str().ok()),
                );
                req.extensions_mut()
                    .insert(request_id::RequestId(id.clone()));
                let fut = srv.call(req);
                async move {
                    let mut res = match fut.await {
                        Ok(res) => res,
                        Err(e) => {
                            // Past the request deadline: answered by the error's own 503.
                            let status = e.as_response_error().status_code();
                            metrics::record_request("deadline", status, started.elapsed());
                            log::info!(
                                request_id = id.as_str();
                                "{} (past its deadline) -> {} in {} ms",
                                method,
                                status.as_u16(),
                                started.elapsed().as_millis()
                            );
                            return Err(e);
                        }
                    };
                    let pattern = res.request().match_pattern();
                    let interaction = metrics::interaction(&method, pattern.as_deref());
                    let elapsed = started.elapsed();
                    metrics::record_request(interaction, res.status(), elapsed);
                    if let Ok(value) = HeaderValue::from_str(&id) {
                        res.headers_mut()
                            .insert(HeaderName::from_static(request_id::HEADER), value);
                    }
                    log::info!(
                        request_id = id.as_str();
                        "{} {} -> {} in {} ms",
                        method,
                        pattern.as_deref().unwrap_or("(unmatched)"),
                        res.status().as_u16(),
                        elapsed.as_millis()
                    );
                    Ok(res)
                }
            })
            .configure(move |cfg| {
                if let Some(provider) = &dev_idp {
                    scr_dev_idp::configure(cfg, provider);
                }
                if viewer_app {
                    apps::configure(cfg);
                }
            })
            .configure(routes)
            // gzip when the client accepts it (a 50 KB `$everything` is mostly repeated keys).
            .wrap(actix_web::middleware::Compress::default())
            // Outermost: a preflight is answered before any route or log line.
            .wrap(cors(&origins))
    })
    .workers(config.server.workers)
    .worker_max_blocking_threads(config.server.blocking_threads);
    let server = match (
        &config.server.tls_certificate,
        &config.server.tls_private_key,
    ) {
        (Some(cert), Some(key)) => {
            let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
                .map_err(std::io::Error::other)?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(std::io::Error::other)?;
            builder
                .set_certificate_chain_file(cert)
                .map_err(std::io::Error::other)?;
            server.bind_openssl(&config.server.bind, builder)?
        }
        _ => server.bind(&config.server.bind)?,
    };
    log::info!(
        "serving FHIR R4 at {} (listening on {})",
        config.server.base_url,
        config.server.bind
    );
    server.run().await
}
