//! ACLs, like `kafka-acls.sh`: CreateAcls, DescribeAcls and DeleteAcls, with Kafka's names
//! for resource types, pattern types, operations and permissions.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::{check, Admin, AdminError};

/// Kafka's codes and names: (code, name), for resource types, pattern types, operations and
/// permission types.
pub const RESOURCE_TYPES: &[(i8, &str)] = &[
    (1, "Any"),
    (2, "Topic"),
    (3, "Group"),
    (4, "Cluster"),
    (5, "TransactionalId"),
    (6, "DelegationToken"),
    (7, "User"),
];
pub const PATTERN_TYPES: &[(i8, &str)] =
    &[(1, "ANY"), (2, "MATCH"), (3, "LITERAL"), (4, "PREFIXED")];
pub const OPERATIONS: &[(i8, &str)] = &[
    (1, "Any"),
    (2, "All"),
    (3, "Read"),
    (4, "Write"),
    (5, "Create"),
    (6, "Delete"),
    (7, "Alter"),
    (8, "Describe"),
    (9, "ClusterAction"),
    (10, "DescribeConfigs"),
    (11, "AlterConfigs"),
    (12, "IdempotentWrite"),
    (13, "CreateTokens"),
    (14, "DescribeTokens"),
];
pub const PERMISSIONS: &[(i8, &str)] = &[(1, "ANY"), (2, "DENY"), (3, "ALLOW")];

/// The name of `code` in `table`.
pub fn name_of(table: &[(i8, &'static str)], code: i8) -> &'static str {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("Unknown", |(_, n)| n)
}

/// The code of `name` in `table`, ignoring case, '-' and '_'.
pub fn code_of(table: &[(i8, &str)], name: &str) -> Option<i8> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    table
        .iter()
        .find(|(_, n)| norm(n) == norm(name))
        .map(|(c, _)| *c)
}

/// One ACL binding, or (with ANY codes and `None` names) a filter of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}\t{}\t{}\t{}\t{}",
            name_of(RESOURCE_TYPES, self.resource_type),
            name_of(PATTERN_TYPES, self.pattern_type),
            self.resource_name.as_deref().unwrap_or("*"),
            self.principal.as_deref().unwrap_or("*"),
            self.host.as_deref().unwrap_or("*"),
            name_of(OPERATIONS, self.operation),
            name_of(PERMISSIONS, self.permission_type),
        )
    }
}

fn s(v: &Option<String>) -> Option<StrBytes> {
    v.as_ref().map(|v| StrBytes::from_string(v.clone()))
}

impl Admin {
    /// Creates `acls`; the first refusal is the error.
    pub async fn create_acls(&mut self, acls: &[Acl]) -> Result<(), AdminError> {
        let req = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type)
                        .with_resource_name(s(&a.resource_name).unwrap_or_default())
                        .with_resource_pattern_type(a.pattern_type)
                        .with_principal(s(&a.principal).unwrap_or_default())
                        .with_host(s(&a.host).unwrap_or_else(|| StrBytes::from_static_str("*")))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission_type)
                })
                .collect(),
        );
        let r = self.any_send(req, 3).await?;
        for (a, res) in acls.iter().zip(&r.results) {
            check(
                format!("ACL {a}"),
                res.error_code,
                res.error_message.as_deref(),
            )?;
        }
        Ok(())
    }

    /// The ACLs `filter` matches.
    pub async fn describe_acls(&mut self, filter: &Acl) -> Result<Vec<Acl>, AdminError> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(s(&filter.resource_name))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(s(&filter.principal))
            .with_host_filter(s(&filter.host))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission_type);
        let r = self.any_send(req, 3).await?;
        check("DescribeAcls", r.error_code, r.error_message.as_deref())?;
        let mut out = Vec::new();
        for res in &r.resources {
            for a in &res.acls {
                out.push(Acl {
                    resource_type: res.resource_type,
                    resource_name: Some(res.resource_name.to_string()),
                    pattern_type: res.pattern_type,
                    principal: Some(a.principal.to_string()),
                    host: Some(a.host.to_string()),
                    operation: a.operation,
                    permission_type: a.permission_type,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the ACLs each filter matches; returns them.
    pub async fn delete_acls(&mut self, filters: &[Acl]) -> Result<Vec<Acl>, AdminError> {
        let req = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type)
                        .with_resource_name_filter(s(&f.resource_name))
                        .with_pattern_type_filter(f.pattern_type)
                        .with_principal_filter(s(&f.principal))
                        .with_host_filter(s(&f.host))
                        .with_operation(f.operation)
                        .with_permission_type(f.permission_type)
                })
                .collect(),
        );
        let r = self.any_send(req, 3).await?;
        let mut out = Vec::new();
        for res in &r.filter_results {
            check("DeleteAcls", res.error_code, res.error_message.as_deref())?;
            for m in &res.matching_acls {
                out.push(Acl {
                    resource_type: m.resource_type,
                    resource_name: Some(m.resource_name.to_string()),
                    pattern_type: m.pattern_type,
                    principal: Some(m.principal.to_string()),
                    host: Some(m.host.to_string()),
                    operation: m.operation,
                    permission_type: m.permission_type,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip_loosely() {
        assert_eq!(code_of(OPERATIONS, "describe-configs"), Some(10));
        assert_eq!(code_of(OPERATIONS, "IDEMPOTENT_WRITE"), Some(12));
        assert_eq!(code_of(RESOURCE_TYPES, "transactional-id"), Some(5));
        assert_eq!(code_of(PATTERN_TYPES, "prefixed"), Some(4));
        assert_eq!(code_of(OPERATIONS, "fly"), None);
        assert_eq!(name_of(PERMISSIONS, 2), "DENY");
    }
}
