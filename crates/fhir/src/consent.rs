//! The one shape of `Consent` the shared care record accepts: a patient's objection to sharing
//! (`provision.type` `deny`) or its withdrawal (`permit`), for one patient (R-OBJ-1, R-OBJ-5).
//! Incoming JSON is checked here before anything trusts it, because fhir-sdk's parser silently
//! drops what it does not understand; every problem names its element.

use serde_json::Value;

use crate::bundle::{Issue, Severity};
use crate::{build, conformance, nhs_number, search};

/// What a valid objection statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentStatement {
    pub nhs_number: String,
    /// `deny`: the patient objects; `permit`: sharing is allowed (an objection is withdrawn).
    pub objects: bool,
    /// `Consent.dateTime`, if given: a day, or a UTC instant (its offset applied), never later
    /// than when it was checked.
    pub date_time: Option<String>,
}

/// How far ahead of the facade's clock a `Consent.dateTime` may be (the client's clock skew).
pub const CLOCK_SKEW_SECONDS: i64 = 300;

fn invalid(expression: &str, message: impl Into<String>) -> Issue {
    Issue::new(Severity::Error, "invalid", message).at(expression.to_owned())
}

fn has_coding(concept: &Value, system: &str, code: &str) -> bool {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == system && c["code"] == code)
}

/// Checks an incoming Consent and says what it states.
pub fn check_objection(resource: &Value, now: i64) -> Result<ConsentStatement, Vec<Issue>> {
    if resource["resourceType"] != "Consent" {
        return Err(vec![invalid(
            "resourceType",
            "the body must be a Consent resource",
        )]);
    }
    let mut issues = Vec::new();
    if resource["status"] != "active" {
        issues.push(invalid(
            "Consent.status",
            "status must be 'active': a statement is withdrawn by a newer statement, never changed",
        ));
    }
    if !has_coding(
        &resource["scope"],
        "http://terminology.hl7.org/CodeSystem/consentscope",
        "patient-privacy",
    ) {
        issues.push(invalid(
            "Consent.scope",
            "scope must be http://terminology.hl7.org/CodeSystem/consentscope|patient-privacy",
        ));
    }
    if resource["category"].as_array().is_none_or(|c| c.is_empty()) {
        issues.push(invalid(
            "Consent.category",
            "category is required (e.g. http://loinc.org|59284-0 Patient consent)",
        ));
    }
    if resource.get("policy").is_none() && resource.get("policyRule").is_none() {
        issues.push(invalid(
            "Consent.policyRule",
            "policy or policyRule is required for a privacy consent (ppc-1)",
        ));
    }
    let nhs = resource["patient"]["reference"]
        .as_str()
        .map(search::parse_patient_reference);
    let nhs = match nhs {
        Some(Ok(n)) => Some(n),
        Some(Err(m)) => {
            issues.push(invalid("Consent.patient", m));
            None
        }
        None => {
            issues.push(invalid(
                "Consent.patient",
                "patient is required: Patient/{NHS number}",
            ));
            None
        }
    };
    let objects = match resource["provision"]["type"].as_str() {
        Some("deny") => Some(true),
        Some("permit") => Some(false),
        _ => {
            issues.push(invalid(
                "Consent.provision.type",
                "provision.type must be 'deny' (objection) or 'permit' (withdrawal)",
            ));
            None
        }
    };
    // R-OBJ-1, the latest statement wins: a statement dated ahead of now would beat every
    // statement made before that date, so a future date is refused; a date-time is kept as a
    // UTC instant so that statements order correctly whatever offset they were sent with.
    let date_time = match resource.get("dateTime") {
        None => None,
        Some(Value::String(s)) => match build::utc_date_time(s) {
            Some(utc) if is_future(&utc, now) => {
                issues.push(invalid(
                    "Consent.dateTime",
                    "dateTime must not be in the future: a statement takes effect when it is made",
                ));
                None
            }
            Some(utc) => Some(utc),
            None => {
                issues.push(invalid(
                    "Consent.dateTime",
                    "dateTime must be a FHIR dateTime: a date, or a date and time with a time zone",
                ));
                None
            }
        },
        Some(_) => {
            issues.push(invalid(
                "Consent.dateTime",
                "dateTime must be a FHIR dateTime",
            ));
            None
        }
    };
    let (Some(nhs_number), Some(objects)) = (nhs, objects) else {
        return Err(issues);
    };
    if !issues.is_empty() || !nhs_number::is_valid(&nhs_number) {
        return Err(issues);
    }
    // Last, the whole resource against the R4 model: elements it does not know are named.
    if let Err(e) = conformance::check(resource) {
        let path = match &e {
            conformance::ConformanceError::NotInModel { path }
            | conformance::ConformanceError::R4bOnly { path } => path.clone(),
            _ => "Consent".to_owned(),
        };
        return Err(vec![invalid(&path, format!("not valid R4: {e}"))]);
    }
    Ok(ConsentStatement {
        nhs_number,
        objects,
        date_time,
    })
}

/// A day after today, or an instant beyond the allowed clock skew; `now` in Unix seconds.
fn is_future(utc: &str, now: i64) -> bool {
    match build::unix_of_date_time(utc) {
        Some(t) => t > now.saturating_add(CLOCK_SKEW_SECONDS),
        // A date: later than today (UTC).
        None => build::days_of(utc).is_some_and(|d| d > now.div_euclid(86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-12-01T00:00:00Z.
    const NOW: i64 = 1_796_083_200;

    #[test]
    fn item7_r_obj_1_a_statement_dated_in_the_future_is_refused() {
        for (date, ok) in [
            ("2099-01-01", false),
            ("2099-01-01T00:00:00Z", false),
            ("2026-12-02", false),
            ("2026-12-01T00:10:00Z", false),
            ("2026-12-01T00:04:00Z", true),
            ("2026-12-01T01:04:00+01:00", true),
            ("2026-12-01", true),
            ("2026-11-30T23:00:00-05:00", false),
        ] {
            let mut c = objection();
            c["dateTime"] = date.into();
            let result = check_objection(&c, NOW);
            assert_eq!(result.is_ok(), ok, "{date}: {result:?}");
            if let Err(issues) = result {
                assert_eq!(issues[0].expression, vec!["Consent.dateTime".to_string()]);
            }
        }
    }

    #[test]
    fn item7_r_obj_1_a_date_time_is_kept_in_utc() {
        let mut c = objection();
        c["dateTime"] = "2026-11-25T10:00:00+01:00".into();
        assert_eq!(
            check_objection(&c, NOW).unwrap().date_time.as_deref(),
            Some("2026-11-25T09:00:00Z")
        );
    }

    fn objection() -> Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
            "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
            "patient": { "reference": "Patient/9990000018" },
            "dateTime": "2026-11-25T10:00:00Z",
            "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
            "provision": { "type": "deny" },
        })
    }

    #[test]
    fn r_obj_1_an_objection_is_read() {
        let s = check_objection(&objection(), NOW).unwrap();
        assert_eq!((s.nhs_number.as_str(), s.objects), ("9990000018", true));
    }

    #[test]
    fn each_problem_names_its_element() {
        let mut c = objection();
        c["provision"]["type"] = "maybe".into();
        assert_eq!(
            check_objection(&c, NOW).unwrap_err()[0].expression,
            vec!["Consent.provision.type".to_string()]
        );
        let mut c = objection();
        c["colour"] = "blue".into();
        assert_eq!(
            check_objection(&c, NOW).unwrap_err()[0].expression,
            vec!["colour".to_string()]
        );
        let mut c = objection();
        c["patient"]["reference"] = "Patient/123".into();
        assert_eq!(
            check_objection(&c, NOW).unwrap_err()[0].expression,
            vec!["Consent.patient".to_string()]
        );
    }
}
