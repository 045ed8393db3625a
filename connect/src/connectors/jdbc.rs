//! PostgreSQL sink, config-compatible with Confluent's JDBC sink
//! (`io.confluent.connect.jdbc.JdbcSinkConnector`): `connection.url`, `insert.mode`
//! insert/upsert/update, `pk.mode` none/kafka/record_key/record_value, `pk.fields`,
//! `auto.create`, `auto.evolve`, `table.name.format`, `delete.enabled`, `batch.size`.
//!
//! Each `put` is one PostgreSQL transaction, so the worker commits the Kafka offsets only
//! after the rows are durable. Within a batch, records with the same key collapse to the
//! last one (an upsert or, for a tombstone with `delete.enabled`, a delete), which keeps
//! multi-row `INSERT ... ON CONFLICT DO UPDATE` valid and makes redelivery idempotent.
//! Values are sent as text parameters cast to each column's type, so one statement shape
//! serves every table.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use indexmap::IndexMap;
use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

use crate::data::{ConnectRecord, Schema, SchemaType, Value, TIMESTAMP};
use crate::plugin::{ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, SinkTask};
use crate::props::Props;

pub struct JdbcSink;

impl ConnectorPlugin for JdbcSink {
    fn class(&self) -> &'static str {
        "io.confluent.connect.jdbc.JdbcSinkConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["JdbcSink", "PostgresSink"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Sink
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("connection.url", ConfigType::String, "JDBC connection URL: jdbc:postgresql://host:port/database").required().group("Connection"),
            ConfigKey::new("connection.user", ConfigType::String, "JDBC connection user.").group("Connection"),
            ConfigKey::new("connection.password", ConfigType::Password, "JDBC connection password.").group("Connection"),
            ConfigKey::new("insert.mode", ConfigType::String, "The insertion mode to use.").default("insert").one_of(&["insert", "upsert", "update"]).group("Writes"),
            ConfigKey::new("batch.size", ConfigType::Int, "Specifies how many records to attempt to batch together for insertion into the destination table.").default("3000").at_least(1).group("Writes"),
            ConfigKey::new("delete.enabled", ConfigType::Boolean, "Whether to treat null record values as deletes. Requires pk.mode to be record_key.").default("false").group("Writes"),
            ConfigKey::new("table.name.format", ConfigType::String, "A format string for the destination table name, which may contain '${topic}'.").default("${topic}").group("Data Mapping"),
            ConfigKey::new("pk.mode", ConfigType::String, "The primary key mode.").default("none").one_of(&["none", "kafka", "record_key", "record_value"]).group("Data Mapping"),
            ConfigKey::new("pk.fields", ConfigType::List, "List of comma-separated primary key field names.").default("").group("Data Mapping"),
            ConfigKey::new("fields.whitelist", ConfigType::List, "List of comma-separated record value field names. If empty, all fields from the record value are utilized.").default("").group("Data Mapping"),
            ConfigKey::new("auto.create", ConfigType::Boolean, "Whether to automatically create the destination table based on record schema.").default("false").group("DDL Support"),
            ConfigKey::new("auto.evolve", ConfigType::Boolean, "Whether to automatically add columns in the table schema when found to be missing relative to the record schema.").default("false").group("DDL Support"),
        ]
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let get = |k: &str, d: &str| {
            c.get(k)
                .map(|s| s.trim().to_ascii_lowercase())
                .unwrap_or_else(|| d.into())
        };
        if let Some(url) = c.get("connection.url") {
            if let Err(e) = PgTarget::parse(url, c) {
                errors.push(("connection.url".into(), e));
            }
        }
        let mode = get("insert.mode", "insert");
        let pk = get("pk.mode", "none");
        if mode != "insert" && pk == "none" {
            errors.push(("pk.mode".into(), format!("insert.mode={mode} needs a primary key: set pk.mode to kafka, record_key or record_value")));
        }
        if get("delete.enabled", "false") == "true" && pk != "record_key" {
            errors.push((
                "delete.enabled".into(),
                "Deletes are only supported for pk.mode record_key".into(),
            ));
        }
        if pk == "record_value" && crate::props::list(c, "pk.fields").is_empty() {
            errors.push((
                "pk.fields".into(),
                "pk.mode record_value needs pk.fields".into(),
            ));
        }
        errors
    }
    fn sink_task(&self) -> Option<Box<dyn SinkTask>> {
        Some(Box::new(JdbcSinkTask::default()))
    }
}

/// Where to connect, from a JDBC URL (`jdbc:postgresql://host:port/db?user=..&password=..`).
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
}

impl PgTarget {
    pub fn parse(url: &str, c: &Props) -> Result<Self, String> {
        let rest = url
            .strip_prefix("jdbc:postgresql://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| {
                format!("'{url}' is not a PostgreSQL URL (jdbc:postgresql://host:port/database)")
            })?;
        let (hostpart, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hostpart, db) = hostpart.split_once('/').unwrap_or((hostpart, "postgres"));
        let (userinfo, hostport) = match hostpart.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, hostpart),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in '{url}'"))?,
            ),
            None => (hostport, 5432),
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(if host.is_empty() { "localhost" } else { host })
            .port(port)
            .dbname(db);
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            config.user(user);
            if !pass.is_empty() {
                config.password(pass);
            }
        }
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("user", v)) => {
                    config.user(v);
                }
                Some(("password", v)) => {
                    config.password(v);
                }
                _ => {}
            }
        }
        if let Some(u) = c.get("connection.user") {
            config.user(u);
        }
        if let Some(p) = c.get("connection.password") {
            config.password(p);
        }
        Ok(Self { config })
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (client, conn) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// A column of a table, as the catalog describes it.
pub struct Column {
    pub name: String,
    /// `format_type`: `bigint`, `character varying(20)`, `timestamp without time zone`, ...
    pub type_name: String,
    pub type_oid: u32,
    /// Part of the primary key.
    pub primary: bool,
}

/// The columns of `table` (`name` in `public`, or `schema.name`) in their order; empty
/// when there is no such table.
pub async fn table_columns(client: &Client, table: &str) -> anyhow::Result<Vec<Column>> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid::oid,              coalesce(a.attnum = any(i.indkey), false) FROM pg_attribute a              JOIN pg_class c ON a.attrelid = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid              LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped              ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_name: r.get(1),
            type_oid: r.get(2),
            primary: r.get(3),
        })
        .collect())
}

/// A quoted SQL identifier (`"name"`, or `"schema"."table"`).
pub fn quote(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The PostgreSQL column type for a Connect schema.
fn sql_type(s: &Schema) -> &'static str {
    if s.name.as_deref() == Some(TIMESTAMP) {
        return "TIMESTAMP";
    }
    match s.ty {
        SchemaType::Int8 | SchemaType::Int16 => "SMALLINT",
        SchemaType::Int32 => "INTEGER",
        SchemaType::Int64 => "BIGINT",
        SchemaType::Float32 => "REAL",
        SchemaType::Float64 => "DOUBLE PRECISION",
        SchemaType::Boolean => "BOOLEAN",
        SchemaType::String => "TEXT",
        SchemaType::Bytes => "BYTEA",
        SchemaType::Array | SchemaType::Map | SchemaType::Struct => "JSONB",
    }
}

/// A value as the text PostgreSQL parses for a column of `schema`'s type.
fn sql_text(v: &Value, schema: Option<&Schema>) -> Option<String> {
    if schema.is_some_and(|s| s.name.as_deref() == Some(TIMESTAMP)) {
        if let Value::Int(ms) = v {
            return chrono::DateTime::from_timestamp_millis(*ms)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        }
    }
    match v {
        Value::Null => None,
        Value::Bytes(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
        Value::Struct(_) | Value::Array(_) => Some(v.to_json().to_string()),
        other => Some(other.to_text()),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum InsertMode {
    Insert,
    Upsert,
    Update,
}

#[derive(Clone, Copy, PartialEq)]
enum PkMode {
    None,
    Kafka,
    RecordKey,
    RecordValue,
}

/// One row to write, or a key to delete.
struct Row {
    /// Columns in order, with their schema (for types) and value.
    cols: IndexMap<String, (Schema, Value)>,
    pk: Vec<String>,
    delete: bool,
}

#[derive(Default)]
struct JdbcSinkTask {
    client: Option<Client>,
    target: Option<PgTarget>,
    mode: Option<InsertMode>,
    pk_mode: Option<PkMode>,
    pk_fields: Vec<String>,
    whitelist: Vec<String>,
    table_format: String,
    auto_create: bool,
    auto_evolve: bool,
    delete_enabled: bool,
    batch_size: usize,
    /// Column name -> type name, per table, as last read from the catalog.
    tables: HashMap<String, BTreeMap<String, String>>,
}

#[async_trait]
impl SinkTask for JdbcSinkTask {
    async fn start(&mut self, c: &Props) -> anyhow::Result<()> {
        let url = c
            .get("connection.url")
            .ok_or_else(|| anyhow::anyhow!("connection.url is missing"))?;
        let target = PgTarget::parse(url, c).map_err(anyhow::Error::msg)?;
        self.client = Some(target.connect().await?);
        self.target = Some(target);
        let get = |k: &str, d: &str| {
            c.get(k)
                .map(|s| s.trim().to_ascii_lowercase())
                .unwrap_or_else(|| d.into())
        };
        self.mode = Some(match get("insert.mode", "insert").as_str() {
            "upsert" => InsertMode::Upsert,
            "update" => InsertMode::Update,
            _ => InsertMode::Insert,
        });
        self.pk_mode = Some(match get("pk.mode", "none").as_str() {
            "kafka" => PkMode::Kafka,
            "record_key" => PkMode::RecordKey,
            "record_value" => PkMode::RecordValue,
            _ => PkMode::None,
        });
        self.pk_fields = crate::props::list(c, "pk.fields");
        self.whitelist = crate::props::list(c, "fields.whitelist");
        self.table_format = c
            .get("table.name.format")
            .cloned()
            .unwrap_or_else(|| "${topic}".into());
        self.auto_create = get("auto.create", "false") == "true";
        self.auto_evolve = get("auto.evolve", "false") == "true";
        self.delete_enabled = get("delete.enabled", "false") == "true";
        self.batch_size = c
            .get("batch.size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(3000);
        info!(table_format = %self.table_format, "JDBC sink connected to PostgreSQL");
        Ok(())
    }

    async fn put(&mut self, records: Vec<ConnectRecord>) -> anyhow::Result<()> {
        // Rows per table; with a key, the last record per key wins.
        let mut by_table: IndexMap<String, IndexMap<String, Row>> = IndexMap::new();
        let mut seq = 0u64;
        for r in &records {
            let table = self.table_format.replace("${topic}", &r.topic);
            let row = self.row(r)?;
            let Some(row) = row else { continue };
            let key = if row.pk.is_empty() {
                seq += 1;
                format!("#{seq}")
            } else {
                row.pk
                    .iter()
                    .map(|k| {
                        row.cols
                            .get(k)
                            .map_or(String::new(), |(_, v)| v.to_json().to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("\u{1}")
            };
            let rows = by_table.entry(table).or_default();
            rows.shift_remove(&key);
            rows.insert(key, row);
        }
        if by_table.is_empty() {
            return Ok(());
        }
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let target = self
                .target
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("not started"))?;
            self.client = Some(target.connect().await?);
        }
        for (table, rows) in &by_table {
            self.ensure_table(table, rows.values().filter(|r| !r.delete))
                .await?;
        }
        // Statements first (they read the column types), then one transaction for all.
        let mut statements: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for (table, rows) in by_table {
            let columns = self.tables.get(&table).cloned().unwrap_or_default();
            let (deletes, writes): (Vec<Row>, Vec<Row>) =
                rows.into_values().partition(|r| r.delete);
            for d in &deletes {
                let conds: Vec<String> =
                    d.pk.iter()
                        .enumerate()
                        .map(|(i, k)| {
                            format!(
                                "{} = CAST(${}::text AS {})",
                                quote(k),
                                i + 1,
                                columns.get(k).map_or("text", String::as_str)
                            )
                        })
                        .collect();
                let params: Vec<Option<String>> =
                    d.pk.iter()
                        .map(|k| d.cols.get(k).and_then(|(s, v)| sql_text(v, Some(s))))
                        .collect();
                statements.push((
                    format!(
                        "DELETE FROM {} WHERE {}",
                        quote(&table),
                        conds.join(" AND ")
                    ),
                    params,
                ));
            }
            // Rows with the same columns go in one multi-row statement.
            let mut shapes: IndexMap<Vec<String>, Vec<Row>> = IndexMap::new();
            for w in writes {
                shapes
                    .entry(w.cols.keys().cloned().collect())
                    .or_default()
                    .push(w);
            }
            for (cols, rows) in shapes {
                let per_stmt = (60_000 / cols.len().max(1)).clamp(1, self.batch_size.max(1));
                for chunk in rows.chunks(per_stmt) {
                    statements.push(self.statement(&table, &cols, chunk, &columns));
                }
            }
        }
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        let tx = client.transaction().await?;
        for (sql, params) in &statements {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            tx.execute(sql.as_str(), &refs).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl JdbcSinkTask {
    /// The row a record makes (None: nothing to do, a tombstone without delete.enabled).
    fn row(&self, r: &ConnectRecord) -> anyhow::Result<Option<Row>> {
        let pk_mode = self.pk_mode.unwrap_or(PkMode::None);
        let mut cols: IndexMap<String, (Schema, Value)> = IndexMap::new();
        let mut pk = Vec::new();
        match pk_mode {
            PkMode::None => {}
            PkMode::Kafka => {
                let names = if self.pk_fields.len() == 3 {
                    self.pk_fields.clone()
                } else {
                    vec![
                        "__connect_topic".into(),
                        "__connect_partition".into(),
                        "__connect_offset".into(),
                    ]
                };
                cols.insert(
                    names[0].clone(),
                    (
                        Schema::of(SchemaType::String),
                        Value::String(r.topic.clone()),
                    ),
                );
                cols.insert(
                    names[1].clone(),
                    (
                        Schema::of(SchemaType::Int32),
                        Value::Int(r.partition.unwrap_or(0).into()),
                    ),
                );
                cols.insert(
                    names[2].clone(),
                    (
                        Schema::of(SchemaType::Int64),
                        Value::Int(r.kafka_offset.unwrap_or(0)),
                    ),
                );
                pk = names;
            }
            PkMode::RecordKey => match &r.key {
                Value::Null => anyhow::bail!(
                    "pk.mode record_key needs a record key (topic {}, offset {:?})",
                    r.topic,
                    r.kafka_offset
                ),
                Value::Struct(m) => {
                    let names: Vec<String> = if self.pk_fields.is_empty() {
                        m.keys().cloned().collect()
                    } else {
                        self.pk_fields.clone()
                    };
                    for n in &names {
                        let v = m
                            .get(n)
                            .ok_or_else(|| anyhow::anyhow!("the key has no field '{n}'"))?;
                        let s = r
                            .key_schema
                            .as_ref()
                            .and_then(|s| s.field(n).cloned())
                            .or_else(|| Schema::infer(v))
                            .unwrap_or_else(|| Schema::of(SchemaType::String));
                        cols.insert(n.clone(), (s, v.clone()));
                    }
                    pk = names;
                }
                v => {
                    let name = self
                        .pk_fields
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "__connect_key".into());
                    let s = r
                        .key_schema
                        .clone()
                        .or_else(|| Schema::infer(v))
                        .unwrap_or_else(|| Schema::of(SchemaType::String));
                    cols.insert(
                        name.clone(),
                        (
                            Schema {
                                optional: false,
                                ..s
                            },
                            v.clone(),
                        ),
                    );
                    pk = vec![name];
                }
            },
            PkMode::RecordValue => pk = self.pk_fields.clone(),
        }
        if r.value.is_null() {
            if self.delete_enabled && pk_mode == PkMode::RecordKey {
                return Ok(Some(Row {
                    cols,
                    pk,
                    delete: true,
                }));
            }
            return Ok(None);
        }
        let Value::Struct(m) = &r.value else {
            anyhow::bail!("the JDBC sink needs struct (or JSON object) values, not {} (topic {}, offset {:?})", r.value.to_json(), r.topic, r.kafka_offset);
        };
        for (n, v) in m {
            if !self.whitelist.is_empty() && !self.whitelist.contains(n) && !pk.contains(n) {
                continue;
            }
            if cols.contains_key(n) {
                continue;
            }
            let s = r
                .value_schema
                .as_ref()
                .and_then(|s| s.field(n).cloned())
                .or_else(|| Schema::infer(v).map(Schema::optional))
                .unwrap_or_else(|| Schema::of(SchemaType::String).optional());
            cols.insert(n.clone(), (s, v.clone()));
        }
        for k in &pk {
            if !cols.contains_key(k) {
                anyhow::bail!("the primary key field '{k}' is not in the record");
            }
        }
        Ok(Some(Row {
            cols,
            pk,
            delete: false,
        }))
    }

    /// Creates the table or adds missing columns, as auto.create and auto.evolve allow.
    async fn ensure_table<'a>(
        &mut self,
        table: &str,
        rows: impl Iterator<Item = &'a Row>,
    ) -> anyhow::Result<()> {
        let mut wanted: IndexMap<String, Schema> = IndexMap::new();
        let mut pk: Vec<String> = Vec::new();
        for r in rows {
            if pk.is_empty() {
                pk = r.pk.clone();
            }
            for (n, (s, _)) in &r.cols {
                wanted.entry(n.clone()).or_insert_with(|| s.clone());
            }
        }
        if !self.tables.contains_key(table)
            || wanted.keys().any(|c| !self.tables[table].contains_key(c))
        {
            self.load_columns(table).await?;
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        if self.tables.get(table).is_none_or(BTreeMap::is_empty) {
            if !self.auto_create {
                anyhow::bail!(
                    "Table {} is missing and auto-creation is disabled",
                    quote(table)
                );
            }
            let mut defs: Vec<String> = wanted
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{} {}{}",
                        quote(n),
                        sql_type(s),
                        if s.optional && !pk.contains(n) {
                            " NULL"
                        } else {
                            " NOT NULL"
                        }
                    )
                })
                .collect();
            if !pk.is_empty() {
                defs.push(format!(
                    "PRIMARY KEY({})",
                    pk.iter().map(|k| quote(k)).collect::<Vec<_>>().join(",")
                ));
            }
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                quote(table),
                defs.join(", ")
            );
            info!(table, %sql, "creating the table");
            client.batch_execute(&sql).await?;
            self.load_columns(table).await?;
            return Ok(());
        }
        let missing: Vec<(String, Schema)> = wanted
            .into_iter()
            .filter(|(n, _)| !self.tables[table].contains_key(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.auto_evolve {
            anyhow::bail!(
                "Table {} is missing fields ({}) and auto-evolution is disabled",
                quote(table),
                missing
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (n, s) in missing {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {} NULL",
                quote(table),
                quote(&n),
                sql_type(&s)
            );
            info!(table, %sql, "evolving the table");
            client.batch_execute(&sql).await?;
        }
        self.load_columns(table).await
    }

    async fn load_columns(&mut self, table: &str) -> anyhow::Result<()> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        let cols: BTreeMap<String, String> = table_columns(client, table)
            .await?
            .into_iter()
            .map(|c| (c.name, c.type_name))
            .collect();
        self.tables.insert(table.to_string(), cols);
        Ok(())
    }

    /// A multi-row INSERT (with ON CONFLICT for upserts) or UPDATE for `rows`.
    fn statement(
        &self,
        table: &str,
        cols: &[String],
        rows: &[Row],
        types: &BTreeMap<String, String>,
    ) -> (String, Vec<Option<String>>) {
        let ty = |c: &str| types.get(c).map_or("text", String::as_str).to_string();
        let mut params = Vec::with_capacity(rows.len() * cols.len());
        let mode = self.mode.unwrap_or(InsertMode::Insert);
        let pk = rows.first().map(|r| r.pk.clone()).unwrap_or_default();
        if mode == InsertMode::Update {
            // UPDATE ... FROM (VALUES ...) keeps one statement per batch.
            let mut values = Vec::new();
            for r in rows {
                let mut row = Vec::new();
                for c in cols {
                    params.push(r.cols.get(c).and_then(|(s, v)| sql_text(v, Some(s))));
                    row.push(format!("CAST(${}::text AS {})", params.len(), ty(c)));
                }
                values.push(format!("({})", row.join(",")));
            }
            let sets: Vec<String> = cols
                .iter()
                .filter(|c| !pk.contains(c))
                .map(|c| format!("{} = v.{}", quote(c), quote(c)))
                .collect();
            let conds: Vec<String> = pk
                .iter()
                .map(|k| format!("t.{} = v.{}", quote(k), quote(k)))
                .collect();
            let sql = format!(
                "UPDATE {} AS t SET {} FROM (VALUES {}) AS v({}) WHERE {}",
                quote(table),
                sets.join(", "),
                values.join(","),
                cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","),
                conds.join(" AND ")
            );
            return (sql, params);
        }
        let mut values = Vec::new();
        for r in rows {
            let mut row = Vec::new();
            for c in cols {
                params.push(r.cols.get(c).and_then(|(s, v)| sql_text(v, Some(s))));
                row.push(format!("CAST(${}::text AS {})", params.len(), ty(c)));
            }
            values.push(format!("({})", row.join(",")));
        }
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(table),
            cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","),
            values.join(",")
        );
        if mode == InsertMode::Upsert && !pk.is_empty() {
            let updates: Vec<String> = cols
                .iter()
                .filter(|c| !pk.contains(c))
                .map(|c| format!("{} = EXCLUDED.{}", quote(c), quote(c)))
                .collect();
            let pk_list = pk.iter().map(|k| quote(k)).collect::<Vec<_>>().join(",");
            if updates.is_empty() {
                sql.push_str(&format!(" ON CONFLICT ({pk_list}) DO NOTHING"));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({pk_list}) DO UPDATE SET {}",
                    updates.join(", ")
                ));
            }
        }
        (sql, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls() {
        let mut c = Props::new();
        let t = PgTarget::parse(
            "jdbc:postgresql://db.example:5433/sales?user=u&password=p",
            &c,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.config.get_ports(), &[5433]);
        assert_eq!(t.config.get_dbname(), Some("sales"));
        assert_eq!(t.config.get_user(), Some("u"));
        c.insert("connection.user".into(), "other".into());
        let t =
            PgTarget::parse("jdbc:postgresql://localhost/db", &c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.config.get_user(), Some("other"));
        assert_eq!(t.config.get_ports(), &[5432]);
        assert!(PgTarget::parse("jdbc:mysql://x/y", &c).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("orders"), "\"orders\"");
        assert_eq!(quote("sales.orders"), "\"sales\".\"orders\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
