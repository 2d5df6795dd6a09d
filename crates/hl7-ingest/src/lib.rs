//! Receiving the trusts' HL7 v2.4 feed (`specs/hl7v2-acute.md`): each message checked,
//! translated, stored and acknowledged in one transaction, with a quarantine for the ones it
//! cannot apply. Reading messages is `scr-hl7`; serving what was received is `scr-source-hl7v2`.
//!
//! - [`translate`]: a message's meaning as FHIR JSON and store rows, without I/O.
//! - [`ingest`]: one transaction per message, ACKs, quarantine and replay, file splitting.
//! - [`senders`]: which facilities an MLLP connection may send for.

pub mod ingest;
pub mod senders;
pub mod translate;

pub use ingest::{
    ingest_message, list_quarantine, replay, split_messages, Ack, AckCode, Hl7Config,
    QuarantinedMessage,
};
pub use scr_hl7::ErrorKind;
