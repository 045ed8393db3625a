//! ApiVersions (0-3), and with v3 the feature levels (KIP-584): what this build supports and
//! what the cluster finalized, from the broker's metadata image. The unsupported-version
//! fallback (KIP-511) is in `handlers::handle`.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::ApiVersionsResponse;
use metadata_quorum::features;

use super::str_bytes;
use crate::protocol::versions;
use crate::Broker;

pub fn handle(broker: &Broker) -> ApiVersionsResponse {
    let image = broker.image();
    let finalized: Vec<FinalizedFeatureKey> = image
        .features
        .iter()
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(str_bytes(name.clone()))
                .with_min_version_level(*level)
                .with_max_version_level(*level)
        })
        .collect();
    versions::api_versions_response(0)
        .with_supported_features(
            features::SUPPORTED
                .iter()
                .map(|f| {
                    SupportedFeatureKey::default()
                        .with_name(str_bytes(f.name.to_string()))
                        .with_min_version(f.min)
                        .with_max_version(f.max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(if finalized.is_empty() {
            -1
        } else {
            image.features_epoch
        })
        .with_finalized_features(finalized)
}
