//! InitProducerId (0-4) for idempotent producers. Ids come from blocks the active controller
//! hands out (an AllocateProducerIds record each), so they are unique across the cluster.
//! Transactions are not supported: a transactional id is refused.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        warn!("InitProducerId with a transactional id: transactions are not supported");
        return fail(ResponseError::TransactionalIdAuthorizationFailed);
    }
    // KIP-360: a producer that knows its id asks for the next epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    let mut block = broker.producer_ids.lock().await;
    if block.0 >= block.1 {
        match broker.controller.allocate_producer_ids().await {
            Ok((first, count)) => {
                info!(first, count, "producer id block allocated");
                *block = (first, first + count);
            }
            Err(e) => {
                warn!(error = %e, "no producer ids from the controller");
                return fail(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    let id = block.0;
    block.0 += 1;
    InitProducerIdResponse::default()
        .with_producer_id(id.into())
        .with_producer_epoch(0)
}
