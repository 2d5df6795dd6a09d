//! The example SMART viewer app (`examples/smart-app/`), embedded in the binary so `scr demo`
//! serves it from any directory: `GET /apps/viewer/{file}` when `server.viewer_app = true`.
//! Static files only, each with its content type and a Content-Security-Policy that lets the
//! page run its own scripts and talk to this server only.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// Where the viewer is served.
pub const VIEWER_PATH: &str = "/apps/viewer";

/// The app's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "launch.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../examples/smart-app/launch.html"),
    ),
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../examples/smart-app/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../examples/smart-app/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../examples/smart-app/style.css"),
    ),
    (
        "vendor/fhir-client.pure.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../examples/smart-app/vendor/fhir-client.pure.min.js"),
    ),
];

/// Scripts and styles from this origin only, no inline script, fetches to this origin only
/// (the FHIR server and its authorization endpoints), never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The viewer's file `path` (e.g. `index.html`), or 404.
async fn file(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().query("file");
    let name = if name.is_empty() { "index.html" } else { name };
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found"),
    }
}

/// Mounts the viewer at [`VIEWER_PATH`] (GET and HEAD only; other methods 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(format!("{VIEWER_PATH}/{{file:.*}}"))
            .route(web::get().to(file))
            .route(web::head().to(file))
            .default_service(web::route().to(|| async {
                HttpResponse::MethodNotAllowed()
                    .insert_header((header::ALLOW, "GET, HEAD"))
                    .finish()
            })),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_loads_only_files_that_are_served() {
        for (name, _, bytes) in FILES.iter().filter(|(n, _, _)| n.ends_with(".html")) {
            let text = String::from_utf8_lossy(bytes);
            for attr in ["src=\"", "href=\""] {
                for piece in text.split(attr).skip(1) {
                    let target = piece.split('"').next().unwrap_or_default();
                    assert!(
                        FILES.iter().any(|(n, _, _)| *n == target),
                        "{name} refers to {target}, which is not served"
                    );
                }
            }
            assert!(
                !text.contains("<script>"),
                "{name}: inline script breaks the CSP"
            );
        }
    }
}
