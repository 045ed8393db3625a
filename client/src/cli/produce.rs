//! `strom produce TOPIC`: one record per input line through the library producer (batching,
//! Java partitioning, retries, idempotence with acks=-1). Every delivery is awaited before
//! the summary line, so "produced N records" means N acknowledged.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CliError, ProduceArgs, Progress};
use crate::producer::{Producer, ProducerConfig, ProducerRecord};

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A one-line progress bar on stderr, redrawn at most every 200 ms.
struct Bar {
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Bar {
    fn draw(&mut self, done_bytes: u64, records: u64, finished: bool) {
        let now = Instant::now();
        if !finished
            && self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(now);
        let frac = if self.total == 0 {
            1.0
        } else {
            (done_bytes as f64 / self.total as f64).min(1.0)
        };
        let width = 30;
        let filled = (frac * width as f64).round() as usize;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:3.0}% {records} records {:.1} MB/s",
            "=".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            done_bytes as f64 / secs / 1e6
        );
        if finished {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

pub async fn run(target: &super::Target, a: ProduceArgs) -> Result<(), CliError> {
    if a.create {
        super::ensure_topic(target, &a.topic).await?;
    }
    let producer = Producer::new(ProducerConfig {
        acks: a.acks,
        idempotence: a.acks == -1,
        compression: a.compression.into(),
        max_batch_records: a.batch_records.max(1),
        ..target.producer_config()
    })
    .await?;
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (input, mut bar): (Box<dyn BufRead>, Option<Bar>) = match &a.file {
        Some(f) => {
            let file = std::fs::File::open(f)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", f.display())))?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            let show = match a.progress {
                Progress::Always => true,
                Progress::Never => false,
                Progress::Auto => std::io::stderr().is_terminal(),
            };
            let bar = show.then(|| Bar {
                total,
                start: Instant::now(),
                last: None,
            });
            let counting = Counting {
                inner: file,
                read: read.clone(),
            };
            (Box::new(std::io::BufReader::new(counting)), bar)
        }
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let start = Instant::now();
    let mut deliveries = VecDeque::new();
    let mut total = 0u64;
    for line in input.lines() {
        let line = line.map_err(|e| CliError::Input(format!("cannot read input: {e}")))?;
        let (key, value) = match a.key_separator.as_deref().and_then(|s| line.split_once(s)) {
            Some((k, v)) => (Some(k.to_string()), v.to_string()),
            None => (None, line),
        };
        let mut record = ProducerRecord::new(a.topic.as_str(), value);
        record.key = key.map(Bytes::from);
        record.partition = a.partition;
        for (k, v) in &a.headers {
            record = record.with_header(k.as_str(), v.clone());
        }
        deliveries.push_back(producer.send(record).await?);
        total += 1;
        // Bounded memory on big files: settle the oldest deliveries as the window fills.
        while deliveries.len() > 100_000 {
            if let Some(d) = deliveries.pop_front() {
                d.await?;
            }
        }
        if let Some(b) = bar.as_mut() {
            b.draw(
                read.load(std::sync::atomic::Ordering::Relaxed),
                total,
                false,
            );
        }
    }
    for d in deliveries {
        d.await?;
    }
    producer.close().await;
    if let Some(b) = bar.as_mut() {
        b.draw(read.load(std::sync::atomic::Ordering::Relaxed), total, true);
    }
    eprintln!(
        "produced {total} records to {} in {} ms",
        a.topic,
        start.elapsed().as_millis()
    );
    Ok(())
}
