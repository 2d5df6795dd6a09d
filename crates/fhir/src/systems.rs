//! Identifier systems, code systems and profile URLs used on every resource.

pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_CODE: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const DMD: &str = "https://dmd.nhs.uk";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const LANGUAGE: &str = "urn:ietf:bcp:47";
/// Tag system naming the facade source (configuration name) a record came from.
pub const SOURCE_SYSTEM_TAG: &str = "https://scr.example.nhs.uk/CodeSystem/source-system";
/// The facade's own code systems live under this base.
pub const SCR_CODE_SYSTEM_BASE: &str = "https://scr.example.nhs.uk/CodeSystem";
/// Local identifier systems are minted per source under this base.
pub const LOCAL_ID_BASE: &str = "https://scr.example.nhs.uk/Id/local";

pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
pub const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
pub const MEDICATION_STATEMENT_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/medication-statement-category";
pub const FLAG_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/flag-category";
/// The facade's own alert categories, ordered by urgency (see `fhir-profiles/`).
pub const SCR_FLAG_CATEGORY: &str = "https://scr.example.nhs.uk/CodeSystem/alert-category";
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const INTERPRETER_REQUIRED_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired";

pub fn uk_core_profile(resource_type: &str) -> String {
    format!("https://fhir.hl7.org.uk/StructureDefinition/UKCore-{resource_type}")
}
