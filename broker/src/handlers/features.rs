//! UpdateFeatures (0-2, KIP-584): what `kafka-features.sh upgrade|downgrade` and
//! `strom features` send. Goes to the active controller, which applies every update or none;
//! Alter on the cluster when the authoriser is on. The levels are read back through
//! ApiVersions.

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use metadata_quorum::features::{FeatureUpdate, UpgradeType};

use super::str_bytes;
use crate::Broker;

const INVALID_REQUEST: i16 = 42;

pub async fn handle(
    broker: &Broker,
    req: UpdateFeaturesRequest,
    version: i16,
) -> UpdateFeaturesResponse {
    let names: Vec<String> = req
        .feature_updates
        .iter()
        .map(|u| u.feature.to_string())
        .collect();
    let updates: Result<Vec<FeatureUpdate>, String> = req
        .feature_updates
        .iter()
        .map(|u| {
            let upgrade_type = if version == 0 {
                if u.allow_downgrade {
                    UpgradeType::SafeDowngrade
                } else {
                    UpgradeType::Upgrade
                }
            } else {
                UpgradeType::from_code(u.upgrade_type).ok_or_else(|| {
                    format!(
                        "unknown upgrade type {} for feature {} (1 upgrade, 2 safe downgrade, 3 unsafe downgrade)",
                        u.upgrade_type, u.feature
                    )
                })?
            };
            Ok(FeatureUpdate {
                name: u.feature.to_string(),
                level: u.max_version_level,
                upgrade_type,
            })
        })
        .collect();
    let (code, message) = match updates {
        Err(reason) => (INVALID_REQUEST, Some(reason)),
        Ok(updates) => match broker
            .controller
            .update_features(updates, req.validate_only)
            .await
        {
            Ok(Ok(())) => (0, None),
            Ok(Err(e)) => (e.kafka_code(), Some(e.to_string())),
            Err(e) => (e.kafka_code(), Some(e.to_string())),
        },
    };
    // v0-1 answer per feature (with the request's outcome); v2 only at the top.
    let results = if version < 2 {
        names
            .into_iter()
            .map(|name| {
                UpdatableFeatureResult::default()
                    .with_feature(str_bytes(name))
                    .with_error_code(code)
                    .with_error_message(message.clone().map(str_bytes))
            })
            .collect()
    } else {
        Vec::new()
    };
    UpdateFeaturesResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
        .with_results(results)
}
