//! `strom partitions reassign`, like kafka-reassign-partitions.sh: --generate a balanced plan
//! in Kafka's JSON, --execute it, --verify, --cancel and --list, over
//! AlterPartitionReassignments and ListPartitionReassignments.

use std::io::Write;

use serde_json::{json, Value};

use super::{CliError, ReassignArgs};
use crate::admin::{BrokerDescription, ConfigOp};
use crate::placement::{self, PlacedBroker};
use crate::TopicPartition;

pub(super) type Assignment = Vec<(TopicPartition, Vec<i32>)>;

/// `{"version":1,"partitions":[{"topic","partition","replicas","log_dirs"}]}`.
fn assignment_json(a: &Assignment) -> Value {
    json!({
        "version": 1,
        "partitions": a.iter().map(|(tp, r)| json!({
            "topic": tp.topic,
            "partition": tp.partition,
            "replicas": r,
            "log_dirs": r.iter().map(|_| "any").collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn parse_assignment(text: &str) -> Result<Assignment, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let list = doc
        .get("partitions")
        .and_then(Value::as_array)
        .ok_or("no \"partitions\" list")?;
    list.iter()
        .map(|p| {
            let topic = p.get("topic").and_then(Value::as_str);
            let partition = p.get("partition").and_then(Value::as_i64);
            let replicas = p.get("replicas").and_then(Value::as_array).map(|r| {
                r.iter()
                    .map(|b| b.as_i64().and_then(|b| i32::try_from(b).ok()))
                    .collect::<Option<Vec<i32>>>()
            });
            match (topic, partition, replicas) {
                (Some(t), Some(n), Some(Some(r))) if (0..=i32::MAX as i64).contains(&n) => {
                    Ok((TopicPartition::new(t, n as i32), r))
                }
                _ => Err(format!(
                    "{p} is not {{\"topic\": ..., \"partition\": ..., \"replicas\": [...]}}"
                )),
            }
        })
        .collect()
}

/// `{"topics":[{"topic":"a"}],"version":1}`.
fn parse_topics(text: &str) -> Result<Vec<String>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    doc.get("topics")
        .and_then(Value::as_array)
        .ok_or("no \"topics\" list")?
        .iter()
        .map(|t| {
            t.get("topic")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{t} is not {{\"topic\": ...}}"))
        })
        .collect()
}

/// A balanced plan: partition `k` (in order) leads on the `k`-th broker of the
/// rack-alternating order and its other replicas follow on racks it does not use yet
/// ([`placement::assign`]), so replicas and leaders spread evenly and, with racks, across
/// them. Without racks this is `rf` consecutive brokers of the sorted list.
pub fn plan(current: &Assignment, brokers: &[PlacedBroker]) -> Result<Assignment, String> {
    let n = placement::rack_alternated(brokers).len();
    current
        .iter()
        .enumerate()
        .map(|(k, (tp, replicas))| {
            let rf = replicas.len();
            if rf > n {
                return Err(format!(
                    "{tp} has {rf} replicas but only {n} brokers are listed"
                ));
            }
            let mut placed = placement::assign(brokers, k, 1, rf);
            Ok((tp.clone(), placed.pop().unwrap_or_default()))
        })
        .collect()
}

/// `ids` with the racks `cluster` reports (none with `rack_aware` false, or for a broker it
/// does not list).
pub fn placed(ids: &[i32], cluster: &[BrokerDescription], rack_aware: bool) -> Vec<PlacedBroker> {
    ids.iter()
        .map(|&id| PlacedBroker {
            id,
            rack: cluster
                .iter()
                .find(|b| b.id == id && rack_aware)
                .and_then(|b| b.rack.clone()),
        })
        .collect()
}

const LEADER_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// What a throttled --execute sets, as kafka-reassign-partitions.sh does: the rates on every
/// broker a moving partition is or will be on; per topic, the leader-side list (every
/// current replica of a moving partition, since any of them may lead while it moves) and
/// the follower-side list (the replicas being added).
#[derive(Debug, PartialEq, Eq)]
pub struct ThrottlePlan {
    pub brokers: std::collections::BTreeSet<i32>,
    /// topic -> (leader list, follower list), `partition:broker,...`.
    pub topics: std::collections::BTreeMap<String, (String, String)>,
}

pub fn throttle_plan(current: &Assignment, wanted: &Assignment) -> ThrottlePlan {
    let mut brokers = std::collections::BTreeSet::new();
    let mut lists: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> =
        Default::default();
    for (tp, target) in wanted {
        let Some((_, now)) = current.iter().find(|(c, _)| c == tp) else {
            continue;
        };
        if now == target {
            continue;
        }
        brokers.extend(now.iter().chain(target));
        let (leader, follower) = lists.entry(tp.topic.clone()).or_default();
        leader.extend(now.iter().map(|b| format!("{}:{b}", tp.partition)));
        follower.extend(
            target
                .iter()
                .filter(|b| !now.contains(b))
                .map(|b| format!("{}:{b}", tp.partition)),
        );
    }
    ThrottlePlan {
        brokers,
        topics: lists
            .into_iter()
            .map(|(t, (l, f))| (t, (l.join(","), f.join(","))))
            .collect(),
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("{what} {}: {e}", path.display())))
}

fn names(tps: &[&TopicPartition]) -> String {
    tps.iter()
        .map(|tp| tp.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(target: &super::Target, args: ReassignArgs) -> Result<(), CliError> {
    let mut admin = target.admin();
    let mut out = std::io::stdout().lock();
    let file = || {
        args.reassignment_json_file
            .as_deref()
            .ok_or_else(|| CliError::Input("--reassignment-json-file is required".into()))
            .and_then(|p| read(p, "--reassignment-json-file"))
            .and_then(|t| {
                parse_assignment(&t)
                    .map_err(|e| CliError::Input(format!("--reassignment-json-file: {e}")))
            })
    };
    let current_of = |topics: Vec<String>| {
        let mut admin = target.admin();
        async move {
            let mut cur = Assignment::new();
            for t in topics {
                let d = admin.describe_topic(&t).await?;
                for p in d.partitions {
                    cur.push((TopicPartition::new(t.clone(), p.partition), p.replicas));
                }
            }
            Ok::<_, CliError>(cur)
        }
    };
    if args.generate {
        let topics = match (&args.topics_to_move_json_file, &args.topics) {
            (Some(p), _) => parse_topics(&read(p, "--topics-to-move-json-file")?)
                .map_err(|e| CliError::Input(format!("--topics-to-move-json-file: {e}")))?,
            (None, t) if !t.is_empty() => t.clone(),
            _ => {
                return Err(CliError::Input(
                    "--generate needs --topics-to-move-json-file or --topics".into(),
                ))
            }
        };
        if args.broker_list.is_empty() {
            return Err(CliError::Input("--generate needs --broker-list".into()));
        }
        let current = current_of(topics).await?;
        let cluster = admin.describe_cluster().await?;
        let brokers = placed(
            &args.broker_list,
            &cluster.brokers,
            !args.disable_rack_aware,
        );
        let proposed = plan(&current, &brokers).map_err(CliError::Input)?;
        let _ = writeln!(
            out,
            "Current partition replica assignment\n{}\n\nProposed partition reassignment configuration\n{}",
            assignment_json(&current),
            assignment_json(&proposed)
        );
    } else if args.execute {
        let wanted = file()?;
        let topics: Vec<String> = wanted
            .iter()
            .map(|(tp, _)| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let current: Assignment = current_of(topics)
            .await?
            .into_iter()
            .filter(|(tp, _)| wanted.iter().any(|(w, _)| w == tp))
            .collect();
        let _ = writeln!(
            out,
            "Current partition replica assignment\n\n{}\n\nSave this to use as the --reassignment-json-file option during rollback",
            assignment_json(&current)
        );
        if let Some(rate) = args.throttle {
            let throttle = throttle_plan(&current, &wanted);
            for b in &throttle.brokers {
                admin
                    .alter_broker_configs(
                        Some(*b),
                        &[
                            ConfigOp::Set(LEADER_RATE.into(), rate.to_string()),
                            ConfigOp::Set(FOLLOWER_RATE.into(), rate.to_string()),
                        ],
                    )
                    .await?;
            }
            for (topic, (leader, follower)) in &throttle.topics {
                admin
                    .alter_configs(
                        topic,
                        &[
                            ConfigOp::Set(LEADER_REPLICAS.into(), leader.clone()),
                            ConfigOp::Set(FOLLOWER_REPLICAS.into(), follower.clone()),
                        ],
                    )
                    .await?;
            }
            let _ = writeln!(
                out,
                "Warning: You must run --verify periodically, until the reassignment completes, to ensure the throttle is removed.\nThe inter-broker throttle limit was set to {rate} B/s"
            );
        }
        let targets: Vec<(TopicPartition, Option<Vec<i32>>)> =
            wanted.into_iter().map(|(tp, r)| (tp, Some(r))).collect();
        let results = admin.alter_partition_reassignments(&targets).await?;
        let ok: Vec<&TopicPartition> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(tp, _)| tp)
            .collect();
        if !ok.is_empty() {
            let _ = writeln!(
                out,
                "Successfully started partition reassignments for {}",
                names(&ok)
            );
        }
        let failed: Vec<_> = results
            .iter()
            .filter_map(|(tp, r)| r.as_ref().err().map(|e| (tp, e)))
            .collect();
        for (tp, e) in &failed {
            let _ = writeln!(out, "Error reassigning partition(s): {tp}: {e}");
        }
        if !failed.is_empty() {
            return Err(CliError::Input(format!(
                "{} partition(s) could not be reassigned",
                failed.len()
            )));
        }
    } else if args.verify {
        let wanted = file()?;
        let tps: Vec<TopicPartition> = wanted.iter().map(|(tp, _)| tp.clone()).collect();
        let ongoing = admin.list_partition_reassignments(Some(&tps)).await?;
        let topics: Vec<String> = tps
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let current = current_of(topics.clone()).await?;
        let _ = writeln!(out, "Status of partition reassignment:");
        let mut unfinished = 0;
        for (tp, r) in &wanted {
            let now = current.iter().find(|(c, _)| c == tp).map(|(_, r)| r);
            let line = if ongoing.contains_key(tp) {
                unfinished += 1;
                "is still in progress.".to_string()
            } else if now == Some(r) {
                "is completed.".to_string()
            } else {
                unfinished += 1;
                format!(
                    "is not in progress, and its replicas are {:?}, not {r:?}.",
                    now.cloned().unwrap_or_default()
                )
            };
            let _ = writeln!(out, "Reassignment of partition {tp} {line}");
        }
        if unfinished > 0 {
            return Err(CliError::Input(format!(
                "{unfinished} partition(s) not reassigned yet"
            )));
        }
        if !args.preserve_throttles {
            // Every move is done: the throttle has nothing left to hold (Kafka's --verify).
            let cluster = admin.describe_cluster().await?;
            let ids: Vec<String> = cluster.brokers.iter().map(|b| b.id.to_string()).collect();
            for b in &cluster.brokers {
                admin
                    .alter_broker_configs(
                        Some(b.id),
                        &[
                            ConfigOp::Delete(LEADER_RATE.into()),
                            ConfigOp::Delete(FOLLOWER_RATE.into()),
                        ],
                    )
                    .await?;
            }
            let _ = writeln!(
                out,
                "Clearing broker-level throttles on brokers {}",
                ids.join(",")
            );
            for topic in &topics {
                admin
                    .alter_configs(
                        topic,
                        &[
                            ConfigOp::Delete(LEADER_REPLICAS.into()),
                            ConfigOp::Delete(FOLLOWER_REPLICAS.into()),
                        ],
                    )
                    .await?;
                let _ = writeln!(out, "Clearing topic-level throttles on topic {topic}");
            }
        }
    } else if args.cancel {
        let wanted = file()?;
        let targets: Vec<(TopicPartition, Option<Vec<i32>>)> =
            wanted.into_iter().map(|(tp, _)| (tp, None)).collect();
        let results = admin.alter_partition_reassignments(&targets).await?;
        let cancelled: Vec<&TopicPartition> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(tp, _)| tp)
            .collect();
        if cancelled.is_empty() {
            let _ = writeln!(
                out,
                "None of the specified partition reassignments are active."
            );
        } else {
            let _ = writeln!(
                out,
                "Successfully cancelled partition reassignments for: {}",
                names(&cancelled)
            );
        }
        // NO_REASSIGNMENT_IN_PROGRESS is the "not active" above; anything else failed.
        let failed: Vec<_> = results
            .iter()
            .filter_map(|(tp, r)| r.as_ref().err().filter(|e| e.code != 85).map(|e| (tp, e)))
            .collect();
        for (tp, e) in &failed {
            let _ = writeln!(out, "Error cancelling the reassignment of {tp}: {e}");
        }
        if !failed.is_empty() {
            return Err(CliError::Input(format!(
                "{} reassignment(s) could not be cancelled",
                failed.len()
            )));
        }
    } else {
        let ongoing = admin.list_partition_reassignments(None).await?;
        if ongoing.is_empty() {
            let _ = writeln!(out, "No partition reassignments found.");
        } else {
            let _ = writeln!(out, "Current partition reassignments:");
            let join = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            for (tp, r) in ongoing {
                let _ = writeln!(
                    out,
                    "{tp}: replicas: {}. adding: {}. removing: {}.",
                    join(&r.replicas),
                    join(&r.adding),
                    join(&r.removing)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_spread_replicas_and_leaders() {
        let current: Assignment = (0..6)
            .map(|p| (TopicPartition::new("t", p), vec![1, 2, 3]))
            .collect();
        let p = plan(&current, &placed(&[4, 2, 3, 1], &[], true)).expect("plan");
        let leaders: Vec<i32> = p.iter().map(|(_, r)| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 4, 1, 2]);
        assert!(p.iter().all(|(_, r)| r.len() == 3));
        let mut per_broker = [0; 5];
        for (_, r) in &p {
            for b in r {
                per_broker[*b as usize] += 1;
            }
        }
        // 18 replicas over 4 brokers: 4 or 5 each.
        assert_eq!(&per_broker[1..], &[4, 5, 5, 4]);
        assert!(
            plan(&current, &placed(&[1, 2], &[], true)).is_err(),
            "RF 3 on two brokers"
        );
    }

    #[test]
    fn plans_put_each_partitions_replicas_on_different_racks() {
        let cluster: Vec<BrokerDescription> = [(1, "a"), (2, "a"), (3, "b"), (4, "b")]
            .iter()
            .map(|&(id, rack)| BrokerDescription {
                id,
                host: "h".into(),
                port: 9092,
                rack: Some(rack.into()),
            })
            .collect();
        let current: Assignment = (0..8)
            .map(|p| (TopicPartition::new("t", p), vec![1, 2]))
            .collect();
        let rack = |b: i32| if b <= 2 { "a" } else { "b" };
        let p = plan(&current, &placed(&[1, 2, 3, 4], &cluster, true)).expect("plan");
        assert!(p.iter().all(|(_, r)| rack(r[0]) != rack(r[1])), "{p:?}");
        // --disable-rack-aware: consecutive brokers, so some partitions sit on one rack.
        let p = plan(&current, &placed(&[1, 2, 3, 4], &cluster, false)).expect("plan");
        assert!(p.iter().any(|(_, r)| rack(r[0]) == rack(r[1])), "{p:?}");
    }

    #[test]
    fn a_throttle_names_the_current_replicas_as_leaders_and_the_new_ones_as_followers() {
        let current: Assignment = vec![
            (TopicPartition::new("t", 0), vec![1, 2]),
            (TopicPartition::new("t", 1), vec![2, 3]),
            (TopicPartition::new("u", 0), vec![1]),
        ];
        let wanted: Assignment = vec![
            (TopicPartition::new("t", 0), vec![2, 4]),
            (TopicPartition::new("t", 1), vec![2, 3]),
            (TopicPartition::new("u", 0), vec![3]),
        ];
        let plan = throttle_plan(&current, &wanted);
        assert_eq!(
            plan.brokers.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(plan.topics["t"], ("0:1,0:2".to_string(), "0:4".to_string()));
        assert_eq!(plan.topics["u"], ("0:1".to_string(), "0:3".to_string()));
    }

    #[test]
    fn kafka_json_round_trips() {
        let a: Assignment = vec![(TopicPartition::new("t", 0), vec![2, 3])];
        let text = assignment_json(&a).to_string();
        assert!(text.contains("\"log_dirs\":[\"any\",\"any\"]"), "{text}");
        assert_eq!(parse_assignment(&text), Ok(a));
        assert!(parse_assignment(r#"{"partitions":[{"topic":"t","partition":0}]}"#).is_err());
        assert_eq!(
            parse_topics(r#"{"topics":[{"topic":"a"},{"topic":"b"}],"version":1}"#),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(parse_topics("{}").is_err());
    }
}
