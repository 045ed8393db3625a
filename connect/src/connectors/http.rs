//! HTTP sink: POSTs (or PUTs) batches of records to a URL, with the config names of
//! Confluent's HTTP sink: `http.api.url`, `request.method`, `headers` (`Name:value|...`),
//! `batch.max.size`, `batch.prefix`, `batch.suffix`, `batch.separator`,
//! `request.body.format` (string/json), `retry.on.status.codes` (`400-`, `500-599,429`),
//! `max.retries`, `retry.backoff.ms`, `behavior.on.error` (fail/log/ignore).
//!
//! A batch that still fails after its retries is sent again one record at a time, so a
//! single bad record is found; with `behavior.on.error=log` (or `ignore`) the records that
//! fail alone go to the worker's error handling — the dead letter queue under
//! `errors.tolerance=all` — and the rest flows. With `fail` the task fails and the batch is
//! redelivered after the restart backoff.

use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::data::{ConnectRecord, Value};
use crate::plugin::{ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, SinkTask};
use crate::props::Props;

pub struct HttpSink;

impl ConnectorPlugin for HttpSink {
    fn class(&self) -> &'static str {
        "io.confluent.connect.http.HttpSinkConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["HttpSink"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Sink
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("http.api.url", ConfigType::String, "HTTP API URL (http://).").required().group("Connection"),
            ConfigKey::new("request.method", ConfigType::String, "HTTP Request Method.").default("POST").one_of(&["POST", "PUT", "PATCH"]).group("Connection"),
            ConfigKey::new("headers", ConfigType::String, "HTTP headers, separated by '|': Name:value|Name2:value2").default("").group("Connection"),
            ConfigKey::new("request.body.format", ConfigType::String, "How records are written in the body.").default("string").one_of(&["string", "json"]).group("Batching"),
            ConfigKey::new("batch.max.size", ConfigType::Int, "The number of records accumulated in a batch before the HTTP API will be invoked.").default("1").at_least(1).group("Batching"),
            ConfigKey::new("batch.prefix", ConfigType::String, "Prefix added to record batches.").default("").group("Batching"),
            ConfigKey::new("batch.suffix", ConfigType::String, "Suffix added to record batches.").default("").group("Batching"),
            ConfigKey::new("batch.separator", ConfigType::String, "Separator for records in a batch.").default(",").group("Batching"),
            ConfigKey::new("retry.on.status.codes", ConfigType::String, "The HTTP error codes to retry on: ranges like 400-, 500-599, or single codes.").default("400-").group("Retries"),
            ConfigKey::new("max.retries", ConfigType::Int, "The maximum number of times to retry on errors before failing the task.").default("10").at_least(0).group("Retries"),
            ConfigKey::new("retry.backoff.ms", ConfigType::Int, "The initial duration in milliseconds to wait following an error before a retry attempt is made.").default("3000").at_least(0).group("Retries"),
            ConfigKey::new("behavior.on.error", ConfigType::String, "Error handling behavior setting for handling response from HTTP requests.").default("fail").one_of(&["fail", "log", "ignore"]).group("Retries"),
        ]
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Some(u) = c.get("http.api.url") {
            if !u.starts_with("http://") {
                errors.push((
                    "http.api.url".into(),
                    format!("'{u}' is not an http:// URL (https is not supported yet)"),
                ));
            }
        }
        if let Some(codes) = c.get("retry.on.status.codes") {
            if let Err(e) = StatusCodes::parse(codes) {
                errors.push(("retry.on.status.codes".into(), e));
            }
        }
        errors
    }
    fn sink_task(&self) -> Option<Box<dyn SinkTask>> {
        Some(Box::new(HttpSinkTask::default()))
    }
}

/// `retry.on.status.codes`: `400-` (400 and up), `500-599`, `429`, comma separated.
#[derive(Debug, Default, Clone)]
struct StatusCodes(Vec<(u16, u16)>);

impl StatusCodes {
    fn parse(spec: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let num = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("'{part}' is not a status code or range"))
            };
            out.push(match part.split_once('-') {
                Some((lo, "")) => (num(lo)?, u16::MAX),
                Some((lo, hi)) => (num(lo)?, num(hi)?),
                None => (num(part)?, num(part)?),
            });
        }
        Ok(Self(out))
    }

    fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

#[derive(Default)]
struct HttpSinkTask {
    http: reqwest::Client,
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    json: bool,
    batch: usize,
    prefix: String,
    suffix: String,
    separator: String,
    retry_on: StatusCodes,
    max_retries: u32,
    backoff: Duration,
    on_error: String,
    errant: Vec<(ConnectRecord, String)>,
}

impl HttpSinkTask {
    fn body(&self, records: &[ConnectRecord]) -> String {
        let items: Vec<String> = records
            .iter()
            .map(|r| match (&r.value, self.json) {
                (v, true) => v.to_json().to_string(),
                (Value::Null, false) => "null".into(),
                (v, false) => v.to_text(),
            })
            .collect();
        format!(
            "{}{}{}",
            self.prefix,
            items.join(&self.separator),
            self.suffix
        )
    }

    /// Sends one body, retrying as configured; the error says what the server answered.
    async fn send(&self, body: String) -> Result<(), String> {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            let method = reqwest::Method::from_bytes(self.method.as_bytes())
                .unwrap_or(reqwest::Method::POST);
            let mut req = self.http.request(method, &self.url).body(body.clone());
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let outcome = match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let code = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    (
                        self.retry_on.contains(code),
                        format!(
                            "HTTP {code}: {}",
                            text.chars().take(200).collect::<String>()
                        ),
                    )
                }
                Err(e) => (true, format!("request to {} failed: {e}", self.url)),
            };
            let (retriable, error) = outcome;
            if !retriable || attempt >= self.max_retries {
                return Err(error);
            }
            attempt += 1;
            warn!(url = %self.url, attempt, error = %error, "HTTP sink request failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }
}

#[async_trait]
impl SinkTask for HttpSinkTask {
    async fn start(&mut self, c: &Props) -> anyhow::Result<()> {
        let get = |k: &str, d: &str| c.get(k).cloned().unwrap_or_else(|| d.to_string());
        self.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        self.url = get("http.api.url", "");
        self.method = get("request.method", "POST").to_ascii_uppercase();
        self.json = get("request.body.format", "string") == "json";
        self.headers = get("headers", "")
            .split('|')
            .filter_map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        if self.json
            && !self
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        self.batch = get("batch.max.size", "1").parse().unwrap_or(1).max(1);
        self.prefix = get("batch.prefix", "");
        self.suffix = get("batch.suffix", "");
        self.separator = get("batch.separator", ",");
        self.retry_on = StatusCodes::parse(&get("retry.on.status.codes", "400-"))
            .map_err(anyhow::Error::msg)?;
        self.max_retries = get("max.retries", "10").parse().unwrap_or(10);
        self.backoff =
            Duration::from_millis(get("retry.backoff.ms", "3000").parse().unwrap_or(3000));
        self.on_error = get("behavior.on.error", "fail");
        Ok(())
    }

    async fn put(&mut self, records: Vec<ConnectRecord>) -> anyhow::Result<()> {
        for chunk in records.chunks(self.batch) {
            let Err(e) = self.send(self.body(chunk)).await else {
                continue;
            };
            if self.on_error == "fail" {
                anyhow::bail!("{e}");
            }
            // Find the records that fail on their own; the rest of the batch goes through.
            for r in chunk {
                let single = if chunk.len() == 1 {
                    Err(e.clone())
                } else {
                    self.send(self.body(std::slice::from_ref(r))).await
                };
                if let Err(err) = single {
                    if self.on_error == "log" {
                        warn!(topic = %r.topic, partition = ?r.partition, offset = ?r.kafka_offset, error = %err, "HTTP sink skipped a record");
                    }
                    self.errant.push((r.clone(), err));
                }
            }
        }
        Ok(())
    }

    fn take_errant(&mut self) -> Vec<(ConnectRecord, String)> {
        std::mem::take(&mut self.errant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_codes() {
        let c = StatusCodes::parse("400-").unwrap_or_default();
        assert!(c.contains(400) && c.contains(503) && !c.contains(399));
        let c = StatusCodes::parse("500-599, 429").unwrap_or_default();
        assert!(c.contains(429) && c.contains(500) && !c.contains(404) && !c.contains(600));
        assert!(StatusCodes::parse("abc").is_err());
    }
}
