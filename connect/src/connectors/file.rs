//! `FileStreamSource` and `FileStreamSink`: Kafka's example connectors, with its config keys
//! (`file`, `topic`, `topics`, `batch.size`) and class names.
//!
//! The source tails a file line by line (stdin when `file` is absent); its offset is the byte
//! position after the last line sent, under the source partition `{"filename": file}`, so a
//! restarted task resumes where the stored offset says. The sink appends each record's value
//! as a line (stdout when `file` is absent) and syncs the file on flush.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::data::{ConnectRecord, Schema, SchemaType, Value};
use crate::plugin::{
    ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, OffsetReader, SinkTask, SourceTask,
};
use crate::props::Props;

pub struct FileStreamSource;
pub struct FileStreamSink;

impl ConnectorPlugin for FileStreamSource {
    fn class(&self) -> &'static str {
        "org.apache.kafka.connect.file.FileStreamSourceConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["FileStreamSource"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Source
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("file", ConfigType::String, "Source filename. If not specified, the standard input will be used"),
            ConfigKey::new("topic", ConfigType::List, "The topic to publish data to").required(),
            ConfigKey::new("batch.size", ConfigType::Int, "The maximum number of records the source task can read from the file each time it is polled")
                .default("2000")
                .at_least(1),
        ]
    }
    fn validate(&self, config: &Props) -> Vec<(String, String)> {
        match config.get("topic") {
            Some(t) if t.contains(',') => vec![(
                "topic".into(),
                "'topic' in FileStreamSourceConnector configuration requires definition of a single topic".into(),
            )],
            _ => Vec::new(),
        }
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        Some(Box::new(FileSourceTask::default()))
    }
}

#[derive(Default)]
struct FileSourceTask {
    file: Option<String>,
    topic: String,
    batch_size: usize,
    reader: Option<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    position: u64,
    partial: String,
}

#[async_trait]
impl SourceTask for FileSourceTask {
    async fn start(
        &mut self,
        config: &Props,
        offsets: Arc<dyn OffsetReader>,
    ) -> anyhow::Result<()> {
        self.file = config.get("file").filter(|f| !f.is_empty()).cloned();
        self.topic = config.get("topic").cloned().unwrap_or_default();
        self.batch_size = config
            .get("batch.size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(2000);
        if let Some(file) = &self.file {
            let stored = offsets.offset(&json!({ "filename": file })).await;
            self.position = stored
                .and_then(|o| o.get("position").and_then(|p| p.as_u64()))
                .unwrap_or(0);
            tracing::info!(file = %file, position = self.position, "file source starts");
        }
        Ok(())
    }

    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        if self.reader.is_none() {
            let input: Box<dyn AsyncRead + Send + Unpin> = match &self.file {
                None => Box::new(tokio::io::stdin()),
                Some(f) => match tokio::fs::File::open(f).await {
                    Ok(mut file) => {
                        file.seek(std::io::SeekFrom::Start(self.position)).await?;
                        Box::new(file)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Kafka's task waits for the file to appear.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        return Ok(Vec::new());
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            self.reader = Some(BufReader::with_capacity(256 * 1024, input));
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut line = std::mem::take(&mut self.partial);
        while out.len() < self.batch_size {
            let before = line.len();
            let n = reader.read_line(&mut line).await?;
            if n == 0 || !line.ends_with('\n') {
                // End of the file so far (a line without its newline waits for the rest).
                let _ = before;
                break;
            }
            self.position += line.len() as u64;
            let text = line.trim_end_matches(['\n', '\r']).to_string();
            line.clear();
            let mut rec = ConnectRecord::source(self.topic.clone(), Value::String(text));
            rec.value_schema = Some(Schema::of(SchemaType::String));
            if let Some(f) = &self.file {
                rec.source_partition = Some(json!({ "filename": f }));
                rec.source_offset = Some(json!({ "position": self.position }));
            }
            out.push(rec);
        }
        self.partial = line;
        if out.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(out)
    }
}

impl ConnectorPlugin for FileStreamSink {
    fn class(&self) -> &'static str {
        "org.apache.kafka.connect.file.FileStreamSinkConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["FileStreamSink"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Sink
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        vec![ConfigKey::new(
            "file",
            ConfigType::String,
            "Destination filename. If not specified, the standard output will be used",
        )]
    }
    fn sink_task(&self) -> Option<Box<dyn SinkTask>> {
        Some(Box::new(FileSinkTask::default()))
    }
}

#[derive(Default)]
struct FileSinkTask {
    out: Option<tokio::io::BufWriter<tokio::fs::File>>,
    stdout: bool,
}

#[async_trait]
impl SinkTask for FileSinkTask {
    async fn start(&mut self, config: &Props) -> anyhow::Result<()> {
        match config.get("file").filter(|f| !f.is_empty()) {
            None => self.stdout = true,
            Some(f) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .await?;
                self.out = Some(tokio::io::BufWriter::new(file));
            }
        }
        Ok(())
    }

    async fn put(&mut self, records: Vec<ConnectRecord>) -> anyhow::Result<()> {
        let mut text = String::new();
        for r in &records {
            text.push_str(&match &r.value {
                Value::Null => "null".to_string(),
                v => v.to_text(),
            });
            text.push('\n');
        }
        match self.out.as_mut() {
            Some(out) => out.write_all(text.as_bytes()).await?,
            None => {
                let mut stdout = tokio::io::stdout();
                stdout.write_all(text.as_bytes()).await?;
                stdout.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush().await?;
            out.get_ref().sync_data().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) {
        let _ = self.flush().await;
    }
}
