//! CreateAcls, DescribeAcls and DeleteAcls (v1-3). ACLs are metadata records: a change is
//! committed by the controller and every broker enforces it once its image has it.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::acl::{pattern, AclBinding, AclFilter};

use super::str_bytes;
use crate::Broker;

pub async fn create(broker: &Broker, req: CreateAclsRequest, _version: i16) -> CreateAclsResponse {
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        })
        .collect();
    let results = match broker.controller.create_acls(bindings.clone()).await {
        Ok(results) => results
            .into_iter()
            .map(|r| match r {
                Ok(()) => AclCreationResult::default(),
                Err(e) => AclCreationResult::default()
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            })
            .collect(),
        Err(e) => bindings
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
    };
    CreateAclsResponse::default().with_results(results)
}

fn filter(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission_type: i8,
) -> Result<AclFilter, String> {
    if resource_type < 1 || operation < 1 || permission_type < 1 {
        return Err("the filter has an UNKNOWN field".into());
    }
    if !(pattern::ANY..=pattern::PREFIXED).contains(&pattern_type) {
        return Err(format!("invalid pattern type {pattern_type}"));
    }
    Ok(AclFilter {
        resource_type,
        resource_name: resource_name.map(str::to_string),
        pattern_type,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation,
        permission_type,
    })
}

pub fn describe(broker: &Broker, req: DescribeAclsRequest, _version: i16) -> DescribeAclsResponse {
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(reason) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(reason)))
        }
    };
    let image = broker.image();
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.resource_name.as_str(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(b.principal.clone()))
                    .with_host(str_bytes(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn delete(broker: &Broker, req: DeleteAclsRequest, _version: i16) -> DeleteAclsResponse {
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|f| f.clone().ok()).collect();
    // One list of matches per valid filter, in order; or why none could be deleted.
    let (mut matched, failure) = match broker.controller.delete_acls(valid).await {
        Ok(d) => (d.into_iter(), None),
        Err(e) => (Vec::new().into_iter(), Some(e)),
    };
    let results = parsed
        .into_iter()
        .map(|f| match (f, &failure) {
            (Err(reason), _) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(reason))),
            (Ok(_), Some(e)) => DeleteAclsFilterResult::default()
                .with_error_code(e.kafka_code())
                .with_error_message(Some(str_bytes(e.to_string()))),
            (Ok(_), None) => DeleteAclsFilterResult::default().with_matching_acls(
                matched
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(str_bytes(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(str_bytes(b.principal))
                            .with_host(str_bytes(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission_type)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
