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
