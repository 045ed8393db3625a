//! Change data capture from PostgreSQL's logical replication (the `pgoutput` plugin), with
//! Debezium's config keys and record shapes: `database.hostname`, `database.port`,
//! `database.user`, `database.password`, `database.dbname`, `topic.prefix`,
//! `table.include.list`, `slot.name`, `publication.name`, `snapshot.mode` initial/never.
//!
//! Each change becomes a record on `<topic.prefix>.<schema>.<table>`, keyed by the row's
//! primary key, with Debezium's envelope as the value: `before`, `after`, `source`, `op`
//! (`r` snapshot read, `c` insert, `u` update, `d` delete) and `ts_ms`; a delete is followed
//! by a tombstone for compaction.
//!
//! The slot is read with `pg_logical_slot_peek_binary_changes` over an ordinary connection
//! and advanced (`pg_replication_slot_advance`) only after the worker has stored the
//! offsets of what was sent: a crash replays from the last stored commit, never skips one.
//! Only the last record of a transaction carries its commit LSN as the offset, so a
//! transaction is never half-acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use serde_json::{json, Value as Json};
use tokio_postgres::Client;
use tracing::info;

use super::jdbc::{quote, table_columns, PgTarget};
use crate::data::{ConnectRecord, Schema, SchemaType, Value};
use crate::plugin::{
    ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, OffsetReader, SourceTask,
};
use crate::props::Props;

pub struct PostgresCdc;

impl ConnectorPlugin for PostgresCdc {
    fn class(&self) -> &'static str {
        "io.debezium.connector.postgresql.PostgresConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["PostgresCdc", "PostgresConnector"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Source
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("database.hostname", ConfigType::String, "Resolvable hostname or IP address of the database server.").required().group("Postgres"),
            ConfigKey::new("database.port", ConfigType::Int, "Port of the database server.").default("5432").group("Postgres"),
            ConfigKey::new("database.user", ConfigType::String, "Name of the database user to be used when connecting to the database.").required().group("Postgres"),
            ConfigKey::new("database.password", ConfigType::Password, "Password of the database user to be used when connecting to the database.").group("Postgres"),
            ConfigKey::new("database.dbname", ConfigType::String, "The name of the database from which the connector should capture changes").required().group("Postgres"),
            ConfigKey::new("topic.prefix", ConfigType::String, "Topic prefix that identifies and provides a namespace for the particular database server/cluster").required().group("Postgres"),
            ConfigKey::new("table.include.list", ConfigType::List, "The tables for which changes are to be captured (schema.table).").default("").group("Postgres"),
            ConfigKey::new("slot.name", ConfigType::String, "The name of the Postgres logical decoding slot created for streaming changes.").default("debezium").group("Postgres"),
            ConfigKey::new("publication.name", ConfigType::String, "The name of the Postgres publication used for streaming changes.").default("dbz_publication").group("Postgres"),
            ConfigKey::new("plugin.name", ConfigType::String, "The name of the Postgres logical decoding plugin.").default("pgoutput").one_of(&["pgoutput"]).group("Postgres"),
            ConfigKey::new("snapshot.mode", ConfigType::String, "The criteria for running a snapshot upon startup of the connector.").default("initial").one_of(&["initial", "never", "no_data"]).group("Postgres"),
            ConfigKey::new("max.batch.size", ConfigType::Int, "Maximum size of each batch of source records.").default("2048").at_least(1).group("Postgres"),
            ConfigKey::new("poll.interval.ms", ConfigType::Long, "Time to wait for new change events to appear after receiving no events.").default("500").group("Postgres"),
            ConfigKey::new("tombstones.on.delete", ConfigType::Boolean, "Whether delete operations should be represented by a delete event and a subsequent tombstone event.").default("true").group("Postgres"),
        ]
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        match c.get("tasks.max").and_then(|t| t.parse::<i64>().ok()) {
            Some(n) if n > 1 => vec![(
                "tasks.max".into(),
                "Only a single connector task may be started".into(),
            )],
            _ => Vec::new(),
        }
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        Some(Box::new(CdcTask::default()))
    }
}

/// A table as a `Relation` message describes it.
#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    table: String,
    /// (name, type oid, part of the replica identity key)
    columns: Vec<(String, u32, bool)>,
}

#[derive(Default)]
struct CdcTask {
    client: Option<Client>,
    target: Option<PgTarget>,
    prefix: String,
    db: String,
    slot: String,
    publication: String,
    batch: i64,
    poll_interval: Duration,
    tombstones: bool,
    tables: Vec<String>,
    relations: HashMap<u32, Relation>,
    /// Transactions at or below this commit LSN were already sent.
    sent_lsn: u64,
    /// The end LSN of the last transaction sent: where the slot may advance to on commit.
    advance_to: Option<u64>,
    partition: Json,
    ready: VecDeque<ConnectRecord>,
    /// Snapshot rows still to send (snapshot.mode=initial on a first start).
    snapshot_pending: bool,
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The Connect schema and value of a column in pgoutput's text format.
fn column(oid: u32, text: Option<&str>) -> (Schema, Value) {
    let s = |t| Schema::of(t).optional();
    let Some(t) = text else {
        return (
            s(match oid {
                16 => SchemaType::Boolean,
                20 | 1114 => SchemaType::Int64,
                21 => SchemaType::Int16,
                23 => SchemaType::Int32,
                700 => SchemaType::Float32,
                701 | 1700 => SchemaType::Float64,
                _ => SchemaType::String,
            }),
            Value::Null,
        );
    };
    match oid {
        16 => (s(SchemaType::Boolean), Value::Bool(t == "t")),
        20 => (
            s(SchemaType::Int64),
            t.parse().map_or(Value::Null, Value::Int),
        ),
        21 => (
            s(SchemaType::Int16),
            t.parse().map_or(Value::Null, Value::Int),
        ),
        23 => (
            s(SchemaType::Int32),
            t.parse().map_or(Value::Null, Value::Int),
        ),
        700 => (
            s(SchemaType::Float32),
            t.parse().map_or(Value::Null, Value::Float),
        ),
        701 | 1700 => (
            s(SchemaType::Float64),
            t.parse().map_or(Value::Null, Value::Float),
        ),
        1114 => (
            s(SchemaType::Int64).named("io.debezium.time.MicroTimestamp"),
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .map_or(Value::Null, |d| Value::Int(d.and_utc().timestamp_micros())),
        ),
        _ => (s(SchemaType::String), Value::String(t.to_string())),
    }
}

/// A reader over one pgoutput message.
struct Msg<'a>(&'a [u8]);

impl Msg<'_> {
    fn u8(&mut self) -> anyhow::Result<u8> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("pgoutput message ends early"))?;
        self.0 = rest;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        anyhow::ensure!(self.0.len() >= n, "pgoutput message ends early");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> anyhow::Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn cstr(&mut self) -> anyhow::Result<String> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| anyhow::anyhow!("unterminated string"))?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(s)
    }
    /// TupleData: each column's text, None for NULL (or an unchanged TOAST value).
    fn tuple(&mut self) -> anyhow::Result<Vec<Option<String>>> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match self.u8()? {
                b't' | b'b' => {
                    let len = self.u32()? as usize;
                    out.push(Some(String::from_utf8_lossy(self.take(len)?).into_owned()));
                }
                _ => out.push(None),
            }
        }
        Ok(out)
    }
}

impl CdcTask {
    fn row(&self, rel: &Relation, tuple: &[Option<String>]) -> (Schema, Value) {
        let mut fields = Vec::new();
        let mut m = IndexMap::new();
        for ((name, oid, _), text) in rel.columns.iter().zip(tuple) {
            let (s, v) = column(*oid, text.as_deref());
            fields.push((name.clone(), s));
            m.insert(name.clone(), v);
        }
        (
            Schema::structure(fields)
                .named(format!(
                    "{}.{}.{}.Value",
                    self.prefix, rel.schema, rel.table
                ))
                .optional(),
            Value::Struct(m),
        )
    }

    fn key(&self, rel: &Relation, tuple: &[Option<String>]) -> (Option<Schema>, Value) {
        let mut fields = Vec::new();
        let mut m = IndexMap::new();
        for ((name, oid, key), text) in rel.columns.iter().zip(tuple) {
            if *key {
                let (s, v) = column(*oid, text.as_deref());
                fields.push((
                    name.clone(),
                    Schema {
                        optional: false,
                        ..s
                    },
                ));
                m.insert(name.clone(), v);
            }
        }
        if fields.is_empty() {
            return (None, Value::Null);
        }
        (
            Some(
                Schema::structure(fields)
                    .named(format!("{}.{}.{}.Key", self.prefix, rel.schema, rel.table)),
            ),
            Value::Struct(m),
        )
    }

    /// A Debezium change event.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        rel: &Relation,
        op: &str,
        before: Option<&[Option<String>]>,
        after: Option<&[Option<String>]>,
        key_tuple: &[Option<String>],
        ts_ms: i64,
        tx: Option<(u32, u64)>,
    ) -> Vec<ConnectRecord> {
        let (row_schema, _) = self.row(rel, key_tuple);
        let before_v = before.map_or(Value::Null, |t| self.row(rel, t).1);
        let after_v = after.map_or(Value::Null, |t| self.row(rel, t).1);
        let mut source = IndexMap::new();
        source.insert(
            "version".to_string(),
            Value::from(env!("CARGO_PKG_VERSION")),
        );
        source.insert("connector".to_string(), Value::from("postgresql"));
        source.insert("name".to_string(), Value::String(self.prefix.clone()));
        source.insert("ts_ms".to_string(), Value::Int(ts_ms));
        source.insert(
            "snapshot".to_string(),
            Value::from(if op == "r" { "true" } else { "false" }),
        );
        source.insert("db".to_string(), Value::String(self.db.clone()));
        source.insert("schema".to_string(), Value::String(rel.schema.clone()));
        source.insert("table".to_string(), Value::String(rel.table.clone()));
        source.insert(
            "txId".to_string(),
            tx.map_or(Value::Null, |(x, _)| Value::Int(x.into())),
        );
        source.insert(
            "lsn".to_string(),
            tx.map_or(Value::Null, |(_, l)| Value::Int(l as i64)),
        );
        let source_schema = Schema::structure(
            [
                ("version", SchemaType::String),
                ("connector", SchemaType::String),
                ("name", SchemaType::String),
                ("ts_ms", SchemaType::Int64),
                ("snapshot", SchemaType::String),
                ("db", SchemaType::String),
                ("schema", SchemaType::String),
                ("table", SchemaType::String),
                ("txId", SchemaType::Int64),
                ("lsn", SchemaType::Int64),
            ]
            .into_iter()
            .map(|(n, t)| (n.to_string(), Schema::of(t).optional()))
            .collect(),
        )
        .named("io.debezium.connector.postgresql.Source");
        let mut env = IndexMap::new();
        env.insert("before".to_string(), before_v);
        env.insert("after".to_string(), after_v);
        env.insert("source".to_string(), Value::Struct(source));
        env.insert("op".to_string(), Value::from(op));
        env.insert(
            "ts_ms".to_string(),
            Value::Int(chrono::Utc::now().timestamp_millis()),
        );
        let env_schema = Schema::structure(vec![
            ("before".into(), row_schema.clone()),
            ("after".into(), row_schema),
            ("source".into(), source_schema),
            ("op".into(), Schema::of(SchemaType::String)),
            ("ts_ms".into(), Schema::of(SchemaType::Int64).optional()),
        ])
        .named(format!(
            "{}.{}.{}.Envelope",
            self.prefix, rel.schema, rel.table
        ));
        let (key_schema, key) = self.key(rel, key_tuple);
        let topic = format!("{}.{}.{}", self.prefix, rel.schema, rel.table);
        let mut out = vec![ConnectRecord {
            topic: topic.clone(),
            key_schema: key_schema.clone(),
            key: key.clone(),
            value_schema: Some(env_schema),
            value: Value::Struct(env),
            timestamp: Some(ts_ms),
            ..ConnectRecord::default()
        }];
        if op == "d" && self.tombstones {
            out.push(ConnectRecord {
                topic,
                key_schema,
                key,
                timestamp: Some(ts_ms),
                ..ConnectRecord::default()
            });
        }
        out
    }

    async fn snapshot(&mut self, start_lsn: u64) -> anyhow::Result<()> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        let mut records = Vec::new();
        for t in self.tables.clone() {
            let (ns, rel) = t.split_once('.').unwrap_or(("public", &t));
            let relation = Relation {
                schema: ns.to_string(),
                table: rel.to_string(),
                columns: table_columns(client, &t)
                    .await?
                    .into_iter()
                    .map(|c| (c.name, c.type_oid, c.primary))
                    .collect(),
            };
            let select: Vec<String> = relation
                .columns
                .iter()
                .map(|(n, _, _)| format!("{}::text", quote(n)))
                .collect();
            let rows = client
                .query(
                    &format!("SELECT {} FROM {}", select.join(", "), quote(&t)),
                    &[],
                )
                .await?;
            let now = chrono::Utc::now().timestamp_millis();
            for r in rows {
                let tuple: Vec<Option<String>> = (0..relation.columns.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect();
                records.extend(self.event(&relation, "r", None, Some(&tuple), &tuple, now, None));
            }
        }
        // Only the last snapshot record completes the snapshot in the stored offset.
        let n = records.len();
        for (i, mut r) in records.into_iter().enumerate() {
            r.source_partition = Some(self.partition.clone());
            r.source_offset = Some(if i + 1 == n {
                json!({"lsn": start_lsn})
            } else {
                json!({"lsn": start_lsn, "snapshot": true})
            });
            self.ready.push_back(r);
        }
        info!(rows = n, "CDC snapshot read");
        Ok(())
    }

    async fn stream(&mut self) -> anyhow::Result<()> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        let rows = client
            .query(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2::int, 'proto_version', '1', 'publication_names', $3)",
                &[&self.slot, &(self.batch as i32), &self.publication],
            )
            .await?;
        let mut txn: Vec<ConnectRecord> = Vec::new();
        let mut xid = 0u32;
        let mut commit_ts = 0i64;
        let mut skip = false;
        for r in rows {
            let data: Vec<u8> = r.get(1);
            let mut m = Msg(&data);
            match m.u8()? {
                b'B' => {
                    let final_lsn = m.u64()?;
                    // Postgres epoch (2000-01-01) µs -> Unix ms.
                    commit_ts = (m.u64()? as i64) / 1000 + 946_684_800_000;
                    xid = m.u32()?;
                    skip = final_lsn <= self.sent_lsn;
                    txn.clear();
                }
                b'C' => {
                    let _flags = m.u8()?;
                    let commit_lsn = m.u64()?;
                    let end_lsn = m.u64()?;
                    if !skip {
                        let n = txn.len();
                        for (i, mut rec) in txn.drain(..).enumerate() {
                            rec.source_partition = Some(self.partition.clone());
                            // Only the transaction's last record moves the offset past it.
                            rec.source_offset = Some(if i + 1 == n {
                                json!({"lsn": commit_lsn, "txId": xid})
                            } else {
                                json!({"lsn": self.sent_lsn})
                            });
                            self.ready.push_back(rec);
                        }
                        self.sent_lsn = commit_lsn;
                    }
                    self.advance_to = Some(end_lsn);
                }
                b'R' => {
                    let id = m.u32()?;
                    let schema = m.cstr()?;
                    let table = m.cstr()?;
                    let _identity = m.u8()?;
                    let n = m.u16()?;
                    let mut columns = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let flags = m.u8()?;
                        let name = m.cstr()?;
                        let oid = m.u32()?;
                        let _typmod = m.u32()?;
                        columns.push((name, oid, flags & 1 == 1));
                    }
                    self.relations.insert(
                        id,
                        Relation {
                            schema,
                            table,
                            columns,
                        },
                    );
                }
                kind @ (b'I' | b'U' | b'D') if !skip => {
                    let id = m.u32()?;
                    let rel = self
                        .relations
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("a change to unknown relation {id}"))?;
                    let mut before = None;
                    let mut after = None;
                    loop {
                        match m.u8()? {
                            b'K' | b'O' => before = Some(m.tuple()?),
                            b'N' => {
                                after = Some(m.tuple()?);
                                break;
                            }
                            other => anyhow::bail!("unexpected tuple kind {}", other as char),
                        }
                        if kind == b'D' {
                            break;
                        }
                    }
                    let op = match kind {
                        b'I' => "c",
                        b'U' => "u",
                        _ => "d",
                    };
                    // The key from the new row, or for a delete from the old key columns.
                    let key_tuple = after.clone().or_else(|| before.clone()).unwrap_or_default();
                    let before_full = before.filter(|_| kind != b'I');
                    txn.extend(self.event(
                        &rel,
                        op,
                        before_full.as_deref(),
                        after.as_deref(),
                        &key_tuple,
                        commit_ts,
                        Some((xid, self.sent_lsn)),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SourceTask for CdcTask {
    async fn start(&mut self, c: &Props, offsets: Arc<dyn OffsetReader>) -> anyhow::Result<()> {
        let get = |k: &str, d: &str| c.get(k).cloned().unwrap_or_else(|| d.to_string());
        let mut props = Props::new();
        props.insert("connection.user".into(), get("database.user", "postgres"));
        if let Some(p) = c.get("database.password") {
            props.insert("connection.password".into(), p.clone());
        }
        self.db = get("database.dbname", "postgres");
        let url = format!(
            "jdbc:postgresql://{}:{}/{}",
            get("database.hostname", "localhost"),
            get("database.port", "5432"),
            self.db
        );
        let target = PgTarget::parse(&url, &props).map_err(anyhow::Error::msg)?;
        let client = target.connect().await?;
        self.prefix = get("topic.prefix", "");
        self.slot = get("slot.name", "debezium");
        self.publication = get("publication.name", "dbz_publication");
        self.batch = get("max.batch.size", "2048").parse().unwrap_or(2048);
        self.poll_interval =
            Duration::from_millis(get("poll.interval.ms", "500").parse().unwrap_or(500));
        self.tombstones = get("tombstones.on.delete", "true") == "true";
        self.tables = crate::props::list(c, "table.include.list")
            .into_iter()
            .map(|t| {
                if t.contains('.') {
                    t
                } else {
                    format!("public.{t}")
                }
            })
            .collect();
        self.partition = json!({ "server": self.prefix });
        // The publication: the listed tables, or all of them.
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&self.publication],
            )
            .await?
            .is_some();
        if !exists {
            let what = if self.tables.is_empty() {
                "ALL TABLES".to_string()
            } else {
                format!(
                    "TABLE {}",
                    self.tables
                        .iter()
                        .map(|t| quote(t))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR {what}",
                    quote(&self.publication)
                ))
                .await?;
            info!(publication = %self.publication, tables = %what, "created the publication");
        }
        let slot = client
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await?;
        let slot_lsn = match slot {
            Some(r) => r
                .get::<_, Option<String>>(0)
                .as_deref()
                .and_then(parse_lsn)
                .unwrap_or(0),
            None => {
                let r = client
                    .query_one(
                        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                        &[&self.slot],
                    )
                    .await?;
                info!(slot = %self.slot, "created the replication slot");
                r.get::<_, Option<String>>(0)
                    .as_deref()
                    .and_then(parse_lsn)
                    .unwrap_or(0)
            }
        };
        self.client = Some(client);
        self.target = Some(target);
        let stored = offsets.offset(&self.partition).await;
        self.sent_lsn = stored.as_ref().and_then(|o| o["lsn"].as_u64()).unwrap_or(0);
        let snapshot_done = stored.as_ref().is_some_and(|o| o.get("snapshot").is_none());
        self.snapshot_pending = get("snapshot.mode", "initial") == "initial" && !snapshot_done;
        if self.snapshot_pending {
            self.sent_lsn = slot_lsn;
        }
        info!(slot = %self.slot, slot_lsn = %lsn_text(slot_lsn), stored_lsn = %lsn_text(self.sent_lsn), snapshot = self.snapshot_pending, "CDC source starts");
        Ok(())
    }

    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        if self.snapshot_pending {
            self.snapshot_pending = false;
            let lsn = self.sent_lsn;
            self.snapshot(lsn).await?;
        }
        if self.ready.is_empty() {
            if self.client.as_ref().is_none_or(Client::is_closed) {
                let t = self
                    .target
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("not started"))?;
                self.client = Some(t.connect().await?);
            }
            self.stream().await?;
        }
        if self.ready.is_empty() {
            tokio::time::sleep(self.poll_interval).await;
            return Ok(Vec::new());
        }
        let n = self.ready.len().min(self.batch.max(1) as usize);
        Ok(self.ready.drain(..n).collect())
    }

    fn wants_commit(&self) -> bool {
        // The slot only moves on commit: until then every peek reads the same changes.
        self.advance_to.is_some() && self.ready.is_empty()
    }

    async fn commit(&mut self) -> anyhow::Result<()> {
        if !self.ready.is_empty() {
            return Ok(());
        }
        let Some(lsn) = self.advance_to.take() else {
            return Ok(());
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        client
            .query(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.slot, &lsn_text(lsn)],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(lsn_text((0x16 << 32) | 0xB374_D848), "16/B374D848");
    }

    #[test]
    fn pgoutput_tuples() {
        let data = [0, 3, b't', 0, 0, 0, 2, b'4', b'2', b'n', b'u'];
        let mut m = Msg(&data);
        assert_eq!(
            m.tuple().ok(),
            Some(vec![Some("42".to_string()), None, None])
        );
        assert!(Msg(&[0, 1, b't', 0, 0, 0, 9]).tuple().is_err());
        assert_eq!(column(23, Some("7")).1, Value::Int(7));
        assert_eq!(column(16, Some("t")).1, Value::Bool(true));
        assert_eq!(
            column(1114, Some("2023-11-14 22:13:20.5")).1,
            Value::Int(1_700_000_000_500_000)
        );
    }
}
