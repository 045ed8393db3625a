//! Client quotas (KIP-546 AlterClientQuotas / DescribeClientQuotas): limits set for a user,
//! a client id, both, or an IP address, each part either named or the `<default>`, kept as
//! metadata records so every broker enforces the same limits right after a change.
//!
//! Which limit applies to a request follows Kafka's precedence, most specific first:
//!
//! ```text
//!   user=U, client-id=C         user=<default>, client-id=C        client-id=C
//!   user=U, client-id=<default> user=<default>, client-id=<default> client-id=<default>
//!   user=U                      user=<default>
//! ```
//!
//! and the parts of the entity that matched say how clients share the limit: a limit set for
//! `user=<default>` gives every user their own budget of that size, one set for `user=alice`
//! is shared by all of alice's clients.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::controller::ControllerResult;
use crate::{MetadataError, MetadataRecord};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The quota keys a user/client-id entity takes, and whether each must be a whole number
/// (Kafka's LONG keys).
const CLIENT_KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];
/// The quota keys an IP entity takes.
const IP_KEYS: &[(&str, bool)] = &[(CONNECTION_CREATION_RATE, true)];

/// One part of an entity: a name, or the default for that entity type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// From the wire, where the default is a null name.
    pub fn from_wire(name: Option<&str>) -> Self {
        name.map_or(Self::Default, |n| Self::Named(n.to_string()))
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            Self::Default => None,
            Self::Named(n) => Some(n),
        }
    }
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("<default>"),
            Self::Named(n) => f.write_str(n),
        }
    }
}

/// What a quota is set for. Valid entities have a user, a client id or both, or an IP alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
    pub ip: Option<EntityName>,
}

impl QuotaEntity {
    /// From the wire's (entity type, name) pairs, refusing unknown types, repeated types and
    /// combinations Kafka refuses.
    pub fn from_parts<'a>(
        parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, MetadataError> {
        let mut e = QuotaEntity::default();
        for (kind, name) in parts {
            let slot = match kind {
                USER => &mut e.user,
                CLIENT_ID => &mut e.client_id,
                IP => &mut e.ip,
                other => {
                    return Err(invalid(format!(
                        "Unhandled client quota entity type: {other}"
                    )))
                }
            };
            if slot.is_some() {
                return Err(invalid(format!(
                    "Duplicate {kind} entity type in the quota entity"
                )));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if e.user.is_none() && e.client_id.is_none() && e.ip.is_none() {
            return Err(invalid("Invalid empty client quota entity".into()));
        }
        if e.ip.is_some() && (e.user.is_some() || e.client_id.is_some()) {
            return Err(invalid(
                "Invalid quota entity combination: an ip entity cannot be combined with a user or client-id".into(),
            ));
        }
        if let Some(EntityName::Named(ip)) = &e.ip {
            // One spelling per address, so that lookups by the peer's address find it.
            let addr: IpAddr = ip
                .parse()
                .map_err(|_| invalid(format!("{ip} is not a valid IP address")))?;
            e.ip = Some(EntityName::Named(addr.to_string()));
        }
        Ok(e)
    }

    /// The (entity type, name) pairs, in Kafka's order.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, u.to_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.to_wire()));
        }
        if let Some(i) = &self.ip {
            out.push((IP, i.to_wire()));
        }
        out
    }

    fn keys(&self) -> &'static [(&'static str, bool)] {
        if self.ip.is_some() {
            IP_KEYS
        } else {
            CLIENT_KEYS
        }
    }
}

impl std::fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .parts()
            .into_iter()
            .map(|(k, n)| format!("{k}={}", n.unwrap_or("<default>")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A quota's value. Compared by its bits, so that records and images can be `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// The parts of the entity whose limit applies to a request, with the request's own names:
/// requests with the same scope share one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaScope {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

/// Every quota, by entity then key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaIndex {
    entries: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
    /// How many entities set each key: a key nobody sets is answered without a lookup.
    key_counts: BTreeMap<String, usize>,
}

impl QuotaIndex {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn set(&mut self, entity: &QuotaEntity, key: &str, value: Option<f64>) {
        match value {
            Some(v) => {
                let values = self.entries.entry(entity.clone()).or_default();
                if values.insert(key.to_string(), QuotaValue(v)).is_none() {
                    *self.key_counts.entry(key.to_string()).or_default() += 1;
                }
            }
            None => {
                let Some(values) = self.entries.get_mut(entity) else {
                    return;
                };
                if values.remove(key).is_some() {
                    if let Some(n) = self.key_counts.get_mut(key) {
                        *n -= 1;
                        if *n == 0 {
                            self.key_counts.remove(key);
                        }
                    }
                }
                if values.is_empty() {
                    self.entries.remove(entity);
                }
            }
        }
    }

    pub fn get(&self, entity: &QuotaEntity, key: &str) -> Option<f64> {
        self.entries.get(entity)?.get(key).map(|v| v.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<String, QuotaValue>)> {
        self.entries.iter()
    }

    /// The limit on `key` for requests of `user` (the principal's name, without `User:`) with
    /// `client_id`, and who shares it; `None` when no quota applies.
    pub fn client_quota(
        &self,
        user: &str,
        client_id: &str,
        key: &str,
    ) -> Option<(QuotaScope, f64)> {
        if !self.key_counts.contains_key(key) {
            return None;
        }
        let named = |n: &str| Some(EntityName::Named(n.to_string()));
        let default = || Some(EntityName::Default);
        let candidates = [
            (named(user), named(client_id)),
            (named(user), default()),
            (named(user), None),
            (default(), named(client_id)),
            (default(), default()),
            (default(), None),
            (None, named(client_id)),
            (None, default()),
        ];
        candidates.into_iter().find_map(|(u, c)| {
            let scope = QuotaScope {
                user: u.is_some().then(|| user.to_string()),
                client_id: c.is_some().then(|| client_id.to_string()),
            };
            let entity = QuotaEntity {
                user: u,
                client_id: c,
                ip: None,
            };
            self.get(&entity, key).map(|v| (scope, v))
        })
    }

    /// The connection creation rate allowed from `ip`: its own, or the IP default.
    pub fn ip_connection_rate(&self, ip: &IpAddr) -> Option<f64> {
        if !self.key_counts.contains_key(CONNECTION_CREATION_RATE) {
            return None;
        }
        [EntityName::Named(ip.to_string()), EntityName::Default]
            .into_iter()
            .find_map(|name| {
                let entity = QuotaEntity {
                    ip: Some(name),
                    ..Default::default()
                };
                self.get(&entity, CONNECTION_CREATION_RATE)
            })
    }
}

/// How a DescribeClientQuotas component matches one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchName {
    /// match_type 0: this name.
    Exact(String),
    /// match_type 1: the default.
    Default,
    /// match_type 2: any name or the default.
    Any,
}

/// A DescribeClientQuotas filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaFilter {
    pub components: Vec<(String, MatchName)>,
    /// Only entities with exactly the filtered types (else they may have more).
    pub strict: bool,
}

impl QuotaFilter {
    /// From the wire's components: (entity type, match type, match).
    pub fn from_wire<'a>(
        components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
        strict: bool,
    ) -> Result<Self, MetadataError> {
        let mut out: Vec<(String, MatchName)> = Vec::new();
        for (kind, match_type, name) in components {
            if ![USER, CLIENT_ID, IP].contains(&kind) {
                return Err(invalid(format!(
                    "Custom entity type '{kind}' not supported"
                )));
            }
            if out.iter().any(|(k, _)| k == kind) {
                return Err(invalid(format!(
                    "Duplicate {kind} filter component entity type"
                )));
            }
            let m = match (match_type, name) {
                (0, Some(n)) => MatchName::Exact(n.to_string()),
                (0, None) => MatchName::Default,
                (1, None) => MatchName::Default,
                (2, None) => MatchName::Any,
                (1 | 2, Some(_)) => {
                    return Err(invalid(format!(
                        "A match name is not allowed with match type {match_type}"
                    )))
                }
                (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
            };
            out.push((kind.to_string(), m));
        }
        let has = |k: &str| out.iter().any(|(kind, _)| kind == k);
        if has(IP) && (has(USER) || has(CLIENT_ID)) {
            return Err(invalid(
                "Invalid entity filter component combination: ip with user or client-id".into(),
            ));
        }
        Ok(Self {
            components: out,
            strict,
        })
    }

    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        let part = |kind: &str| match kind {
            USER => entity.user.as_ref(),
            CLIENT_ID => entity.client_id.as_ref(),
            _ => entity.ip.as_ref(),
        };
        let each = self
            .components
            .iter()
            .all(|(kind, m)| match (part(kind), m) {
                (None, _) => false,
                (Some(_), MatchName::Any) => true,
                (Some(n), MatchName::Default) => *n == EntityName::Default,
                (Some(n), MatchName::Exact(x)) => matches!(n, EntityName::Named(v) if v == x),
            });
        each && (!self.strict || entity.parts().len() == self.components.len())
    }
}

/// One entry of AlterClientQuotas: keys to set (`Some`) or remove (`None`) for an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaAlteration {
    /// The (entity type, name) pairs as the client sent them; checked by the controller.
    pub entity: Vec<(String, Option<String>)>,
    pub ops: Vec<(String, Option<f64>)>,
}

impl Eq for QuotaAlteration {}

/// AlterClientQuotas: each entry is checked and applied whole or refused; with
/// `validate_only` nothing is written.
pub fn alter_client_quotas(
    alterations: &[QuotaAlteration],
    validate_only: bool,
) -> ControllerResult<Vec<Result<(), MetadataError>>> {
    let mut records = Vec::new();
    let mut results = Vec::new();
    for a in alterations {
        match check_alteration(a) {
            Ok(r) => {
                if !validate_only {
                    records.extend(r);
                }
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    ControllerResult {
        records,
        response: results,
    }
}

fn check_alteration(a: &QuotaAlteration) -> Result<Vec<MetadataRecord>, MetadataError> {
    let entity = QuotaEntity::from_parts(a.entity.iter().map(|(k, n)| (k.as_str(), n.as_deref())))?;
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (key, value) in &a.ops {
        let Some((_, whole)) = entity.keys().iter().find(|(k, _)| *k == key.as_str()) else {
            return Err(invalid(format!(
                "Invalid configuration key {key} for a {} entity",
                if entity.ip.is_some() {
                    "ip"
                } else {
                    "user/client-id"
                }
            )));
        };
        if seen.contains(&key.as_str()) {
            return Err(invalid(format!("Duplicate quota key {key}")));
        }
        seen.push(key);
        if let Some(v) = value {
            if !v.is_finite() || *v <= 0.0 {
                return Err(invalid(format!(
                    "Quota {key} must be a number greater than 0, not {v}"
                )));
            }
            if *whole && (v - v.round()).abs() > 1e-6 {
                return Err(invalid(format!(
                    "Quota {key} must be a whole number, not {v}"
                )));
            }
        }
        out.push(MetadataRecord::ClientQuota {
            entity: entity.clone(),
            key: key.clone(),
            value: value.map(QuotaValue),
        });
    }
    Ok(out)
}

fn invalid(reason: String) -> MetadataError {
    MetadataError::InvalidRequest { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(parts: &[(&str, Option<&str>)]) -> QuotaEntity {
        QuotaEntity::from_parts(parts.iter().copied()).expect("valid entity")
    }

    type Parts<'a> = &'a [(&'a str, Option<&'a str>)];

    fn index(quotas: &[(Parts<'_>, &str, f64)]) -> QuotaIndex {
        let mut idx = QuotaIndex::default();
        for (parts, key, v) in quotas {
            idx.set(&entity(parts), key, Some(*v));
        }
        idx
    }

    #[test]
    fn the_most_specific_entity_wins_and_names_the_sharing_scope() {
        let idx = index(&[
            (&[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 1.0),
            (&[(USER, None)], PRODUCER_BYTE_RATE, 2.0),
            (&[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 3.0),
            (
                &[(USER, Some("alice")), (CLIENT_ID, Some("app"))],
                PRODUCER_BYTE_RATE,
                4.0,
            ),
        ]);
        let q = |u: &str, c: &str| idx.client_quota(u, c, PRODUCER_BYTE_RATE);
        let scope = |u: Option<&str>, c: Option<&str>| QuotaScope {
            user: u.map(String::from),
            client_id: c.map(String::from),
        };
        assert_eq!(
            q("alice", "app"),
            Some((scope(Some("alice"), Some("app")), 4.0))
        );
        assert_eq!(q("alice", "other"), Some((scope(Some("alice"), None), 3.0)));
        // The user default gives bob his own budget, keyed by his name.
        assert_eq!(q("bob", "app"), Some((scope(Some("bob"), None), 2.0)));
        assert_eq!(idx.client_quota("bob", "app", CONSUMER_BYTE_RATE), None);
        let only_clients = index(&[(&[(CLIENT_ID, None)], CONSUMER_BYTE_RATE, 5.0)]);
        assert_eq!(
            only_clients.client_quota("bob", "app", CONSUMER_BYTE_RATE),
            Some((scope(None, Some("app")), 5.0))
        );
    }

    #[test]
    fn removing_the_last_key_forgets_the_entity() {
        let mut idx = index(&[(&[(USER, Some("a"))], PRODUCER_BYTE_RATE, 1.0)]);
        idx.set(&entity(&[(USER, Some("a"))]), PRODUCER_BYTE_RATE, None);
        assert!(idx.is_empty());
        assert_eq!(idx.client_quota("a", "c", PRODUCER_BYTE_RATE), None);
    }

    #[test]
    fn ip_quotas_are_looked_up_by_address_then_default() {
        let idx = index(&[
            (&[(IP, Some("127.0.0.2"))], CONNECTION_CREATION_RATE, 7.0),
            (&[(IP, None)], CONNECTION_CREATION_RATE, 3.0),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(idx.ip_connection_rate(&ip("127.0.0.2")), Some(7.0));
        assert_eq!(idx.ip_connection_rate(&ip("127.0.0.1")), Some(3.0));
        // IPv6 spellings are made one.
        let e = entity(&[(IP, Some("0:0:0:0:0:0:0:1"))]);
        assert_eq!(e.ip, Some(EntityName::Named("::1".into())));
    }

    #[test]
    fn bad_entities_and_values_are_refused_whole() {
        let alter = |parts: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]| {
            let a = QuotaAlteration {
                entity: parts
                    .iter()
                    .map(|(k, n)| (k.to_string(), n.map(String::from)))
                    .collect(),
                ops: ops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            };
            alter_client_quotas(&[a], false)
        };
        let refused = |r: ControllerResult<Vec<Result<(), MetadataError>>>| {
            r.records.is_empty()
                && matches!(r.response[..], [Err(MetadataError::InvalidRequest { .. })])
        };
        assert!(refused(alter(&[], &[(PRODUCER_BYTE_RATE, Some(1.0))])));
        assert!(refused(alter(
            &[("group", Some("g"))],
            &[(PRODUCER_BYTE_RATE, Some(1.0))]
        )));
        assert!(refused(alter(&[(USER, Some("a")), (USER, Some("b"))], &[])));
        assert!(refused(alter(&[(IP, None), (USER, None)], &[])));
        assert!(refused(alter(&[(IP, Some("not-an-ip"))], &[])));
        assert!(refused(alter(
            &[(IP, None)],
            &[(PRODUCER_BYTE_RATE, Some(1.0))]
        )));
        assert!(refused(alter(
            &[(USER, None)],
            &[(CONNECTION_CREATION_RATE, Some(1.0))]
        )));
        assert!(refused(alter(
            &[(USER, None)],
            &[(PRODUCER_BYTE_RATE, Some(1.5))]
        )));
        assert!(refused(alter(
            &[(USER, None)],
            &[(PRODUCER_BYTE_RATE, Some(-1.0))]
        )));
        assert!(refused(alter(
            &[(USER, None)],
            &[(PRODUCER_BYTE_RATE, Some(1.0)), (PRODUCER_BYTE_RATE, None)]
        )));
        let ok = alter(
            &[(USER, Some("a")), (CLIENT_ID, None)],
            &[(REQUEST_PERCENTAGE, Some(12.5)), (CONSUMER_BYTE_RATE, None)],
        );
        assert_eq!(ok.response, vec![Ok(())]);
        assert_eq!(ok.records.len(), 2);
    }

    #[test]
    fn filters_match_exact_default_and_any_strictly_or_not() {
        let alice_app = entity(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))]);
        let alice = entity(&[(USER, Some("alice"))]);
        let default_user = entity(&[(USER, None)]);
        let f = |c: &[(&str, i8, Option<&str>)], strict| {
            QuotaFilter::from_wire(c.iter().copied(), strict).expect("valid filter")
        };
        let user_alice = f(&[(USER, 0, Some("alice"))], false);
        assert!(user_alice.matches(&alice) && user_alice.matches(&alice_app));
        assert!(!user_alice.matches(&default_user));
        let strict = f(&[(USER, 0, Some("alice"))], true);
        assert!(strict.matches(&alice) && !strict.matches(&alice_app));
        let defaults = f(&[(USER, 1, None)], false);
        assert!(defaults.matches(&default_user) && !defaults.matches(&alice));
        let any = f(&[(USER, 2, None)], true);
        assert!(any.matches(&default_user) && any.matches(&alice) && !any.matches(&alice_app));
        assert!(f(&[], false).matches(&alice_app));
        assert!(QuotaFilter::from_wire([(USER, 1, Some("x"))], false).is_err());
        assert!(QuotaFilter::from_wire([(USER, 2, None), (USER, 2, None)], false).is_err());
        assert!(QuotaFilter::from_wire([("topic", 2, None)], false).is_err());
    }
}
