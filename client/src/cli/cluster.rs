//! `strom cluster decommission BROKER`: retire a broker without losing a replica. Every
//! partition with a replica on it is reassigned (KIP-455) to another broker, chosen to keep
//! the partition on as many racks as before and the load even; once every move has finished
//! the broker is unregistered (UnregisterBroker), and can then be stopped for good.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::reassign::Assignment;
use super::{CliError, DecommissionArgs};
use crate::placement::PlacedBroker;
use crate::TopicPartition;

/// The moves that take `leaving` off every partition of `current`: its slot in each replica
/// list goes to a broker of `brokers` not already there, preferring the leaving broker's
/// rack, then a rack the partition does not use, then the broker holding the fewest
/// replicas (counted over `current`, moves included), then the lowest id.
pub fn decommission_plan(
    current: &Assignment,
    leaving: i32,
    brokers: &[PlacedBroker],
) -> Result<Assignment, String> {
    let rack_of = |id: i32| {
        brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    let leaving_rack = rack_of(leaving);
    let mut load: BTreeMap<i32, usize> = brokers
        .iter()
        .filter(|b| b.id != leaving)
        .map(|b| (b.id, 0))
        .collect();
    for (_, replicas) in current {
        for r in replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    let mut plan = Assignment::new();
    for (tp, replicas) in current {
        let Some(slot) = replicas.iter().position(|&r| r == leaving) else {
            continue;
        };
        let used_racks: Vec<Option<String>> = replicas
            .iter()
            .filter(|&&r| r != leaving)
            .map(|&r| rack_of(r))
            .collect();
        let best = load
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .min_by_key(|&(&b, &n)| {
                let rack = rack_of(b);
                let same_rack = leaving_rack.is_some() && rack == leaving_rack;
                let new_rack = !used_racks.contains(&rack);
                (!same_rack, !new_rack, n, b)
            })
            .map(|(&b, _)| b)
            .ok_or_else(|| {
                format!(
                    "{tp} has {} replicas and no other broker can take broker {leaving}'s",
                    replicas.len()
                )
            })?;
        *load.entry(best).or_default() += 1;
        let mut target = replicas.clone();
        target[slot] = best;
        plan.push((tp.clone(), target));
    }
    Ok(plan)
}

pub async fn decommission(target: &super::Target, args: DecommissionArgs) -> Result<(), CliError> {
    let mut admin = target.admin();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let say = |out: &mut std::io::StdoutLock, line: String| {
        let _ = writeln!(out, "[{:>7.1}s] {line}", started.elapsed().as_secs_f64());
        let _ = out.flush();
    };
    let leaving = args.broker;
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    // A broker that missed heartbeats (a busy machine) is fenced for a moment and left out
    // of the live brokers. When the plan needs it, wait for it to come back; when it is the
    // leaving one, give it a minute to come back, then go on without it (a dead broker is
    // decommissioned too: its replicas are rebuilt from the in-sync ones).
    let fenced_leaving_until = Instant::now() + Duration::from_millis(args.timeout_ms.min(60_000));
    let mut last_wait = String::new();
    let (current, plan) = loop {
        let registered = admin.registered_brokers().await?;
        let placed = |include_fenced: bool| -> Vec<PlacedBroker> {
            registered
                .iter()
                // The leaving broker's rack guides the choice even while it is fenced.
                .filter(|(b, fenced)| include_fenced || !fenced || b.id == leaving)
                .map(|(b, _)| PlacedBroker {
                    id: b.id,
                    rack: b.rack.clone(),
                })
                .collect()
        };
        let fenced: Vec<i32> = registered
            .iter()
            .filter(|(_, f)| *f)
            .map(|(b, _)| b.id)
            .collect();
        let (why, until) = match registered.iter().find(|(b, _)| b.id == leaving) {
            None => {
                return Err(CliError::Input(format!(
                    "broker {leaving} is not a registered broker (known: {})",
                    registered
                        .iter()
                        .map(|(b, _)| b.id.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )))
            }
            Some((_, true)) if Instant::now() < fenced_leaving_until => (
                format!("broker {leaving} is fenced (it has missed its heartbeats)"),
                fenced_leaving_until,
            ),
            Some(_) => {
                let mut current = Assignment::new();
                for t in admin.list_topics(true).await? {
                    for p in admin.describe_topic(&t).await?.partitions {
                        current.push((TopicPartition::new(t.clone(), p.partition), p.replicas));
                    }
                }
                match decommission_plan(&current, leaving, &placed(false)) {
                    Ok(plan) => break (current, plan),
                    // Only worth waiting for if the fenced brokers, back, would make it.
                    Err(why) if decommission_plan(&current, leaving, &placed(true)).is_ok() => {
                        (why, deadline)
                    }
                    Err(why) => return Err(CliError::Input(why)),
                }
            }
        };
        if Instant::now() >= until {
            return Err(CliError::Input(why));
        }
        let line = format!("{why}; waiting for fenced broker(s) {fenced:?} to come back");
        if line != last_wait {
            say(&mut out, line.clone());
            last_wait = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if plan.is_empty() {
        say(&mut out, format!("broker {leaving} hosts no replica"));
    } else {
        say(
            &mut out,
            format!("moving {} replica(s) off broker {leaving}", plan.len()),
        );
        for (tp, replicas) in &plan {
            let before = current.iter().find(|(c, _)| c == tp).map(|(_, r)| r);
            say(
                &mut out,
                format!(
                    "  {tp}: {:?} -> {replicas:?}",
                    before.cloned().unwrap_or_default()
                ),
            );
        }
        let targets: Vec<(TopicPartition, Option<Vec<i32>>)> = plan
            .iter()
            .map(|(tp, r)| (tp.clone(), Some(r.clone())))
            .collect();
        let results = admin.alter_partition_reassignments(&targets).await?;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(tp, r)| r.as_ref().err().map(|e| format!("{tp}: {e}")))
            .collect();
        if !failed.is_empty() {
            return Err(CliError::Input(format!(
                "could not start every move (the ones that started keep going; `strom partitions reassign --list` shows them): {}",
                failed.join("; ")
            )));
        }
        let tps: Vec<TopicPartition> = plan.iter().map(|(tp, _)| tp.clone()).collect();
        let mut last = usize::MAX;
        loop {
            let ongoing = admin.list_partition_reassignments(Some(&tps)).await?.len();
            if ongoing != last {
                say(
                    &mut out,
                    format!("{} of {} move(s) done", tps.len() - ongoing, tps.len()),
                );
                last = ongoing;
            }
            if ongoing == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CliError::Input(format!(
                    "{ongoing} move(s) still running after {} ms; they keep going: run the command again to wait and unregister",
                    args.timeout_ms
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if args.no_unregister {
        say(
            &mut out,
            format!("broker {leaving} holds no replica; left registered (--no-unregister)"),
        );
        return Ok(());
    }
    admin.unregister_broker(leaving).await?;
    say(
        &mut out,
        format!("broker {leaving} unregistered; it can be stopped for good"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(spec: &[(i32, &str)]) -> Vec<PlacedBroker> {
        spec.iter()
            .map(|&(id, rack)| PlacedBroker {
                id,
                rack: (!rack.is_empty()).then(|| rack.to_string()),
            })
            .collect()
    }

    #[test]
    fn moves_every_replica_off_and_spreads_the_load() {
        let current: Assignment = (0..6)
            .map(|p| (TopicPartition::new("t", p), vec![1, 2, 3]))
            .chain([(TopicPartition::new("u", 0), vec![2, 3])])
            .collect();
        let b = brokers(&[(1, ""), (2, ""), (3, ""), (4, ""), (5, "")]);
        let plan = decommission_plan(&current, 1, &b).expect("plan");
        assert_eq!(plan.len(), 6, "u-0 has no replica on 1");
        let mut took: BTreeMap<i32, usize> = BTreeMap::new();
        for (_, r) in &plan {
            assert!(!r.contains(&1));
            assert_eq!(r.len(), 3);
            assert_eq!(r[1..], [2, 3], "only broker 1's slot changes");
            *took.entry(r[0]).or_default() += 1;
        }
        assert_eq!(took, BTreeMap::from([(4, 3), (5, 3)]));
        // No broker left to take it.
        assert!(decommission_plan(&current, 1, &b[..3]).is_err());
    }

    #[test]
    fn keeps_partitions_spread_over_racks() {
        let current: Assignment = vec![(TopicPartition::new("t", 0), vec![1, 3])];
        // 1 in rack a leaves: 2 (also rack a) takes its place rather than 4 (rack b, with 3).
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        assert_eq!(
            decommission_plan(&current, 1, &b).expect("plan"),
            vec![(TopicPartition::new("t", 0), vec![2, 3])]
        );
    }
}
