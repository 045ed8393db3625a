//! The authoriser: may this session do `operation` on this resource? One call per resource a
//! request names, against the ACLs in the metadata image, so every broker decides alike and a
//! new ACL holds everywhere as soon as the image has it.
//!
//! Kafka's rules: super users may do anything; a matching DENY wins; a matching ALLOW of the
//! operation, of ALL, or of an operation that implies it (Read, Write, Delete and Alter imply
//! Describe; AlterConfigs implies DescribeConfigs) allows; a resource with no ACL at all is
//! open only with `--allow-everyone-if-no-acl-found`.

use metadata_quorum::acl::{operation, permission, AclBinding};
use metadata_quorum::MetadataImage;

use super::Session;

/// The name of the one Cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// `--authorizer`: without it every request is allowed.
    pub enabled: bool,
    /// `--super-users`: principals no ACL applies to.
    pub super_users: Vec<String>,
    /// `--allow-everyone-if-no-acl-found`.
    pub allow_if_no_acl: bool,
}

fn applies_to(b: &AclBinding, session: &Session, host: &str) -> bool {
    (b.principal == session.principal || b.principal == "User:*")
        && (b.host == "*" || b.host == host)
}

impl Authorizer {
    pub fn new(enabled: bool, super_users: &[String], allow_if_no_acl: bool) -> Self {
        Self {
            enabled,
            super_users: super_users
                .iter()
                .flat_map(|s| s.split(';'))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            allow_if_no_acl,
        }
    }

    fn is_super(&self, session: &Session) -> bool {
        self.super_users.contains(&session.principal)
    }

    /// Whether `session` may do `op` on the resource `name` of type `resource_type`.
    pub fn allows(
        &self,
        image: &MetadataImage,
        session: &Session,
        op: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if !self.enabled || self.is_super(session) {
            return true;
        }
        let host = session.peer.ip().to_string();
        let mut any_acl = false;
        let mut allowed = false;
        for b in image.acls.applying(resource_type, name) {
            any_acl = true;
            if !applies_to(b, session, &host) {
                continue;
            }
            match b.permission_type {
                permission::DENY if b.operation == op || b.operation == operation::ALL => {
                    return false
                }
                permission::ALLOW
                    if b.operation == operation::ALL
                        || operation::implied_by(op).contains(&b.operation) =>
                {
                    allowed = true
                }
                _ => {}
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }

    /// Whether some ACL lets `session` do `op` on some resource of `resource_type` (KIP-679:
    /// Write on any topic lets a producer be idempotent without IdempotentWrite).
    pub fn allows_any(
        &self,
        image: &MetadataImage,
        session: &Session,
        op: i8,
        resource_type: i8,
    ) -> bool {
        if !self.enabled || self.is_super(session) {
            return true;
        }
        let host = session.peer.ip().to_string();
        image.acls.iter().any(|b| {
            b.resource_type == resource_type
                && b.permission_type == permission::ALLOW
                && (b.operation == op || b.operation == operation::ALL)
                && applies_to(b, session, &host)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metadata_quorum::acl::{pattern, resource};
    use metadata_quorum::MetadataRecord;

    fn session(user: &str) -> Session {
        Session {
            listener: "SASL_PLAINTEXT".into(),
            principal: format!("User:{user}"),
            peer: "10.0.0.7:5000".parse().expect("addr"),
        }
    }

    fn acl(name: &str, pt: i8, user: &str, host: &str, op: i8, perm: i8) -> MetadataRecord {
        MetadataRecord::CreateAcl {
            binding: AclBinding {
                resource_type: resource::TOPIC,
                resource_name: name.into(),
                pattern_type: pt,
                principal: format!("User:{user}"),
                host: host.into(),
                operation: op,
                permission_type: perm,
            },
        }
    }

    #[test]
    fn deny_wins_implied_operations_and_the_no_acl_default() {
        let image = MetadataImage::default()
            .replay(&[
                acl(
                    "orders-",
                    pattern::PREFIXED,
                    "alice",
                    "*",
                    operation::WRITE,
                    permission::ALLOW,
                ),
                acl(
                    "orders-secret",
                    pattern::LITERAL,
                    "alice",
                    "*",
                    operation::ALL,
                    permission::DENY,
                ),
                acl(
                    "audit",
                    pattern::LITERAL,
                    "*",
                    "*",
                    operation::READ,
                    permission::ALLOW,
                ),
                acl(
                    "audit",
                    pattern::LITERAL,
                    "bob",
                    "10.0.0.7",
                    operation::READ,
                    permission::DENY,
                ),
            ])
            .expect("replay");
        let a = Authorizer::new(true, &["User:admin".into()], false);
        let alice = session("alice");
        let topic = |op, name: &str, s: &Session| a.allows(&image, s, op, resource::TOPIC, name);
        assert!(topic(operation::WRITE, "orders-eu", &alice));
        assert!(
            topic(operation::DESCRIBE, "orders-eu", &alice),
            "Write implies Describe"
        );
        assert!(!topic(operation::READ, "orders-eu", &alice));
        assert!(
            !topic(operation::WRITE, "orders-secret", &alice),
            "a Deny beats an Allow"
        );
        assert!(
            !topic(operation::WRITE, "payments", &alice),
            "no ACL: denied by default"
        );
        assert!(topic(operation::READ, "audit", &session("carol")), "User:*");
        assert!(
            !topic(operation::READ, "audit", &session("bob")),
            "denied from bob's host"
        );
        assert!(
            topic(operation::DELETE, "anything", &session("admin")),
            "super user"
        );
        let open = Authorizer::new(true, &[], true);
        assert!(open.allows(
            &image,
            &alice,
            operation::WRITE,
            resource::TOPIC,
            "payments"
        ));
        assert!(!open.allows(&image, &alice, operation::WRITE, resource::TOPIC, "audit"));
        assert!(a.allows_any(&image, &alice, operation::WRITE, resource::TOPIC));
        assert!(!a.allows_any(&image, &session("carol"), operation::WRITE, resource::TOPIC));
        assert!(Authorizer::default().allows(
            &image,
            &alice,
            operation::WRITE,
            resource::TOPIC,
            "payments"
        ));
    }
}
