//! Feature flags (KIP-584) as clients and tools name them: `metadata.version` levels and the
//! Kafka releases they stand for (what `kafka-features.sh --metadata 4.1` takes), shared by
//! the `strom features` CLI and the controller.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

pub const METADATA_VERSION: &str = "metadata.version";
pub const KRAFT_VERSION: &str = "kraft.version";
/// 2: transaction version 2 (KIP-890 part 2): the epoch is bumped at every transaction's
/// end and partitions join a transaction when written to.
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// Kafka's `metadata.version` levels from 3.3-IV3 (7, the oldest KRaft release Kafka 4
/// accepts) to 4.1-IV1 (27).
const METADATA_VERSIONS: [&str; 21] = [
    "3.3-IV3", "3.4-IV0", "3.5-IV0", "3.5-IV1", "3.5-IV2", "3.6-IV0", "3.6-IV1", "3.6-IV2",
    "3.7-IV0", "3.7-IV1", "3.7-IV2", "3.7-IV3", "3.7-IV4", "3.8-IV0", "3.9-IV0", "4.0-IV0",
    "4.0-IV1", "4.0-IV2", "4.0-IV3", "4.1-IV0", "4.1-IV1",
];
pub const METADATA_VERSION_MIN: i16 = 7;
pub const METADATA_VERSION_MAX: i16 = METADATA_VERSION_MIN + METADATA_VERSIONS.len() as i16 - 1;

/// The release a `metadata.version` level stands for ("4.1-IV1").
pub fn metadata_version_name(level: i16) -> Option<&'static str> {
    let i = usize::try_from(level.checked_sub(METADATA_VERSION_MIN)?).ok()?;
    METADATA_VERSIONS.get(i).copied()
}

/// The `metadata.version` level of a release: "4.1-IV1" exactly, or "4.1" for its latest
/// level.
pub fn metadata_version_level(release: &str) -> Option<i16> {
    let i = METADATA_VERSIONS
        .iter()
        .rposition(|v| *v == release || v.split('-').next() == Some(release))?;
    Some(METADATA_VERSION_MIN + i as i16)
}

/// One feature as ApiVersions (v3+) reports it: the range this broker supports, and the
/// level the cluster finalized (None: not finalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: String,
    pub supported_min: i16,
    pub supported_max: i16,
    pub finalized: Option<i16>,
}

/// What DescribeFeatures (ApiVersions v3) answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureMetadata {
    pub features: Vec<Feature>,
    /// The metadata offset of the last feature change (-1: none finalized).
    pub finalized_epoch: i64,
}

/// The ApiVersions request (v3) that also asks for the feature levels, naming this client.
pub fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strom"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

impl FeatureMetadata {
    /// The supported ranges and finalized levels of an ApiVersions (v3) answer, by name.
    pub fn from_response(r: &ApiVersionsResponse) -> Self {
        let mut features: BTreeMap<String, Feature> = r
            .supported_features
            .iter()
            .map(|f| {
                let name = f.name.to_string();
                let feature = Feature {
                    name: name.clone(),
                    supported_min: f.min_version,
                    supported_max: f.max_version,
                    finalized: None,
                };
                (name, feature)
            })
            .collect();
        for f in &r.finalized_features {
            features
                .entry(f.name.to_string())
                .or_insert_with(|| Feature {
                    name: f.name.to_string(),
                    supported_min: 0,
                    supported_max: 0,
                    finalized: None,
                })
                .finalized = Some(f.max_version_level);
        }
        Self {
            features: features.into_values().collect(),
            finalized_epoch: r.finalized_features_epoch,
        }
    }

    /// The level the cluster finalized for `name` (0: not finalized, as Kafka reads it).
    pub fn finalized(&self, name: &str) -> i16 {
        self.features
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.finalized)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_map_to_kafka_levels() {
        assert_eq!(metadata_version_name(7), Some("3.3-IV3"));
        assert_eq!(metadata_version_name(21), Some("3.9-IV0"));
        assert_eq!(metadata_version_name(27), Some("4.1-IV1"));
        assert_eq!(METADATA_VERSION_MAX, 27);
        assert_eq!(metadata_version_name(28), None);
        assert_eq!(metadata_version_name(6), None);
        assert_eq!(metadata_version_level("4.0"), Some(25));
        assert_eq!(metadata_version_level("3.7-IV2"), Some(17));
        assert_eq!(metadata_version_level("2.8"), None);
    }
}
