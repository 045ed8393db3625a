//! Each DSL operator run through the test driver, against hand-computed expectations.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use strom_streams::dsl::Repartitioned;
use strom_streams::{
    serdes, Grouped, Materialized, OnDeserializationError, Produced, StreamsBuilder, StreamsError,
    TopologyTestDriver,
};

fn ss() -> Produced<String, String> {
    Produced::with(serdes::string(), serdes::string())
}

#[test]
fn filter_map_and_flat_map() {
    let b = StreamsBuilder::new();
    let s = b.stream("in", serdes::string(), serdes::i64());
    s.filter(|_, v| v % 2 == 0)
        .map(|k, v| (format!("{k}!"), (v * 10).to_string()))
        .to("even", ss());
    s.filter_not(|_, v| v % 2 == 0)
        .flat_map(|k: &String, v: &i64| {
            (0..*v)
                .map(|i| (format!("{k}{i}"), i.to_string()))
                .collect::<Vec<_>>()
        })
        .to("odd", ss());
    s.flat_map_values(|v: &i64| vec![*v; 2])
        .map_values_with_key(|k, v| format!("{k}={v}"))
        .to("twice", ss());
    s.select_key(|_, v| v.to_string())
        .map_values(|v| v.to_string())
        .to("rekeyed", ss());
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    for (k, v) in [("a", 2), ("b", 3), ("c", 4)] {
        input.pipe(k.into(), v).unwrap();
    }
    let read = |t: &str| {
        d.output_topic(t, serdes::string(), serdes::string())
            .read_key_values()
            .into_iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(read("even"), ["a!:20", "c!:40"]);
    assert_eq!(read("odd"), ["b0:0", "b1:1", "b2:2"]);
    assert_eq!(
        read("twice"),
        ["a:a=2", "a:a=2", "b:b=3", "b:b=3", "c:c=4", "c:c=4"]
    );
    assert_eq!(read("rekeyed"), ["2:2", "3:3", "4:4"]);
}

#[test]
fn peek_foreach_branch_and_merge() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let s = b.stream("in", serdes::string(), serdes::string());
    let peeked = seen.clone();
    let branches = s
        .peek(move |k, _| peeked.lock().unwrap().push(format!("peek {k}")))
        .branch(vec![
            Box::new(|_, v: &String| v.starts_with('x')),
            Box::new(|_, v: &String| v.starts_with('y')),
            Box::new(|_, _| true),
        ]);
    branches[0].to("x", ss());
    branches[1].to("y", ss());
    let each = seen.clone();
    branches[2].foreach(move |k, v| each.lock().unwrap().push(format!("other {k}={v}")));
    branches[0].merge(&branches[1]).to("xy", ss());
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::string());
    for (k, v) in [("1", "x1"), ("2", "y1"), ("3", "z"), ("4", "xy")] {
        input.pipe(k.into(), v.into()).unwrap();
    }
    let vals = |t: &str| -> Vec<String> {
        d.output_topic(t, serdes::string(), serdes::string())
            .read_key_values()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(vals("x"), ["x1", "xy"]);
    assert_eq!(vals("y"), ["y1"]);
    assert_eq!(vals("xy"), ["x1", "y1", "xy"]);
    assert_eq!(
        *seen.lock().unwrap(),
        ["peek 1", "peek 2", "peek 3", "other 3=z", "peek 4"]
    );
}

fn word_count(b: &StreamsBuilder, materialized: Materialized<i64>) {
    b.stream("text", serdes::unit(), serdes::string())
        .flat_map_values(|l: &String| {
            l.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, w: &String| w.clone(),
            Grouped::with(serdes::string(), serdes::string()),
        )
        .count(materialized)
        .to_stream()
        .map_values(|n: &Option<i64>| n.unwrap_or(0).to_string())
        .to("counts", ss());
}

#[test]
fn count_goes_through_repartition_and_changelog() {
    let b = StreamsBuilder::new();
    word_count(&b, Materialized::as_("counts-store"));
    let topo = b.build().unwrap();
    assert_eq!(topo.subtopologies_len(), 2);
    assert_eq!(
        topo.internal_topics("app"),
        ["app-counts-store-repartition", "app-counts-store-changelog"]
    );
    let d = TopologyTestDriver::new(topo);
    let input = d.input_topic("text", serdes::unit(), serdes::string());
    input.pipe((), "the quick fox".into()).unwrap();
    input.pipe((), "The lazy dog and THE fox".into()).unwrap();
    let out = d.output_topic("counts", serdes::string(), serdes::string());
    let all = out.read_key_values();
    assert_eq!(all.len(), 9, "one update per word: {all:?}");
    let latest: BTreeMap<String, String> = all.into_iter().collect();
    let expect: BTreeMap<String, String> = [
        ("the", "3"),
        ("quick", "1"),
        ("fox", "2"),
        ("lazy", "1"),
        ("dog", "1"),
        ("and", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(latest, expect);
    assert_eq!(
        d.store_get::<String, i64>("counts-store", "the".into())
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        d.store_get::<String, i64>("counts-store", "cat".into())
            .unwrap(),
        None
    );
    // The changelog holds every update, i64 big-endian; the repartition topic every word.
    let changelog = d.output_topic(
        "test-driver-counts-store-changelog",
        serdes::string(),
        serdes::i64(),
    );
    let updates = changelog.read_key_values();
    assert_eq!(updates.len(), 9);
    assert_eq!(updates.last(), Some(&("fox".to_string(), 2)));
    let rep = d.output_topic(
        "test-driver-counts-store-repartition",
        serdes::string(),
        serdes::string(),
    );
    assert_eq!(rep.len(), 9);
}

#[test]
fn in_memory_store_without_logging_writes_no_changelog() {
    let b = StreamsBuilder::new();
    word_count(&b, Materialized::as_("mem").in_memory().without_logging());
    let topo = b.build().unwrap();
    assert_eq!(topo.internal_topics("app"), ["app-mem-repartition"]);
    let d = TopologyTestDriver::new(topo);
    d.input_topic("text", serdes::unit(), serdes::string())
        .pipe((), "a a b".into())
        .unwrap();
    let out = d.output_topic("counts", serdes::string(), serdes::string());
    assert_eq!(out.read_key_values_to_map()["a"], "2");
    assert!(d
        .output_topic(
            "test-driver-mem-changelog",
            serdes::bytes(),
            serdes::bytes()
        )
        .is_empty());
}

#[test]
fn group_by_key_without_a_key_change_does_not_repartition() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .filter(|_, v| *v > 0)
        .group_by_key(Grouped::with(serdes::string(), serdes::i64()))
        .reduce(|a, b| a + b, Materialized::as_("sums"))
        .to_stream()
        .map_values(|v: &Option<i64>| v.unwrap_or_default().to_string())
        .to("sums", ss());
    let topo = b.build().unwrap();
    assert_eq!(topo.subtopologies_len(), 1);
    assert_eq!(topo.internal_topics("a"), ["a-sums-changelog"]);
    let d = TopologyTestDriver::new(topo);
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    for (k, v) in [("x", 5), ("y", 1), ("x", -3), ("x", 7)] {
        input.pipe(k.into(), v).unwrap();
    }
    let got: Vec<(String, String)> = d
        .output_topic("sums", serdes::string(), serdes::string())
        .read_key_values();
    let got: Vec<String> = got.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got, ["x=5", "y=1", "x=12"]);
}

#[test]
fn aggregate_into_json() {
    #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug, Default)]
    struct Stats {
        n: u32,
        sum: i64,
        max: i64,
    }
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .group_by_key(Grouped::with(serdes::string(), serdes::i64()))
        .aggregate(
            Stats::default,
            |_, v, s: &Stats| Stats {
                n: s.n + 1,
                sum: s.sum + v,
                max: s.max.max(*v),
            },
            Materialized::as_("stats").with_value_serde(serdes::json()),
        )
        .to_stream()
        .to(
            "stats",
            Produced::with(serdes::string(), serdes::nullable(serdes::json())),
        );
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    for v in [3, 9, 4] {
        input.pipe("k".into(), v).unwrap();
    }
    let out = d.output_topic("stats", serdes::string(), serdes::bytes());
    let last = out.read_key_values().pop().unwrap();
    assert_eq!(&last.1[..], br#"{"n":3,"sum":16,"max":9}"#);
    assert_eq!(
        d.store_get::<String, Stats>("stats", "k".into()).unwrap(),
        Some(Stats {
            n: 3,
            sum: 16,
            max: 9
        })
    );
}

#[test]
fn aggregate_without_a_serde_is_a_build_error() {
    let b = StreamsBuilder::new();
    let _ = b
        .stream("in", serdes::string(), serdes::i64())
        .group_by_key(Grouped::with(serdes::string(), serdes::i64()))
        .aggregate(|| 0u8, |_, _, a| *a, Materialized::as_("x"));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("with_value_serde"), "{err}");
}

#[test]
fn a_topic_read_twice_is_a_build_error() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::bytes(), serdes::bytes())
        .to("o1", Produced::with(serdes::bytes(), serdes::bytes()));
    b.stream("in", serdes::bytes(), serdes::bytes())
        .to("o2", Produced::with(serdes::bytes(), serdes::bytes()));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("read by two sources"), "{err}");
}

#[test]
fn table_updates_deletes_filter_and_map_values() {
    let b = StreamsBuilder::new();
    let t = b.table(
        "users",
        serdes::string(),
        serdes::string(),
        Materialized::as_("users-store"),
    );
    t.filter(|_, v| !v.starts_with("bot"))
        .map_values(|v: &String| v.len() as i64)
        .to_stream()
        .to(
            "name-lengths",
            Produced::with(serdes::string(), serdes::nullable(serdes::i64())),
        );
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic(
        "users",
        serdes::string(),
        serdes::nullable(serdes::string()),
    );
    input.pipe("1".into(), Some("alice".into())).unwrap();
    input.pipe("2".into(), Some("bot-7".into())).unwrap(); // filtered out: no output
    input.pipe("1".into(), Some("al".into())).unwrap();
    input.pipe("1".into(), None).unwrap(); // deletion
    input.pipe("2".into(), Some("bob".into())).unwrap(); // passes the filter now
    input.pipe("9".into(), None).unwrap(); // deleting an absent key: nothing
    let out = d.output_topic(
        "name-lengths",
        serdes::string(),
        serdes::nullable(serdes::i64()),
    );
    let got: Vec<(String, Option<i64>)> = out.read_key_values();
    assert_eq!(
        got,
        [
            ("1".to_string(), Some(5)),
            ("1".to_string(), Some(2)),
            ("1".to_string(), None),
            ("2".to_string(), Some(3)),
        ]
    );
    assert_eq!(
        d.store_get::<String, String>("users-store", "1".into())
            .unwrap(),
        None
    );
    assert_eq!(
        d.store_get::<String, String>("users-store", "2".into())
            .unwrap(),
        Some("bob".into())
    );
}

#[test]
fn explicit_repartition_and_custom_partitioner() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .repartition(
            Repartitioned::with(serdes::string(), serdes::string())
                .with_name("by-key")
                .with_partitions(3),
        )
        .to(
            "out",
            ss().with_partitioner(|k: &String, _: &String, n| k.len() as i32 % n),
        );
    let topo = b.build().unwrap();
    assert_eq!(topo.internal_topics("a"), ["a-by-key-repartition"]);
    let d = TopologyTestDriver::new(topo);
    d.input_topic("in", serdes::string(), serdes::string())
        .pipe("k".into(), "v".into())
        .unwrap();
    let raw = d.read_raw("out");
    assert_eq!(raw.len(), 1);
    assert_eq!(
        raw[0].partition,
        Some(0),
        "the driver's topics have one partition"
    );
}

#[test]
fn deserialization_errors_fail_by_default() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .map_values(|v: &i64| v.to_string())
        .to("out", ss());
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    let err = input
        .pipe_raw(Some(Bytes::from("k")), Some(Bytes::from("abc")), 1)
        .unwrap_err();
    assert!(
        matches!(err, StreamsError::Deserialize { part: "value", .. }),
        "{err}"
    );
}

#[test]
fn deserialization_errors_skipped_to_a_dead_letter_topic() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .map_values(|v: &i64| v.to_string())
        .to("out", ss());
    let d = TopologyTestDriver::with_error_handling(
        b.build().unwrap(),
        OnDeserializationError::LogAndContinue,
        Some("dlq"),
    );
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    input.pipe("a".into(), 1).unwrap();
    input
        .pipe_raw(Some(Bytes::from("bad")), Some(Bytes::from("abc")), 7)
        .unwrap();
    input.pipe("b".into(), 2).unwrap();
    let out = d.output_topic("out", serdes::string(), serdes::string());
    assert_eq!(out.read_key_values().len(), 2, "the rest flows");
    assert_eq!(d.skipped(), 1);
    let dlq = d.read_raw("dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value.as_deref(), Some(&b"abc"[..]));
    let header = |name: &str| {
        dlq[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(
        header("__streams.errors.offset").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        header("__streams.errors.topic").as_deref(),
        Some(&b"in"[..])
    );
}

#[test]
fn describe_names_subtopologies_stores_and_topics() {
    let b = StreamsBuilder::new();
    word_count(&b, Materialized::as_("counts"));
    let text = b.build().unwrap().describe();
    assert!(text.contains("Sub-topology: 0"), "{text}");
    assert!(text.contains("Sub-topology: 1"), "{text}");
    assert!(text.contains("(topics: [text])"), "{text}");
    assert!(text.contains("(topic: counts-repartition)"), "{text}");
    assert!(text.contains("(stores: [counts])"), "{text}");
}

#[test]
fn the_record_cache_forwards_one_update_per_key_per_commit() {
    let b = StreamsBuilder::new();
    word_count(&b, Materialized::as_("cached"));
    let d = TopologyTestDriver::with_cache(b.build().unwrap(), 1 << 20);
    let input = d.input_topic("text", serdes::unit(), serdes::string());
    input.pipe((), "a b a".into()).unwrap();
    input.pipe((), "a c".into()).unwrap();
    let out = d.output_topic("counts", serdes::string(), serdes::string());
    assert!(out.is_empty(), "held until the commit");
    // The aggregation reads through the cache: counts keep going up before the commit.
    d.commit().unwrap();
    assert_eq!(
        out.read_key_values(),
        [
            ("a".to_string(), "3".to_string()),
            ("b".into(), "1".into()),
            ("c".into(), "1".into())
        ]
    );
    let changelog = d.read_raw("test-driver-cached-changelog");
    assert_eq!(changelog.len(), 3, "one changelog record per key");
    input.pipe((), "b".into()).unwrap();
    d.commit().unwrap();
    assert_eq!(out.read_key_values(), [("b".to_string(), "2".to_string())]);
    assert_eq!(
        d.store_get::<String, i64>("cached", "a".into()).unwrap(),
        Some(3)
    );
}
