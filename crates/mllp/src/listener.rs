//! The TCP listener: one thread per connection (the sender waits for each ACK, so a connection
//! is sequential), up to a configured number of connections. A connection that sends nothing
//! for the idle timeout, takes longer than the message deadline to send one message, sends a
//! message over the limit, sends bytes outside frames or disconnects mid-message affects only
//! itself. A handler error (the store is down) closes the connection without acknowledging: the
//! sender resends, and nothing acknowledged is lost.
//!
//! Who is on the other end is passed to the handler with every message as a [`Peer`]: the
//! address, and with mutual TLS the verified client certificate's subject, so the handler can
//! decide which sending facilities that connection may speak for.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::nid::Nid;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslStream, SslVerifyMode};

use crate::codec::{Frame, FrameReader};

#[derive(Clone)]
pub struct ListenerConfig {
    pub max_message_bytes: usize,
    /// A connection silent this long between messages is closed.
    pub idle_timeout: Duration,
    /// From the first byte of a message (or of the TLS handshake) to its end: a sender that
    /// trickles a byte at a time cannot hold a connection slot for longer than this.
    pub message_timeout: Duration,
    pub max_connections: usize,
    /// Mutual TLS: every connection must complete a handshake with a client certificate the
    /// acceptor verifies ([`tls_acceptor`]).
    pub tls: Option<Arc<SslAcceptor>>,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("idle_timeout", &self.idle_timeout)
            .field("message_timeout", &self.message_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The other end of a connection, as far as the listener could establish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    /// The subject common name of the client certificate, verified against the configured
    /// certificate authority (mutual TLS only).
    pub certificate: Option<String>,
}

/// What a message means. Implementations commit the message's effect before returning its ACK.
pub trait MessageHandler: Send + Sync + 'static {
    /// The ACK for one message; `Err` means nothing is acknowledged (the connection closes).
    fn message(&self, peer: &Peer, raw: &str) -> Result<String, String>;
    /// The ACK (AR) for a message over the size limit, whose beginning is `prefix`.
    fn too_large(
        &self,
        peer: &Peer,
        prefix: &str,
        size: usize,
        limit: usize,
    ) -> Result<String, String>;
}

/// HL7 v2 is often Latin-1 on the wire: keep every byte as the character it stands for rather
/// than replacing what is not UTF-8.
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// A TLS acceptor for mutual TLS: the server's certificate chain and key (PEM), and the
/// certificate authorities (PEM) whose client certificates are accepted. A connection without
/// a client certificate, or with one the authorities did not sign, fails the handshake.
pub fn tls_acceptor(
    certificate: &Path,
    private_key: &Path,
    client_ca: &Path,
) -> Result<SslAcceptor, String> {
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| format!("TLS: {e}"))?;
    b.set_certificate_chain_file(certificate)
        .map_err(|e| format!("{}: {e}", certificate.display()))?;
    b.set_private_key_file(private_key, SslFiletype::PEM)
        .map_err(|e| format!("{}: {e}", private_key.display()))?;
    b.check_private_key()
        .map_err(|e| format!("{}: {e}", private_key.display()))?;
    b.set_ca_file(client_ca)
        .map_err(|e| format!("{}: {e}", client_ca.display()))?;
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(b.build())
}

/// Holds one connection slot; gives it back when dropped, also when the connection's thread
/// panics.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if active.fetch_add(1, Ordering::SeqCst) >= max {
            active.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wait after a failed accept (out of file descriptors, ...): doubling from 10 ms up to one
/// second, so a persistent failure does not spin a core and flood the log.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1u64 << failures.min(7)).min(1000))
}

/// Accepts connections until the listener fails. Blocks.
pub fn serve(
    listener: TcpListener,
    config: ListenerConfig,
    handler: Arc<dyn MessageHandler>,
) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    log::info!(
        "MLLP listener on {}{}",
        listener.local_addr()?,
        if config.tls.is_some() {
            " (mutual TLS)"
        } else {
            ""
        }
    );
    let mut failures = 0u32;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => {
                failures = 0;
                s
            }
            Err(e) => {
                let wait = accept_backoff(failures);
                failures = failures.saturating_add(1);
                log::warn!("MLLP accept failed: {e}; waiting {} ms", wait.as_millis());
                std::thread::sleep(wait);
                continue;
            }
        };
        let Some(slot) = Slot::take(&active, config.max_connections) else {
            log::warn!(
                "MLLP connection refused: {} connections already open",
                config.max_connections
            );
            continue;
        };
        let (config, handler) = (config.clone(), Arc::clone(&handler));
        let spawned = std::thread::Builder::new()
            .name("mllp-connection".into())
            .spawn(move || {
                let _slot = slot;
                let address = stream.peer_addr().map(|a| a.ip());
                match address {
                    Ok(address) => {
                        if let Err(e) = connection(stream, address, &config, handler.as_ref()) {
                            log::info!("MLLP connection from {address} ended: {e}");
                        }
                    }
                    Err(e) => log::info!("MLLP connection without a peer address: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::error!("MLLP connection dropped: no thread for it: {e}");
        }
    }
    Ok(())
}

/// A connection's byte stream, plain or TLS, with access to the socket for timeouts.
trait Wire: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Wire for SslStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref()
    }
}

fn connection(
    stream: TcpStream,
    address: IpAddr,
    config: &ListenerConfig,
    handler: &dyn MessageHandler,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(config.idle_timeout))?;
    match &config.tls {
        None => {
            let peer = Peer {
                address,
                certificate: None,
            };
            messages(stream, &peer, config, handler)
        }
        Some(acceptor) => {
            stream.set_read_timeout(Some(config.message_timeout))?;
            let tls = acceptor
                .accept(stream)
                .map_err(|e| std::io::Error::new(ErrorKind::PermissionDenied, e.to_string()))?;
            let certificate = tls
                .ssl()
                .peer_certificate()
                .and_then(|c| {
                    c.subject_name()
                        .entries_by_nid(Nid::COMMONNAME)
                        .next()
                        .and_then(|e| String::from_utf8(e.data().as_slice().to_vec()).ok())
                })
                .ok_or_else(|| {
                    std::io::Error::new(
                        ErrorKind::PermissionDenied,
                        "client certificate without a common name",
                    )
                })?;
            let peer = Peer {
                address,
                certificate: Some(certificate),
            };
            messages(tls, &peer, config, handler)
        }
    }
}

fn messages<W: Wire>(
    mut stream: W,
    peer: &Peer,
    config: &ListenerConfig,
    handler: &dyn MessageHandler,
) -> std::io::Result<()> {
    let mut reader = FrameReader::new(config.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    // When the first byte of the message now being received arrived.
    let mut started: Option<Instant> = None;
    loop {
        let wait = match started {
            None => config.idle_timeout,
            Some(t) => match config.message_timeout.checked_sub(t.elapsed()) {
                Some(left) if !left.is_zero() => left.min(config.idle_timeout),
                _ => return Err(message_deadline(&reader)),
            },
        };
        stream.socket().set_read_timeout(Some(wait))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if reader.in_frame() {
                    log::warn!("MLLP sender disconnected mid-message; the partial message was not acknowledged");
                }
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(match started {
                    Some(_) => message_deadline(&reader),
                    None => std::io::Error::new(ErrorKind::TimedOut, "idle timeout"),
                });
            }
            Err(e) => return Err(e),
        };
        started.get_or_insert_with(Instant::now);
        let before = reader.stray_bytes;
        for frame in reader.push(&buf[..n]) {
            let ack = match frame {
                Frame::Message(bytes) => handler.message(peer, &decode(&bytes)),
                Frame::TooLarge { prefix, size } => {
                    handler.too_large(peer, &decode(&prefix), size, config.max_message_bytes)
                }
            };
            match ack {
                Ok(ack) => stream.write_all(&crate::frame(&ack))?,
                Err(e) => {
                    log::error!("MLLP message not acknowledged, closing the connection so the sender resends: {e}");
                    return Ok(());
                }
            }
            // The deadline runs from the first byte of the next message.
            started = None;
        }
        if reader.in_frame() {
            started.get_or_insert_with(Instant::now);
        }
        if reader.stray_bytes > before {
            log::warn!(
                "MLLP framing error: {} bytes outside any frame skipped",
                reader.stray_bytes - before
            );
        }
    }
}

fn message_deadline(reader: &FrameReader) -> std::io::Error {
    if reader.in_frame() {
        log::warn!("MLLP sender missed the message deadline mid-message; the partial message was not acknowledged");
    }
    std::io::Error::new(ErrorKind::TimedOut, "message deadline")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Frame, FrameReader};

    struct Echo;

    impl MessageHandler for Echo {
        fn message(&self, peer: &Peer, raw: &str) -> Result<String, String> {
            if raw == "PANIC" {
                panic!("a handler bug");
            }
            Ok(format!("ACK {raw} from {}", peer.address))
        }
        fn too_large(&self, _: &Peer, _: &str, size: usize, _: usize) -> Result<String, String> {
            Ok(format!("TOO LARGE {size}"))
        }
    }

    fn start(max_connections: usize, message_timeout: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = ListenerConfig {
            max_message_bytes: 1024,
            idle_timeout: Duration::from_secs(30),
            message_timeout,
            max_connections,
            tls: None,
        };
        std::thread::spawn(move || serve(listener, config, Arc::new(Echo)));
        port
    }

    /// The ACK for `message`, or `None` when the connection was closed first.
    fn exchange(stream: &mut TcpStream, message: &str) -> Option<String> {
        stream.write_all(&crate::frame(message)).ok()?;
        read_ack(stream)
    }

    fn read_ack(stream: &mut TcpStream) -> Option<String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = FrameReader::new(1 << 16);
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            if let Some(Frame::Message(m)) = reader.push(&buf[..n]).into_iter().next() {
                return Some(String::from_utf8(m).unwrap());
            }
        }
    }

    #[test]
    fn item1_a_panicking_connection_gives_its_slot_back() {
        let port = start(1, Duration::from_secs(30));
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(exchange(&mut first, "PANIC"), None, "the connection closes");
        drop(first);
        // The one slot is free again: a new connection is served. The slot is given back on the
        // listener's schedule, so try a few times before concluding it leaked.
        let mut served = None;
        for _ in 0..50 {
            let mut next = TcpStream::connect(("127.0.0.1", port)).unwrap();
            served = exchange(&mut next, "hello");
            if served.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(served.as_deref(), Some("ACK hello from 127.0.0.1"));
    }

    #[test]
    fn item1_a_byte_at_a_time_cannot_hold_a_slot_past_the_message_deadline() {
        let port = start(1, Duration::from_secs(2));
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let framed = crate::frame("MSH|^~\\&|trickled");
        // A byte every 300 ms: each read is well inside the idle timeout, the message is not.
        let mut closed = false;
        for b in &framed {
            if slow.write_all(&[*b]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let answer = if closed { None } else { read_ack(&mut slow) };
        assert_eq!(answer, None, "the trickled message is never acknowledged");
        // And the slot is free for a well-behaved sender.
        let mut good = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(
            exchange(&mut good, "hello").as_deref(),
            Some("ACK hello from 127.0.0.1")
        );
    }

    #[test]
    fn item1_a_connection_sends_many_messages_each_inside_the_deadline() {
        let port = start(1, Duration::from_secs(1));
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for i in 0..3 {
            assert_eq!(
                exchange(&mut s, &format!("m{i}")),
                Some(format!("ACK m{i} from 127.0.0.1"))
            );
            // Waiting between messages is idle time, not message time.
            std::thread::sleep(Duration::from_millis(1500));
        }
    }

    #[test]
    fn item1_accept_failures_back_off_up_to_a_second() {
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(1), Duration::from_millis(20));
        assert_eq!(accept_backoff(6), Duration::from_millis(640));
        assert_eq!(accept_backoff(7), Duration::from_secs(1));
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
    }
}
