//! The acute and mental health trusts' HL7 v2.4 feed (`specs/hl7v2-acute.md`): a small parser,
//! the ingest that checks, translates, stores and acknowledges each message (with a quarantine
//! for the ones it cannot apply), and the [`Hl7Source`] that serves what was received as FHIR.
//!
//! - [`parser`]: ER7 text to segments, fields, repetitions, components.
//! - [`translate`]: a message's meaning as FHIR JSON and store rows, without I/O.
//! - [`ingest`]: one transaction per message, ACKs, quarantine and replay, file splitting.
//! - [`senders`]: which facilities an MLLP connection may send for.
//! - [`source`]: the `scr_source::Source` implementation over the store.

pub mod ingest;
pub mod parser;
pub mod senders;
pub mod source;
pub mod time;
pub mod translate;

#[cfg(test)]
mod examples;

pub use ingest::{
    ingest_message, list_quarantine, replay, split_messages, Ack, AckCode, Hl7Config,
    QuarantinedMessage,
};
pub use parser::{parse, Message, ParseError};
pub use source::Hl7Source;
pub use translate::ErrorKind;
