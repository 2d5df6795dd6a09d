//! A neighbour's resources as our records: labelled with where they came from and what the
//! policy needs to know, their ids and patient references made ours.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use scr_fhir::{build, systems};
use scr_source::{make_id, Labels, PatientFragment, PatientRecords, Record, CLINICAL_TYPES};

/// The lowest priority of any Patient fragment: a neighbour's demographics fill gaps only.
pub const PEER_PRIORITY: u8 = 9;

/// The codes (any system) of the agreement's sensitive value sets (R-SENS-1), shared with the
/// other sources' configuration.
#[derive(Debug, Clone, Default)]
pub struct Sensitive {
    pub codes: Arc<HashSet<String>>,
}

impl Sensitive {
    pub fn new(codes: impl IntoIterator<Item = String>) -> Sensitive {
        Sensitive {
            codes: Arc::new(codes.into_iter().collect()),
        }
    }

    /// Coded in a sensitive value set anywhere a record carries its clinical meaning, or marked
    /// restricted (`R`, `V`) by the neighbour: a neighbour's label can only withhold more.
    fn of(&self, resource: &Value) -> bool {
        let coded = [
            "code",
            "valueCodeableConcept",
            "medicationCodeableConcept",
            "reasonCode",
        ]
        .iter()
        .flat_map(|element| codings(&resource[*element]))
        .any(|c| {
            c["code"]
                .as_str()
                .is_some_and(|code| self.codes.contains(code))
        });
        let restricted = resource["meta"]["security"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| matches!(s["code"].as_str(), Some("R" | "V")));
        coded || restricted
    }
}

/// The codings of a CodeableConcept, or of each of an array of them.
fn codings(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(concepts) => concepts.iter().flat_map(codings).collect(),
        Value::Object(_) => value["coding"].as_array().into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// The first ODS code a resource is tagged with: the organisation that holds it.
fn ods_tag(resource: &Value) -> Option<String> {
    resource["meta"]["tag"]
        .as_array()?
        .iter()
        .find(|t| t["system"] == systems::ODS_CODE)
        .and_then(|t| t["code"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Adds our source tag with the neighbour's name, keeping the neighbour's own tags.
fn tag_with(resource: &mut Value, peer: &str) {
    let tag = build::coding(systems::SOURCE_SYSTEM_TAG, peer, None);
    if !resource["meta"].is_object() {
        resource["meta"] = Value::Object(Default::default());
    }
    let meta = &mut resource["meta"];
    if !meta["tag"].is_array() {
        meta["tag"] = Value::Array(Vec::new());
    }
    if let Some(tags) = meta["tag"].as_array_mut() {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
}

/// The neighbour's resources for one patient as our Patient fragment and records. Resources of
/// types we do not serve, of other patients, or with ids we cannot carry are dropped.
pub fn translate(
    peer: &str,
    nhs: &str,
    peer_patient_id: &str,
    resources: Vec<Value>,
    sensitive: &Sensitive,
) -> PatientRecords {
    let theirs = format!("Patient/{peer_patient_id}");
    let ours = format!("Patient/{nhs}");
    let mut out = PatientRecords::default();
    for mut resource in resources {
        let kind = resource["resourceType"].as_str().unwrap_or_default();
        if kind == "Patient" {
            // The search and `$everything` may both carry the Patient: one fragment.
            if resource["id"].as_str() != Some(peer_patient_id) || !out.fragments.is_empty() {
                continue;
            }
            let last_updated = resource["meta"]["lastUpdated"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let source_org = ods_tag(&resource).unwrap_or_else(|| peer.to_owned());
            if let Some(p) = resource.as_object_mut() {
                p.remove("id");
            }
            out.fragments.push(PatientFragment {
                source_name: peer.to_owned(),
                source_org,
                priority: PEER_PRIORITY,
                resource,
                last_updated,
            });
            continue;
        }
        let Some(resource_type) = CLINICAL_TYPES.iter().copied().find(|t| *t == kind) else {
            continue;
        };
        let subject = ["subject", "patient"]
            .into_iter()
            .find(|e| resource[*e]["reference"].is_string());
        let Some(subject) = subject else { continue };
        let reference = resource[subject]["reference"].as_str().unwrap_or_default();
        // `Patient/x` or an absolute URL ending in it.
        if !(reference == theirs || reference.ends_with(&format!("/{theirs}"))) {
            continue;
        }
        let Some(id) = resource["id"]
            .as_str()
            .map(|key| make_id(peer, key))
            .filter(|id| is_fhir_id(id))
        else {
            continue;
        };
        resource[subject]["reference"] = ours.clone().into();
        resource["id"] = id.clone().into();
        tag_with(&mut resource, peer);
        let labels = Labels {
            source_org: ods_tag(&resource).unwrap_or_else(|| peer.to_owned()),
            sensitive: sensitive.of(&resource),
            confidential: false,
            hidden_from_patient: false,
        };
        out.records.push(Record {
            resource_type,
            id,
            nhs_number: nhs.to_owned(),
            labels,
            resource,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sensitive() -> Sensitive {
        Sensitive::new(["1234567".to_owned()])
    }

    fn observation(id: &str, patient: &str, code: &str, ods: Option<&str>) -> Value {
        let mut o = json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": systems::SNOMED, "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "meta": {"source": "urn:gp", "tag": []},
        });
        if let Some(ods) = ods {
            o["meta"]["tag"] = json!([{"system": systems::ODS_CODE, "code": ods}]);
        }
        o
    }

    #[test]
    fn records_keep_their_holder_and_gain_the_neighbours_name() {
        let out = translate(
            "WMShCR",
            "9990000018",
            "p1",
            vec![
                json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]}),
                observation("o1", "p1", "999", Some("M85001")),
                observation("o2", "p1", "999", None),
            ],
            &sensitive(),
        );
        assert_eq!(out.fragments.len(), 1);
        assert_eq!(out.fragments[0].priority, PEER_PRIORITY);
        assert_eq!(out.fragments[0].source_org, "WMShCR");
        assert_eq!(out.records.len(), 2);
        let o1 = &out.records[0];
        assert_eq!(o1.id, "WMShCR.o1");
        assert_eq!(o1.labels.source_org, "M85001");
        assert_eq!(o1.resource["subject"]["reference"], "Patient/9990000018");
        assert_eq!(o1.resource["meta"]["source"], "urn:gp");
        let tags = o1.resource["meta"]["tag"].as_array().unwrap();
        assert!(tags.contains(&json!({"system": systems::ODS_CODE, "code": "M85001"})));
        assert!(tags.contains(&json!({"system": systems::SOURCE_SYSTEM_TAG, "code": "WMShCR"})));
        // No ODS tag: held by the neighbour itself, never by the caller's organisation.
        assert_eq!(out.records[1].labels.source_org, "WMShCR");
    }

    #[test]
    fn r_sens_1_sensitive_codes_and_restricted_labels_are_labelled_sensitive() {
        let mut restricted = observation("o3", "p1", "999", Some("M85001"));
        restricted["meta"]["security"] = json!([{"code": "R"}]);
        let out = translate(
            "WMShCR",
            "9990000018",
            "p1",
            vec![
                observation("o1", "p1", "1234567", Some("M85001")),
                observation("o2", "p1", "999", Some("M85001")),
                restricted,
            ],
            &sensitive(),
        );
        let flags: Vec<bool> = out.records.iter().map(|r| r.labels.sensitive).collect();
        assert_eq!(flags, [true, false, true]);
    }

    #[test]
    fn other_patients_unserved_types_and_bad_ids_are_dropped() {
        let out = translate(
            "WMShCR",
            "9990000018",
            "p1",
            vec![
                observation("o1", "someone-else", "999", None),
                json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}}),
                observation("has space", "p1", "999", None),
                observation(&"x".repeat(64), "p1", "999", None),
                json!({"resourceType": "Patient", "id": "p2"}),
            ],
            &sensitive(),
        );
        assert!(out.records.is_empty());
        assert!(out.fragments.is_empty());
    }
}
