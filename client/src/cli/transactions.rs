//! `strom transactions list|describe|describe-producers|abort`, like kafka-transactions.sh.

use std::io::Write;

use super::{CliError, TransactionsCommand};
use crate::TopicPartition;

pub async fn run(target: &super::Target, cmd: TransactionsCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        TransactionsCommand::List => {
            let _ = writeln!(out, "TransactionalId\tCoordinator\tProducerId\tState");
            for t in admin.list_transactions().await? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    t.transactional_id, t.coordinator, t.producer_id, t.state
                );
            }
        }
        TransactionsCommand::Describe { transactional_id } => {
            let t = admin.describe_transaction(&transactional_id).await?;
            let _ = writeln!(
                out,
                "CoordinatorId\tTransactionalId\tProducerId\tProducerEpoch\tTransactionState\tTransactionTimeoutMs\tCurrentTransactionStartTimeMs\tTopicPartitions"
            );
            let partitions: Vec<String> = t.partitions.iter().map(|tp| tp.to_string()).collect();
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                t.coordinator,
                t.transactional_id,
                t.producer_id,
                t.producer_epoch,
                t.state,
                t.timeout_ms,
                if t.start_time_ms < 0 {
                    "None".to_string()
                } else {
                    t.start_time_ms.to_string()
                },
                partitions.join(",")
            );
        }
        TransactionsCommand::DescribeProducers { topic, partition } => {
            let tp = TopicPartition::new(topic, partition);
            let _ = writeln!(
                out,
                "ProducerId\tProducerEpoch\tLatestCoordinatorEpoch\tLastSequence\tLastTimestamp\tCurrentTransactionStartOffset"
            );
            for p in admin.describe_producers(&tp).await? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.producer_id,
                    p.producer_epoch,
                    p.coordinator_epoch,
                    p.last_sequence,
                    p.last_timestamp,
                    if p.current_txn_start_offset < 0 {
                        "None".to_string()
                    } else {
                        p.current_txn_start_offset.to_string()
                    }
                );
            }
        }
        TransactionsCommand::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let tp = TopicPartition::new(topic, partition);
            match (start_offset, producer_id, producer_epoch, coordinator_epoch) {
                (_, Some(id), Some(epoch), Some(coordinator)) => {
                    admin
                        .abort_producer_transaction(&tp, id, epoch, coordinator)
                        .await?;
                    let _ = writeln!(out, "aborted producer {id} (epoch {epoch}) on {tp}");
                }
                (Some(offset), ..) => {
                    let p = admin.abort_transaction(&tp, offset).await?;
                    let _ = writeln!(
                        out,
                        "aborted the transaction of producer {} (epoch {}) starting at offset {offset} on {tp}",
                        p.producer_id, p.producer_epoch
                    );
                }
                _ => {
                    return Err(CliError::Input(
                        "give --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch".into(),
                    ))
                }
            }
        }
    }
    Ok(())
}
