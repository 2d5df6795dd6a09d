//! Alert (Flag) categories and their urgency order: "alerts first" in `access-rules.md` puts
//! active Flags at the top of an opened record, most urgent first. The categories are the
//! facade's CodeSystem (`fhir-profiles/CodeSystem-alert-category.json`).

use serde_json::{json, Value};

use crate::build::coding;
use crate::systems::SCR_FLAG_CATEGORY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertCategory {
    Safeguarding,
    SevereAllergyOrCondition,
    CommunicationSupport,
    TreatmentRestriction,
    EndOfLifeWishes,
    Other,
}

impl AlertCategory {
    pub const ALL: [AlertCategory; 6] = [
        AlertCategory::Safeguarding,
        AlertCategory::SevereAllergyOrCondition,
        AlertCategory::CommunicationSupport,
        AlertCategory::TreatmentRestriction,
        AlertCategory::EndOfLifeWishes,
        AlertCategory::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AlertCategory::Safeguarding => "safeguarding",
            AlertCategory::SevereAllergyOrCondition => "severe-allergy-condition",
            AlertCategory::CommunicationSupport => "communication-support",
            AlertCategory::TreatmentRestriction => "treatment-restriction",
            AlertCategory::EndOfLifeWishes => "end-of-life-wishes",
            AlertCategory::Other => "other",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            AlertCategory::Safeguarding => "Safeguarding (patient or household)",
            AlertCategory::SevereAllergyOrCondition => "Severe allergy or chronic condition",
            AlertCategory::CommunicationSupport => "Communication support",
            AlertCategory::TreatmentRestriction => "Treatment not to be given",
            AlertCategory::EndOfLifeWishes => "End of life wishes",
            AlertCategory::Other => "Other",
        }
    }

    pub fn from_code(code: &str) -> Option<AlertCategory> {
        AlertCategory::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The Flag `category` element for this category.
    pub fn concept(self) -> Value {
        json!([{ "coding": [coding(SCR_FLAG_CATEGORY, self.code(), Some(self.display()))], "text": self.display() }])
    }

    /// Urgency rank: 0 is most urgent.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// The urgency rank of a Flag resource (its first recognised category), `Other` when none.
pub fn flag_rank(flag: &Value) -> u8 {
    flag["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter(|c| c["system"] == SCR_FLAG_CATEGORY)
        .find_map(|c| c["code"].as_str().and_then(AlertCategory::from_code))
        .unwrap_or(AlertCategory::Other)
        .rank()
}

/// Classifies a free-text alert from a system that does not categorise its alerts (the GP
/// replica's `patient_alert`). Conservative: anything unrecognised is `Other`.
pub fn classify_text(text: &str) -> AlertCategory {
    let t = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&[
        "safeguard",
        "child protection",
        "risk to staff",
        "violent",
        "domestic abuse",
        "mappa",
    ]) {
        AlertCategory::Safeguarding
    } else if has(&[
        "anaphyla",
        "severe allerg",
        "allergy",
        "epilep",
        "diabet",
        "haemophilia",
        "adrenal",
    ]) {
        AlertCategory::SevereAllergyOrCondition
    } else if has(&[
        "interpreter",
        "deaf",
        "blind",
        "sign language",
        "dementia",
        "learning disab",
        "communication",
        "hearing",
        "autism",
    ]) {
        AlertCategory::CommunicationSupport
    } else if has(&[
        "no blood",
        "jehovah",
        "do not give",
        "refuses blood",
        "not to be given",
    ]) {
        AlertCategory::TreatmentRestriction
    } else if has(&[
        "dnacpr",
        "end of life",
        "palliative",
        "preferred place of death",
        "respect form",
        "advance decision",
    ]) {
        AlertCategory::EndOfLifeWishes
    } else {
        AlertCategory::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safeguarding_outranks_everything() {
        assert!(
            AlertCategory::Safeguarding.rank() < AlertCategory::SevereAllergyOrCondition.rank()
        );
        let flag = json!({"category": AlertCategory::CommunicationSupport.concept()});
        assert_eq!(flag_rank(&flag), 2);
        assert_eq!(flag_rank(&json!({})), 5);
    }

    #[test]
    fn free_text_alerts_are_classified() {
        assert_eq!(
            classify_text("Requires Punjabi interpreter"),
            AlertCategory::CommunicationSupport
        );
        assert_eq!(
            classify_text("Child protection plan"),
            AlertCategory::Safeguarding
        );
        assert_eq!(
            classify_text("DNACPR in place"),
            AlertCategory::EndOfLifeWishes
        );
        assert_eq!(classify_text("Likes tea"), AlertCategory::Other);
    }
}

/// What a valid incoming alert says (`fhir-profiles/StructureDefinition-scr-alert.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertStatement {
    pub nhs_number: String,
    pub category: AlertCategory,
    pub active: bool,
}

fn invalid(expression: &str, message: impl Into<String>) -> crate::bundle::Issue {
    crate::bundle::Issue::new(crate::bundle::Severity::Error, "invalid", message)
        .at(expression.to_owned())
}

/// Checks an incoming Flag against the alert profile, naming each element at fault.
pub fn check_alert(flag: &Value) -> Result<AlertStatement, Vec<crate::bundle::Issue>> {
    if flag["resourceType"] != "Flag" {
        return Err(vec![invalid(
            "resourceType",
            "the body must be a Flag resource",
        )]);
    }
    let mut issues = Vec::new();
    let active = match flag["status"].as_str() {
        Some("active") => Some(true),
        Some("inactive") => Some(false),
        _ => {
            issues.push(invalid("Flag.status", "status must be 'active' or 'inactive' (an alert is ended by making it inactive with period.end)"));
            None
        }
    };
    let category = flag["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter(|c| c["system"] == SCR_FLAG_CATEGORY)
        .find_map(|c| c["code"].as_str().and_then(AlertCategory::from_code));
    if category.is_none() {
        issues.push(invalid("Flag.category", format!("category must hold a code of {SCR_FLAG_CATEGORY}: safeguarding, severe-allergy-condition, communication-support, treatment-restriction, end-of-life-wishes or other")));
    }
    let has_code = flag["code"]["text"]
        .as_str()
        .is_some_and(|t| !t.trim().is_empty())
        || flag["code"]["coding"]
            .as_array()
            .is_some_and(|c| !c.is_empty());
    if !has_code {
        issues.push(invalid(
            "Flag.code",
            "code is required: a coding or a text saying what the alert is",
        ));
    }
    let nhs = match flag["subject"]["reference"]
        .as_str()
        .map(crate::search::parse_patient_reference)
    {
        Some(Ok(n)) => Some(n),
        Some(Err(m)) => {
            issues.push(invalid("Flag.subject", m));
            None
        }
        None => {
            issues.push(invalid(
                "Flag.subject",
                "subject is required: Patient/{NHS number}",
            ));
            None
        }
    };
    if active == Some(false) && flag["period"]["end"].as_str().is_none() {
        issues.push(invalid(
            "Flag.period.end",
            "an ended (inactive) alert needs period.end",
        ));
    }
    for key in ["start", "end"] {
        if let Some(v) = flag["period"].get(key) {
            if v.as_str().and_then(crate::build::date_time).is_none() {
                issues.push(invalid(
                    &format!("Flag.period.{key}"),
                    "must be a FHIR dateTime",
                ));
            }
        }
    }
    let (Some(nhs_number), Some(category), Some(active)) = (nhs, category, active) else {
        return Err(issues);
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    if let Err(e) = crate::conformance::check(flag) {
        let path = match &e {
            crate::conformance::ConformanceError::NotInModel { path }
            | crate::conformance::ConformanceError::R4bOnly { path } => path.clone(),
            _ => "Flag".to_owned(),
        };
        return Err(vec![invalid(&path, format!("not valid R4: {e}"))]);
    }
    Ok(AlertStatement {
        nhs_number,
        category,
        active,
    })
}

#[cfg(test)]
mod alert_tests {
    use super::*;

    fn interpreter() -> Value {
        json!({
            "resourceType": "Flag",
            "status": "active",
            "category": AlertCategory::CommunicationSupport.concept(),
            "code": { "text": "Needs a Punjabi interpreter" },
            "subject": { "reference": "Patient/9990000018" },
            "period": { "start": "2026-11-25" },
        })
    }

    #[test]
    fn r_write_4_a_valid_alert_is_read_and_each_fault_is_named() {
        assert_eq!(
            check_alert(&interpreter()).unwrap().category,
            AlertCategory::CommunicationSupport
        );
        let mut f = interpreter();
        f["category"] = json!([{ "text": "whatever" }]);
        assert_eq!(
            check_alert(&f).unwrap_err()[0].expression,
            vec!["Flag.category".to_string()]
        );
        let mut f = interpreter();
        f["status"] = "inactive".into();
        assert_eq!(
            check_alert(&f).unwrap_err()[0].expression,
            vec!["Flag.period.end".to_string()]
        );
        let mut f = interpreter();
        f["colour"] = "red".into();
        assert_eq!(
            check_alert(&f).unwrap_err()[0].expression,
            vec!["colour".to_string()]
        );
    }
}
