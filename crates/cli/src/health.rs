//! `scr health`: asks a running server's `/health/live` (or any health URL) and exits 0 on 200,
//! 1 otherwise: the container's `HEALTHCHECK`, so the image needs no curl. Plain HTTP on the
//! loopback only (inside the container); a server behind TLS is checked by the orchestrator.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub struct HealthArgs {
    /// The health URL to ask (`http://host:port/path`).
    #[arg(long, default_value = "http://127.0.0.1:8080/health/live")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// `http://host:port/path` -> (host:port, path).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are checked"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// The status code the server answered.
fn status(url: &str, timeout: Duration) -> Result<u16, String> {
    let (authority, path) = split_url(url)?;
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("{authority}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_owned())
}

pub fn run(args: HealthArgs) -> Result<(), String> {
    match status(&args.url, Duration::from_secs(args.timeout.max(1)))? {
        200 => {
            println!("{}: 200", args.url);
            Ok(())
        }
        other => Err(format!("{}: {other}", args.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_urls_are_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health/live"),
            Ok(("127.0.0.1:8080".into(), "/health/live".into()))
        );
        assert_eq!(
            split_url("http://localhost"),
            Ok(("localhost:80".into(), "/".into()))
        );
        assert!(split_url("https://127.0.0.1/health/live").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
