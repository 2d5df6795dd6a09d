//! Checks a resource against the R4 model (fhir-sdk's `r4b`, identical to R4 for every resource
//! this server emits or accepts).
//!
//! fhir-sdk's parser is lenient: unknown elements and invalid choice values are dropped silently.
//! So the check parses the JSON into the typed model, serialises it back, and compares: anything
//! the model could not represent shows up as a difference, named by its path. Numbers compare by
//! value (`72.50` and `72.5` are the same decimal).

use serde_json::Value;

use fhir_sdk::r4b::resources::Resource;

/// Why a resource does not conform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConformanceError {
    #[error("not a valid R4 resource: {message}")]
    Unparseable { message: String },
    #[error("element {path} is not valid R4 here (unknown element, wrong type or empty value)")]
    NotInModel { path: String },
    #[error("R4B-only element {path} must not be sent as R4")]
    R4bOnly { path: String },
}

/// Checks one resource (any type). `Ok(())` means every element survived the typed round trip.
pub fn check(resource: &Value) -> Result<(), ConformanceError> {
    if let Some(path) = find_r4b_only(resource, "") {
        return Err(ConformanceError::R4bOnly { path });
    }
    let typed: Resource =
        serde_json::from_value(resource.clone()).map_err(|e| ConformanceError::Unparseable {
            message: e.to_string(),
        })?;
    let back = serde_json::to_value(&typed).map_err(|e| ConformanceError::Unparseable {
        message: e.to_string(),
    })?;
    match first_difference(resource, &back, String::new()) {
        None => Ok(()),
        Some(path) => Err(ConformanceError::NotInModel { path }),
    }
}

/// Checks a JSON document held as bytes: convenient for tests and the CLI.
pub fn check_bytes(bytes: &[u8]) -> Result<(), ConformanceError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ConformanceError::Unparseable {
        message: e.to_string(),
    })?;
    check(&v)
}

/// Extension value types that exist in R4B but not in R4.
fn find_r4b_only(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Object(map) => map.iter().find_map(|(k, child)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k == "valueCodeableReference" || k == "valueRatioRange" {
                Some(here)
            } else {
                find_r4b_only(child, &here)
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, c)| find_r4b_only(c, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn first_difference(original: &Value, round_tripped: &Value, path: String) -> Option<String> {
    match (original, round_tripped) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(vb) => {
                        if let Some(p) = first_difference(va, vb, here) {
                            return Some(p);
                        }
                    }
                    None => return Some(here),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path);
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]")))
        }
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(path),
        (Value::String(x), Value::String(y)) => (x != y && !same_instant(x, y)).then_some(path),
        (x, y) => (x != y).then_some(path),
    }
}

/// fhir-sdk writes `+00:00` as `Z`; both are the same instant.
fn same_instant(a: &str, b: &str) -> bool {
    a.strip_suffix("+00:00")
        .is_some_and(|stem| b.strip_suffix('Z') == Some(stem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_patient_passes() {
        let p = json!({"resourceType": "Patient", "id": "9990000018", "gender": "female", "birthDate": "1970-01-02",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}]});
        assert_eq!(check(&p), Ok(()));
    }

    #[test]
    fn unknown_elements_and_bad_codes_are_named() {
        let unknown = json!({"resourceType": "Patient", "colour": "blue"});
        assert_eq!(
            check(&unknown),
            Err(ConformanceError::NotInModel {
                path: "colour".into()
            })
        );
        let bad_code = json!({"resourceType": "Patient", "gender": "f"});
        assert!(matches!(
            check(&bad_code),
            Err(ConformanceError::Unparseable { .. })
        ));
        let bad_choice = json!({"resourceType": "Patient", "deceasedBoolean": "yes"});
        assert!(check(&bad_choice).is_err());
    }

    #[test]
    fn decimals_compare_by_value() {
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
            "valueQuantity": {"value": 72.50, "unit": "kg"}});
        assert_eq!(check(&o), Ok(()));
    }
}
