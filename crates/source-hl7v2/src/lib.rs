//! Serving the acute and mental health trusts' HL7 v2 feed as FHIR: the [`Hl7Source`], an
//! `scr_source::Source` over what `scr-hl7-ingest` received and stored.

pub mod source;

pub use source::Hl7Source;
