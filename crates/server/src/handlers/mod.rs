//! One file per FHIR interaction. A handler parses, asks for the decision, calls the service,
//! formats the answer, and does nothing else.

pub mod audit_events;
pub mod authorize;
pub mod break_glass;
pub mod capabilities;
pub mod consent;
pub mod everything;
pub mod explain;
pub mod fallback;
pub mod flag_write;
pub mod health;
pub mod read;
pub mod search;
pub mod smart;
pub mod token;

/// The resource types served, as `'static` names.
pub const SERVED_TYPES: [&str; 5] = [
    "Patient",
    "AllergyIntolerance",
    "MedicationStatement",
    "Observation",
    "Flag",
];

/// The served type named in a path, or a 404 for anything else.
pub fn served_type(name: &str) -> Result<&'static str, crate::error::ApiError> {
    SERVED_TYPES
        .iter()
        .find(|t| **t == name)
        .copied()
        .ok_or_else(|| crate::error::ApiError::UnknownEndpoint {
            what: format!("resource type {name}"),
        })
}
