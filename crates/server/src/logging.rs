//! The log line format: env_logger's text (the default), or one JSON object per line
//! (`log.format = "json"` or `SCR_LOG_FORMAT=json`) with `time`, `level`, `target`, `message`
//! and the fields a line carries, such as the request line's `request_id`. What is logged is the
//! same in both: never a body, name, NHS number or token (docs/operations.md).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::{Map, Value};

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches the format of every later line (the logger starts before the configuration is read).
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// The format `SCR_LOG_FORMAT` asks for at start, before any configuration is read; an unknown
/// value is left to the configuration's check, which names the variable.
pub fn format_from_env() -> LogFormat {
    match std::env::var("SCR_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0
            .insert(key.as_str().to_owned(), Value::String(value.to_string()));
        Ok(())
    }
}

/// One line as JSON.
pub fn json_line(time: &str, record: &log::Record<'_>) -> String {
    let mut line = Map::new();
    line.insert("time".into(), time.into());
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("message".into(), record.args().to_string().into());
    let mut fields = Map::new();
    // A field that cannot be read is left out; the line itself is still written.
    let _ = record.key_values().visit(&mut Fields(&mut fields));
    for (k, v) in fields {
        line.entry(k).or_insert(v);
    }
    Value::Object(line).to_string()
}

/// The env_logger format function: JSON or text, as set.
pub fn format(
    buf: &mut env_logger::fmt::Formatter,
    record: &log::Record<'_>,
) -> std::io::Result<()> {
    let time = buf.timestamp_millis().to_string();
    if JSON.load(Ordering::Relaxed) {
        return writeln!(buf, "{}", json_line(&time, record));
    }
    let mut fields = Map::new();
    let _ = record.key_values().visit(&mut Fields(&mut fields));
    let mut extra = String::new();
    for (k, v) in fields {
        extra.push_str(&format!(" {k}={}", v.as_str().unwrap_or_default()));
    }
    writeln!(
        buf,
        "[{time} {:<5} {}] {}{extra}",
        record.level(),
        record.target(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_logs_are_one_object_per_line_with_the_request_id() -> Result<(), serde_json::Error> {
        let args = format_args!("GET /fhir/{{type}}/{{id}} -> 200 in 3 ms\nsecond line");
        let kvs: &[(&str, &str)] = &[("request_id", "abc-1")];
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("scr_server")
            .key_values(&kvs)
            .build();
        let line = json_line("2026-12-03T17:00:00.000Z", &record);
        assert!(!line.contains('\n'), "one line: {line}");
        let v: Value = serde_json::from_str(&line)?;
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "scr_server");
        assert_eq!(v["request_id"], "abc-1");
        assert_eq!(v["time"], "2026-12-03T17:00:00.000Z");
        assert!(v["message"].as_str().is_some_and(|m| m.starts_with("GET ")));
        Ok(())
    }
}
