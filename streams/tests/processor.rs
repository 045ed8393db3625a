//! The Processor API through the test driver: per-task processors with a named store
//! (and its changelog), punctuation on stream time and on wall-clock time.
#![allow(clippy::unwrap_used)]

use strom_streams::dsl::{Processor, ProcessorContext, PunctuationType, Record};
use strom_streams::{
    serdes, Produced, StoreKind, StreamsBuilder, StreamsError, TopologyTestDriver,
};

/// Counts per key in a store; every 10 s of stream time emits `key=count` for all keys;
/// every 60 s of wall-clock emits a heartbeat with the number of records it saw.
struct Counter {
    seen: u64,
}

impl Processor<String, String, String, String> for Counter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), StreamsError> {
        ctx.schedule(10_000, PunctuationType::StreamTime);
        ctx.schedule(60_000, PunctuationType::WallClockTime);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> Result<(), StreamsError> {
        self.seen += 1;
        let n: i64 = ctx.get("counts", &r.key)?.unwrap_or(0);
        ctx.put("counts", &r.key, Some(&(n + 1)))?;
        if r.value == "reset" {
            ctx.put::<String, i64>("counts", &r.key, None)?;
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        kind: PunctuationType,
        ts: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> Result<(), StreamsError> {
        match kind {
            PunctuationType::StreamTime => {
                for (k, n) in ctx.range::<String, i64>("counts", None, None)? {
                    ctx.forward(k, format!("{n}@{ts}"), ts);
                }
            }
            PunctuationType::WallClockTime => {
                ctx.forward("heartbeat".into(), format!("{}@{ts}", self.seen), ts);
            }
        }
        Ok(())
    }
}

fn topology() -> strom_streams::Topology {
    let b = StreamsBuilder::new();
    b.add_state_store(
        "counts",
        serdes::string(),
        serdes::i64(),
        StoreKind::InMemory,
    );
    b.stream("in", serdes::string(), serdes::string())
        .process(|| Counter { seen: 0 }, &["counts"])
        .map_values(|v: &String| format!("<{v}>"))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    b.build().unwrap()
}

#[test]
fn stream_time_punctuation_reads_the_store() {
    let topo = topology();
    assert_eq!(topo.internal_topics("app"), ["app-counts-changelog"]);
    let d = TopologyTestDriver::new(topo);
    let input = d.input_topic("in", serdes::string(), serdes::string());
    let out = d.output_topic("out", serdes::string(), serdes::string());
    input.pipe_at("a".into(), "x".into(), 1_000).unwrap();
    input.pipe_at("b".into(), "x".into(), 5_000).unwrap();
    input.pipe_at("a".into(), "x".into(), 9_000).unwrap();
    assert!(out.is_empty(), "first punctuation at 1000 + 10000");
    input.pipe_at("b".into(), "x".into(), 12_000).unwrap();
    assert_eq!(
        out.read_key_values(),
        [
            ("a".to_string(), "<2@12000>".to_string()),
            ("b".into(), "<2@12000>".into())
        ]
    );
    // Stream time jumps past several intervals: one punctuation, not one per interval.
    input.pipe_at("b".into(), "reset".into(), 45_000).unwrap();
    assert_eq!(
        out.read_key_values(),
        [("a".to_string(), "<2@45000>".to_string())]
    );
    input.pipe_at("a".into(), "x".into(), 46_000).unwrap();
    assert!(out.is_empty(), "next one at 51000");
    assert_eq!(
        d.store_get::<String, i64>("counts", "a".into()).unwrap(),
        Some(3)
    );
    assert_eq!(
        d.store_get::<String, i64>("counts", "b".into()).unwrap(),
        None
    );
    // Every store write reached the changelog, the delete as a tombstone.
    let changelog = d.read_raw("test-driver-counts-changelog");
    assert_eq!(changelog.len(), 7);
    assert!(changelog.iter().any(|o| o.value.is_none()));
}

#[test]
fn wall_clock_punctuation() {
    let d = TopologyTestDriver::new(topology());
    let input = d.input_topic("in", serdes::string(), serdes::string());
    let out = d.output_topic("out", serdes::string(), serdes::string());
    input.pipe_at("a".into(), "x".into(), 1).unwrap();
    d.advance_wall_clock(1_000).unwrap(); // schedules from now (1000): due at 61000
    assert!(out.is_empty());
    d.advance_wall_clock(59_999).unwrap();
    assert!(out.is_empty());
    input.pipe_at("a".into(), "x".into(), 2).unwrap();
    d.advance_wall_clock(1).unwrap();
    assert_eq!(
        out.read_key_values(),
        [("heartbeat".to_string(), "<2@61000>".to_string())]
    );
}

#[test]
fn a_processor_names_only_stores_that_exist() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .process(|| Counter { seen: 0 }, &["nope"])
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("no state store named 'nope'"), "{err}");
}

/// Fails on values "boom".
struct Picky;

impl Processor<String, String, String, String> for Picky {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> Result<(), StreamsError> {
        if r.value == "boom" {
            return Err(StreamsError::processing(format!("cannot handle {}", r.key)));
        }
        ctx.forward(r.key, r.value, r.timestamp);
        Ok(())
    }
}

fn picky() -> strom_streams::Topology {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .process(|| Picky, &[])
        .to("out", Produced::with(serdes::string(), serdes::string()));
    b.build().unwrap()
}

#[test]
fn processing_errors_fail_by_default_or_go_to_the_dead_letter_topic() {
    let d = TopologyTestDriver::new(picky());
    let input = d.input_topic("in", serdes::string(), serdes::string());
    let err = input.pipe("k".into(), "boom".into()).unwrap_err();
    assert!(matches!(err, StreamsError::Processing(_)), "{err}");

    let d = TopologyTestDriver::with_error_handling(
        picky(),
        strom_streams::OnDeserializationError::LogAndContinue,
        Some("dlq"),
    );
    let input = d.input_topic("in", serdes::string(), serdes::string());
    input.pipe("a".into(), "fine".into()).unwrap();
    input.pipe("b".into(), "boom".into()).unwrap();
    input.pipe("c".into(), "fine".into()).unwrap();
    assert_eq!(
        d.output_topic("out", serdes::string(), serdes::string())
            .read_key_values()
            .len(),
        2
    );
    assert_eq!(d.skipped(), 1);
    let dlq = d.read_raw("dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].key.as_deref(), Some(&b"b"[..]));
    let exception = dlq[0]
        .headers
        .iter()
        .find(|(k, _)| k == "__streams.errors.exception")
        .and_then(|(_, v)| v.clone());
    assert_eq!(exception.as_deref(), Some(&b"ProcessingException"[..]));
}
