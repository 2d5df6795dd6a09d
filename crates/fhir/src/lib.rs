//! The FHIR R4 side of the facade, with no I/O: identifier systems and code systems, the NHS
//! number check, builders for the JSON every source emits, Bundles and OperationOutcomes, search
//! parameter parsing and matching, and the conformance check against the R4 model.
//!
//! fhir-sdk (its `r4b` model, identical to R4 for the resources served here) is used only in this
//! crate, behind plain non-generic functions ([`conformance`]), because instantiating its serde
//! code is what makes a build slow. Every other crate works with `serde_json::Value`.

pub mod alerts;
pub mod build;
pub mod bundle;
pub mod conformance;
pub mod consent;
pub mod nhs_number;
pub mod search;
pub mod systems;
pub mod valueset;
pub mod zone;

pub use serde_json::Value;
