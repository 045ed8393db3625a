//! Client quotas, like `kafka-configs.sh --entity-type users|clients|ips`:
//! DescribeClientQuotas and AlterClientQuotas (KIP-546). An entity is a list of
//! (entity type, name) parts — `user`, `client-id`, `ip` — where no name means the default.

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use super::{check, Admin, AdminError};

/// (entity type, name); `None` is the default entity of that type.
pub type QuotaEntityPart = (String, Option<String>);

/// How a describe filter matches one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// This name.
    Exact(String),
    /// The default entity.
    Default,
    /// Any name, or the default.
    Any,
}

/// An entity and its quotas, as DescribeClientQuotas answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuotaEntry {
    pub entity: Vec<QuotaEntityPart>,
    pub values: Vec<(String, f64)>,
}

impl ClientQuotaEntry {
    /// `user=alice,client-id=<default>`.
    pub fn entity_name(&self) -> String {
        self.entity
            .iter()
            .map(|(k, n)| format!("{k}={}", n.as_deref().unwrap_or("<default>")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    /// The entities (and their quotas) matching every component; with `strict`, only those
    /// with no other entity types. No components and not strict: every entity.
    pub async fn describe_client_quotas(
        &mut self,
        components: &[(String, QuotaMatch)],
        strict: bool,
    ) -> Result<Vec<ClientQuotaEntry>, AdminError> {
        let req = DescribeClientQuotasRequest::default()
            .with_components(
                components
                    .iter()
                    .map(|(kind, m)| {
                        let (match_type, name) = match m {
                            QuotaMatch::Exact(n) => (0, Some(s(n))),
                            QuotaMatch::Default => (1, None),
                            QuotaMatch::Any => (2, None),
                        };
                        ComponentData::default()
                            .with_entity_type(s(kind))
                            .with_match_type(match_type)
                            .with_match(name)
                    })
                    .collect(),
            )
            .with_strict(strict);
        let r = self.any_send(req, 1).await?;
        check(
            "DescribeClientQuotas",
            r.error_code,
            r.error_message.as_deref(),
        )?;
        Ok(r.entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| ClientQuotaEntry {
                entity: e
                    .entity
                    .into_iter()
                    .map(|p| {
                        (
                            p.entity_type.to_string(),
                            p.entity_name.map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                values: e
                    .values
                    .into_iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            })
            .collect())
    }

    /// Sets (`Some`) and removes (`None`) quota keys of one entity, all or nothing.
    pub async fn alter_client_quotas(
        &mut self,
        entity: &[QuotaEntityPart],
        ops: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let req = AlterClientQuotasRequest::default()
            .with_entries(vec![EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(k, n)| {
                            EntityData::default()
                                .with_entity_type(s(k))
                                .with_entity_name(n.as_deref().map(s))
                        })
                        .collect(),
                )
                .with_ops(
                    ops.iter()
                        .map(|(k, v)| {
                            OpData::default()
                                .with_key(s(k))
                                .with_value(v.unwrap_or(0.0))
                                .with_remove(v.is_none())
                        })
                        .collect(),
                )])
            .with_validate_only(validate_only);
        let r = self.any_send(req, 1).await?;
        for e in &r.entries {
            check(
                "AlterClientQuotas",
                e.error_code,
                e.error_message.as_deref(),
            )?;
        }
        Ok(())
    }
}
