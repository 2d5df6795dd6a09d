//! Bundles and OperationOutcomes as the server sends them.

use serde_json::{json, Value};

/// OperationOutcome issue severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One OperationOutcome issue. `code` is from the FHIR `issue-type` value set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath expressions of the elements or parameters concerned.
    pub expression: Vec<String>,
}

impl Issue {
    pub fn new(severity: Severity, code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity,
            code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression.push(expression.into());
        self
    }
}

pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({ "severity": i.severity.as_str(), "code": i.code, "diagnostics": i.diagnostics });
            if !i.expression.is_empty() {
                v["expression"] = json!(i.expression);
            }
            v
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

/// An entry of a search Bundle: a match, an included resource, or an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    Match,
    Include,
    Outcome,
}

impl EntryMode {
    fn as_str(self) -> &'static str {
        match self {
            EntryMode::Match => "match",
            EntryMode::Include => "include",
            EntryMode::Outcome => "outcome",
        }
    }
}

pub fn entry(base_url: &str, resource: Value, mode: EntryMode) -> Value {
    let mut e = json!({ "search": { "mode": mode.as_str() } });
    if let (Some(rt), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) {
        e["fullUrl"] = format!("{base_url}/{rt}/{id}").into();
    }
    e["resource"] = resource;
    e
}

/// A `searchset` Bundle. `total` is the number of matches across all pages; `links` are
/// (relation, url) pairs.
pub fn searchset(
    id: &str,
    timestamp: &str,
    total: Option<usize>,
    links: &[(&str, String)],
    entries: Vec<Value>,
) -> Value {
    let mut b = json!({
        "resourceType": "Bundle",
        "id": id,
        "meta": { "lastUpdated": timestamp },
        "type": "searchset",
        "timestamp": timestamp,
    });
    if let Some(t) = total {
        b["total"] = t.into();
    }
    if !links.is_empty() {
        b["link"] = links
            .iter()
            .map(|(rel, url)| json!({ "relation": rel, "url": url }))
            .collect();
    }
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}
