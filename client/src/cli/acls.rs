//! `strom acls list|add|remove`, with kafka-acls.sh's options: `--allow-principal` /
//! `--deny-principal`, `--operation` (repeatable), one of `--topic`, `--group`, `--cluster`,
//! `--transactional-id`, `--resource-pattern-type literal|prefixed` (match|any for list and
//! remove), `--allow-host` / `--deny-host`.

use std::io::Write;

use super::{AclArgs, AclsCommand, CliError, Target};
use crate::admin::acls::{code_of, Acl, OPERATIONS, PATTERN_TYPES};

const ANY: i8 = 1;

/// (resource type, name) from the resource options; `None` when none is given.
fn resource(a: &AclArgs) -> Result<Option<(i8, String)>, CliError> {
    let given: Vec<(i8, String)> = [
        a.topic.clone().map(|t| (2, t)),
        a.group.clone().map(|g| (3, g)),
        a.cluster.then(|| (4, "kafka-cluster".to_string())),
        a.transactional_id.clone().map(|t| (5, t)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.len() {
        0 => Ok(None),
        1 => Ok(given.into_iter().next()),
        _ => Err(CliError::Input(
            "give one of --topic, --group, --cluster, --transactional-id".into(),
        )),
    }
}

fn pattern(a: &AclArgs, default: i8) -> Result<i8, CliError> {
    match &a.resource_pattern_type {
        None => Ok(default),
        Some(p) => code_of(PATTERN_TYPES, p).ok_or_else(|| {
            CliError::Input(format!(
                "--resource-pattern-type '{p}' is not literal, prefixed, match or any"
            ))
        }),
    }
}

fn operations(a: &AclArgs, default: i8) -> Result<Vec<i8>, CliError> {
    if a.operation.is_empty() {
        return Ok(vec![default]);
    }
    a.operation
        .iter()
        .map(|o| {
            code_of(OPERATIONS, o)
                .filter(|c| *c != ANY || default == ANY)
                .ok_or_else(|| CliError::Input(format!("--operation '{o}' is not an ACL operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)")))
        })
        .collect()
}

/// (principal, permission) pairs, and the host of each.
fn principals(a: &AclArgs) -> Vec<(String, i8, String)> {
    let allow_host = a.allow_host.clone().unwrap_or_else(|| "*".into());
    let deny_host = a.deny_host.clone().unwrap_or_else(|| "*".into());
    a.allow_principal
        .iter()
        .map(|p| (p.clone(), 3, allow_host.clone()))
        .chain(
            a.deny_principal
                .iter()
                .map(|p| (p.clone(), 2, deny_host.clone())),
        )
        .collect()
}

pub async fn run(target: &Target, cmd: AclsCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    match cmd {
        AclsCommand::Add(a) => {
            let (rt, name) = resource(&a)?.ok_or_else(|| {
                CliError::Input("give --topic, --group, --cluster or --transactional-id".into())
            })?;
            let ps = principals(&a);
            if ps.is_empty() {
                return Err(CliError::Input(
                    "give --allow-principal or --deny-principal (User:name)".into(),
                ));
            }
            let mut acls = Vec::new();
            for op in operations(&a, 2)? {
                for (principal, permission, host) in &ps {
                    acls.push(Acl {
                        resource_type: rt,
                        resource_name: Some(name.clone()),
                        pattern_type: pattern(&a, 3)?,
                        principal: Some(principal.clone()),
                        host: Some(host.clone()),
                        operation: op,
                        permission_type: *permission,
                    });
                }
            }
            admin.create_acls(&acls).await?;
            for acl in &acls {
                eprintln!("added {acl}");
            }
        }
        AclsCommand::List(a) => {
            let filter = filter(&a)?.pop().unwrap_or(Acl {
                resource_type: ANY,
                resource_name: None,
                pattern_type: ANY,
                principal: None,
                host: None,
                operation: ANY,
                permission_type: ANY,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Resource\tPrincipal\tHost\tOperation\tPermission");
            for acl in admin.describe_acls(&filter).await? {
                let _ = writeln!(out, "{acl}");
            }
        }
        AclsCommand::Remove(a) => {
            let filters = filter(&a)?;
            if resource(&a)?.is_none()
                && a.allow_principal.is_empty()
                && a.deny_principal.is_empty()
            {
                return Err(CliError::Input(
                    "name a resource or a principal: removing every ACL is not done by accident"
                        .into(),
                ));
            }
            for acl in admin.delete_acls(&filters).await? {
                eprintln!("removed {acl}");
            }
        }
    }
    Ok(())
}

/// Filters for list and remove: ANY where an option is not given.
fn filter(a: &AclArgs) -> Result<Vec<Acl>, CliError> {
    let (rt, name) = match resource(a)? {
        Some((rt, n)) => (rt, Some(n)),
        None => (ANY, None),
    };
    let pt = pattern(a, if name.is_some() { 3 } else { ANY })?;
    let mut ps: Vec<(Option<String>, i8, Option<String>)> = principals(a)
        .into_iter()
        .map(|(p, perm, host)| (Some(p), perm, (host != "*").then_some(host)))
        .collect();
    if ps.is_empty() {
        ps.push((None, ANY, None));
    }
    let mut out = Vec::new();
    for op in operations(a, ANY)? {
        for (principal, permission, host) in &ps {
            out.push(Acl {
                resource_type: rt,
                resource_name: name.clone(),
                pattern_type: pt,
                principal: principal.clone(),
                host: host.clone(),
                operation: op,
                permission_type: *permission,
            });
        }
    }
    Ok(out)
}
