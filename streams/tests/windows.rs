//! Windowed aggregations through the test driver: tumbling and hopping windows with a
//! grace period, suppression to final results, sliding windows against their definition,
//! and session windows with out-of-order and late events against a brute-force computation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use strom_streams::dsl::{windowed_serde, SessionWindows, SlidingWindows, TimeWindows, Windowed};
use strom_streams::{serdes, Grouped, Materialized, Produced, StreamsBuilder, TopologyTestDriver};

fn fmt(w: &Windowed<String>, n: i64) -> String {
    format!("{}@{}-{}={n}", w.key, w.window.start, w.window.end)
}

#[test]
fn tumbling_count_with_grace_drops_late_records() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .group_by_key(Grouped::with(serdes::string(), serdes::string()))
        .windowed_by(TimeWindows::of(10).grace(5))
        .count(Materialized::as_("w"))
        .to_stream()
        .map(|w, n: &Option<i64>| (fmt(w, n.unwrap_or(0)), String::new()))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::string());
    for t in [1, 3, 12, 8, 14] {
        input.pipe_at("a".into(), String::new(), t).unwrap();
    }
    // Stream time 14: window [0,10) closes at 10 + 5 = 15, so t=9 is still in.
    input.pipe_at("a".into(), String::new(), 9).unwrap();
    input.pipe_at("a".into(), String::new(), 15).unwrap();
    // Stream time 15: [0,10) is closed now; t=2 is late and dropped.
    input.pipe_at("a".into(), String::new(), 2).unwrap();
    let got: Vec<String> = d
        .output_topic("out", serdes::string(), serdes::string())
        .read_key_values()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        got,
        [
            "a@0-10=1",
            "a@0-10=2",
            "a@10-20=1",
            "a@0-10=3",
            "a@10-20=2",
            "a@0-10=4",
            "a@10-20=3"
        ]
    );
    assert_eq!(d.late_dropped(), 1);
}

#[test]
fn hopping_windows_count_each_window() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .group_by_key(Grouped::with(serdes::string(), serdes::i64()))
        .windowed_by(TimeWindows::of(10).advance_by(5).grace(100))
        .reduce(|a, b| a + b, Materialized::as_("sums"))
        .to_stream()
        .map(|w, n: &Option<i64>| (fmt(w, n.unwrap_or(0)), String::new()))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    input.pipe_at("k".into(), 1, 7).unwrap(); // windows [0,10) and [5,15)
    input.pipe_at("k".into(), 10, 12).unwrap(); // [5,15) and [10,20)
    let got: Vec<String> = d
        .output_topic("out", serdes::string(), serdes::string())
        .read_key_values()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(got, ["k@0-10=1", "k@5-15=1", "k@5-15=11", "k@10-20=10"]);
}

#[test]
fn suppression_emits_each_window_once_when_it_closes() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .group_by_key(Grouped::with(serdes::string(), serdes::string()))
        .windowed_by(TimeWindows::of(10).grace(2))
        .count(Materialized::as_("c"))
        .suppress_until_window_closes(serdes::string(), serdes::i64())
        .to_stream()
        .map(|w, n: &Option<i64>| (fmt(w, n.unwrap_or(0)), String::new()))
        .to("final", Produced::with(serdes::string(), serdes::string()));
    let topo = b.build().unwrap();
    assert_eq!(
        topo.internal_topics("a").len(),
        2,
        "both stores have changelogs"
    );
    let d = TopologyTestDriver::new(topo);
    let input = d.input_topic("in", serdes::string(), serdes::string());
    let out = d.output_topic("final", serdes::string(), serdes::string());
    for (k, t) in [("a", 1), ("b", 2), ("a", 5), ("a", 11)] {
        input.pipe_at(k.into(), String::new(), t).unwrap();
    }
    assert!(out.is_empty(), "nothing closed yet (10 + 2 > 11)");
    input.pipe_at("b".into(), String::new(), 12).unwrap();
    let got: Vec<String> = out.read_key_values().into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, ["a@0-10=2", "b@0-10=1"]);
    input.pipe_at("a".into(), String::new(), 35).unwrap();
    let got: Vec<String> = out.read_key_values().into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, ["a@10-20=1", "b@10-20=1"]);
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
struct Session {
    clicks: u32,
    pages: Vec<String>,
}

/// The sessions the operator must emit, computed the obvious way: per record, find the
/// key's sessions within the gap (closed ones included: they stay in the store), drop the
/// record if it or one of them is closed, else merge; after each accepted record, emit
/// every session that stream time has closed.
fn brute_force(
    events: &[(String, i64, String)],
    gap: i64,
    grace: i64,
) -> (Vec<(String, i64, i64, Session)>, u64) {
    // (user, start, end, aggregate, emitted)
    let mut all: Vec<(String, i64, i64, Session, bool)> = Vec::new();
    let mut emitted = Vec::new();
    let mut now = i64::MIN;
    let mut dropped = 0;
    for (user, t, page) in events {
        now = now.max(*t);
        let closed = |end: i64| end + gap + grace < now;
        let touching: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].0 == *user && all[i].2 >= t - gap && all[i].1 <= t + gap)
            .collect();
        if closed(*t) || touching.iter().any(|&i| closed(all[i].2)) {
            dropped += 1;
            continue;
        }
        let (mut start, mut end, mut s) = (*t, *t, Session::default());
        // Merge in end order, as the store returns them.
        let mut parts: Vec<(String, i64, i64, Session, bool)> =
            touching.iter().rev().map(|&i| all.remove(i)).collect();
        parts.sort_by_key(|p| p.2);
        for p in parts {
            start = start.min(p.1);
            end = end.max(p.2);
            s.clicks += p.3.clicks;
            s.pages.extend(p.3.pages);
        }
        s.clicks += 1;
        s.pages.push(page.clone());
        all.push((user.clone(), start, end, s, false));
        for x in all.iter_mut().filter(|x| !x.4 && x.2 + gap + grace < now) {
            x.4 = true;
            emitted.push((x.0.clone(), x.1, x.2, x.3.clone()));
        }
    }
    emitted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    (emitted, dropped)
}

#[test]
fn sessions_with_out_of_order_and_late_events_match_brute_force() {
    let (gap, grace) = (30, 20);
    let b = StreamsBuilder::new();
    b.stream_with_timestamps(
        "clicks",
        serdes::string(),
        serdes::json::<(i64, String)>(),
        |_, v, _| v.0,
    )
    .group_by_key(Grouped::with(serdes::string(), serdes::json()))
    .windowed_by_sessions(SessionWindows::with_inactivity_gap(gap).grace(grace))
    .aggregate_merging(
        Session::default,
        |_, (_, page): &(i64, String), s: &Session| {
            let mut s = s.clone();
            s.clicks += 1;
            s.pages.push(page.clone());
            s
        },
        |_, a, b| Session {
            clicks: a.clicks + b.clicks,
            pages: a.pages.iter().chain(&b.pages).cloned().collect(),
        },
        Materialized::as_("sessions").with_value_serde(serdes::json()),
    )
    .suppress_until_window_closes(serdes::string(), serdes::json())
    .to_stream()
    .filter(|_, s| s.is_some())
    .map_values(|s: &Option<Session>| s.clone().unwrap_or_default())
    .to(
        "closed",
        Produced::with(windowed_serde(serdes::string()), serdes::json()),
    );
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("clicks", serdes::string(), serdes::json::<(i64, String)>());

    // 3 users, time mostly moving forward, some records out of order within the grace,
    // some far beyond it.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut events = Vec::new();
    let mut clock = 1_000i64;
    for i in 0..3_000 {
        clock += rnd(25) as i64;
        let t = match rnd(20) {
            0 => clock - 200 - rnd(300) as i64, // late beyond the grace
            1 | 2 => clock - rnd(40) as i64,    // out of order, mostly within the grace
            _ => clock,
        };
        let user = format!("u{}", rnd(3));
        events.push((user, t, format!("/p{}", i % 17)));
    }
    for (u, t, page) in &events {
        input.pipe_at(u.clone(), (*t, page.clone()), *t).unwrap();
    }
    let (expected, dropped) = brute_force(&events, gap, grace);
    assert!(dropped > 100, "the fixture has late events: {dropped}");
    assert!(
        expected.len() > 100,
        "and many sessions: {}",
        expected.len()
    );
    let mut got: Vec<(String, i64, i64, Session)> = d
        .output_topic(
            "closed",
            windowed_serde(serdes::string()),
            serdes::json::<Session>(),
        )
        .read_key_values()
        .into_iter()
        .map(|(w, s)| (w.key, w.window.start, w.window.end, s))
        .collect();
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let missing: Vec<_> = expected.iter().filter(|e| !got.contains(e)).collect();
    let extra: Vec<_> = got.iter().filter(|e| !expected.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    assert_eq!(got, expected);
    assert_eq!(d.late_dropped(), dropped);
    let by_user: BTreeMap<&str, usize> = got.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.0.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_user.len(), 3);
}

#[test]
fn windows_past_their_retention_are_purged_from_the_store() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .group_by_key(Grouped::with(serdes::string(), serdes::string()))
        .windowed_by(TimeWindows::of(10))
        .count(Materialized::as_("w").with_retention(2_000))
        .to_stream()
        .map(|w, n: &Option<i64>| (fmt(w, n.unwrap_or(0)), String::new()))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::string());
    input.pipe_at("a".into(), String::new(), 5).unwrap();
    input.pipe_at("a".into(), String::new(), 1_500).unwrap();
    let changelog = "test-driver-w-changelog";
    assert!(
        d.read_raw(changelog).iter().all(|o| o.value.is_some()),
        "nothing purged yet"
    );
    // Stream time 3000: [0,10) ended more than 2 s ago, [1500,1510) did not.
    input.pipe_at("a".into(), String::new(), 3_000).unwrap();
    let tombstones: Vec<_> = d
        .read_raw(changelog)
        .into_iter()
        .filter(|o| o.value.is_none())
        .collect();
    assert_eq!(tombstones.len(), 1, "one window purged");
    let b = StreamsBuilder::new();
    let _ = b
        .stream("in", serdes::string(), serdes::string())
        .group_by_key(Grouped::with(serdes::string(), serdes::string()))
        .windowed_by(TimeWindows::of(10).grace(5))
        .count(Materialized::as_("w").with_retention(10));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("retention"), "{err}");
}

#[test]
fn sliding_windows_update_open_windows_and_drop_late_records() {
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::string())
        .group_by_key(Grouped::with(serdes::string(), serdes::string()))
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(10, 5))
        .count(Materialized::as_("sliding"))
        .to_stream()
        .map(|w, n: &Option<i64>| (fmt(w, n.unwrap_or(0)), String::new()))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let topo = b.build().unwrap();
    assert_eq!(
        topo.internal_topics("app").len(),
        2,
        "the windows and the records have changelogs"
    );
    let d = TopologyTestDriver::new(topo);
    let input = d.input_topic("in", serdes::string(), serdes::string());
    let out = d.output_topic("out", serdes::string(), serdes::string());
    let step = |t: i64| {
        input.pipe_at("a".into(), String::new(), t).unwrap();
        out.read_key_values()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    // Each record's left window; 105 falls in 100's right window, which it creates.
    assert_eq!(step(100), ["a@90-100=1"]);
    assert_eq!(step(105), ["a@95-105=2", "a@101-111=1"]);
    // Out of order: 103 has its own windows and joins every open window it falls in.
    assert_eq!(
        step(103),
        ["a@93-103=2", "a@95-105=3", "a@101-111=2", "a@104-114=1"]
    );
    // At stream time 105, 88 could only be in windows ending by 98: closed (98 + 5 <= 105).
    assert!(step(88).is_empty());
    assert_eq!(d.late_dropped(), 1);
    // 96 belongs in [86,96] and [90,100] too, but those closed at 101 and 105.
    assert_eq!(step(96), ["a@93-103=3", "a@95-105=4", "a@97-107=3"]);
    // Late is when even the record's right window is closed: 89's [90,100] closed at 105,
    // 90's [91,101] is open until 106, so 90 makes it, though every window holding 90 is
    // closed.
    assert!(step(89).is_empty());
    assert_eq!(d.late_dropped(), 2);
    assert_eq!(step(90), ["a@91-101=2"]);
}

/// Sliding windows from their definition: every record's left window `[t - diff, t]`, and
/// its right window `[t + 1, t + 1 + diff]` when a record is in it; each window's sum is of
/// the values it holds.
fn sliding_by_definition(
    events: &[(String, i64, i64)],
    diff: i64,
) -> BTreeMap<(String, i64, i64), i64> {
    let mut out = BTreeMap::new();
    for (key, t, _) in events {
        let mine: Vec<(i64, i64)> = events
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, t, v)| (*t, *v))
            .collect();
        let mut windows = vec![(t - diff, *t)];
        if mine.iter().any(|(x, _)| x > t && *x <= t + 1 + diff) {
            windows.push((t + 1, t + 1 + diff));
        }
        for (start, end) in windows {
            let sum = mine
                .iter()
                .filter(|(x, _)| start <= *x && *x <= end)
                .map(|(_, v)| v)
                .sum();
            out.insert((key.clone(), start, end), sum);
        }
    }
    out
}

#[test]
fn sliding_windows_match_their_definition_with_out_of_order_records() {
    let diff = 50;
    let b = StreamsBuilder::new();
    b.stream("in", serdes::string(), serdes::i64())
        .group_by_key(Grouped::with(serdes::string(), serdes::i64()))
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
            diff, 1_000_000,
        ))
        .reduce(|a, b| a + b, Materialized::as_("sums"))
        .to_stream()
        .map_values(|v: &Option<i64>| v.unwrap_or(0))
        .to(
            "out",
            Produced::with(windowed_serde(serdes::string()), serdes::i64()),
        );
    let d = TopologyTestDriver::new(b.build().unwrap());
    let input = d.input_topic("in", serdes::string(), serdes::i64());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut events = Vec::new();
    let mut clock = 10_000i64;
    for _ in 0..600 {
        clock += rnd(30) as i64;
        // A quarter out of order, by up to 200 ms (always within the grace).
        let t = if rnd(4) == 0 {
            clock - rnd(200) as i64
        } else {
            clock
        };
        events.push((format!("k{}", rnd(3)), t, 1 + rnd(100) as i64));
    }
    for (k, t, v) in &events {
        input.pipe_at(k.clone(), *v, *t).unwrap();
    }
    // The table's latest value of each window.
    let mut got = BTreeMap::new();
    for (w, v) in d
        .output_topic("out", windowed_serde(serdes::string()), serdes::i64())
        .read_key_values()
    {
        got.insert((w.key, w.window.start, w.window.end), v);
    }
    let expected = sliding_by_definition(&events, diff);
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, _)| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .take(5)
        .collect();
    let wrong: Vec<_> = got
        .iter()
        .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "missing {missing:?}\nextra {extra:?}\nwrong {wrong:?}"
    );
    assert!(expected.len() > 900, "{} windows", expected.len());
    assert_eq!(d.late_dropped(), 0);
}
