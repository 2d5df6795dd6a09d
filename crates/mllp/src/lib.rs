//! MLLP (Minimal Lower Layer Protocol) over TCP, for the HL7 v2 feeds trusts push: the framing
//! (`0x0B` message `0x1C 0x0D`) with a size limit, and a listener that serves many connections,
//! each carrying many messages one after another, answering each with the acknowledgement its
//! [`MessageHandler`] returns. Nothing here knows HL7 beyond the framing: the handler decides
//! what a message means and commits it before its ACK is written.

pub mod codec;
pub mod listener;

pub use codec::{Frame, FrameReader};
pub use listener::{serve, tls_acceptor, ListenerConfig, MessageHandler, Peer};

/// Frames one message (or acknowledgement) for the wire.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(codec::START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&[codec::END, codec::CR]);
    out
}
