//! Reads the codes of the agreement's ValueSets (`fhir-profiles/ValueSet-*.json`): the sensitive
//! value sets, and the objection and consent codes. Only `compose.include.concept` lists are
//! understood: the agreement enumerates its codes, it does not use filters.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueSetError {
    #[error("not JSON: {message}")]
    NotJson { message: String },
    #[error("not a ValueSet with compose.include[].concept[] codes")]
    NotEnumerated,
}

/// (system, code) pairs listed by the ValueSet.
pub fn codes(json: &str) -> Result<Vec<(String, String)>, ValueSetError> {
    let v: Value = serde_json::from_str(json).map_err(|e| ValueSetError::NotJson {
        message: e.to_string(),
    })?;
    if v["resourceType"] != "ValueSet" {
        return Err(ValueSetError::NotEnumerated);
    }
    let mut out = Vec::new();
    for include in v["compose"]["include"]
        .as_array()
        .ok_or(ValueSetError::NotEnumerated)?
    {
        let system = include["system"].as_str().unwrap_or_default();
        for concept in include["concept"]
            .as_array()
            .ok_or(ValueSetError::NotEnumerated)?
        {
            if let Some(code) = concept["code"].as_str() {
                out.push((system.to_owned(), code.to_owned()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerated_codes_are_read() {
        let vs = r#"{"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"1"},{"code":"2"}]}]}}"#;
        assert_eq!(codes(vs).unwrap().len(), 2);
        assert_eq!(
            codes(r#"{"resourceType":"Patient"}"#),
            Err(ValueSetError::NotEnumerated)
        );
    }
}
