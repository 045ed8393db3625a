//! Connect's data model: a [`Value`] with an optional [`Schema`], and [`ConnectRecord`], what
//! flows between a connector, the transforms and a converter.
//!
//! Schemas follow Kafka Connect's (`int8` .. `float64`, `boolean`, `string`, `bytes`,
//! `array`, `map`, `struct`, optional, named), and render to and from the JSON that
//! `JsonConverter` puts beside the payload when `schemas.enable=true`.

use bytes::Bytes;
use indexmap::IndexMap;
use serde_json::{json, Map, Value as Json};

/// Kafka Connect's schema types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array,
    Map,
    Struct,
}

impl SchemaType {
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Int8 => "int8",
            SchemaType::Int16 => "int16",
            SchemaType::Int32 => "int32",
            SchemaType::Int64 => "int64",
            SchemaType::Float32 => "float32",
            SchemaType::Float64 => "float64",
            SchemaType::Boolean => "boolean",
            SchemaType::String => "string",
            SchemaType::Bytes => "bytes",
            SchemaType::Array => "array",
            SchemaType::Map => "map",
            SchemaType::Struct => "struct",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "int8" => SchemaType::Int8,
            "int16" => SchemaType::Int16,
            "int32" => SchemaType::Int32,
            "int64" => SchemaType::Int64,
            "float32" => SchemaType::Float32,
            "float64" => SchemaType::Float64,
            "boolean" => SchemaType::Boolean,
            "string" => SchemaType::String,
            "bytes" => SchemaType::Bytes,
            "array" => SchemaType::Array,
            "map" => SchemaType::Map,
            "struct" => SchemaType::Struct,
            _ => return None,
        })
    }
}

/// A Kafka Connect schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub ty: SchemaType,
    pub optional: bool,
    /// A logical type (`org.apache.kafka.connect.data.Timestamp`, ...) or a struct's name.
    pub name: Option<String>,
    /// A struct's fields, in order.
    pub fields: Vec<(String, Schema)>,
    /// An array's items, or a map's values.
    pub items: Option<Box<Schema>>,
    /// A map's keys.
    pub keys: Option<Box<Schema>>,
}

/// The logical type name of a timestamp (an int64 of ms since the epoch).
pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";

impl Schema {
    pub fn of(ty: SchemaType) -> Self {
        Self {
            ty,
            optional: false,
            name: None,
            fields: Vec::new(),
            items: None,
            keys: None,
        }
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn structure(fields: Vec<(String, Schema)>) -> Self {
        Self {
            fields,
            ..Self::of(SchemaType::Struct)
        }
    }

    pub fn field(&self, name: &str) -> Option<&Schema> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The JSON form `JsonConverter` writes under `"schema"`.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.ty.name()));
        m.insert("optional".into(), json!(self.optional));
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        match self.ty {
            SchemaType::Struct => {
                let fields = self
                    .fields
                    .iter()
                    .map(|(name, s)| {
                        let mut f = s.to_json();
                        if let Some(o) = f.as_object_mut() {
                            o.insert("field".into(), json!(name));
                        }
                        f
                    })
                    .collect();
                m.insert("fields".into(), Json::Array(fields));
            }
            SchemaType::Array => {
                if let Some(i) = &self.items {
                    m.insert("items".into(), i.to_json());
                }
            }
            SchemaType::Map => {
                if let Some(k) = &self.keys {
                    m.insert("keys".into(), k.to_json());
                }
                if let Some(v) = &self.items {
                    m.insert("values".into(), v.to_json());
                }
            }
            _ => {}
        }
        Json::Object(m)
    }

    /// Reads the JSON form; the error names what is wrong.
    pub fn from_json(j: &Json) -> Result<Self, String> {
        let o = j.as_object().ok_or("a schema must be a JSON object")?;
        let ty_name = o
            .get("type")
            .and_then(Json::as_str)
            .ok_or("a schema needs a \"type\"")?;
        let ty = SchemaType::from_name(ty_name)
            .ok_or_else(|| format!("unknown schema type '{ty_name}'"))?;
        let mut s = Schema::of(ty);
        s.optional = o.get("optional").and_then(Json::as_bool).unwrap_or(false);
        s.name = o.get("name").and_then(Json::as_str).map(str::to_string);
        if ty == SchemaType::Struct {
            for f in o
                .get("fields")
                .and_then(Json::as_array)
                .ok_or("a struct schema needs \"fields\"")?
            {
                let name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or("a struct field needs a \"field\" name")?;
                s.fields.push((name.to_string(), Schema::from_json(f)?));
            }
        }
        if let Some(i) = o.get("items").or_else(|| o.get("values")) {
            s.items = Some(Box::new(Schema::from_json(i)?));
        }
        if let Some(k) = o.get("keys") {
            s.keys = Some(Box::new(Schema::from_json(k)?));
        }
        Ok(s)
    }

    /// A schema for a value that has none (schemaless JSON), inferred from its shape.
    pub fn infer(v: &Value) -> Option<Schema> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => Schema::of(SchemaType::Boolean),
            Value::Int(_) => Schema::of(SchemaType::Int64),
            Value::Float(_) => Schema::of(SchemaType::Float64),
            Value::String(_) => Schema::of(SchemaType::String),
            Value::Bytes(_) => Schema::of(SchemaType::Bytes),
            Value::Array(_) => Schema::of(SchemaType::Array),
            Value::Struct(fields) => Schema::structure(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let s = Schema::infer(v)
                            .unwrap_or_else(|| Schema::of(SchemaType::String))
                            .optional();
                        (k.clone(), s)
                    })
                    .collect(),
            ),
        })
    }
}

/// A value in Connect's data model. Maps and structs are both `Struct` (string keys).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Bytes),
    Array(Vec<Value>),
    Struct(IndexMap<String, Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_struct(&self) -> Option<&IndexMap<String, Value>> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_struct_mut(&mut self) -> Option<&mut IndexMap<String, Value>> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    /// A field of a struct (Null when absent or when this is not a struct).
    pub fn get(&self, field: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.as_struct().and_then(|m| m.get(field)).unwrap_or(&NULL)
    }

    /// The JSON form; bytes become base64, as `JsonConverter` writes them.
    pub fn to_json(&self) -> Json {
        use base64::Engine;
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(f) => json!(f),
            Value::String(s) => json!(s),
            Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Array(a) => Json::Array(a.iter().map(Value::to_json).collect()),
            Value::Struct(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// From JSON, guided by a schema where there is one (base64 bytes, ints vs floats).
    pub fn from_json(j: &Json, schema: Option<&Schema>) -> Result<Self, String> {
        use base64::Engine;
        Ok(match (j, schema.map(|s| s.ty)) {
            (Json::Null, _) => {
                if let Some(s) = schema.filter(|s| !s.optional) {
                    return Err(format!(
                        "a null value for the required {} schema",
                        s.ty.name()
                    ));
                }
                Value::Null
            }
            (Json::String(s), Some(SchemaType::Bytes)) => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("bytes are not base64: {e}"))?
                    .into(),
            ),
            (Json::Bool(b), None | Some(SchemaType::Boolean)) => Value::Bool(*b),
            (Json::Number(n), Some(SchemaType::Float32 | SchemaType::Float64)) => {
                Value::Float(n.as_f64().unwrap_or_default())
            }
            (Json::Number(n), None) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or_default()),
            },
            (
                Json::Number(n),
                Some(SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64),
            ) => Value::Int(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?),
            (Json::String(s), None | Some(SchemaType::String)) => Value::String(s.clone()),
            (Json::Array(a), None | Some(SchemaType::Array)) => Value::Array(
                a.iter()
                    .map(|v| Value::from_json(v, schema.and_then(|s| s.items.as_deref())))
                    .collect::<Result<_, _>>()?,
            ),
            (Json::Object(o), None | Some(SchemaType::Struct | SchemaType::Map)) => {
                let mut m = IndexMap::new();
                for (k, v) in o {
                    let fs = schema.and_then(|s| match s.ty {
                        SchemaType::Struct => s.field(k),
                        _ => s.items.as_deref(),
                    });
                    m.insert(k.clone(), Value::from_json(v, fs)?);
                }
                Value::Struct(m)
            }
            (j, Some(t)) => return Err(format!("{j} does not match schema type {}", t.name())),
        })
    }

    /// The text a header or a string conversion shows: strings as they are, the rest as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => other.to_json().to_string(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// A record between a connector and Kafka, in Connect's data model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectRecord {
    pub topic: String,
    /// The Kafka partition: where a sink record came from; for a source record, where to
    /// write it (None: the producer's partitioner picks by key).
    pub partition: Option<i32>,
    pub key_schema: Option<Schema>,
    pub key: Value,
    pub value_schema: Option<Schema>,
    pub value: Value,
    /// Ms since the epoch.
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Value)>,
    /// A sink record's offset in its partition.
    pub kafka_offset: Option<i64>,
    /// A source record's position in the source system (Kafka Connect's `sourcePartition`
    /// and `sourceOffset` maps), stored in the offset store once the record is written.
    pub source_partition: Option<Json>,
    pub source_offset: Option<Json>,
}

impl ConnectRecord {
    /// A source record with a schemaless value.
    pub fn source(topic: impl Into<String>, value: Value) -> Self {
        Self {
            topic: topic.into(),
            value,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_json_round_trips() {
        let s = Schema::structure(vec![
            ("id".into(), Schema::of(SchemaType::Int32)),
            ("name".into(), Schema::of(SchemaType::String).optional()),
            (
                "tags".into(),
                Schema {
                    items: Some(Box::new(Schema::of(SchemaType::String))),
                    ..Schema::of(SchemaType::Array)
                },
            ),
        ])
        .named("user");
        let j = s.to_json();
        assert_eq!(j["fields"][0]["field"], "id");
        assert_eq!(j["fields"][0]["type"], "int32");
        assert_eq!(Schema::from_json(&j).as_ref(), Ok(&s));
    }

    #[test]
    fn values_follow_their_schema() {
        let s = Schema::of(SchemaType::Bytes);
        let v = Value::from_json(&json!("aGk="), Some(&s)).map(|v| v.to_json());
        assert_eq!(v, Ok(json!("aGk=")));
        assert!(Value::from_json(&json!("x"), Some(&Schema::of(SchemaType::Int32))).is_err());
        assert!(Value::from_json(&Json::Null, Some(&Schema::of(SchemaType::Int32))).is_err());
        assert_eq!(Value::from_json(&json!(1.5), None), Ok(Value::Float(1.5)));
    }
}
