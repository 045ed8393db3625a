//! Client telemetry (KIP-714): GetTelemetrySubscriptions (0) and PushTelemetry (0), answered
//! as Kafka answers when no client-metrics subscription is configured: a client gets an
//! instance id and an empty list of metrics to send, so it pushes nothing; a push is
//! checked (instance, subscription, size, compression) and dropped. ListConfigResources
//! (0-1, formerly ListClientMetricsResources) lists the config resources there are: topics,
//! brokers and the groups with configs of their own (no client-metrics resources can be
//! configured here yet).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::*;
use parking_lot::Mutex;
use uuid::Uuid;

use super::str_bytes;
use crate::Broker;

/// The one subscription there is: no metrics.
const SUBSCRIPTION_ID: i32 = 0;
/// How often a client asks again for its subscription (Kafka's default interval.ms).
const PUSH_INTERVAL: Duration = Duration::from_secs(300);
/// telemetry.max.bytes.
const TELEMETRY_MAX_BYTES: usize = 1 << 20;
/// zstd, lz4, gzip, snappy (Kafka's order of preference).
const ACCEPTED_COMPRESSION: [i8; 4] = [4, 3, 1, 2];
/// Client instances remembered at most (the oldest are forgotten first).
const MAX_CLIENTS: usize = 100_000;

const INVALID_REQUEST: i16 = 42;
const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
const UNKNOWN_SUBSCRIPTION_ID: i16 = 117;
const TELEMETRY_TOO_LARGE: i16 = 118;

/// Client instances that asked for their subscription, and when.
#[derive(Default)]
pub struct TelemetryClients {
    seen: Mutex<HashMap<Uuid, Instant>>,
}

impl TelemetryClients {
    fn remember(&self, id: Uuid) {
        let mut seen = self.seen.lock();
        let now = Instant::now();
        if seen.len() >= MAX_CLIENTS {
            seen.retain(|_, at| now.duration_since(*at) < PUSH_INTERVAL * 2);
            if seen.len() >= MAX_CLIENTS {
                seen.clear();
            }
        }
        seen.insert(id, now);
    }

    fn known(&self, id: &Uuid) -> bool {
        self.seen.lock().contains_key(id)
    }

    fn forget(&self, id: &Uuid) {
        self.seen.lock().remove(id);
    }
}

pub fn get_subscriptions(
    broker: &Broker,
    req: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let id = if req.client_instance_id.is_nil() {
        Uuid::new_v4()
    } else {
        req.client_instance_id
    };
    broker.telemetry.remember(id);
    GetTelemetrySubscriptionsResponse::default()
        .with_client_instance_id(id)
        .with_subscription_id(SUBSCRIPTION_ID)
        .with_accepted_compression_types(ACCEPTED_COMPRESSION.to_vec())
        .with_push_interval_ms(PUSH_INTERVAL.as_millis() as i32)
        .with_telemetry_max_bytes(TELEMETRY_MAX_BYTES as i32)
        .with_delta_temporality(true)
        .with_requested_metrics(vec![])
}

pub fn push(broker: &Broker, req: PushTelemetryRequest) -> PushTelemetryResponse {
    let code = if req.client_instance_id.is_nil() {
        INVALID_REQUEST
    } else if !broker.telemetry.known(&req.client_instance_id)
        || req.subscription_id != SUBSCRIPTION_ID
    {
        UNKNOWN_SUBSCRIPTION_ID
    } else if req.metrics.len() > TELEMETRY_MAX_BYTES {
        TELEMETRY_TOO_LARGE
    } else if req.compression_type != 0 && !ACCEPTED_COMPRESSION.contains(&req.compression_type) {
        UNSUPPORTED_COMPRESSION_TYPE
    } else {
        0
    };
    if code == 0 && req.terminating {
        broker.telemetry.forget(&req.client_instance_id);
    }
    PushTelemetryResponse::default().with_error_code(code)
}

/// Config resource types: topic 2, broker 4, broker logger 8, client metrics 16, group 32.
const KNOWN_TYPES: [i8; 5] = [2, 4, 8, 16, 32];

pub fn list_config_resources(
    broker: &Broker,
    req: ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    // v0 (ListClientMetricsResources) lists client-metrics resources only.
    let types: Vec<i8> = if version == 0 {
        vec![16]
    } else if req.resource_types.is_empty() {
        KNOWN_TYPES.to_vec()
    } else {
        req.resource_types.clone()
    };
    if types.iter().any(|t| !KNOWN_TYPES.contains(t)) {
        return ListConfigResourcesResponse::default().with_error_code(INVALID_REQUEST);
    }
    let image = broker.image();
    let mut out = Vec::new();
    if types.contains(&2) {
        out.extend(image.topics().map(|t| {
            ConfigResource::default()
                .with_resource_name(str_bytes(t.name.clone()))
                .with_resource_type(2)
        }));
    }
    if types.contains(&4) {
        out.extend(image.brokers.keys().map(|id| {
            ConfigResource::default()
                .with_resource_name(str_bytes(id.to_string()))
                .with_resource_type(4)
        }));
    }
    if types.contains(&32) {
        out.extend(image.group_configs.keys().map(|group| {
            ConfigResource::default()
                .with_resource_name(str_bytes(group.clone()))
                .with_resource_type(32)
        }));
    }
    ListConfigResourcesResponse::default().with_config_resources(out)
}
