//! `SCR_*` environment overrides, one for every scalar setting, derived from the configuration's
//! own types rather than listed by hand: a key added to [`Config`] gets its variable without
//! anyone remembering to. The variable is `SCR_` and the key path in capitals with `.` as `_`
//! (`server.source_timeout_ms` is `SCR_SERVER_SOURCE_TIMEOUT_MS`, `mllp.tls.certificate` is
//! `SCR_MLLP_TLS_CERTIFICATE`). Lists and tables (`[[sources.gp]]`, `hl7.facilities`,
//! `server.cors_origins`, ...) have none: they stay in the file.
//!
//! How: a deserializer that answers serde's questions with placeholder values walks
//! `Config::deserialize` once and writes down the path and kind of every scalar it is asked
//! for, descending into tables (and optional tables) but not into lists or maps.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::config::Config;

/// What a variable's text is parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Boolean,
}

/// One override: the variable, the key path it sets, and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub variable: String,
    pub key: String,
    pub kind: Kind,
}

/// Every override, derived once.
pub fn overrides() -> &'static [Override] {
    static ALL: OnceLock<Vec<Override>> = OnceLock::new();
    ALL.get_or_init(|| match scalar_keys() {
        Ok(keys) => keys
            .into_iter()
            .map(|(key, kind)| Override {
                variable: variable_of(&key),
                key,
                kind,
            })
            .collect(),
        Err(e) => {
            log::error!("the SCR_* overrides could not be derived: {e}");
            Vec::new()
        }
    })
}

/// `server.bind` -> `SCR_SERVER_BIND`.
pub fn variable_of(key: &str) -> String {
    format!("SCR_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The scalar keys of [`Config`], in declaration order, with their kinds.
pub fn scalar_keys() -> Result<Vec<(String, Kind)>, TraceError> {
    let found = RefCell::new(Vec::new());
    Config::deserialize(Tracer {
        path: "",
        found: &found,
    })?;
    Ok(found.into_inner())
}

#[derive(Debug)]
pub struct TraceError(String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

#[derive(Clone, Copy)]
struct Tracer<'a> {
    path: &'a str,
    found: &'a RefCell<Vec<(String, Kind)>>,
}

impl Tracer<'_> {
    fn note(&self, kind: Kind) {
        self.found.borrow_mut().push((self.path.to_owned(), kind));
    }
}

struct Empty;

impl<'de> SeqAccess<'de> for Empty {
    type Error = TraceError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, TraceError> {
        Ok(None)
    }
}

impl<'de> MapAccess<'de> for Empty {
    type Error = TraceError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, TraceError> {
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, TraceError> {
        Err(de::Error::custom("no value"))
    }
}

/// A struct's fields, each answered by a tracer one level down.
struct Fields<'a> {
    tracer: Tracer<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = TraceError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.get(self.next) {
            Some(field) => seed
                .deserialize(IntoDeserializer::<TraceError>::into_deserializer(*field))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.fields.get(self.next).copied().unwrap_or_default();
        self.next += 1;
        let path = if self.tracer.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.tracer.path)
        };
        seed.deserialize(Tracer {
            path: &path,
            found: self.tracer.found,
        })
    }
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    /// A self-describing value (`hl7.facilities`, a list or a table): structured, not a scalar.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_map(Empty)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Kind::Boolean);
        visitor.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Kind::Integer);
        visitor.visit_u64(1)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Kind::Text);
        visitor.visit_str("x")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_seq(Empty)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_map(Empty)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_map(Fields {
            tracer: self,
            fields,
            next: 0,
        })
    }
    /// A unit-variant enum (`log.format`): its variant's name as text.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.note(Kind::Text);
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(IntoDeserializer::<TraceError>::into_deserializer(first))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char bytes byte_buf unit unit_struct tuple tuple_struct identifier i128 u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        overrides().iter().map(|o| o.key.clone()).collect()
    }

    #[test]
    fn every_scalar_key_has_an_scr_override_and_lists_have_none() {
        let keys = keys();
        for key in [
            "server.bind",
            "server.base_url",
            "server.workers",
            "server.blocking_threads",
            "server.source_timeout_ms",
            "server.tls_certificate",
            "server.tls_private_key",
            "server.refusals_per_minute",
            "server.metrics",
            "store.url",
            "store.pool_size",
            "auth.dev_issuer",
            "auth.leeway_seconds",
            "auth.signing_key_file",
            "auth.access_token_seconds",
            "auth.token_requests_per_minute",
            "auth.exchanges_per_minute",
            "auth.authorize_requests_per_minute",
            "sources.hl7_name",
            "policy.visit_window_days",
            "policy.break_glass_hours",
            "policy.objection_valueset",
            "policy.consent_valueset",
            "mllp.bind",
            "mllp.max_message_bytes",
            "mllp.idle_timeout_seconds",
            "mllp.max_connections",
            "mllp.message_timeout_seconds",
            "mllp.quarantine_cap_per_sender",
            "mllp.tls.certificate",
            "mllp.tls.private_key",
            "mllp.tls.client_ca",
            "audit.checkpoint_key_file",
            "audit.checkpoint_file",
            "audit.checkpoint_interval_seconds",
            "log.format",
        ] {
            assert!(
                keys.iter().any(|k| k == key),
                "{key} has no override: {keys:?}"
            );
        }
        for list in [
            "server.cors_origins",
            "hl7.facilities",
            "hl7.sensitive_services",
            "sources.gp",
            "auth.issuers",
            "policy.role_profiles",
            "mllp.senders",
        ] {
            assert!(
                !keys
                    .iter()
                    .any(|k| k == list || k.starts_with(&format!("{list}."))),
                "{list} is not a scalar"
            );
        }
        let mut variables: Vec<&str> = overrides().iter().map(|o| o.variable.as_str()).collect();
        variables.sort_unstable();
        let n = variables.len();
        variables.dedup();
        assert_eq!(n, variables.len(), "one variable per key");
    }

    #[test]
    fn every_override_is_documented_in_configuration_md() {
        let doc = include_str!("../../../docs/configuration.md");
        for o in overrides() {
            let row = format!("| `{}` | `{}` |", o.variable, o.key);
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row {row}"
            );
        }
    }

    /// Each derived override, set alone, reaches its key: every scalar key has a working
    /// variable, not just a name.
    #[test]
    fn every_scalar_override_sets_its_key() -> Result<(), crate::config::ConfigError> {
        let minimal = "[server]\nbind = \"127.0.0.1:8080\"\nbase_url = \"http://127.0.0.1:8080/fhir\"\n[store]\nurl = \"sqlite://scr.db\"\n[auth]\ndev_issuer = true\n";
        for o in overrides() {
            let value = match o.kind {
                Kind::Boolean => "true",
                Kind::Integer => "7",
                Kind::Text => "x",
            };
            let env = vec![(o.variable.clone(), value.to_owned())];
            let table = crate::config::apply_env(
                minimal
                    .parse()
                    .map_err(|_| crate::config::ConfigError::Invalid {
                        key: "test".into(),
                        message: "minimal".into(),
                    })?,
                &env,
            )?
            .0;
            let mut at = Some(&toml::Value::Table(table));
            for part in o.key.split('.') {
                at = at.and_then(|v| v.get(part));
            }
            let expected = match o.kind {
                Kind::Boolean => toml::Value::Boolean(true),
                Kind::Integer => toml::Value::Integer(7),
                Kind::Text => toml::Value::String("x".into()),
            };
            assert_eq!(at, Some(&expected), "{} -> {}", o.variable, o.key);
        }
        Ok(())
    }
}
