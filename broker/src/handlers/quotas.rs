//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas are metadata records,
//! so a limit set through one broker is enforced by every broker right after.

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::quota::{QuotaAlteration, QuotaFilter};

use super::str_bytes;
use crate::Broker;

pub fn describe(
    broker: &Broker,
    req: DescribeClientQuotasRequest,
    _version: i16,
) -> DescribeClientQuotasResponse {
    let filter = match QuotaFilter::from_wire(
        req.components
            .iter()
            .map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref())),
        req.strict,
    ) {
        Ok(f) => f,
        Err(e) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(e.kafka_code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    let image = broker.image();
    let entries = image
        .quotas
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    entity
                        .parts()
                        .into_iter()
                        .map(|(kind, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(str_bytes(kind))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(str_bytes(k.as_str()))
                                .with_value(v.0)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_message(None)
        .with_entries(Some(entries))
}

pub async fn alter(
    broker: &Broker,
    req: AlterClientQuotasRequest,
    _version: i16,
) -> AlterClientQuotasResponse {
    let alterations: Vec<QuotaAlteration> = req
        .entries
        .iter()
        .map(|e| QuotaAlteration {
            entity: e
                .entity
                .iter()
                .map(|p| {
                    (
                        p.entity_type.to_string(),
                        p.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
            ops: e
                .ops
                .iter()
                .map(|o| (o.key.to_string(), (!o.remove).then_some(o.value)))
                .collect(),
        })
        .collect();
    let results = broker
        .controller
        .alter_client_quotas(alterations, req.validate_only)
        .await;
    let entries = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let out = alter_client_quotas_response::EntryData::default()
                .with_error_message(None)
                .with_entity(
                    e.entity
                        .iter()
                        .map(|p| {
                            alter_client_quotas_response::EntityData::default()
                                .with_entity_type(p.entity_type.clone())
                                .with_entity_name(p.entity_name.clone())
                        })
                        .collect(),
                );
            let err = match &results {
                Ok(r) => match r.get(i) {
                    Some(Ok(())) => return out,
                    Some(Err(e)) => (e.kafka_code(), e.to_string()),
                    None => (
                        ResponseError::UnknownServerError.code(),
                        "the controller gave no answer for this entry".to_string(),
                    ),
                },
                Err(e) => (e.kafka_code(), e.to_string()),
            };
            out.with_error_code(err.0)
                .with_error_message(Some(str_bytes(err.1)))
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
