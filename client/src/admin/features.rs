//! Feature levels (KIP-584): DescribeFeatures is ApiVersions v3 to any broker, as Kafka's
//! admin client does it; UpdateFeatures goes to any broker, which forwards it to the active
//! controller.

use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::UpdateFeaturesRequest;
use kafka_protocol::protocol::StrBytes;

use super::{check, Admin, AdminError};
use crate::features::FeatureMetadata;

/// How UpdateFeatures may move a level (Kafka's `FeatureUpdate.UpgradeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeType {
    Upgrade = 1,
    SafeDowngrade = 2,
    UnsafeDowngrade = 3,
}

impl Admin {
    /// The features a broker supports and the levels the cluster finalized.
    pub async fn describe_features(&mut self) -> Result<FeatureMetadata, AdminError> {
        let r = self
            .any_send(crate::features::api_versions_request(), 3)
            .await?;
        check("ApiVersions", r.error_code, None)?;
        Ok(FeatureMetadata::from_response(&r))
    }

    /// Sets finalized levels (`kafka-features.sh upgrade|downgrade`); all of them or, when
    /// the controller refuses one, none. `validate_only` checks without changing anything.
    pub async fn update_features(
        &mut self,
        updates: &[(String, i16)],
        upgrade_type: UpgradeType,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let req = UpdateFeaturesRequest::default()
            .with_timeout_ms(60_000)
            .with_validate_only(validate_only)
            .with_feature_updates(
                updates
                    .iter()
                    .map(|(name, level)| {
                        FeatureUpdateKey::default()
                            .with_feature(StrBytes::from_string(name.clone()))
                            .with_max_version_level(*level)
                            .with_upgrade_type(upgrade_type as i8)
                    })
                    .collect(),
            );
        let r = self.any_send(req, 1).await?;
        for f in &r.results {
            check(
                format!("feature {}", f.feature),
                f.error_code,
                f.error_message.as_deref(),
            )?;
        }
        check("UpdateFeatures", r.error_code, r.error_message.as_deref())
    }
}
