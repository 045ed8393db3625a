//! InitProducerId (0-4). Without a transactional id: an idempotent producer's id, from
//! blocks the active controller hands out (an AllocateProducerIds record each), so ids are
//! unique across the cluster. With one: the transaction coordinator's answer (a bumped
//! epoch that fences the previous incarnation; see [`crate::txn`]).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    };
    let answer = |(pid, epoch): (i64, i16)| {
        InitProducerIdResponse::default()
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
    };
    // KIP-360 (v3+): a producer that knows its id and epoch sends them.
    let known = (version >= 3 && req.producer_id.0 >= 0 && req.producer_epoch >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = &req.transactional_id {
        return match crate::txn::ops::init_producer_id(
            broker,
            id.as_str(),
            req.transaction_timeout_ms,
            known,
        )
        .await
        {
            Ok(r) => answer(r),
            Err(e) => fail(e),
        };
    }
    // An idempotent producer asks for the next epoch of the id it has.
    if let Some((pid, epoch)) = known {
        if epoch < i16::MAX - 1 {
            return answer((pid, epoch + 1));
        }
    }
    match allocate_producer_id(broker).await {
        Ok(id) => answer((id, 0)),
        Err(e) => fail(e),
    }
}

/// A producer id no other producer has, from this broker's block (a new block from the
/// controller when it runs out).
pub async fn allocate_producer_id(broker: &Broker) -> Result<i64, ResponseError> {
    let mut block = broker.producer_ids.lock().await;
    if block.0 >= block.1 {
        match broker.controller.allocate_producer_ids().await {
            Ok((first, count)) => {
                info!(first, count, "producer id block allocated");
                *block = (first, first + count);
            }
            Err(e) => {
                warn!(error = %e, "no producer ids from the controller");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    let id = block.0;
    block.0 += 1;
    Ok(id)
}
