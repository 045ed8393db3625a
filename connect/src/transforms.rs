//! Single message transforms and predicates, with Kafka's class names and config keys.
//!
//! A connector config lists `transforms=a,b` and configures each under `transforms.a.`
//! (`type` plus the transform's keys); `transforms.a.predicate=p` with `predicates=p` and
//! `predicates.p.type=...` applies `a` only to records `p` matches (`negate=true` flips it).
//! Transforms run in order; one that returns None drops the record (Filter).

use std::sync::Arc;

use indexmap::IndexMap;
use regex::Regex;

use crate::data::{ConnectRecord, Schema, SchemaType, Value, TIMESTAMP};
use crate::props::Props;

/// The transforms of one connector, in order.
#[derive(Clone, Default)]
pub struct Chain {
    steps: Vec<Step>,
}

#[derive(Clone)]
struct Step {
    name: String,
    transform: Arc<dyn Transform>,
    predicate: Option<(Arc<dyn Predicate>, bool)>,
}

pub trait Transform: Send + Sync {
    /// The transformed record, or None to drop it; Err for a record it cannot handle.
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, String>;
}

pub trait Predicate: Send + Sync {
    fn test(&self, record: &ConnectRecord) -> bool;
}

impl Chain {
    /// Builds the chain a connector config describes; the error names the bad key.
    pub fn from_config(config: &Props) -> Result<Self, (String, String)> {
        let list = |key: &str| crate::props::list(config, key);
        let mut predicates = IndexMap::new();
        for p in list("predicates") {
            let sub = sub_config(config, &format!("predicates.{p}."));
            let ty_key = format!("predicates.{p}.type");
            let ty = sub.get("type").ok_or_else(|| {
                (
                    ty_key.clone(),
                    format!("Missing required configuration \"{ty_key}\""),
                )
            })?;
            predicates.insert(
                p.clone(),
                make_predicate(ty, &sub).map_err(|e| (ty_key, e))?,
            );
        }
        let mut steps = Vec::new();
        for t in list("transforms") {
            let sub = sub_config(config, &format!("transforms.{t}."));
            let ty_key = format!("transforms.{t}.type");
            let ty = sub.get("type").ok_or_else(|| {
                (
                    ty_key.clone(),
                    format!("Missing required configuration \"{ty_key}\""),
                )
            })?;
            let transform = make_transform(ty, &sub).map_err(|e| (ty_key, e))?;
            let predicate = match sub.get("predicate") {
                None => None,
                Some(p) => Some((
                    predicates.get(p).cloned().ok_or_else(|| {
                        (
                            format!("transforms.{t}.predicate"),
                            format!("predicate '{p}' is not listed in 'predicates'"),
                        )
                    })?,
                    sub.get("negate").is_some_and(|n| n == "true"),
                )),
            };
            steps.push(Step {
                name: t,
                transform,
                predicate,
            });
        }
        Ok(Self { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the record through every transform; None: dropped. The error names the
    /// transform that failed.
    pub fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        for s in &self.steps {
            if let Some((p, negate)) = &s.predicate {
                if p.test(&record) == *negate {
                    continue;
                }
            }
            match s.transform.apply(record) {
                Ok(Some(r)) => record = r,
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("transform '{}': {e}", s.name)),
            }
        }
        Ok(Some(record))
    }
}

fn sub_config(config: &Props, prefix: &str) -> Props {
    config
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
        .collect()
}

fn required<'a>(c: &'a Props, key: &str) -> Result<&'a str, String> {
    c.get(key).map(String::as_str).ok_or_else(|| {
        format!("Missing required configuration \"{key}\" which has no default value.")
    })
}

/// Which part of the record a `$Key` / `$Value` transform works on.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Key,
    Value,
}

fn part_of(class: &str) -> (String, Part) {
    let short = crate::converter::short_name(class);
    match short.split_once('$') {
        Some((base, "Key")) => (base.to_string(), Part::Key),
        Some((base, _)) => (base.to_string(), Part::Value),
        None => (short.to_string(), Part::Value),
    }
}

fn make_transform(class: &str, c: &Props) -> Result<Arc<dyn Transform>, String> {
    let (base, part) = part_of(class);
    Ok(match base.as_str() {
        "InsertField" => Arc::new(InsertField {
            part,
            topic: c.get("topic.field").cloned(),
            partition: c.get("partition.field").cloned(),
            offset: c.get("offset.field").cloned(),
            timestamp: c.get("timestamp.field").cloned(),
            static_field: c.get("static.field").map(|f| (f.clone(), c.get("static.value").cloned().unwrap_or_default())),
        }),
        "ReplaceField" => Arc::new(ReplaceField {
            part,
            exclude: [crate::props::list(c, "exclude"), crate::props::list(c, "blacklist")].concat(),
            include: [crate::props::list(c, "include"), crate::props::list(c, "whitelist")].concat(),
            renames: crate::props::list(c, "renames")
                .iter()
                .map(|r| r.split_once(':').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| format!("Invalid rename mapping: {r}")))
                .collect::<Result<_, _>>()?,
        }),
        "MaskField" => Arc::new(MaskField { part, fields: crate::props::list(c, "fields"), replacement: c.get("replacement").cloned() }),
        "ValueToKey" => Arc::new(ValueToKey { fields: crate::props::list(c, "fields") }),
        "ExtractField" => Arc::new(ExtractField { part, field: required(c, "field")?.to_string() }),
        "HoistField" => Arc::new(HoistField { part, field: required(c, "field")?.to_string() }),
        "Cast" => Arc::new(Cast::new(part, required(c, "spec")?)?),
        "TimestampConverter" => Arc::new(TimestampConverter {
            part,
            field: c.get("field").cloned().filter(|f| !f.is_empty()),
            target: match required(c, "target.type")? {
                t @ ("string" | "unix" | "Timestamp") => t.to_string(),
                t => return Err(format!("Invalid value {t} for configuration target.type: must be string, unix or Timestamp")),
            },
            format: java_format(c.get("format").map(String::as_str).unwrap_or("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")),
        }),
        "RegexRouter" => Arc::new(RegexRouter {
            regex: Regex::new(&format!("^(?:{})$", required(c, "regex")?)).map_err(|e| format!("Invalid regex: {e}"))?,
            replacement: required(c, "replacement")?.to_string(),
        }),
        "TimestampRouter" => Arc::new(TimestampRouter {
            topic_format: c.get("topic.format").cloned().unwrap_or_else(|| "${topic}-${timestamp}".into()),
            format: java_format(c.get("timestamp.format").map(String::as_str).unwrap_or("yyyyMMdd")),
        }),
        "Filter" => Arc::new(Filter),
        "DropHeaders" => Arc::new(DropHeaders { headers: crate::props::list(c, "headers") }),
        "InsertHeader" => Arc::new(InsertHeader {
            header: required(c, "header")?.to_string(),
            value: required(c, "value.literal")?.to_string(),
        }),
        "HeaderFrom" => {
            let fields = crate::props::list(c, "fields");
            let headers = crate::props::list(c, "headers");
            if fields.len() != headers.len() {
                return Err("'fields' and 'headers' must have the same number of elements".into());
            }
            Arc::new(HeaderFrom {
                part,
                pairs: fields.into_iter().zip(headers).collect(),
                moving: match c.get("operation").map(String::as_str).unwrap_or("copy") {
                    "copy" => false,
                    "move" => true,
                    o => return Err(format!("Invalid value {o} for configuration operation: must be copy or move")),
                },
            })
        }
        _ => return Err(format!("unknown transform class '{class}'")),
    })
}

fn make_predicate(class: &str, c: &Props) -> Result<Arc<dyn Predicate>, String> {
    Ok(match crate::converter::short_name(class) {
        "TopicNameMatches" => Arc::new(TopicNameMatches(
            Regex::new(&format!("^(?:{})$", required(c, "pattern")?))
                .map_err(|e| format!("Invalid pattern: {e}"))?,
        )),
        "HasHeaderKey" => Arc::new(HasHeaderKey(required(c, "name")?.to_string())),
        "RecordIsTombstone" => Arc::new(RecordIsTombstone),
        _ => return Err(format!("unknown predicate class '{class}'")),
    })
}

fn get_part(r: &mut ConnectRecord, part: Part) -> (&mut Option<Schema>, &mut Value) {
    match part {
        Part::Key => (&mut r.key_schema, &mut r.key),
        Part::Value => (&mut r.value_schema, &mut r.value),
    }
}

fn need_struct<'a>(
    v: &'a mut Value,
    what: &str,
) -> Result<&'a mut IndexMap<String, Value>, String> {
    match v {
        Value::Struct(m) => Ok(m),
        other => Err(format!(
            "{what} needs a struct or map, not {}",
            other.to_json()
        )),
    }
}

struct InsertField {
    part: Part,
    topic: Option<String>,
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
    static_field: Option<(String, String)>,
}

/// A field name with Kafka's `!` (required) or `?` (optional) suffix removed.
fn bare(f: &str) -> &str {
    f.trim_end_matches(['!', '?'])
}

impl Transform for InsertField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let mut adds: Vec<(String, Value, SchemaType, Option<&str>)> = Vec::new();
        if let Some(f) = &self.topic {
            adds.push((
                bare(f).into(),
                Value::String(r.topic.clone()),
                SchemaType::String,
                None,
            ));
        }
        if let Some(f) = &self.partition {
            adds.push((
                bare(f).into(),
                r.partition.map_or(Value::Null, |p| Value::Int(p.into())),
                SchemaType::Int32,
                None,
            ));
        }
        if let Some(f) = &self.offset {
            adds.push((
                bare(f).into(),
                r.kafka_offset.map_or(Value::Null, Value::Int),
                SchemaType::Int64,
                None,
            ));
        }
        if let Some(f) = &self.timestamp {
            adds.push((
                bare(f).into(),
                r.timestamp.map_or(Value::Null, Value::Int),
                SchemaType::Int64,
                Some(TIMESTAMP),
            ));
        }
        if let Some((f, v)) = &self.static_field {
            adds.push((
                bare(f).into(),
                Value::String(v.clone()),
                SchemaType::String,
                None,
            ));
        }
        let (schema, value) = get_part(&mut r, self.part);
        if value.is_null() {
            return Ok(Some(r));
        }
        let m = need_struct(value, "InsertField")?;
        for (name, v, ty, logical) in adds {
            m.insert(name.clone(), v);
            if let Some(s) = schema.as_mut().filter(|s| s.ty == SchemaType::Struct) {
                let mut fs = Schema::of(ty).optional();
                fs.name = logical.map(str::to_string);
                s.fields.retain(|(n, _)| *n != name);
                s.fields.push((name, fs));
            }
        }
        Ok(Some(r))
    }
}

struct ReplaceField {
    part: Part,
    exclude: Vec<String>,
    include: Vec<String>,
    renames: Vec<(String, String)>,
}

impl ReplaceField {
    fn keep(&self, f: &str) -> bool {
        !self.exclude.iter().any(|e| e == f)
            && (self.include.is_empty() || self.include.iter().any(|i| i == f))
    }

    fn rename<'a>(&'a self, f: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(a, _)| a == f)
            .map_or(f, |(_, b)| b)
    }
}

impl Transform for ReplaceField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (schema, value) = get_part(&mut r, self.part);
        if value.is_null() {
            return Ok(Some(r));
        }
        let m = need_struct(value, "ReplaceField")?;
        *m = std::mem::take(m)
            .into_iter()
            .filter(|(k, _)| self.keep(k))
            .map(|(k, v)| (self.rename(&k).to_string(), v))
            .collect();
        if let Some(s) = schema.as_mut() {
            s.fields = std::mem::take(&mut s.fields)
                .into_iter()
                .filter(|(k, _)| self.keep(k))
                .map(|(k, v)| (self.rename(&k).to_string(), v))
                .collect();
        }
        Ok(Some(r))
    }
}

struct MaskField {
    part: Part,
    fields: Vec<String>,
    replacement: Option<String>,
}

impl Transform for MaskField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (_, value) = get_part(&mut r, self.part);
        if value.is_null() {
            return Ok(Some(r));
        }
        let m = need_struct(value, "MaskField")?;
        for f in &self.fields {
            if let Some(v) = m.get_mut(f) {
                *v = match (&self.replacement, &*v) {
                    (Some(rep), Value::Int(_)) => Value::Int(rep.parse().map_err(|_| {
                        format!("replacement '{rep}' is not a number for field {f}")
                    })?),
                    (Some(rep), Value::Float(_)) => Value::Float(rep.parse().map_err(|_| {
                        format!("replacement '{rep}' is not a number for field {f}")
                    })?),
                    (Some(rep), _) => Value::String(rep.clone()),
                    (None, Value::Int(_)) => Value::Int(0),
                    (None, Value::Float(_)) => Value::Float(0.0),
                    (None, Value::Bool(_)) => Value::Bool(false),
                    (None, Value::String(_)) => Value::String(String::new()),
                    (None, Value::Array(_)) => Value::Array(Vec::new()),
                    (None, Value::Struct(_)) => Value::Struct(IndexMap::new()),
                    (None, Value::Bytes(_)) => Value::Bytes(Default::default()),
                    (None, Value::Null) => Value::Null,
                };
            }
        }
        Ok(Some(r))
    }
}

struct ValueToKey {
    fields: Vec<String>,
}

impl Transform for ValueToKey {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let m = r
            .value
            .as_struct()
            .ok_or("ValueToKey needs a struct value")?;
        let mut key = IndexMap::new();
        for f in &self.fields {
            let v = m
                .get(f)
                .ok_or_else(|| format!("field '{f}' is not in the value"))?;
            key.insert(f.clone(), v.clone());
        }
        r.key_schema = r.value_schema.as_ref().map(|s| {
            Schema::structure(
                self.fields
                    .iter()
                    .filter_map(|f| s.field(f).map(|fs| (f.clone(), fs.clone())))
                    .collect(),
            )
        });
        r.key = Value::Struct(key);
        Ok(Some(r))
    }
}

struct ExtractField {
    part: Part,
    field: String,
}

impl Transform for ExtractField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (schema, value) = get_part(&mut r, self.part);
        if value.is_null() {
            return Ok(Some(r));
        }
        let m = need_struct(value, "ExtractField")?;
        let v = m.swap_remove(&self.field).unwrap_or(Value::Null);
        *schema = schema.as_ref().and_then(|s| s.field(&self.field).cloned());
        *value = v;
        Ok(Some(r))
    }
}

struct HoistField {
    part: Part,
    field: String,
}

impl Transform for HoistField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (schema, value) = get_part(&mut r, self.part);
        let mut m = IndexMap::new();
        m.insert(self.field.clone(), std::mem::take(value));
        *value = Value::Struct(m);
        *schema = schema
            .take()
            .map(|s| Schema::structure(vec![(self.field.clone(), s)]));
        Ok(Some(r))
    }
}

struct Cast {
    part: Part,
    /// (field, type); a field of None casts the whole key or value.
    spec: Vec<(Option<String>, SchemaType)>,
}

impl Cast {
    fn new(part: Part, spec: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (field, ty) = match item.split_once(':') {
                Some((f, t)) => (Some(f.trim().to_string()), t.trim()),
                None => (None, item),
            };
            let t = SchemaType::from_name(ty)
                .filter(|t| !matches!(t, SchemaType::Array | SchemaType::Map | SchemaType::Struct))
                .ok_or_else(|| {
                    format!("Invalid value {spec} for configuration spec: unsupported type '{ty}'")
                })?;
            out.push((field, t));
        }
        if out.is_empty() {
            return Err("Invalid value for configuration spec: must not be empty".into());
        }
        Ok(Self { part, spec: out })
    }
}

fn cast(v: &Value, to: SchemaType) -> Result<Value, String> {
    let as_f64 = |v: &Value| -> Result<f64, String> {
        match v {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::Bool(b) => Ok(u8::from(*b).into()),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot cast '{s}' to {}", to.name())),
            o => Err(format!("cannot cast {} to {}", o.to_json(), to.name())),
        }
    };
    Ok(match (v, to) {
        (Value::Null, _) => Value::Null,
        (_, SchemaType::String) => Value::String(v.to_text()),
        (Value::String(s), SchemaType::Boolean) => {
            Value::Bool(s.trim().eq_ignore_ascii_case("true"))
        }
        (_, SchemaType::Boolean) => Value::Bool(as_f64(v)? != 0.0),
        (_, SchemaType::Float32 | SchemaType::Float64) => Value::Float(as_f64(v)?),
        (
            Value::String(s),
            SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64,
        ) => Value::Int(
            s.trim()
                .parse()
                .map_err(|_| format!("cannot cast '{s}' to {}", to.name()))?,
        ),
        (_, SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64) => {
            Value::Int(as_f64(v)? as i64)
        }
        (_, t) => return Err(format!("cannot cast to {}", t.name())),
    })
}

impl Transform for Cast {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (schema, value) = get_part(&mut r, self.part);
        for (field, to) in &self.spec {
            match field {
                None => {
                    *value = cast(value, *to)?;
                    *schema = schema.take().map(|s| Schema { ty: *to, ..s });
                }
                Some(f) => {
                    if let Some(v) = value.as_struct_mut().and_then(|m| m.get_mut(f)) {
                        *v = cast(v, *to)?;
                    }
                    if let Some(fs) = schema
                        .as_mut()
                        .and_then(|s| s.fields.iter_mut().find(|(n, _)| n == f))
                    {
                        fs.1.ty = *to;
                    }
                }
            }
        }
        Ok(Some(r))
    }
}

/// A Java `SimpleDateFormat` pattern as a chrono format (the common letters).
fn java_format(p: &str) -> String {
    let mut out = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            for q in chars.by_ref() {
                if q == '\'' {
                    break;
                }
                out.push(q);
            }
            continue;
        }
        let mut n = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            n += 1;
        }
        out.push_str(&match (c, n) {
            ('y', 2) => "%y".into(),
            ('y', _) => "%Y".into(),
            ('M', _) => "%m".into(),
            ('d', _) => "%d".into(),
            ('H', _) => "%H".into(),
            ('m', _) => "%M".into(),
            ('s', _) => "%S".into(),
            ('S', _) => "%3f".into(),
            ('X' | 'Z', _) => "%:z".into(),
            (c, n) => c.to_string().repeat(n),
        });
    }
    out
}

struct TimestampConverter {
    part: Part,
    field: Option<String>,
    target: String,
    format: String,
}

impl TimestampConverter {
    fn convert(&self, v: &Value) -> Result<(Value, Schema), String> {
        let ms = match v {
            Value::Int(i) => *i,
            Value::String(s) => chrono::NaiveDateTime::parse_from_str(s, &self.format)
                .map(|d| d.and_utc().timestamp_millis())
                .or_else(|_| {
                    chrono::DateTime::parse_from_str(s, &self.format).map(|d| d.timestamp_millis())
                })
                .map_err(|e| {
                    format!(
                        "could not parse timestamp '{s}' with format '{}': {e}",
                        self.format
                    )
                })?,
            o => return Err(format!("cannot convert {} to a timestamp", o.to_json())),
        };
        Ok(match self.target.as_str() {
            "string" => {
                let dt =
                    chrono::DateTime::from_timestamp_millis(ms).ok_or("timestamp out of range")?;
                (
                    Value::String(dt.format(&self.format).to_string()),
                    Schema::of(SchemaType::String),
                )
            }
            "unix" => (Value::Int(ms), Schema::of(SchemaType::Int64)),
            _ => (
                Value::Int(ms),
                Schema::of(SchemaType::Int64).named(TIMESTAMP),
            ),
        })
    }
}

impl Transform for TimestampConverter {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let (schema, value) = get_part(&mut r, self.part);
        match &self.field {
            None => {
                if !value.is_null() {
                    let (v, s) = self.convert(value)?;
                    *value = v;
                    *schema = schema.as_ref().map(|_| s);
                }
            }
            Some(f) => {
                let Some(slot) = value.as_struct_mut().and_then(|m| m.get_mut(f)) else {
                    return Ok(Some(r));
                };
                if slot.is_null() {
                    return Ok(Some(r));
                }
                let (v, s) = self.convert(slot)?;
                *slot = v;
                if let Some(fs) = schema
                    .as_mut()
                    .and_then(|sc| sc.fields.iter_mut().find(|(n, _)| n == f))
                {
                    fs.1 = Schema {
                        optional: fs.1.optional,
                        ..s
                    };
                }
            }
        }
        Ok(Some(r))
    }
}

struct RegexRouter {
    regex: Regex,
    replacement: String,
}

impl Transform for RegexRouter {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        if self.regex.is_match(&r.topic) {
            r.topic = self
                .regex
                .replace(&r.topic, self.replacement.as_str())
                .into_owned();
        }
        Ok(Some(r))
    }
}

struct TimestampRouter {
    topic_format: String,
    format: String,
}

impl Transform for TimestampRouter {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let ts = r
            .timestamp
            .ok_or("TimestampRouter needs a record timestamp")?;
        let dt = chrono::DateTime::from_timestamp_millis(ts).ok_or("timestamp out of range")?;
        r.topic = self
            .topic_format
            .replace("${topic}", &r.topic)
            .replace("${timestamp}", &dt.format(&self.format).to_string());
        Ok(Some(r))
    }
}

struct Filter;

impl Transform for Filter {
    fn apply(&self, _r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        Ok(None)
    }
}

struct DropHeaders {
    headers: Vec<String>,
}

impl Transform for DropHeaders {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        r.headers.retain(|(k, _)| !self.headers.contains(k));
        Ok(Some(r))
    }
}

struct InsertHeader {
    header: String,
    value: String,
}

impl Transform for InsertHeader {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        r.headers
            .push((self.header.clone(), Value::String(self.value.clone())));
        Ok(Some(r))
    }
}

struct HeaderFrom {
    part: Part,
    pairs: Vec<(String, String)>,
    moving: bool,
}

impl Transform for HeaderFrom {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        let mut new_headers = Vec::new();
        {
            let (schema, value) = get_part(&mut r, self.part);
            let Some(m) = value.as_struct_mut() else {
                return Ok(Some(r));
            };
            for (field, header) in &self.pairs {
                let v = if self.moving {
                    m.shift_remove(field)
                } else {
                    m.get(field).cloned()
                };
                new_headers.push((header.clone(), v.unwrap_or(Value::Null)));
                if self.moving {
                    if let Some(s) = schema.as_mut() {
                        s.fields.retain(|(n, _)| n != field);
                    }
                }
            }
        }
        r.headers.extend(new_headers);
        Ok(Some(r))
    }
}

struct TopicNameMatches(Regex);

impl Predicate for TopicNameMatches {
    fn test(&self, r: &ConnectRecord) -> bool {
        self.0.is_match(&r.topic)
    }
}

struct HasHeaderKey(String);

impl Predicate for HasHeaderKey {
    fn test(&self, r: &ConnectRecord) -> bool {
        r.headers.iter().any(|(k, _)| *k == self.0)
    }
}

struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, r: &ConnectRecord) -> bool {
        r.value.is_null()
    }
}

/// The transforms this worker knows, as `GET /connector-plugins?connectorsOnly=false` lists them.
pub const TRANSFORMS: &[&str] = &[
    "InsertField$Key",
    "InsertField$Value",
    "ReplaceField$Key",
    "ReplaceField$Value",
    "MaskField$Key",
    "MaskField$Value",
    "ValueToKey",
    "ExtractField$Key",
    "ExtractField$Value",
    "HoistField$Key",
    "HoistField$Value",
    "Cast$Key",
    "Cast$Value",
    "TimestampConverter$Key",
    "TimestampConverter$Value",
    "RegexRouter",
    "TimestampRouter",
    "Filter",
    "DropHeaders",
    "InsertHeader",
    "HeaderFrom$Key",
    "HeaderFrom$Value",
];
