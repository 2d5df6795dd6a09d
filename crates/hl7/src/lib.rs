//! HL7 v2 as the trusts send it (`specs/hl7v2-acute.md`), with no I/O: reading a message and
//! what its parts mean, shared by the crate that receives the feed (`scr-hl7-ingest`) and the
//! one that serves what was received (`scr-source-hl7v2`).
//!
//! - [`parser`]: ER7 text to segments, fields, repetitions, components.
//! - [`time`]: HL7 timestamps as FHIR dateTimes in the sending facility's zone.
//! - [`ErrorKind`]: why a message was not applied, with its HL7 table 0357 code.
//! - [`examples`]: the specification's example messages, for tests.

pub mod error;
pub mod examples;
pub mod parser;
pub mod time;

pub use error::ErrorKind;
pub use parser::{parse, Message, ParseError};
