//! Each join kind through the test driver, against hand-computed expectations.
#![allow(clippy::unwrap_used)]

use strom_streams::dsl::{JoinWindows, StreamJoined};
use strom_streams::{serdes, Materialized, Produced, StreamsBuilder, TopologyTestDriver};

fn opt(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "-".into())
}

fn read(d: &TopologyTestDriver, topic: &str) -> Vec<String> {
    d.output_topic(topic, serdes::string(), serdes::nullable(serdes::string()))
        .read_key_values()
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", v.unwrap_or_else(|| "<deleted>".into())))
        .collect()
}

#[test]
fn stream_table_inner_and_left() {
    for left in [false, true] {
        let b = StreamsBuilder::new();
        let users = b.table(
            "users",
            serdes::string(),
            serdes::string(),
            Materialized::as_("users"),
        );
        let orders = b.stream("orders", serdes::string(), serdes::string());
        let joined = if left {
            orders.left_join_table(&users, |o: &String, u: Option<&String>| {
                format!("{o}+{}", opt(u))
            })
        } else {
            orders.join_table(&users, |o: &String, u: &String| format!("{o}+{u}"))
        };
        joined.to("out", Produced::with(serdes::string(), serdes::string()));
        let topo = b.build().unwrap();
        assert_eq!(
            topo.subtopologies_len(),
            1,
            "stream and table are co-partitioned"
        );
        let d = TopologyTestDriver::new(topo);
        let u = d.input_topic(
            "users",
            serdes::string(),
            serdes::nullable(serdes::string()),
        );
        let o = d.input_topic("orders", serdes::string(), serdes::string());
        o.pipe("u1".into(), "o1".into()).unwrap();
        u.pipe("u1".into(), Some("alice".into())).unwrap();
        o.pipe("u1".into(), "o2".into()).unwrap();
        u.pipe("u1".into(), Some("alicia".into())).unwrap();
        o.pipe("u1".into(), "o3".into()).unwrap();
        u.pipe("u1".into(), None).unwrap();
        o.pipe("u1".into(), "o4".into()).unwrap();
        let expect: &[&str] = if left {
            &["u1:o1+-", "u1:o2+alice", "u1:o3+alicia", "u1:o4+-"]
        } else {
            &["u1:o2+alice", "u1:o3+alicia"]
        };
        assert_eq!(read(&d, "out"), expect, "left={left}");
    }
}

#[test]
fn stream_table_join_through_a_filtered_view() {
    let b = StreamsBuilder::new();
    let users = b
        .table(
            "users",
            serdes::string(),
            serdes::string(),
            Materialized::as_("users"),
        )
        .filter(|_, name| !name.starts_with("bot"))
        .map_values(|name: &String| name.to_uppercase());
    b.stream("orders", serdes::string(), serdes::string())
        .join_table(&users, |o: &String, u: &String| format!("{o}+{u}"))
        .to("out", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let u = d.input_topic("users", serdes::string(), serdes::string());
    let o = d.input_topic("orders", serdes::string(), serdes::string());
    u.pipe("a".into(), "ann".into()).unwrap();
    u.pipe("b".into(), "bot-1".into()).unwrap();
    o.pipe("a".into(), "o1".into()).unwrap();
    o.pipe("b".into(), "o2".into()).unwrap();
    assert_eq!(read(&d, "out"), ["a:o1+ANN"]);
}

#[test]
fn table_table_inner_left_outer() {
    let cases: [(&str, &[&str]); 3] = [
        ("inner", &["k1:a1+b1", "k1:<deleted>"]),
        ("left", &["k1:a1+-", "k1:a1+b1", "k1:<deleted>"]),
        (
            "outer",
            &["k1:a1+-", "k1:a1+b1", "k2:-+b2", "k1:-+b1", "k1:-+b1x"],
        ),
    ];
    for (kind, expect) in cases {
        let b = StreamsBuilder::new();
        let a = b.table(
            "a",
            serdes::string(),
            serdes::string(),
            Materialized::as_("a"),
        );
        let bt = b.table(
            "b",
            serdes::string(),
            serdes::string(),
            Materialized::as_("b"),
        );
        let j = match kind {
            "inner" => a.join(&bt, |x: &String, y: &String| format!("{x}+{y}")),
            "left" => a.left_join(&bt, |x: &String, y: Option<&String>| {
                format!("{x}+{}", opt(y))
            }),
            _ => a.outer_join(&bt, |x: Option<&String>, y: Option<&String>| {
                format!("{}+{}", opt(x), opt(y))
            }),
        };
        j.to_stream().to(
            "out",
            Produced::with(serdes::string(), serdes::nullable(serdes::string())),
        );
        let d = TopologyTestDriver::new(b.build().unwrap());
        let ia = d.input_topic("a", serdes::string(), serdes::nullable(serdes::string()));
        let ib = d.input_topic("b", serdes::string(), serdes::nullable(serdes::string()));
        ia.pipe("k1".into(), Some("a1".into())).unwrap();
        ib.pipe("k1".into(), Some("b1".into())).unwrap();
        ib.pipe("k2".into(), Some("b2".into())).unwrap();
        ia.pipe("k1".into(), None).unwrap();
        ib.pipe("k1".into(), Some("b1x".into())).unwrap();
        assert_eq!(read(&d, "out"), expect, "{kind}");
    }
}

#[test]
fn stream_stream_inner_left_outer_with_late_records() {
    let cases: [(&str, &[&str]); 3] = [
        ("inner", &["a:L1+R1@5"]),
        ("left", &["a:L1+R1@5", "a:L2+-@100"]),
        (
            "outer",
            &["a:L1+R1@5", "a:-+R2@30", "a:L2+-@100", "b:-+R3@101"],
        ),
    ];
    for (kind, expect) in cases {
        let b = StreamsBuilder::new();
        let l = b.stream("left", serdes::string(), serdes::string());
        let r = b.stream("right", serdes::string(), serdes::string());
        let w = JoinWindows::of_time_difference(10);
        let sj = || StreamJoined::with(serdes::string(), serdes::string(), serdes::string());
        let j = match kind {
            "inner" => l.join(&r, |x: &String, y: &String| format!("{x}+{y}"), w, sj()),
            "left" => l.left_join(
                &r,
                |x: &String, y: Option<&String>| format!("{x}+{}", opt(y)),
                w,
                sj(),
            ),
            _ => l.outer_join(
                &r,
                |x: Option<&String>, y: Option<&String>| format!("{}+{}", opt(x), opt(y)),
                w,
                sj(),
            ),
        };
        j.to("out", Produced::with(serdes::string(), serdes::string()));
        let d = TopologyTestDriver::new(b.build().unwrap());
        let il = d.input_topic("left", serdes::string(), serdes::string());
        let ir = d.input_topic("right", serdes::string(), serdes::string());
        il.pipe_at("a".into(), "L1".into(), 0).unwrap();
        ir.pipe_at("a".into(), "R1".into(), 5).unwrap(); // joins L1
        ir.pipe_at("a".into(), "R2".into(), 30).unwrap(); // no partner
        il.pipe_at("a".into(), "L2".into(), 100).unwrap(); // no partner; R2 closes
        il.pipe_at("a".into(), "L3".into(), 3).unwrap(); // late: dropped
        ir.pipe_at("b".into(), "R3".into(), 101).unwrap(); // no partner
        il.pipe_at("b".into(), "L4".into(), 200).unwrap(); // L2 and R3 close
        let got: Vec<String> = d
            .output_topic("out", serdes::string(), serdes::string())
            .read_record()
            .into_iter()
            .chain(std::iter::from_fn(|| {
                d.output_topic("out", serdes::string(), serdes::string())
                    .read_record()
            }))
            .map(|(k, v, ts)| format!("{k}:{v}@{ts}"))
            .collect();
        assert_eq!(got, expect, "{kind}");
        assert_eq!(d.late_dropped(), 1, "{kind}");
    }
}

#[test]
fn stream_stream_join_within_the_window_only() {
    let b = StreamsBuilder::new();
    let l = b.stream("left", serdes::string(), serdes::string());
    let r = b.stream("right", serdes::string(), serdes::string());
    l.join(
        &r,
        |x: &String, y: &String| format!("{x}+{y}"),
        JoinWindows::of_time_difference(0)
            .before(5)
            .after(20)
            .grace(100),
        StreamJoined::with(serdes::string(), serdes::string(), serdes::string()),
    )
    .to("out", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let il = d.input_topic("left", serdes::string(), serdes::string());
    let ir = d.input_topic("right", serdes::string(), serdes::string());
    il.pipe_at("k".into(), "L".into(), 100).unwrap();
    for t in [94, 95, 110, 120, 121] {
        ir.pipe_at("k".into(), format!("R{t}"), t).unwrap();
    }
    let got: Vec<String> = d
        .output_topic("out", serdes::string(), serdes::string())
        .read_key_values()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, ["L+R95", "L+R110", "L+R120"]);
}

#[test]
fn stream_global_table_join_by_a_mapped_key() {
    let b = StreamsBuilder::new();
    let products = b.global_table("products", serdes::string(), serdes::string());
    let orders = b.stream("orders", serdes::string(), serdes::string());
    orders
        .join_global(
            &products,
            |_, v: &String| v.split(':').next().unwrap_or_default().to_string(),
            |v: &String, name: &String| format!("{name} x{}", v.split(':').nth(1).unwrap_or("?")),
        )
        .to("out", Produced::with(serdes::string(), serdes::string()));
    orders
        .left_join_global(
            &products,
            |_, v: &String| v.split(':').next().unwrap_or_default().to_string(),
            |v: &String, name: Option<&String>| format!("{v}={}", opt(name)),
        )
        .to("all", Produced::with(serdes::string(), serdes::string()));
    let d = TopologyTestDriver::new(b.build().unwrap());
    let p = d.input_topic("products", serdes::string(), serdes::string());
    let o = d.input_topic("orders", serdes::string(), serdes::string());
    p.pipe("p1".into(), "lamp".into()).unwrap();
    o.pipe("order-1".into(), "p1:2".into()).unwrap();
    o.pipe("order-2".into(), "p9:1".into()).unwrap();
    assert_eq!(read(&d, "out"), ["order-1:lamp x2"]);
    assert_eq!(read(&d, "all"), ["order-1:p1:2=lamp", "order-2:p9:1=-"]);
}

#[test]
fn joins_refuse_what_cannot_be_co_partitioned() {
    let b = StreamsBuilder::new();
    let t = b.table(
        "t",
        serdes::string(),
        serdes::string(),
        Materialized::as_("t"),
    );
    b.stream("s", serdes::string(), serdes::string())
        .select_key(|_, v| v.clone())
        .join_table(&t, |a: &String, b: &String| format!("{a}{b}"))
        .to("o", Produced::with(serdes::string(), serdes::string()));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("repartition()"), "{err}");

    // A table-table join's result has no store of its own: a stream cannot look it up.
    let b = StreamsBuilder::new();
    let t1 = b.table(
        "t1",
        serdes::string(),
        serdes::string(),
        Materialized::as_("t1"),
    );
    let t2 = b.table(
        "t2",
        serdes::string(),
        serdes::string(),
        Materialized::as_("t2"),
    );
    let joined = t1.join(&t2, |a: &String, b: &String| format!("{a}{b}"));
    b.stream("s", serdes::string(), serdes::string())
        .join_table(&joined, |a: &String, b: &String| format!("{a}{b}"))
        .to("o", Produced::with(serdes::string(), serdes::string()));
    let err = b.build().err().unwrap().to_string();
    assert!(err.contains("not materialized"), "{err}");
}
