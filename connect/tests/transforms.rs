//! Single message transforms and predicates on a fixture of records, configured as a
//! connector config would configure them (Kafka's class names and keys).

#![allow(clippy::unwrap_used)]

use indexmap::IndexMap;
use strom_connect::data::{ConnectRecord, Schema, SchemaType, Value};
use strom_connect::props::{parse, Props};
use strom_connect::transforms::Chain;

fn chain(config: &str) -> Chain {
    Chain::from_config(&parse(config)).unwrap_or_else(|(k, e)| panic!("{k}: {e}"))
}

fn err(config: &str) -> (String, String) {
    Chain::from_config(&parse(config))
        .err()
        .expect("the config should be rejected")
}

fn user(id: i64, name: &str, email: &str) -> ConnectRecord {
    let mut m = IndexMap::new();
    m.insert("id".to_string(), Value::Int(id));
    m.insert("name".to_string(), Value::from(name));
    m.insert("email".to_string(), Value::from(email));
    ConnectRecord {
        topic: "users".into(),
        partition: Some(2),
        kafka_offset: Some(41),
        timestamp: Some(1_700_000_000_000),
        value_schema: Some(Schema::structure(vec![
            ("id".into(), Schema::of(SchemaType::Int64)),
            ("name".into(), Schema::of(SchemaType::String)),
            ("email".into(), Schema::of(SchemaType::String).optional()),
        ])),
        value: Value::Struct(m),
        ..ConnectRecord::default()
    }
}

fn one(c: &Chain, r: ConnectRecord) -> ConnectRecord {
    c.apply(r)
        .unwrap()
        .expect("the record should not be dropped")
}

fn field_names(s: &Option<Schema>) -> Vec<&str> {
    s.as_ref()
        .unwrap()
        .fields
        .iter()
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn insert_field_adds_topic_partition_offset_and_a_static_field() {
    let c = chain(
        "transforms=meta\n\
         transforms.meta.type=org.apache.kafka.connect.transforms.InsertField$Value\n\
         transforms.meta.topic.field=src_topic\n\
         transforms.meta.partition.field=src_partition\n\
         transforms.meta.offset.field=src_offset!\n\
         transforms.meta.static.field=origin\n\
         transforms.meta.static.value=strom\n",
    );
    let r = one(&c, user(1, "ann", "a@x"));
    assert_eq!(r.value.get("src_topic"), &Value::from("users"));
    assert_eq!(r.value.get("src_partition"), &Value::Int(2));
    assert_eq!(r.value.get("src_offset"), &Value::Int(41));
    assert_eq!(r.value.get("origin"), &Value::from("strom"));
    assert_eq!(
        field_names(&r.value_schema),
        [
            "id",
            "name",
            "email",
            "src_topic",
            "src_partition",
            "src_offset",
            "origin"
        ]
    );
}

#[test]
fn replace_field_excludes_includes_and_renames() {
    let c = chain(
        "transforms=r\ntransforms.r.type=org.apache.kafka.connect.transforms.ReplaceField$Value\n\
         transforms.r.exclude=email\ntransforms.r.renames=name:full_name\n",
    );
    let r = one(&c, user(1, "ann", "a@x"));
    assert_eq!(
        r.value.as_struct().unwrap().keys().collect::<Vec<_>>(),
        ["id", "full_name"]
    );
    assert_eq!(field_names(&r.value_schema), ["id", "full_name"]);
    let c = chain("transforms=r\ntransforms.r.type=ReplaceField$Value\ntransforms.r.include=id\n");
    assert_eq!(
        one(&c, user(1, "ann", "a@x"))
            .value
            .as_struct()
            .unwrap()
            .len(),
        1
    );
    assert!(
        err("transforms=r\ntransforms.r.type=ReplaceField$Value\ntransforms.r.renames=bad\n")
            .1
            .contains("rename")
    );
}

#[test]
fn mask_value_to_key_extract_and_hoist() {
    let c = chain(
        "transforms=mask,key,extract\n\
         transforms.mask.type=org.apache.kafka.connect.transforms.MaskField$Value\n\
         transforms.mask.fields=email\n\
         transforms.key.type=org.apache.kafka.connect.transforms.ValueToKey\n\
         transforms.key.fields=id\n\
         transforms.extract.type=org.apache.kafka.connect.transforms.ExtractField$Key\n\
         transforms.extract.field=id\n",
    );
    let r = one(&c, user(7, "bob", "b@x"));
    assert_eq!(r.value.get("email"), &Value::from(""));
    assert_eq!(r.key, Value::Int(7));
    assert_eq!(r.key_schema.map(|s| s.ty), Some(SchemaType::Int64));
    let c = chain("transforms=h\ntransforms.h.type=HoistField$Value\ntransforms.h.field=line\n");
    let r = one(&c, ConnectRecord::source("t", Value::from("hello")));
    assert_eq!(r.value.get("line"), &Value::from("hello"));
    let c = chain("transforms=k\ntransforms.k.type=ValueToKey\ntransforms.k.fields=missing\n");
    assert!(c.apply(user(1, "a", "b")).unwrap_err().contains("missing"));
}

#[test]
fn cast_fields_and_whole_values() {
    let c = chain("transforms=c\ntransforms.c.type=org.apache.kafka.connect.transforms.Cast$Value\ntransforms.c.spec=id:string\n");
    let r = one(&c, user(5, "c", "d"));
    assert_eq!(r.value.get("id"), &Value::from("5"));
    assert_eq!(
        r.value_schema.unwrap().field("id").map(|s| s.ty),
        Some(SchemaType::String)
    );
    let c = chain("transforms=c\ntransforms.c.type=Cast$Value\ntransforms.c.spec=int32\n");
    assert_eq!(
        one(&c, ConnectRecord::source("t", Value::from("42"))).value,
        Value::Int(42)
    );
    assert!(c
        .apply(ConnectRecord::source("t", Value::from("x")))
        .is_err());
    assert!(
        err("transforms=c\ntransforms.c.type=Cast$Value\ntransforms.c.spec=id:struct\n")
            .1
            .contains("unsupported")
    );
}

#[test]
fn timestamp_converter_both_ways() {
    let c = chain(
        "transforms=ts\ntransforms.ts.type=org.apache.kafka.connect.transforms.TimestampConverter$Value\n\
         transforms.ts.field=at\ntransforms.ts.target.type=string\ntransforms.ts.format=yyyy-MM-dd HH:mm:ss\n",
    );
    let mut m = IndexMap::new();
    m.insert("at".to_string(), Value::Int(1_700_000_000_000));
    let r = one(&c, ConnectRecord::source("t", Value::Struct(m)));
    assert_eq!(r.value.get("at"), &Value::from("2023-11-14 22:13:20"));
    let back = chain(
        "transforms=ts\ntransforms.ts.type=TimestampConverter$Value\n\
         transforms.ts.field=at\ntransforms.ts.target.type=unix\ntransforms.ts.format=yyyy-MM-dd HH:mm:ss\n",
    );
    assert_eq!(
        one(&back, r).value.get("at"),
        &Value::Int(1_700_000_000_000)
    );
}

#[test]
fn routers_rename_topics() {
    let c = chain(
        "transforms=route\ntransforms.route.type=org.apache.kafka.connect.transforms.RegexRouter\n\
         transforms.route.regex=(.*)s\ntransforms.route.replacement=$1-archive\n",
    );
    assert_eq!(one(&c, user(1, "a", "b")).topic, "user-archive");
    let c = chain(
        "transforms=tr\ntransforms.tr.type=org.apache.kafka.connect.transforms.TimestampRouter\n\
         transforms.tr.topic.format=${topic}_${timestamp}\ntransforms.tr.timestamp.format=yyyyMMdd\n",
    );
    assert_eq!(one(&c, user(1, "a", "b")).topic, "users_20231114");
}

#[test]
fn headers_are_dropped_inserted_and_copied_from_fields() {
    let c = chain(
        "transforms=ins,from,drop\n\
         transforms.ins.type=org.apache.kafka.connect.transforms.InsertHeader\n\
         transforms.ins.header=source\ntransforms.ins.value.literal=pg\n\
         transforms.from.type=org.apache.kafka.connect.transforms.HeaderFrom$Value\n\
         transforms.from.fields=name\ntransforms.from.headers=user_name\ntransforms.from.operation=move\n\
         transforms.drop.type=org.apache.kafka.connect.transforms.DropHeaders\ntransforms.drop.headers=trace\n",
    );
    let mut r = user(1, "ann", "a@x");
    r.headers.push(("trace".into(), Value::from("abc")));
    let r = one(&c, r);
    assert_eq!(
        r.headers,
        vec![
            ("source".to_string(), Value::from("pg")),
            ("user_name".to_string(), Value::from("ann"))
        ]
    );
    assert_eq!(r.value.get("name"), &Value::Null);
    assert!(!field_names(&r.value_schema).contains(&"name"));
}

#[test]
fn filter_with_predicates_and_negate() {
    let c = chain(
        "transforms=dropTombstones,onlyUsers\n\
         transforms.dropTombstones.type=org.apache.kafka.connect.transforms.Filter\n\
         transforms.dropTombstones.predicate=isTombstone\n\
         transforms.onlyUsers.type=Filter\n\
         transforms.onlyUsers.predicate=isUsers\n\
         transforms.onlyUsers.negate=true\n\
         predicates=isTombstone,isUsers\n\
         predicates.isTombstone.type=org.apache.kafka.connect.transforms.predicates.RecordIsTombstone\n\
         predicates.isUsers.type=org.apache.kafka.connect.transforms.predicates.TopicNameMatches\n\
         predicates.isUsers.pattern=user.*\n",
    );
    assert!(c.apply(user(1, "a", "b")).unwrap().is_some());
    let mut tomb = user(1, "a", "b");
    tomb.value = Value::Null;
    assert!(c.apply(tomb).unwrap().is_none());
    let mut other = user(1, "a", "b");
    other.topic = "orders".into();
    assert!(c.apply(other).unwrap().is_none());

    let h = chain(
        "transforms=f\ntransforms.f.type=Filter\ntransforms.f.predicate=hasTrace\n\
         predicates=hasTrace\npredicates.hasTrace.type=HasHeaderKey\npredicates.hasTrace.name=trace\n",
    );
    let mut traced = user(1, "a", "b");
    traced.headers.push(("trace".into(), Value::from("x")));
    assert!(h.apply(traced).unwrap().is_none());
    assert!(h.apply(user(1, "a", "b")).unwrap().is_some());
}

#[test]
fn bad_configs_name_the_key() {
    assert_eq!(err("transforms=x\n").0, "transforms.x.type");
    assert!(err("transforms=x\ntransforms.x.type=NoSuchTransform\n")
        .1
        .contains("NoSuchTransform"));
    assert_eq!(
        err("transforms=x\ntransforms.x.type=Filter\ntransforms.x.predicate=nope\n").0,
        "transforms.x.predicate"
    );
    assert!(err("transforms=x\ntransforms.x.type=RegexRouter\ntransforms.x.regex=(\ntransforms.x.replacement=a\n").1.contains("regex"));
    assert!(err("transforms=x\ntransforms.x.type=ExtractField$Value\n")
        .1
        .contains("field"));
}

#[test]
fn a_failing_transform_is_named() {
    let c = chain(
        "transforms=first\ntransforms.first.type=ExtractField$Value\ntransforms.first.field=f\n",
    );
    let e = c
        .apply(ConnectRecord::source("t", Value::from("not a struct")))
        .unwrap_err();
    assert!(e.contains("transform 'first'"), "{e}");
    let empty: Props = Props::new();
    assert!(Chain::from_config(&empty)
        .map(|c| c.is_empty())
        .unwrap_or(false));
}
