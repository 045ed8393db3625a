//! Access control lists with Kafka's model: a binding allows or denies one principal, from one
//! host, one operation on resources named literally or by prefix. Codes are Kafka's wire
//! codes, so requests and records carry the same numbers.
//!
//! The image keeps them indexed by resource type and name, so a check looks at the literal
//! name, the `*` wildcard and each prefix of the name: the cost does not grow with the number
//! of ACLs on other resources.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Resource types (Kafka's `ResourceType`).
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Pattern types (Kafka's `PatternType`).
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Operations (Kafka's `AclOperation`).
pub mod operation {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;

    /// The operations that, allowed, also allow `op` (Kafka's implied operations).
    pub fn implied_by(op: i8) -> &'static [i8] {
        match op {
            DESCRIBE => &[DESCRIBE, READ, WRITE, DELETE, ALTER],
            DESCRIBE_CONFIGS => &[DESCRIBE_CONFIGS, ALTER_CONFIGS],
            READ => &[READ],
            WRITE => &[WRITE],
            CREATE => &[CREATE],
            DELETE => &[DELETE],
            ALTER => &[ALTER],
            CLUSTER_ACTION => &[CLUSTER_ACTION],
            ALTER_CONFIGS => &[ALTER_CONFIGS],
            IDEMPOTENT_WRITE => &[IDEMPOTENT_WRITE],
            CREATE_TOKENS => &[CREATE_TOKENS],
            DESCRIBE_TOKENS => &[DESCRIBE_TOKENS],
            _ => &[],
        }
    }
}

/// Permission types (Kafka's `AclPermissionType`).
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    /// LITERAL or PREFIXED.
    pub pattern_type: i8,
    /// `User:name`, or `User:*` for every user.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    pub operation: i8,
    /// ALLOW or DENY.
    pub permission_type: i8,
}

impl AclBinding {
    /// Why this binding cannot be stored, if it cannot (Kafka's CreateAcls checks).
    pub fn invalid(&self) -> Option<String> {
        if !matches!(
            self.resource_type,
            resource::TOPIC
                | resource::GROUP
                | resource::CLUSTER
                | resource::TRANSACTIONAL_ID
                | resource::DELEGATION_TOKEN
                | resource::USER
        ) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some(format!(
                "the pattern type of an ACL must be LITERAL (3) or PREFIXED (4), not {}",
                self.pattern_type
            ));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != "kafka-cluster" {
            return Some("the Cluster resource is named kafka-cluster".into());
        }
        if self.pattern_type == pattern::PREFIXED && self.resource_name == "*" {
            return Some("a PREFIXED pattern cannot be '*'".into());
        }
        if !(operation::ALL..=operation::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission_type, permission::ALLOW | permission::DENY) {
            return Some(format!("invalid permission type {}", self.permission_type));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Some(format!(
                    "'{}' is not a principal (User:name)",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Some("the host is empty ('*' for any)".into());
        }
        None
    }
}

/// A DescribeAcls / DeleteAcls filter: `None` fields and ANY codes match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    /// ANY, MATCH, LITERAL or PREFIXED.
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let code = |want: i8, any: i8, have: i8| want == any || want == have;
        if !code(self.resource_type, resource::ANY, b.resource_type)
            || !code(self.operation, operation::ANY, b.operation)
            || !code(self.permission_type, permission::ANY, b.permission_type)
        {
            return false;
        }
        if self.principal.as_ref().is_some_and(|p| *p != b.principal)
            || self.host.as_ref().is_some_and(|h| *h != b.host)
        {
            return false;
        }
        match (self.pattern_type, &self.resource_name) {
            (pattern::ANY, None) => true,
            (pattern::ANY, Some(n)) => *n == b.resource_name,
            (pattern::LITERAL | pattern::PREFIXED, n) => {
                b.pattern_type == self.pattern_type
                    && n.as_ref().is_none_or(|n| *n == b.resource_name)
            }
            // MATCH: the bindings that would apply to a resource of this name.
            (pattern::MATCH, None) => true,
            (pattern::MATCH, Some(n)) => match b.pattern_type {
                pattern::LITERAL => b.resource_name == *n || b.resource_name == "*",
                pattern::PREFIXED => n.starts_with(&b.resource_name),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Every ACL, indexed for checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclIndex {
    all: BTreeSet<AclBinding>,
    /// resource type → name → literal bindings, `*` included.
    literal: HashMap<i8, HashMap<String, Vec<AclBinding>>>,
    /// resource type → prefix → prefixed bindings.
    prefixed: HashMap<i8, HashMap<String, Vec<AclBinding>>>,
    /// The longest prefix stored, so a check tries no longer ones.
    longest_prefix: usize,
}

impl AclIndex {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.all.iter()
    }

    pub fn contains(&self, b: &AclBinding) -> bool {
        self.all.contains(b)
    }

    pub fn add(&mut self, b: AclBinding) {
        if !self.all.insert(b.clone()) {
            return;
        }
        let map = if b.pattern_type == pattern::PREFIXED {
            self.longest_prefix = self.longest_prefix.max(b.resource_name.len());
            &mut self.prefixed
        } else {
            &mut self.literal
        };
        map.entry(b.resource_type)
            .or_default()
            .entry(b.resource_name.clone())
            .or_default()
            .push(b);
    }

    pub fn remove(&mut self, b: &AclBinding) {
        if !self.all.remove(b) {
            return;
        }
        let map = if b.pattern_type == pattern::PREFIXED {
            &mut self.prefixed
        } else {
            &mut self.literal
        };
        if let Some(names) = map.get_mut(&b.resource_type) {
            if let Some(v) = names.get_mut(&b.resource_name) {
                v.retain(|x| x != b);
                if v.is_empty() {
                    names.remove(&b.resource_name);
                }
            }
        }
    }

    /// The bindings that apply to resource `name` of type `resource_type`: literal on the
    /// name, literal `*`, and prefixed on any prefix of the name.
    pub fn applying<'a>(
        &'a self,
        resource_type: i8,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.literal.get(&resource_type);
        let prefixed = self.prefixed.get(&resource_type);
        let literal = [name, "*"]
            .into_iter()
            .filter_map(move |n| literal.and_then(|m| m.get(n)))
            .flatten();
        let prefixes = (1..=name.len().min(self.longest_prefix))
            .filter(move |i| name.is_char_boundary(*i))
            .filter_map(move |i| prefixed.and_then(|m| m.get(&name[..i])))
            .flatten();
        literal.chain(prefixes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission_type: perm,
        }
    }

    #[test]
    fn the_index_finds_literal_wildcard_and_prefixed_bindings() {
        let mut idx = AclIndex::default();
        let orders = acl(
            resource::TOPIC,
            "orders-",
            pattern::PREFIXED,
            "User:a",
            operation::WRITE,
            permission::ALLOW,
        );
        let star = acl(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:b",
            operation::READ,
            permission::ALLOW,
        );
        let exact = acl(
            resource::TOPIC,
            "orders-eu",
            pattern::LITERAL,
            "User:c",
            operation::READ,
            permission::DENY,
        );
        let group = acl(
            resource::GROUP,
            "orders-eu",
            pattern::LITERAL,
            "User:c",
            operation::READ,
            permission::ALLOW,
        );
        for b in [&orders, &star, &exact, &group] {
            idx.add(b.clone());
        }
        idx.add(orders.clone());
        assert_eq!(idx.len(), 4);
        let found: BTreeSet<&AclBinding> = idx.applying(resource::TOPIC, "orders-eu").collect();
        assert_eq!(found, BTreeSet::from([&orders, &star, &exact]));
        let found: Vec<&AclBinding> = idx.applying(resource::TOPIC, "payments").collect();
        assert_eq!(found, vec![&star]);
        idx.remove(&star);
        assert_eq!(idx.applying(resource::TOPIC, "payments").count(), 0);
        assert_eq!(
            idx.applying(resource::TOPIC, "orders").count(),
            0,
            "shorter than the prefix"
        );
    }

    #[test]
    fn filters_match_as_kafka_describes() {
        let b = acl(
            resource::TOPIC,
            "orders-",
            pattern::PREFIXED,
            "User:a",
            operation::WRITE,
            permission::ALLOW,
        );
        let any = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission_type: permission::ANY,
        };
        assert!(any.matches(&b));
        let m = |f: AclFilter| f.matches(&b);
        assert!(m(AclFilter {
            pattern_type: pattern::MATCH,
            resource_name: Some("orders-eu".into()),
            ..any.clone()
        }));
        assert!(!m(AclFilter {
            pattern_type: pattern::MATCH,
            resource_name: Some("payments".into()),
            ..any.clone()
        }));
        assert!(!m(AclFilter {
            pattern_type: pattern::LITERAL,
            ..any.clone()
        }));
        assert!(m(AclFilter {
            pattern_type: pattern::PREFIXED,
            resource_name: Some("orders-".into()),
            ..any.clone()
        }));
        assert!(!m(AclFilter {
            principal: Some("User:b".into()),
            ..any.clone()
        }));
        assert!(!m(AclFilter {
            operation: operation::READ,
            ..any.clone()
        }));
    }

    #[test]
    fn bad_bindings_are_named() {
        let good = acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:a",
            operation::READ,
            permission::ALLOW,
        );
        assert_eq!(good.invalid(), None);
        for bad in [
            AclBinding {
                pattern_type: pattern::MATCH,
                ..good.clone()
            },
            AclBinding {
                resource_type: resource::ANY,
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                operation: operation::ANY,
                ..good.clone()
            },
            AclBinding {
                permission_type: permission::ANY,
                ..good.clone()
            },
            AclBinding {
                resource_type: resource::CLUSTER,
                resource_name: "c".into(),
                ..good.clone()
            },
        ] {
            assert!(bad.invalid().is_some(), "{bad:?}");
        }
    }
}
