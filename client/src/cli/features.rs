//! `strom features`, like kafka-features.sh: `describe` prints one line per feature in its
//! format (metadata.version levels as Kafka releases), `upgrade` and `downgrade` take
//! `--metadata 4.1` and/or `--feature name=level`, with `--dry-run`.

use std::io::Write;

use super::{CliError, FeatureChangeArgs, FeaturesCommand};
use crate::admin::UpgradeType;
use crate::features::{metadata_version_level, metadata_version_name, METADATA_VERSION};

/// A level as kafka-features.sh shows it: metadata.version as its release.
fn shown(name: &str, level: i16) -> String {
    match (name, metadata_version_name(level)) {
        (METADATA_VERSION, Some(release)) => release.to_string(),
        _ => level.to_string(),
    }
}

fn updates(args: &FeatureChangeArgs) -> Result<Vec<(String, i16)>, CliError> {
    let mut out = args.features.clone();
    if let Some(release) = &args.metadata {
        let level = metadata_version_level(release).ok_or_else(|| {
            CliError::Input(format!(
                "--metadata {release}: not a metadata.version this client knows (3.3-IV3 to {})",
                shown(METADATA_VERSION, crate::features::METADATA_VERSION_MAX)
            ))
        })?;
        if out.iter().any(|(n, _)| n == METADATA_VERSION) {
            return Err(CliError::Input(
                "give metadata.version once: --metadata or --feature metadata.version=N".into(),
            ));
        }
        out.push((METADATA_VERSION.to_string(), level));
    }
    if out.is_empty() {
        return Err(CliError::Input(
            "say what to change: --metadata RELEASE and/or --feature name=level".into(),
        ));
    }
    Ok(out)
}

pub async fn run(target: &super::Target, command: FeaturesCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let (args, upgrade_type, verb) = match command {
        FeaturesCommand::Describe => {
            let meta = target.admin().describe_features().await?;
            for f in &meta.features {
                let _ = writeln!(
                    out,
                    "Feature: {}\tSupportedMinVersion: {}\tSupportedMaxVersion: {}\tFinalizedVersionLevel: {}\tEpoch: {}",
                    f.name,
                    shown(&f.name, f.supported_min),
                    shown(&f.name, f.supported_max),
                    f.finalized.map_or("-".to_string(), |l| shown(&f.name, l)),
                    meta.finalized_epoch
                );
            }
            return Ok(());
        }
        FeaturesCommand::Upgrade(a) => (a, UpgradeType::Upgrade, "upgraded"),
        FeaturesCommand::Downgrade(a) => {
            let t = if a.unsafe_downgrade {
                UpgradeType::UnsafeDowngrade
            } else {
                UpgradeType::SafeDowngrade
            };
            (a, t, "downgraded")
        }
    };
    let wanted = updates(&args)?;
    target
        .admin()
        .update_features(&wanted, upgrade_type, args.dry_run)
        .await?;
    for (name, level) in &wanted {
        let level = shown(name, *level);
        if args.dry_run {
            let _ = writeln!(out, "{name} can be {verb} to {level}");
        } else {
            let _ = writeln!(out, "{name} was {verb} to {level}");
        }
    }
    Ok(())
}
