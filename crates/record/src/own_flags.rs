//! The alerts written through the facade, served as one more source (named `scr`), so they pass
//! the same policy as every other record and open the record first like any active alert.

use serde_json::{json, Value};

use scr_fhir::build::{coding, source_meta};
use scr_source::{
    Feeds, Labels, MatchReport, PatientQuery, PatientRecords, Record, Source, SourceError, Wanted,
};
use scr_store::flags::{FlagRow, FlagVersionRow};

/// The source name, and so the prefix of every facade alert's id (`scr.flag-12`).
pub const NAME: &str = "scr";
/// The organisation code patient-written alerts are held under (they belong to the shared
/// care record itself).
pub const PATIENT_AUTHORED_ORG: &str = "SCR";

pub struct OwnFlags {
    store: scr_store::Store,
}

impl OwnFlags {
    pub fn new(store: scr_store::Store) -> OwnFlags {
        OwnFlags { store }
    }

    fn unavailable(e: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: NAME.into(),
            detail: e.to_string(),
        }
    }
}

/// The id of a facade alert.
pub fn flag_id(id: i64) -> String {
    scr_source::make_id(NAME, &format!("flag-{id}"))
}

/// The numeric id in `scr.flag-12`, if that is what the id is.
pub fn parse_flag_id(id: &str) -> Option<i64> {
    let (source, key) = scr_source::split_id(id)?;
    (source == NAME).then_some(())?;
    key.strip_prefix("flag-")?.parse().ok()
}

/// One version as served: its stored JSON with id and `meta` (version, source and holder).
pub fn served(flag: &FlagRow, version: &FlagVersionRow) -> Result<Value, String> {
    let mut v: Value = serde_json::from_str(&version.resource).map_err(|e| e.to_string())?;
    v["id"] = flag_id(flag.id).into();
    let mut meta = source_meta("Flag", NAME, &flag.author_org, Some(&version.recorded_at));
    meta["versionId"] = version.version.to_string().into();
    if let Some(t) = meta["tag"].as_array_mut() {
        t.push(coding(
            "https://scr.example.nhs.uk/CodeSystem/alert-author",
            &flag.author_kind,
            None,
        ))
    }
    v["meta"] = meta;
    Ok(v)
}

fn record(flag: &FlagRow, version: &FlagVersionRow) -> Result<Record, SourceError> {
    let resource = served(flag, version).map_err(|detail| SourceError::BadData {
        source_name: NAME.into(),
        detail,
    })?;
    Ok(Record {
        resource_type: "Flag",
        id: flag_id(flag.id),
        nhs_number: flag.nhs_number.clone(),
        labels: Labels {
            source_org: flag.author_org.clone(),
            ..Labels::default()
        },
        resource,
    })
}

impl Source for OwnFlags {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> String {
        "alerts written in the shared care record".into()
    }

    fn feeds(&self) -> Feeds {
        Feeds::default()
    }

    /// Alerts only: a request for other records, or for the patient alone, need not ask.
    fn needed_for(&self, wanted: Wanted) -> bool {
        wanted.includes("Flag")
    }

    fn find_patients(&self, _query: &PatientQuery) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }

    /// Alerts written here are few: read whole whatever is wanted.
    fn patient_records(
        &self,
        nhs_number: &str,
        _wanted: Wanted,
    ) -> Result<PatientRecords, SourceError> {
        let mut conn = self.store.conn().map_err(Self::unavailable)?;
        let flags = scr_store::flags::current_flags_for(&mut conn, nhs_number)
            .map_err(Self::unavailable)?;
        let records = flags
            .iter()
            .map(|(f, v)| record(f, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PatientRecords {
            records,
            ..PatientRecords::default()
        })
    }

    fn read(&self, resource_type: &str, native_key: &str) -> Result<Option<Record>, SourceError> {
        let Some(id) = native_key
            .strip_prefix("flag-")
            .and_then(|k| k.parse::<i64>().ok())
            .filter(|_| resource_type == "Flag")
        else {
            return Ok(None);
        };
        let mut conn = self.store.conn().map_err(Self::unavailable)?;
        let Some(flag) = scr_store::flags::flag_by_id(&mut conn, id).map_err(Self::unavailable)?
        else {
            return Ok(None);
        };
        let Some(version) =
            scr_store::flags::current_version(&mut conn, id).map_err(Self::unavailable)?
        else {
            return Ok(None);
        };
        record(&flag, &version).map(Some)
    }

    fn match_report(&self) -> Result<MatchReport, SourceError> {
        Ok(MatchReport::default())
    }

    fn ping(&self) -> Result<(), SourceError> {
        let mut conn = self.store.conn().map_err(Self::unavailable)?;
        scr_db::ping(&mut conn).map_err(Self::unavailable)
    }
}

/// The body to store: the alert as sent, without `id` and `meta`, which the facade owns.
pub fn storable(mut flag: Value) -> String {
    if let Some(o) = flag.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    json!(flag).to_string()
}
