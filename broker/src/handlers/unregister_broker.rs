//! UnregisterBroker (0): the last step of retiring a broker (`kafka-cluster.sh unregister`,
//! `strom cluster decommission`). Goes to the active controller, which refuses while any
//! partition still has a replica on the broker. Administrators only (Alter on the cluster)
//! when the authoriser is on.

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};

use super::str_bytes;
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    req: UnregisterBrokerRequest,
    _version: i16,
) -> UnregisterBrokerResponse {
    let (code, message) = match broker.controller.unregister_broker(req.broker_id.0).await {
        Ok(Ok(())) => (0, None),
        Ok(Err(e)) => (e.kafka_code(), Some(e.to_string())),
        Err(e) => (e.kafka_code(), Some(e.to_string())),
    };
    UnregisterBrokerResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
}
