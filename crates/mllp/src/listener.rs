//! The TCP listener: one thread per connection (the sender waits for each ACK, so a connection
//! is sequential), up to a configured number of connections. A connection that sends nothing
//! for the idle timeout, sends a message over the limit, sends bytes outside frames or
//! disconnects mid-message affects only itself. A handler error (the store is down) closes the
//! connection without acknowledging: the sender resends, and nothing acknowledged is lost.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Frame, FrameReader};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub max_message_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What a message means. Implementations commit the message's effect before returning its ACK.
pub trait MessageHandler: Send + Sync + 'static {
    /// The ACK for one message; `Err` means nothing is acknowledged (the connection closes).
    fn message(&self, raw: &str) -> Result<String, String>;
    /// The ACK (AR) for a message over the size limit, whose beginning is `prefix`.
    fn too_large(&self, prefix: &str, size: usize, limit: usize) -> Result<String, String>;
}

/// HL7 v2 is often Latin-1 on the wire: keep every byte as the character it stands for rather
/// than replacing what is not UTF-8.
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Accepts connections until the listener fails. Blocks.
pub fn serve(
    listener: TcpListener,
    config: ListenerConfig,
    handler: Arc<dyn MessageHandler>,
) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    log::info!("MLLP listener on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("MLLP accept failed: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= config.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            log::warn!(
                "MLLP connection refused: {} connections already open",
                config.max_connections
            );
            drop(stream);
            continue;
        }
        let (config, handler, active) = (config.clone(), Arc::clone(&handler), Arc::clone(&active));
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = connection(stream, &config, handler.as_ref()) {
                log::info!("MLLP connection from {peer} ended: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn connection(
    mut stream: TcpStream,
    config: &ListenerConfig,
    handler: &dyn MessageHandler,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(config.idle_timeout))?;
    stream.set_write_timeout(Some(config.idle_timeout))?;
    let mut reader = FrameReader::new(config.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if reader.in_frame() {
                    log::warn!("MLLP sender disconnected mid-message; the partial message was not acknowledged");
                }
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(ErrorKind::TimedOut, "idle timeout"));
            }
            Err(e) => return Err(e),
        };
        let before = reader.stray_bytes;
        for frame in reader.push(&buf[..n]) {
            let ack = match frame {
                Frame::Message(bytes) => handler.message(&decode(&bytes)),
                Frame::TooLarge { prefix, size } => {
                    handler.too_large(&decode(&prefix), size, config.max_message_bytes)
                }
            };
            match ack {
                Ok(ack) => stream.write_all(&crate::frame(&ack))?,
                Err(e) => {
                    log::error!("MLLP message not acknowledged, closing the connection so the sender resends: {e}");
                    return Ok(());
                }
            }
        }
        if reader.stray_bytes > before {
            log::warn!(
                "MLLP framing error: {} bytes outside any frame skipped",
                reader.stray_bytes - before
            );
        }
    }
}
