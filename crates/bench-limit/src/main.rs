//! `scr-bench-limit FILE PORT [WORKERS]`: the benchmark's ceiling. A bare actix-web server,
//! configured as the facade is (same framework, same number of workers, keep-alive), that answers
//! every `GET` with the bytes of `FILE` — a typical `$everything` Bundle the facade served, saved
//! by `bench/region.sh`. No token, no database, no policy, no audit, no serialisation: what is
//! left is HTTP on this machine, so facade ÷ limit is the share of the hardware the facade's own
//! work leaves.

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(port)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: scr-bench-limit FILE PORT [WORKERS]");
        std::process::exit(2);
    };
    let port: u16 = port
        .parse()
        .map_err(|_| std::io::Error::other(format!("PORT: not a port number: {port}")))?;
    let workers: usize = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(2);
    let body = web::Bytes::from(std::fs::read(file)?);
    actix_web::rt::System::new().block_on(
        HttpServer::new(move || {
            let body = body.clone();
            App::new().default_service(web::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/fhir+json")
                        .body(body)
                }
            }))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run(),
    )
}
