//! Converters: between Kafka's bytes and Connect's [`Value`]s, as Kafka Connect's
//! `StringConverter`, `ByteArrayConverter` and `JsonConverter` do. They are named by Kafka's
//! class names or short names, and configured under their prefix (`value.converter.` +
//! `schemas.enable`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value as Json};

use crate::data::{Schema, SchemaType, Value};
use crate::props::Props;

/// A record part the converter could not handle; the error handler decides what happens.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ConvertError(pub String);

pub trait Converter: Send + Sync {
    /// Connect value to bytes (Kafka's `fromConnectData`, hence the name); None: a null,
    /// which a value converter makes a tombstone.
    #[allow(clippy::wrong_self_convention)]
    fn from_connect(
        &self,
        topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConvertError>;

    /// Bytes to a Connect value and its schema, if the format carries one.
    fn to_connect(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConvertError>;
}

/// The converter a config names (`key.converter` or `value.converter`), configured with the
/// keys under that name's prefix.
pub fn from_config(props: &Props, which: &str) -> Result<Arc<dyn Converter>, String> {
    let class = props
        .get(which)
        .map(String::as_str)
        .unwrap_or("org.apache.kafka.connect.json.JsonConverter");
    let prefix = format!("{which}.");
    let setting = |k: &str| props.get(&format!("{prefix}{k}")).map(String::as_str);
    Ok(match short_name(class) {
        "StringConverter" => Arc::new(StringConverter),
        "ByteArrayConverter" => Arc::new(ByteArrayConverter),
        "JsonConverter" => Arc::new(JsonConverter {
            schemas_enable: match setting("schemas.enable").unwrap_or("true") {
                "true" => true,
                "false" => false,
                other => return Err(format!("{prefix}schemas.enable must be true or false, not '{other}'")),
            },
        }),
        _ => return Err(format!("unknown converter class '{class}': use StringConverter, ByteArrayConverter or JsonConverter")),
    })
}

/// The part of a Java class name after its last dot.
pub fn short_name(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// `org.apache.kafka.connect.storage.StringConverter`: UTF-8 text.
pub struct StringConverter;

impl Converter for StringConverter {
    fn from_connect(
        &self,
        _topic: &str,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConvertError> {
        Ok(match value {
            Value::Null => None,
            v => Some(Bytes::from(v.to_text())),
        })
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConvertError> {
        Ok(match bytes {
            None => (None, Value::Null),
            Some(b) => (
                Some(Schema::of(SchemaType::String).optional()),
                Value::String(String::from_utf8_lossy(b).into_owned()),
            ),
        })
    }
}

/// `org.apache.kafka.connect.converters.ByteArrayConverter`: bytes as they are.
pub struct ByteArrayConverter;

impl Converter for ByteArrayConverter {
    fn from_connect(
        &self,
        _topic: &str,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConvertError> {
        match value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            Value::String(s) => Ok(Some(Bytes::from(s.clone()))),
            other => Err(ConvertError(format!(
                "ByteArrayConverter takes bytes, not {}",
                other.to_json()
            ))),
        }
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConvertError> {
        Ok(match bytes {
            None => (None, Value::Null),
            Some(b) => (
                Some(Schema::of(SchemaType::Bytes).optional()),
                Value::Bytes(Bytes::copy_from_slice(b)),
            ),
        })
    }
}

/// `org.apache.kafka.connect.json.JsonConverter`: JSON, with the schema beside the payload
/// (`{"schema": ..., "payload": ...}`) when `schemas.enable` (the default) is true.
pub struct JsonConverter {
    pub schemas_enable: bool,
}

impl Converter for JsonConverter {
    fn from_connect(
        &self,
        _topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConvertError> {
        if value.is_null() && !self.schemas_enable {
            return Ok(None);
        }
        if value.is_null() && schema.is_none() {
            return Ok(None);
        }
        let payload = value.to_json();
        let doc = if self.schemas_enable {
            json!({"schema": schema.map(Schema::to_json), "payload": payload})
        } else {
            payload
        };
        serde_json::to_vec(&doc)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| ConvertError(e.to_string()))
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConvertError> {
        let Some(bytes) = bytes else {
            return Ok((None, Value::Null));
        };
        let doc: Json = serde_json::from_slice(bytes).map_err(|e| {
            ConvertError(format!(
                "Converting byte[] to Kafka Connect data failed due to serialization error: {e}"
            ))
        })?;
        if !self.schemas_enable {
            return Value::from_json(&doc, None)
                .map(|v| (None, v))
                .map_err(ConvertError);
        }
        let envelope = doc
            .as_object()
            .filter(|o| o.len() == 2 && o.contains_key("schema") && o.contains_key("payload"));
        let Some(o) = envelope else {
            return Err(ConvertError(
                "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not contain additional fields. If you are trying to deserialize plain JSON data, set schemas.enable=false in your converter configuration.".into(),
            ));
        };
        let schema = match &o["schema"] {
            Json::Null => None,
            s => Some(Schema::from_json(s).map_err(ConvertError)?),
        };
        let value = Value::from_json(&o["payload"], schema.as_ref()).map_err(ConvertError)?;
        Ok((schema, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    fn props(kv: &[(&str, &str)]) -> Props {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn converters_are_found_by_class_or_short_name() {
        for class in [
            "org.apache.kafka.connect.storage.StringConverter",
            "StringConverter",
            "org.apache.kafka.connect.converters.ByteArrayConverter",
            "org.apache.kafka.connect.json.JsonConverter",
        ] {
            assert!(from_config(&props(&[("value.converter", class)]), "value.converter").is_ok());
        }
        let err = from_config(
            &props(&[("value.converter", "AvroConverter")]),
            "value.converter",
        );
        assert!(err.err().is_some_and(|e| e.contains("AvroConverter")));
    }

    #[test]
    fn json_with_schemas_round_trips_a_struct() {
        let c = from_config(
            &props(&[("value.converter", "JsonConverter")]),
            "value.converter",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let schema = Schema::structure(vec![
            ("id".into(), Schema::of(SchemaType::Int64)),
            ("name".into(), Schema::of(SchemaType::String).optional()),
        ]);
        let mut m = IndexMap::new();
        m.insert("id".to_string(), Value::Int(7));
        m.insert("name".to_string(), Value::from("ann"));
        let value = Value::Struct(m);
        let bytes = c.from_connect("t", Some(&schema), &value).ok().flatten();
        let text = bytes
            .clone()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        assert!(text.is_some_and(|t| t.contains("\"payload\":{\"id\":7,\"name\":\"ann\"}")));
        let back = c.to_connect("t", bytes.as_deref());
        assert_eq!(back, Ok((Some(schema), value)));
    }

    #[test]
    fn json_with_schemas_rejects_plain_json_and_without_accepts_it() {
        let with = JsonConverter {
            schemas_enable: true,
        };
        let err = with.to_connect("t", Some(br#"{"id":1}"#)).err();
        assert!(err.is_some_and(|e| e.0.contains("schemas.enable=false")));
        let without = JsonConverter {
            schemas_enable: false,
        };
        let (schema, value) = without
            .to_connect("t", Some(br#"{"id":1}"#))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(schema, None);
        assert_eq!(value.get("id"), &Value::Int(1));
        assert!(without.to_connect("t", Some(b"not json")).is_err());
        assert_eq!(without.to_connect("t", None), Ok((None, Value::Null)));
    }

    #[test]
    fn string_and_bytes() {
        let s = StringConverter;
        assert_eq!(
            s.from_connect("t", None, &Value::from("héllo")),
            Ok(Some(Bytes::from("héllo")))
        );
        assert_eq!(s.from_connect("t", None, &Value::Null), Ok(None));
        let b = ByteArrayConverter;
        assert!(b.from_connect("t", None, &Value::Int(1)).is_err());
        assert_eq!(
            b.to_connect("t", Some(&[0, 1])).map(|(_, v)| v),
            Ok(Value::Bytes(Bytes::from_static(&[0, 1])))
        );
    }
}
