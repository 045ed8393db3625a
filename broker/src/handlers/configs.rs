//! DescribeConfigs (1-4), AlterConfigs (0-2) and IncrementalAlterConfigs (0-1) for topics;
//! for brokers: describing the broker's defaults (its flags, read-only) and its dynamic
//! configs (the replication throttle rates), which can be altered per broker or for all
//! (the empty name); and for groups (resource type 32, KIP-848 and KIP-932): each group's
//! own `consumer.*` and `share.*` settings. Changes go through the metadata quorum as
//! ConfigChange, BrokerConfigChange and GroupConfigChange records, so every broker sees
//! them without a restart.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::configs;
use metadata_quorum::controller::ConfigOp;

use super::str_bytes;
use crate::topic_config::{self, Resolved};
use crate::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
/// Kafka's ConfigSource code of a group's own config.
const SOURCE_GROUP: i8 = 8;
/// Kafka's ConfigSource codes of dynamic broker configs.
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;

fn entry(
    r: &Resolved,
    synonyms: bool,
    docs: bool,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(r.def.name))
        .with_value(Some(str_bytes(r.value.clone())))
        .with_read_only(read_only)
        .with_config_source(r.source)
        .with_config_type(r.def.ty.code())
        .with_documentation(docs.then(|| str_bytes(r.def.doc)))
        .with_synonyms(if synonyms {
            r.synonyms
                .iter()
                .map(|(n, v, s)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(n.clone()))
                        .with_value(Some(str_bytes(v.clone())))
                        .with_source(*s)
                })
                .collect()
        } else {
            vec![]
        })
}

pub fn describe(
    broker: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = req
        .resources
        .iter()
        .map(|res| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let (resolved, read_only) = match res.resource_type {
                RESOURCE_TOPIC => match image.topic(res.resource_name.as_str()) {
                    Some(t) => (topic_config::resolve_all(&broker.config, Some(t)), false),
                    None => {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "topic '{}' does not exist",
                                res.resource_name.as_str()
                            ))))
                    }
                },
                RESOURCE_BROKER
                    if res.resource_name.is_empty()
                        || res.resource_name.as_str() == broker.node_id.to_string() =>
                {
                    (topic_config::resolve_all(&broker.config, None), true)
                }
                RESOURCE_GROUP => match group_configs(broker, &image, res.resource_name.as_str()) {
                    Ok(resolved) => (resolved, false),
                    Err(message) => {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(message)))
                    }
                },
                RESOURCE_BROKER => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!(
                            "this is broker {}; ask broker {} for its configs",
                            broker.node_id,
                            res.resource_name.as_str()
                        ))))
                }
                other => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!(
                            "resource type {other} is not supported"
                        ))))
                }
            };
            let wanted = res.configuration_keys.as_ref();
            let wanted_name =
                |name: &str| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
            let mut configs: Vec<DescribeConfigsResourceResult> = resolved
                .iter()
                .filter(|r| {
                    let name = if res.resource_type == RESOURCE_BROKER {
                        r.def.broker_name
                    } else {
                        r.def.name
                    };
                    wanted_name(name)
                })
                .map(|r| {
                    let mut e = entry(
                        r,
                        req.include_synonyms,
                        req.include_documentation,
                        read_only,
                    );
                    if res.resource_type == RESOURCE_BROKER {
                        e = e.with_name(str_bytes(r.def.broker_name));
                    }
                    e
                })
                .collect();
            if res.resource_type == RESOURCE_BROKER {
                // The dynamic ones: this broker's own value, the cluster default, or Kafka's.
                let own = (!res.resource_name.is_empty()).then_some(broker.node_id);
                for d in configs::DYNAMIC_BROKER_CONFIGS
                    .iter()
                    .filter(|d| wanted_name(d.name))
                {
                    let mut synonyms: Vec<(String, String, i8)> = Vec::new();
                    if let Some(v) =
                        own.and_then(|b| image.broker_configs.get(&Some(b))?.get(d.name))
                    {
                        synonyms.push((d.name.into(), v.clone(), SOURCE_DYNAMIC_BROKER));
                    }
                    if let Some(v) = image.broker_configs.get(&None).and_then(|c| c.get(d.name)) {
                        synonyms.push((d.name.into(), v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER));
                    }
                    synonyms.push((
                        d.name.into(),
                        d.default.into(),
                        topic_config::SOURCE_DEFAULT,
                    ));
                    let r = Resolved {
                        def: d,
                        value: synonyms[0].1.clone(),
                        source: synonyms[0].2,
                        synonyms,
                    };
                    configs.push(entry(
                        &r,
                        req.include_synonyms,
                        req.include_documentation,
                        false,
                    ));
                }
            }
            base.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A group's configs: its own value (source GROUP_CONFIG) or the broker's setting of which
/// it is the group-level form. A group need not exist.
fn group_configs(
    broker: &Broker,
    image: &metadata_quorum::MetadataImage,
    group: &str,
) -> Result<Vec<Resolved>, String> {
    configs::check_group_id(group).map_err(|e| e.to_string())?;
    let share = broker.share.config;
    let consumer = broker.groups.consumer_config();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    Ok(configs::GROUP_CONFIGS
        .iter()
        .map(|def| {
            let broker_value = match def.name {
                configs::CONSUMER_SESSION_TIMEOUT_MS => ms(consumer.session_timeout),
                configs::CONSUMER_HEARTBEAT_INTERVAL_MS => ms(consumer.heartbeat_interval),
                configs::SHARE_SESSION_TIMEOUT_MS => ms(share.session_timeout),
                configs::SHARE_HEARTBEAT_INTERVAL_MS => ms(share.heartbeat_interval),
                configs::SHARE_RECORD_LOCK_DURATION_MS => ms(share.lock_duration),
                configs::SHARE_DELIVERY_COUNT_LIMIT => share.delivery_count_limit.to_string(),
                configs::SHARE_PARTITION_MAX_RECORD_LOCKS => share.max_in_flight.to_string(),
                configs::SHARE_AUTO_OFFSET_RESET => {
                    broker.config.share_auto_offset_reset.to_string()
                }
                _ => def.default.to_string(),
            };
            let broker_source = if broker_value == def.default {
                topic_config::SOURCE_DEFAULT
            } else {
                topic_config::SOURCE_STATIC_BROKER
            };
            let mut synonyms = Vec::new();
            if let Some(v) = image.group_config(group, def.name) {
                synonyms.push((def.name.to_string(), v.to_string(), SOURCE_GROUP));
            }
            synonyms.push((def.broker_name.to_string(), broker_value, broker_source));
            Resolved {
                def,
                value: synonyms[0].1.clone(),
                source: synonyms[0].2,
                synonyms,
            }
        })
        .collect())
}

/// One resource's outcome: (error code, message).
async fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    ops: Vec<ConfigOp>,
    replace: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    if resource_type == RESOURCE_BROKER {
        // "" is the cluster-wide default (Kafka's <default> broker entity).
        let target = match name {
            "" => None,
            n => match n.parse::<i32>() {
                Ok(id) if id >= 0 => Some(id),
                _ => {
                    return (
                        ResponseError::InvalidRequest.code(),
                        Some(format!("'{n}' is not a broker id")),
                    )
                }
            },
        };
        return outcome(
            broker
                .controller
                .alter_broker_configs(target, ops, replace, validate_only)
                .await,
        );
    }
    if resource_type == RESOURCE_GROUP {
        if let Err(e) = check_group_timing(broker, name, &ops, replace) {
            return (e.kafka_code(), Some(e.to_string()));
        }
        return outcome(
            broker
                .controller
                .alter_group_configs(name.to_string(), ops, replace, validate_only)
                .await,
        );
    }
    if resource_type != RESOURCE_TOPIC {
        return (
            ResponseError::InvalidRequest.code(),
            Some(format!(
                "altering resource type {resource_type} is not supported"
            )),
        );
    }
    outcome(
        broker
            .controller
            .alter_configs(name.to_string(), ops, replace, validate_only)
            .await,
    )
}

/// A controller change's outcome as (error code, message).
fn outcome(
    r: Result<
        Result<(), metadata_quorum::MetadataError>,
        metadata_quorum::quorum::rpc::ControllerError,
    >,
) -> (i16, Option<String>) {
    match r {
        Ok(Ok(())) => (0, None),
        Ok(Err(e)) => (e.kafka_code(), Some(e.to_string())),
        Err(e) => (e.kafka_code(), Some(e.to_string())),
    }
}

/// Kafka's rule for a group's timing, on the configs as the change would leave them and
/// this broker's settings for the rest: each session timeout above its heartbeat interval.
fn check_group_timing(
    broker: &Broker,
    group: &str,
    ops: &[ConfigOp],
    replace: bool,
) -> Result<(), metadata_quorum::MetadataError> {
    configs::check_group_id(group)?;
    let after =
        metadata_quorum::controller::group_configs_after(&broker.image(), group, ops, replace)?;
    let (consumer, share) = (broker.groups.consumer_config(), broker.share.config);
    let ms = |key: &str, default: std::time::Duration| {
        after
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default.as_millis() as u64)
    };
    for (session, session_default, heartbeat, heartbeat_default) in [
        (
            configs::CONSUMER_SESSION_TIMEOUT_MS,
            consumer.session_timeout,
            configs::CONSUMER_HEARTBEAT_INTERVAL_MS,
            consumer.heartbeat_interval,
        ),
        (
            configs::SHARE_SESSION_TIMEOUT_MS,
            share.session_timeout,
            configs::SHARE_HEARTBEAT_INTERVAL_MS,
            share.heartbeat_interval,
        ),
    ] {
        let (s, h) = (
            ms(session, session_default),
            ms(heartbeat, heartbeat_default),
        );
        if s <= h {
            return Err(metadata_quorum::MetadataError::InvalidConfig {
                key: session.to_string(),
                reason: format!("{s} must be greater than {heartbeat} ({h})"),
            });
        }
    }
    Ok(())
}

pub async fn alter(
    broker: &Broker,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in &req.resources {
        let ops = res
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => ConfigOp::Set {
                    key: c.name.to_string(),
                    value: v.to_string(),
                },
                None => ConfigOp::Delete {
                    key: c.name.to_string(),
                },
            })
            .collect();
        let (code, message) = apply(
            broker,
            res.resource_type,
            res.resource_name.as_str(),
            ops,
            true,
            req.validate_only,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in &req.resources {
        let ops: Result<Vec<ConfigOp>, String> = res
            .configs
            .iter()
            .map(|c| {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                match (c.config_operation, value) {
                    (0, Some(value)) => Ok(ConfigOp::Set { key, value }),
                    (1, _) => Ok(ConfigOp::Delete { key }),
                    (2, Some(value)) => Ok(ConfigOp::Append { key, value }),
                    (3, Some(value)) => Ok(ConfigOp::Subtract { key, value }),
                    (op, None) if op != 1 => {
                        Err(format!("operation {op} on '{key}' needs a value"))
                    }
                    (op, _) => Err(format!("unknown config operation {op}")),
                }
            })
            .collect();
        let (code, message) = match ops {
            Ok(ops) => {
                apply(
                    broker,
                    res.resource_type,
                    res.resource_name.as_str(),
                    ops,
                    false,
                    req.validate_only,
                )
                .await
            }
            Err(m) => (ResponseError::InvalidConfig.code(), Some(m)),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
