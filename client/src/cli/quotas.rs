//! `strom quotas describe|alter`: client quotas, as `kafka-configs.sh --describe|--alter
//! --entity-type users|clients|ips [--entity-name N | --entity-default]` manages them.

use std::io::Write;

use super::{CliError, QuotaEntityArgs, QuotasCommand, Target};
use crate::admin::quotas::{QuotaEntityPart, QuotaMatch};

/// The entity's parts, `(type, name)` with `None` for a default, in Kafka's order.
fn parts(e: &QuotaEntityArgs) -> Vec<QuotaEntityPart> {
    let mut out = Vec::new();
    let mut part = |kind: &str, name: &Option<String>, default: bool| {
        if let Some(n) = name {
            out.push((kind.to_string(), Some(n.clone())));
        } else if default {
            out.push((kind.to_string(), None));
        }
    };
    part("user", &e.user, e.user_default);
    part("client-id", &e.client_id, e.client_id_default);
    part("ip", &e.ip, e.ip_default);
    out
}

/// `key=value` pairs; the value is a number.
fn parse_configs(items: &[String]) -> Result<Vec<(String, Option<f64>)>, CliError> {
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| {
            let (k, v) = i
                .split_once('=')
                .ok_or_else(|| CliError::Input(format!("--add-config '{i}' is not key=value")))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| CliError::Input(format!("--add-config {k}: '{v}' is not a number")))?;
            Ok((k.trim().to_string(), Some(v)))
        })
        .collect()
}

/// A quota value as kafka-configs.sh shows it: whole numbers without a fraction.
fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

pub async fn run(target: &Target, cmd: QuotasCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    match cmd {
        QuotasCommand::Describe(e) => {
            let wanted = parts(&e);
            let components: Vec<(String, QuotaMatch)> = wanted
                .iter()
                .map(|(k, n)| {
                    let m = n.clone().map_or(QuotaMatch::Default, QuotaMatch::Exact);
                    (k.clone(), m)
                })
                .collect();
            let strict = !components.is_empty();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Entity\tQuotas");
            for entry in admin.describe_client_quotas(&components, strict).await? {
                let values: Vec<String> = entry
                    .values
                    .iter()
                    .map(|(k, v)| format!("{k}={}", show(*v)))
                    .collect();
                let _ = writeln!(out, "{}\t{}", entry.entity_name(), values.join(","));
            }
            Ok(())
        }
        QuotasCommand::Alter {
            entity,
            add_config,
            delete_config,
            validate_only,
        } => {
            let entity = parts(&entity);
            if entity.is_empty() {
                return Err(CliError::Input(
                    "name an entity: --user/--user-default, --client-id/--client-id-default or --ip/--ip-default".into(),
                ));
            }
            let mut ops = parse_configs(&add_config)?;
            ops.extend(
                delete_config
                    .iter()
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| (k.trim().to_string(), None)),
            );
            if ops.is_empty() {
                return Err(CliError::Input(
                    "nothing to change: give --add-config and/or --delete-config".into(),
                ));
            }
            admin
                .alter_client_quotas(&entity, &ops, validate_only)
                .await?;
            let name: Vec<String> = entity
                .iter()
                .map(|(k, n)| format!("{k}={}", n.as_deref().unwrap_or("<default>")))
                .collect();
            println!(
                "{} quotas for {}",
                if validate_only {
                    "Validated"
                } else {
                    "Altered"
                },
                name.join(",")
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_and_entities_parse_as_kafka_configs_takes_them() {
        let ops = parse_configs(&[
            "producer_byte_rate=1048576".into(),
            " request_percentage = 12.5".into(),
        ])
        .expect("parse");
        assert_eq!(
            ops,
            vec![
                ("producer_byte_rate".to_string(), Some(1_048_576.0)),
                ("request_percentage".to_string(), Some(12.5))
            ]
        );
        assert!(parse_configs(&["producer_byte_rate".into()]).is_err());
        assert!(parse_configs(&["producer_byte_rate=fast".into()]).is_err());
        let e = QuotaEntityArgs {
            user: Some("alice".into()),
            client_id_default: true,
            ..Default::default()
        };
        assert_eq!(
            parts(&e),
            vec![
                ("user".to_string(), Some("alice".to_string())),
                ("client-id".to_string(), None)
            ]
        );
        assert_eq!(show(1_048_576.0), "1048576");
        assert_eq!(show(12.5), "12.5");
    }
}
