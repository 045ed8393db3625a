//! Feature flags (KIP-584, KIP-778): cluster-wide levels the active controller finalizes,
//! which clients read from ApiVersions (v3+) and operators change with UpdateFeatures
//! (`kafka-features.sh`, `strom features`). `metadata.version` names the Kafka release whose
//! metadata behaviour the cluster offers; `kraft.version` 1 means controller voters can be
//! added and removed at run time (KIP-853).

use serde::{Deserialize, Serialize};

use crate::{MetadataError, MetadataImage, MetadataRecord};

pub use strom_client::features::{
    metadata_version_level, metadata_version_name, KRAFT_VERSION, METADATA_VERSION,
    METADATA_VERSION_MAX, METADATA_VERSION_MIN, TRANSACTION_VERSION,
};

/// A feature this build supports: the range of levels it can run at, and the level a new
/// cluster starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFeature {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub bootstrap: i16,
}

pub const SUPPORTED: [SupportedFeature; 3] = [
    SupportedFeature {
        name: METADATA_VERSION,
        min: METADATA_VERSION_MIN,
        max: METADATA_VERSION_MAX,
        bootstrap: METADATA_VERSION_MAX,
    },
    SupportedFeature {
        name: KRAFT_VERSION,
        min: 0,
        max: 1,
        bootstrap: 1,
    },
    SupportedFeature {
        name: TRANSACTION_VERSION,
        min: 0,
        max: 2,
        bootstrap: 2,
    },
];

/// A `--release-version` ("3.9", "4.0-IV1") as its `metadata.version` level, or why not.
pub fn parse_release(s: &str) -> Result<i16, String> {
    metadata_version_level(s).ok_or_else(|| {
        format!(
            "'{s}' is not a metadata.version this build supports (3.3-IV3 to {})",
            metadata_version_name(METADATA_VERSION_MAX).unwrap_or("?")
        )
    })
}

pub fn supported(name: &str) -> Option<&'static SupportedFeature> {
    SUPPORTED.iter().find(|f| f.name == name)
}

/// `kraft.version` 1 needs `metadata.version` 3.9-IV0 or later, as in Kafka.
const KRAFT_VERSION_1_METADATA_VERSION: i16 = 21;
/// `transaction.version` 1 and 2 need `metadata.version` 4.0-IV2 or later, as in Kafka.
const TRANSACTION_VERSION_METADATA_VERSION: i16 = 24;

/// The records that finalize every supported feature for a new cluster, at
/// `metadata_version` when given (and the `kraft.version` it allows). A cluster from before
/// feature levels gets none on its own: until an operator upgrades, its levels are not
/// finalized, so a build newer than some of its nodes never writes a record they cannot read.
pub fn bootstrap_records(
    image: &MetadataImage,
    metadata_version: Option<i16>,
) -> Vec<MetadataRecord> {
    let mv = metadata_version.map_or(METADATA_VERSION_MAX, |l| {
        l.clamp(METADATA_VERSION_MIN, METADATA_VERSION_MAX)
    });
    SUPPORTED
        .iter()
        .filter(|f| !image.features.contains_key(f.name))
        .map(|f| MetadataRecord::FeatureLevel {
            name: f.name.to_string(),
            level: match f.name {
                METADATA_VERSION => mv,
                KRAFT_VERSION if mv < KRAFT_VERSION_1_METADATA_VERSION => 0,
                TRANSACTION_VERSION if mv < TRANSACTION_VERSION_METADATA_VERSION => 0,
                _ => f.bootstrap,
            },
        })
        .filter(|r| !matches!(r, MetadataRecord::FeatureLevel { level: 0, .. }))
        .collect()
}

/// What UpdateFeatures may do to a level (its `upgrade_type`; v0's `allow_downgrade` maps
/// to `SafeDowngrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

impl UpgradeType {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Upgrade),
            2 => Some(Self::SafeDowngrade),
            3 => Some(Self::UnsafeDowngrade),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUpdate {
    pub name: String,
    /// The new finalized level; 0 removes the feature.
    pub level: i16,
    pub upgrade_type: UpgradeType,
}

fn refuse(reason: String) -> MetadataError {
    MetadataError::FeatureUpdate { reason }
}

/// The records one update makes, checked against what this build supports, the level
/// finalized now, and `metadata_version`, the level metadata.version has once the whole
/// request applies. Downgrades are refused for both features: a lower `metadata.version`
/// could not read records a higher one wrote, and `kraft.version` 1 cannot be undone once
/// voters changed.
pub fn update(
    image: &MetadataImage,
    u: &FeatureUpdate,
    metadata_version: i16,
) -> Result<Vec<MetadataRecord>, MetadataError> {
    let Some(f) = supported(&u.name) else {
        return Err(refuse(format!(
            "the controller does not support the {} feature",
            u.name
        )));
    };
    let current = image.features.get(f.name).copied().unwrap_or(0);
    if u.level == current {
        return Ok(vec![]);
    }
    if u.level < 0 || (u.level > 0 && (u.level < f.min || u.level > f.max)) {
        return Err(refuse(format!(
            "invalid update version {} for feature {}: this cluster supports {} to {}",
            u.level, f.name, f.min, f.max
        )));
    }
    if u.level > current {
        if u.upgrade_type != UpgradeType::Upgrade {
            return Err(refuse(format!(
                "invalid update version {} for feature {}: cannot downgrade to a newer version (finalized: {current})",
                u.level, f.name
            )));
        }
    } else {
        if u.upgrade_type == UpgradeType::Upgrade {
            return Err(refuse(format!(
                "invalid update version {} for feature {}: cannot downgrade from {current} without setting the upgrade type to a safe or unsafe downgrade",
                u.level, f.name
            )));
        }
        return Err(refuse(match f.name {
            METADATA_VERSION => format!(
                "refusing to downgrade metadata.version from {current} to {}: records written at the newer version could not be read back",
                u.level
            ),
            _ => format!(
                "refusing to downgrade {} from {current} to {}: downgrades are not supported",
                f.name, u.level
            ),
        }));
    }
    if f.name == KRAFT_VERSION && metadata_version < KRAFT_VERSION_1_METADATA_VERSION {
        return Err(refuse(format!(
            "kraft.version {} needs metadata.version 3.9-IV0 ({KRAFT_VERSION_1_METADATA_VERSION}) or later; upgrade metadata.version first",
            u.level
        )));
    }
    if f.name == TRANSACTION_VERSION && metadata_version < TRANSACTION_VERSION_METADATA_VERSION {
        return Err(refuse(format!(
            "transaction.version {} needs metadata.version 4.0-IV2 ({TRANSACTION_VERSION_METADATA_VERSION}) or later; upgrade metadata.version first",
            u.level
        )));
    }
    Ok(vec![MetadataRecord::FeatureLevel {
        name: f.name.to_string(),
        level: u.level,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, level: i16, upgrade_type: UpgradeType) -> FeatureUpdate {
        FeatureUpdate {
            name: name.into(),
            level,
            upgrade_type,
        }
    }

    #[test]
    fn a_new_cluster_finalizes_every_feature_once() {
        let image = MetadataImage::default();
        let records = bootstrap_records(&image, None);
        assert_eq!(records.len(), 3);
        assert_eq!(
            bootstrap_records(&image, Some(17)),
            vec![MetadataRecord::FeatureLevel {
                name: METADATA_VERSION.into(),
                level: 17
            }],
            "kraft.version 1 needs 3.9-IV0"
        );
        let image = image.replay(&records).expect("replay");
        assert_eq!(image.features.get(METADATA_VERSION), Some(&27));
        assert_eq!(image.features.get(KRAFT_VERSION), Some(&1));
        assert_eq!(image.features.get(TRANSACTION_VERSION), Some(&2));
        assert_eq!(
            bootstrap_records(&MetadataImage::default(), Some(23))
                .iter()
                .filter(|r| matches!(r, MetadataRecord::FeatureLevel { name, .. } if name == TRANSACTION_VERSION))
                .count(),
            0,
            "transaction.version 2 needs 4.0-IV2"
        );
        assert_eq!(
            image.features_epoch, 2,
            "the offset of the last feature record"
        );
        assert!(bootstrap_records(&image, None).is_empty());
    }

    #[test]
    fn upgrades_within_the_supported_range_only() {
        let image = MetadataImage::default()
            .replay(&[MetadataRecord::FeatureLevel {
                name: METADATA_VERSION.into(),
                level: 17,
            }])
            .expect("replay");
        let ok =
            update(&image, &up(METADATA_VERSION, 25, UpgradeType::Upgrade), 25).expect("upgrade");
        assert_eq!(ok.len(), 1);
        assert!(
            update(&image, &up(METADATA_VERSION, 17, UpgradeType::Upgrade), 17)
                .expect("no change")
                .is_empty()
        );
        for bad in [
            up(METADATA_VERSION, 28, UpgradeType::Upgrade),
            up(METADATA_VERSION, 3, UpgradeType::Upgrade),
            up(METADATA_VERSION, 15, UpgradeType::Upgrade),
            up(METADATA_VERSION, 15, UpgradeType::SafeDowngrade),
            up(METADATA_VERSION, 15, UpgradeType::UnsafeDowngrade),
            up(METADATA_VERSION, 0, UpgradeType::UnsafeDowngrade),
            up(METADATA_VERSION, 25, UpgradeType::SafeDowngrade),
            up("group.version", 1, UpgradeType::Upgrade),
            up(KRAFT_VERSION, -1, UpgradeType::Upgrade),
        ] {
            let e = update(&image, &bad, 17).expect_err(&format!("{bad:?}"));
            assert_eq!(e.kafka_code(), 95, "{e}");
        }
        let kraft = up(KRAFT_VERSION, 1, UpgradeType::Upgrade);
        let e = update(&image, &kraft, 17).expect_err("kraft.version 1 at 3.7");
        assert!(e.to_string().contains("3.9-IV0"), "{e}");
        assert_eq!(
            update(&image, &kraft, 21)
                .expect("kraft.version 0 -> 1 with 3.9")
                .len(),
            1
        );
        let tv2 = up(TRANSACTION_VERSION, 2, UpgradeType::Upgrade);
        let e = update(&image, &tv2, 23).expect_err("transaction.version 2 at 4.0-IV1");
        assert!(e.to_string().contains("4.0-IV2"), "{e}");
        assert_eq!(update(&image, &tv2, 24).expect("with 4.0-IV2").len(), 1);
        assert_eq!(
            update(
                &image,
                &up(TRANSACTION_VERSION, 3, UpgradeType::Upgrade),
                27
            )
            .expect_err("beyond 2")
            .kafka_code(),
            95
        );
    }
}
