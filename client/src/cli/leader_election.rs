//! `strom leader-election`, like kafka-leader-election.sh: the same options, the same three
//! kinds of line (elected, already elected, failed), and exit code 1 when any failed.

use std::io::Write;

use super::{CliError, LeaderElectionArgs};
use crate::admin::ElectionType;
use crate::TopicPartition;

/// kafka-leader-election.sh's JSON: `{"partitions": [{"topic": "t", "partition": 0}, ...]}`.
fn parse_json(text: &str) -> Result<Vec<TopicPartition>, String> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let list = doc
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or("no \"partitions\" list")?;
    list.iter()
        .map(|p| {
            let topic = p.get("topic").and_then(|t| t.as_str());
            let partition = p.get("partition").and_then(|n| n.as_i64());
            match (topic, partition) {
                (Some(t), Some(n)) if (0..=i32::MAX as i64).contains(&n) => {
                    Ok(TopicPartition::new(t, n as i32))
                }
                _ => Err(format!("{p} is not {{\"topic\": ..., \"partition\": ...}}")),
            }
        })
        .collect()
}

/// The partitions the options name; `None` for --all-topic-partitions.
async fn partitions(
    target: &super::Target,
    args: &LeaderElectionArgs,
) -> Result<Option<Vec<TopicPartition>>, CliError> {
    if args.all_topic_partitions {
        return Ok(None);
    }
    if let Some(path) = &args.path_to_json_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("--path-to-json-file {}: {e}", path.display())))?;
        return parse_json(&text)
            .map(Some)
            .map_err(|e| CliError::Input(format!("--path-to-json-file {}: {e}", path.display())));
    }
    let Some(topic) = &args.topic else {
        return Err(CliError::Input(
            "name the partitions: --topic [--partition], --all-topic-partitions or --path-to-json-file"
                .into(),
        ));
    };
    if let Some(p) = args.partition {
        return Ok(Some(vec![TopicPartition::new(topic.clone(), p)]));
    }
    let described = target.admin().describe_topic(topic).await?;
    Ok(Some(
        (0..described.partitions.len() as i32)
            .map(|p| TopicPartition::new(topic.clone(), p))
            .collect(),
    ))
}

pub async fn run(target: &super::Target, args: LeaderElectionArgs) -> Result<(), CliError> {
    let election = if args.election_type.eq_ignore_ascii_case("unclean") {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let kind = args.election_type.to_ascii_uppercase();
    let wanted = partitions(target, &args).await?;
    let results = target
        .admin()
        .elect_leaders(election, wanted.as_deref())
        .await?;
    let mut elected = Vec::new();
    let mut not_needed = Vec::new();
    let mut failed = Vec::new();
    for (tp, r) in results {
        match r {
            Ok(()) => elected.push(tp.to_string()),
            // ELECTION_NOT_NEEDED
            Err(e) if e.code == 84 => not_needed.push(tp.to_string()),
            Err(e) => failed.push((tp, e)),
        }
    }
    let mut out = std::io::stdout().lock();
    if !elected.is_empty() {
        let _ = writeln!(
            out,
            "Successfully completed leader election ({kind}) for partitions {}",
            elected.join(", ")
        );
    }
    if !not_needed.is_empty() {
        let _ = writeln!(
            out,
            "Valid replica already elected for partitions {}",
            not_needed.join(", ")
        );
    }
    if elected.is_empty() && not_needed.is_empty() && failed.is_empty() {
        let _ = writeln!(out, "No partition needed an election ({kind})");
    }
    for (tp, e) in &failed {
        let _ = writeln!(
            out,
            "Error completing leader election ({kind}) for partition: {tp}: {e}"
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Input(format!(
            "{} replica(s) could not be elected",
            failed.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_json_partitions() {
        let ok = parse_json(
            r#"{"partitions": [{"topic": "a", "partition": 0}, {"topic": "b", "partition": 3}]}"#,
        );
        assert_eq!(
            ok,
            Ok(vec![
                TopicPartition::new("a", 0),
                TopicPartition::new("b", 3)
            ])
        );
        assert!(parse_json(r#"{"partitions": [{"topic": "a"}]}"#).is_err());
        assert!(parse_json(r#"{"partitions": [{"topic": "a", "partition": -1}]}"#).is_err());
        assert!(parse_json(r#"{"topics": []}"#).is_err());
        assert!(parse_json("not json").is_err());
    }
}
