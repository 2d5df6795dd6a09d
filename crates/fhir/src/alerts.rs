//! Alert (Flag) categories and their urgency order: "alerts first" in `access-rules.md` puts
//! active Flags at the top of an opened record, most urgent first. The categories are the
//! facade's CodeSystem (`fhir-profiles/CodeSystem-alert-category.json`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::build::coding;
use crate::systems::{SCR_FLAG_CATEGORY, SNOMED};

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

/// The category of each alert code: one ValueSet per category
/// (`fhir-profiles/ValueSet-scr-alert-{category}.json`), SNOMED CT codes only. An alert is
/// classified by its code first; its text is read only when its code is in none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCodes {
    by_code: BTreeMap<String, AlertCategory>,
}

/// Why the alert ValueSets cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertCodesError {
    #[error("{category}: {source}")]
    ValueSet {
        category: &'static str,
        source: crate::valueset::ValueSetError,
    },
    #[error("{category}: the ValueSet lists no SNOMED CT ({SNOMED}) code")]
    NoCodes { category: &'static str },
    #[error("{category}: SNOMED CT code {code} is also in the {other} ValueSet")]
    Ambiguous {
        category: &'static str,
        code: String,
        other: &'static str,
    },
}

/// The alert ValueSets shipped in `fhir-profiles/`, by category, built into the binary so that a
/// configuration that does not name its own still classifies by code.
pub const SHIPPED_VALUESETS: [(AlertCategory, &str); 6] = [
    (
        AlertCategory::Safeguarding,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-safeguarding.json"),
    ),
    (
        AlertCategory::SevereAllergyOrCondition,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-severe-allergy-condition.json"),
    ),
    (
        AlertCategory::CommunicationSupport,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-communication-support.json"),
    ),
    (
        AlertCategory::TreatmentRestriction,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-treatment-restriction.json"),
    ),
    (
        AlertCategory::EndOfLifeWishes,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-end-of-life-wishes.json"),
    ),
    (
        AlertCategory::Other,
        include_str!("../../../fhir-profiles/ValueSet-scr-alert-other.json"),
    ),
];

impl AlertCodes {
    /// Reads one ValueSet (JSON text) per category. A category may be left out (its alerts are
    /// then found by text only); a code in two categories' ValueSets is an error, as is a
    /// ValueSet without SNOMED CT codes.
    pub fn from_valuesets(sets: &[(AlertCategory, &str)]) -> Result<AlertCodes, AlertCodesError> {
        let mut by_code = BTreeMap::new();
        for (category, json) in sets {
            let name = category.code();
            let codes =
                crate::valueset::codes(json).map_err(|source| AlertCodesError::ValueSet {
                    category: name,
                    source,
                })?;
            let snomed: Vec<String> = codes
                .into_iter()
                .filter(|(system, _)| system == SNOMED)
                .map(|(_, code)| code.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            if snomed.is_empty() {
                return Err(AlertCodesError::NoCodes { category: name });
            }
            for code in snomed {
                match by_code.get(&code) {
                    Some(other) if other != category => {
                        return Err(AlertCodesError::Ambiguous {
                            category: name,
                            code,
                            other: AlertCategory::code(*other),
                        })
                    }
                    _ => {
                        by_code.insert(code, *category);
                    }
                }
            }
        }
        Ok(AlertCodes { by_code })
    }

    /// The ValueSets of [`SHIPPED_VALUESETS`].
    pub fn shipped() -> Result<AlertCodes, AlertCodesError> {
        AlertCodes::from_valuesets(&SHIPPED_VALUESETS)
    }

    /// The category of an alert with SNOMED CT code `code` (if any) and `text`: by code when a
    /// ValueSet lists it, otherwise by [`classify_text`].
    pub fn classify(&self, code: Option<&str>, text: &str) -> AlertCategory {
        code.map(str::trim)
            .and_then(|c| self.by_code.get(c))
            .copied()
            .unwrap_or_else(|| classify_text(text))
    }

    /// How many codes are known.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

/// Classifies a free-text alert from a system that does not categorise its alerts, when it has
/// no code an alert ValueSet lists: the fallback. Conservative: anything unrecognised is
/// `Other`, and a keyword counts only when nothing in its clause negates it, so "No known
/// allergies" or "not diabetic" never ranks as a severe allergy or condition.
pub fn classify_text(text: &str) -> AlertCategory {
    let t = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| mentions(&t, w));
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
        "allergic",
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

/// Words that, earlier in the same clause, negate a keyword ("no known allergies", "not
/// diabetic", "nil allergies", "denies ...", "negative for ...").
const NEGATIONS: [&str; 9] = [
    "no", "not", "nil", "none", "nka", "nkda", "denies", "without", "negative",
];

/// Does `text` (lower case) mention `keyword` somewhere that no negation in its clause denies?
/// Keywords that are negations themselves ("no blood", "do not give") are looked for as they are.
fn mentions(text: &str, keyword: &str) -> bool {
    let keyword_negates = keyword
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| NEGATIONS.contains(&w));
    text.match_indices(keyword).any(|(at, _)| {
        if keyword_negates {
            return true;
        }
        let clause_start = text[..at]
            .rfind(['.', ';', ',', ':', '(', ')', '\n', '-'])
            .map_or(0, |i| i + 1);
        let negated_before = text[clause_start..at]
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| NEGATIONS.contains(&w));
        // "Allergy status: none known", "Allergies - nil": an answer of none straight after.
        let after = &text[at..];
        let sentence = &after[..after.find(['.', ';', '\n']).unwrap_or(after.len())];
        let negated_after = sentence
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .skip(1)
            .take(2)
            .any(|w| matches!(w, "none" | "nil" | "no" | "nka" | "nkda" | "negative"));
        !negated_before && !negated_after
    })
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
        assert_eq!(
            classify_text("Anaphylaxis to peanuts"),
            AlertCategory::SevereAllergyOrCondition
        );
    }

    #[test]
    fn item10_no_known_allergies_is_never_a_severe_allergy_by_text() {
        for text in [
            "No known allergies",
            "NKA",
            "NKDA - no known drug allergies",
            "Patient has no allergies",
            "Nil known allergies",
            "Not diabetic",
            "Allergy status: none known. No allergies",
            "Denies any allergy",
        ] {
            assert_ne!(
                classify_text(text),
                AlertCategory::SevereAllergyOrCondition,
                "{text}"
            );
        }
        // A negation in another clause does not hide a real one.
        assert_eq!(
            classify_text("No fixed abode; severe allergy to latex"),
            AlertCategory::SevereAllergyOrCondition
        );
        // Keywords that are negations themselves still count.
        assert_eq!(
            classify_text("Jehovah's Witness: no blood products"),
            AlertCategory::TreatmentRestriction
        );
    }

    #[test]
    fn item10_gp_alerts_are_classified_by_snomed_code_first() -> Result<(), AlertCodesError> {
        let codes = AlertCodes::shipped()?;
        assert!(codes.len() >= 20);
        // The code decides, whatever the text says.
        assert_eq!(
            codes.classify(Some("716186003"), "No known allergies"),
            AlertCategory::Other
        );
        assert_eq!(
            codes.classify(Some("342191000000101"), "See notes"),
            AlertCategory::Safeguarding
        );
        assert_eq!(
            codes.classify(Some("91935009"), "Peanuts"),
            AlertCategory::SevereAllergyOrCondition
        );
        assert_eq!(
            codes.classify(Some("304253006"), "Not for resuscitation"),
            AlertCategory::EndOfLifeWishes
        );
        // A code no ValueSet lists, or none: the text decides.
        assert_eq!(
            codes.classify(Some("123456789"), "Requires Punjabi interpreter"),
            AlertCategory::CommunicationSupport
        );
        assert_eq!(
            codes.classify(None, "Child protection plan"),
            AlertCategory::Safeguarding
        );
        assert_eq!(
            codes.classify(None, "No known allergies"),
            AlertCategory::Other
        );
        Ok(())
    }

    #[test]
    fn item10_alert_valuesets_must_be_snomed_and_unambiguous() {
        let vs = |code: &str| {
            format!(
                r#"{{"resourceType":"ValueSet","status":"active","compose":{{"include":[{{"system":"http://snomed.info/sct","concept":[{{"code":"{code}"}}]}}]}}}}"#
            )
        };
        let (a, b) = (vs("1"), vs("1"));
        assert!(matches!(
            AlertCodes::from_valuesets(&[
                (AlertCategory::Safeguarding, &a),
                (AlertCategory::Other, &b)
            ]),
            Err(AlertCodesError::Ambiguous { .. })
        ));
        let loinc = r#"{"resourceType":"ValueSet","status":"active","compose":{"include":[{"system":"http://loinc.org","concept":[{"code":"1"}]}]}}"#;
        assert!(matches!(
            AlertCodes::from_valuesets(&[(AlertCategory::Other, loinc)]),
            Err(AlertCodesError::NoCodes { .. })
        ));
        assert!(matches!(
            AlertCodes::from_valuesets(&[(AlertCategory::Other, "{")]),
            Err(AlertCodesError::ValueSet { .. })
        ));
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
