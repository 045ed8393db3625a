//! PostgreSQL query-based source, config-compatible with Confluent's JDBC source
//! (`io.confluent.connect.jdbc.JdbcSourceConnector`): `mode` bulk / incrementing /
//! timestamp / timestamp+incrementing, `incrementing.column.name`, `timestamp.column.name`,
//! `table.whitelist`, `topic.prefix`, `poll.interval.ms`, `batch.max.rows`,
//! `timestamp.delay.interval.ms`.
//!
//! Tables are divided among the tasks. A row is read as `row_to_json`, so one query shape
//! serves every table; column types from the catalog give the record's schema. The offset of
//! a table (`{"table": ...}`) is `{"incrementing": id}` and/or `{"timestamp": ms,
//! "timestamp_nanos": ns}`, as Confluent's connector stores them, so a restarted task goes on
//! after the last row it sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use indexmap::IndexMap;
use serde_json::{json, Value as Json};
use tokio_postgres::Client;
use tracing::info;

use super::jdbc::{quote, table_columns, PgTarget};
use crate::data::{ConnectRecord, Schema, SchemaType, Value, TIMESTAMP};
use crate::plugin::{
    ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, OffsetReader, SourceTask,
};
use crate::props::Props;

pub struct JdbcSource;

impl ConnectorPlugin for JdbcSource {
    fn class(&self) -> &'static str {
        "io.confluent.connect.jdbc.JdbcSourceConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["JdbcSource", "PostgresSource"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Source
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("connection.url", ConfigType::String, "JDBC connection URL: jdbc:postgresql://host:port/database").required().group("Database"),
            ConfigKey::new("connection.user", ConfigType::String, "JDBC connection user.").group("Database"),
            ConfigKey::new("connection.password", ConfigType::Password, "JDBC connection password.").group("Database"),
            ConfigKey::new("table.whitelist", ConfigType::List, "List of tables to include in copying.").default("").group("Database"),
            ConfigKey::new("mode", ConfigType::String, "The mode for updating a table each time it is polled.").required().one_of(&["bulk", "incrementing", "timestamp", "timestamp+incrementing"]).group("Mode"),
            ConfigKey::new("incrementing.column.name", ConfigType::String, "The name of the strictly incrementing column to use to detect new rows.").default("").group("Mode"),
            ConfigKey::new("timestamp.column.name", ConfigType::List, "The name of the timestamp column to use to detect new or modified rows.").default("").group("Mode"),
            ConfigKey::new("topic.prefix", ConfigType::String, "Prefix to prepend to table names to generate the name of the Kafka topic to publish data to.").required().group("Connector"),
            ConfigKey::new("poll.interval.ms", ConfigType::Int, "Frequency in ms to poll for new data in each table.").default("5000").at_least(1).group("Connector"),
            ConfigKey::new("batch.max.rows", ConfigType::Int, "Maximum number of rows to include in a single batch when polling for new data.").default("100").at_least(1).group("Connector"),
            ConfigKey::new("timestamp.delay.interval.ms", ConfigType::Long, "How long to wait after a row with certain timestamp appears before we include it in the result.").default("0").group("Connector"),
        ]
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Some(url) = c.get("connection.url") {
            if let Err(e) = PgTarget::parse(url, c) {
                errors.push(("connection.url".into(), e));
            }
        }
        let mode = c.get("mode").map(String::as_str).unwrap_or("");
        if mode.contains("incrementing")
            && c.get("incrementing.column.name")
                .is_none_or(|v| v.is_empty())
        {
            errors.push((
                "incrementing.column.name".into(),
                format!("mode {mode} needs incrementing.column.name"),
            ));
        }
        if mode.contains("timestamp") && crate::props::list(c, "timestamp.column.name").is_empty() {
            errors.push((
                "timestamp.column.name".into(),
                format!("mode {mode} needs timestamp.column.name"),
            ));
        }
        if crate::props::list(c, "table.whitelist").is_empty() {
            errors.push((
                "table.whitelist".into(),
                "name the tables to copy in table.whitelist".into(),
            ));
        }
        errors
    }
    fn task_configs(&self, c: &Props, max_tasks: usize) -> anyhow::Result<Vec<Props>> {
        let tables = crate::props::list(c, "table.whitelist");
        let n = max_tasks.min(tables.len()).max(1);
        Ok((0..n)
            .map(|i| {
                let mut t = c.clone();
                let mine: Vec<&str> = tables
                    .iter()
                    .skip(i)
                    .step_by(n)
                    .map(String::as_str)
                    .collect();
                t.insert("tables".into(), mine.join(","));
                t
            })
            .collect())
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        Some(Box::new(JdbcSourceTask::default()))
    }
}

#[derive(Clone, Copy, PartialEq, Default)]
enum Mode {
    #[default]
    Bulk,
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

struct Table {
    name: String,
    topic: String,
    schema: Schema,
    /// Last seen values: incrementing id, timestamp in µs since the epoch.
    inc: Option<i64>,
    ts_us: Option<i64>,
    next_poll: Instant,
}

#[derive(Default)]
struct JdbcSourceTask {
    client: Option<Client>,
    target: Option<PgTarget>,
    mode: Mode,
    inc_col: String,
    ts_col: String,
    poll_interval: Duration,
    batch: i64,
    delay_us: i64,
    tables: Vec<Table>,
    ready: VecDeque<ConnectRecord>,
}

fn connect_type(pg_type: &str) -> Schema {
    let t = pg_type.split('(').next().unwrap_or(pg_type).trim();
    let ty = match t {
        "smallint" => SchemaType::Int16,
        "integer" => SchemaType::Int32,
        "bigint" => SchemaType::Int64,
        "real" => SchemaType::Float32,
        "double precision" | "numeric" => SchemaType::Float64,
        "boolean" => SchemaType::Boolean,
        "bytea" => SchemaType::Bytes,
        t if t.starts_with("timestamp") || t == "date" => {
            return Schema::of(SchemaType::Int64).named(TIMESTAMP).optional()
        }
        _ => SchemaType::String,
    };
    Schema::of(ty).optional()
}

/// A `row_to_json` value as Connect data of its column's schema.
fn from_pg_json(v: &Json, s: &Schema) -> Value {
    match (v, s.ty) {
        (Json::Null, _) => Value::Null,
        (Json::String(t), SchemaType::Int64) if s.name.as_deref() == Some(TIMESTAMP) => {
            parse_ts_us(t).map_or(Value::Null, |us| Value::Int(us.div_euclid(1000)))
        }
        (Json::String(t), SchemaType::Bytes) => {
            let hex = t.trim_start_matches("\\x");
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect();
            Value::Bytes(bytes.into())
        }
        (Json::Number(n), SchemaType::Float32 | SchemaType::Float64) => {
            Value::Float(n.as_f64().unwrap_or_default())
        }
        (Json::Number(n), _) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or_default()), Value::Int),
        (Json::Bool(b), _) => Value::Bool(*b),
        (Json::String(t), _) => Value::String(t.clone()),
        (other, _) => Value::String(other.to_string()),
    }
}

/// µs since the epoch of a timestamp as PostgreSQL's JSON writes it.
fn parse_ts_us(t: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc().timestamp_micros());
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_micros())
}

#[async_trait]
impl SourceTask for JdbcSourceTask {
    async fn start(&mut self, c: &Props, offsets: Arc<dyn OffsetReader>) -> anyhow::Result<()> {
        let url = c
            .get("connection.url")
            .ok_or_else(|| anyhow::anyhow!("connection.url is missing"))?;
        let target = PgTarget::parse(url, c).map_err(anyhow::Error::msg)?;
        let client = target.connect().await?;
        self.mode = match c.get("mode").map(String::as_str) {
            Some("incrementing") => Mode::Incrementing,
            Some("timestamp") => Mode::Timestamp,
            Some("timestamp+incrementing") => Mode::TimestampIncrementing,
            _ => Mode::Bulk,
        };
        self.inc_col = c
            .get("incrementing.column.name")
            .cloned()
            .unwrap_or_default();
        self.ts_col = crate::props::list(c, "timestamp.column.name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let num = |k: &str, d: i64| c.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
        self.poll_interval = Duration::from_millis(num("poll.interval.ms", 5000) as u64);
        self.batch = num("batch.max.rows", 100);
        self.delay_us = num("timestamp.delay.interval.ms", 0) * 1000;
        let prefix = c.get("topic.prefix").cloned().unwrap_or_default();
        for name in crate::props::list(c, "tables") {
            let columns = table_columns(&client, &name).await?;
            if columns.is_empty() {
                anyhow::bail!("table {name} does not exist");
            }
            let fields = columns
                .into_iter()
                .map(|c| {
                    let ty = connect_type(&c.type_name);
                    (c.name, ty)
                })
                .collect();
            let stored = offsets.offset(&json!({ "table": name })).await;
            let inc = stored.as_ref().and_then(|o| o["incrementing"].as_i64());
            let ts_us = stored.as_ref().and_then(|o| {
                let ms = o["timestamp"].as_i64()?;
                let nanos = o["timestamp_nanos"].as_i64().unwrap_or(0);
                Some(ms * 1000 + (nanos / 1000) % 1000)
            });
            info!(table = %name, ?inc, ?ts_us, "JDBC source table");
            self.tables.push(Table {
                topic: format!("{prefix}{name}"),
                schema: Schema::structure(fields).named(name.clone()),
                name,
                inc,
                ts_us,
                next_poll: Instant::now(),
            });
        }
        self.client = Some(client);
        self.target = Some(target);
        Ok(())
    }

    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        if !self.ready.is_empty() {
            let n = self.ready.len().min(self.batch as usize);
            return Ok(self.ready.drain(..n).collect());
        }
        let now = Instant::now();
        let Some(i) = (0..self.tables.len()).min_by_key(|&i| self.tables[i].next_poll) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(Vec::new());
        };
        if self.tables[i].next_poll > now {
            tokio::time::sleep((self.tables[i].next_poll - now).min(Duration::from_millis(500)))
                .await;
            return Ok(Vec::new());
        }
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let t = self
                .target
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("not started"))?;
            self.client = Some(t.connect().await?);
        }
        let rows = self.query(i).await?;
        let full = rows.len() as i64 >= self.batch && self.mode != Mode::Bulk;
        let table = &mut self.tables[i];
        // A full batch means more rows wait: poll this table again at once.
        table.next_poll = if full {
            Instant::now()
        } else {
            Instant::now() + self.poll_interval
        };
        let mut out = Vec::with_capacity(rows.len());
        for (row, inc, ts_us) in rows {
            let obj = row.as_object().cloned().unwrap_or_default();
            let mut m = IndexMap::new();
            for (name, s) in &table.schema.fields {
                m.insert(
                    name.clone(),
                    from_pg_json(obj.get(name).unwrap_or(&Json::Null), s),
                );
            }
            if inc.is_some() {
                table.inc = inc;
            }
            if ts_us.is_some() {
                table.ts_us = ts_us;
            }
            let mut offset = serde_json::Map::new();
            if let Some(i) = table
                .inc
                .filter(|_| matches!(self.mode, Mode::Incrementing | Mode::TimestampIncrementing))
            {
                offset.insert("incrementing".into(), json!(i));
            }
            if let Some(us) = table
                .ts_us
                .filter(|_| matches!(self.mode, Mode::Timestamp | Mode::TimestampIncrementing))
            {
                offset.insert("timestamp".into(), json!(us.div_euclid(1000)));
                offset.insert(
                    "timestamp_nanos".into(),
                    json!(us.rem_euclid(1_000_000) * 1000),
                );
            }
            out.push(ConnectRecord {
                topic: table.topic.clone(),
                value_schema: Some(table.schema.clone()),
                value: Value::Struct(m),
                source_partition: Some(json!({ "table": table.name })),
                source_offset: Some(Json::Object(offset)),
                ..ConnectRecord::default()
            });
        }
        self.ready.extend(out);
        let n = self.ready.len().min(self.batch.max(1) as usize);
        Ok(self.ready.drain(..n).collect())
    }
}

impl JdbcSourceTask {
    /// The next rows of table `i`: (row as JSON, incrementing value, timestamp in µs).
    async fn query(&self, i: usize) -> anyhow::Result<Vec<(Json, Option<i64>, Option<i64>)>> {
        let t = &self.tables[i];
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        let inc = if self.inc_col.is_empty() {
            "NULL::bigint".to_string()
        } else {
            format!("t.{}::bigint", quote(&self.inc_col))
        };
        let ts = if self.ts_col.is_empty() {
            "NULL::bigint".to_string()
        } else {
            format!(
                "(extract(epoch from t.{}) * 1000000)::bigint",
                quote(&self.ts_col)
            )
        };
        let select = format!(
            "SELECT row_to_json(t)::text, {inc}, {ts} FROM {} t",
            quote(&t.name)
        );
        let delay = format!(
            "(extract(epoch from now()) * 1000000)::bigint - {}",
            self.delay_us
        );
        let (sql, last_inc, last_ts) = match self.mode {
            Mode::Bulk => (select, 0i64, 0i64),
            Mode::Incrementing => (format!("{select} WHERE {inc} > $1::bigint AND $2::bigint IS NOT NULL ORDER BY {inc} LIMIT {}", self.batch), t.inc.unwrap_or(-1), 0),
            Mode::Timestamp => (
                format!("{select} WHERE $1::bigint IS NOT NULL AND {ts} > $2::bigint AND {ts} < {delay} ORDER BY {ts}"),
                0,
                t.ts_us.unwrap_or(i64::MIN),
            ),
            Mode::TimestampIncrementing => (
                format!(
                    "{select} WHERE (({ts} = $2::bigint AND {inc} > $1::bigint) OR {ts} > $2::bigint) AND {ts} < {delay} ORDER BY {ts}, {inc} LIMIT {}",
                    self.batch
                ),
                t.inc.unwrap_or(-1),
                t.ts_us.unwrap_or(i64::MIN),
            ),
        };
        let rows = if self.mode == Mode::Bulk {
            client.query(sql.as_str(), &[]).await?
        } else {
            client.query(sql.as_str(), &[&last_inc, &last_ts]).await?
        };
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                Ok((
                    serde_json::from_str(&text)?,
                    r.get::<_, Option<i64>>(1),
                    r.get::<_, Option<i64>>(2),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_spread_over_tasks() {
        let mut c = Props::new();
        c.insert("table.whitelist".into(), "a,b,c".into());
        let tasks = JdbcSource.task_configs(&c, 2).unwrap_or_default();
        let mine: Vec<&str> = tasks.iter().map(|t| t["tables"].as_str()).collect();
        assert_eq!(mine, ["a,c", "b"]);
        assert_eq!(
            JdbcSource.task_configs(&c, 8).map(|t| t.len()).ok(),
            Some(3)
        );
    }

    #[test]
    fn postgres_json_values() {
        let ts = connect_type("timestamp without time zone");
        assert_eq!(
            from_pg_json(&json!("2023-11-14T22:13:20.5"), &ts),
            Value::Int(1_700_000_000_500)
        );
        assert_eq!(
            from_pg_json(&json!("2023-11-14T22:13:20+00:00"), &ts),
            Value::Int(1_700_000_000_000)
        );
        let b = connect_type("bytea");
        assert_eq!(
            from_pg_json(&json!("\\x0aff"), &b),
            Value::Bytes(vec![10, 255].into())
        );
        assert_eq!(connect_type("character varying(20)").ty, SchemaType::String);
        assert_eq!(
            from_pg_json(&json!(1.5), &connect_type("numeric(10,2)")),
            Value::Float(1.5)
        );
    }
}
