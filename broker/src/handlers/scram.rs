//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM users are
//! metadata records, so a credential changed through one broker holds on all of them.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::controller::{ScramChange, ScramSecret};
use strom_client::auth::scram::{Credential, Mechanism};

use super::str_bytes;
use crate::Broker;

pub fn describe(
    broker: &Broker,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), c) in &image.scram {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(*mechanism)
                .with_iterations(c.iterations as i32),
        );
    }
    let result = |user: &str, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_credential_infos(infos)
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => by_user
            .into_iter()
            .map(|(u, infos)| result(u, infos))
            .collect(),
        Some(users) => {
            let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            let mut out = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    continue;
                }
                let r = if names[i + 1..].contains(name) {
                    result(name, vec![])
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(str_bytes(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                        ))))
                } else {
                    match by_user.get(name) {
                        Some(infos) => result(name, infos.clone()),
                        None => result(name, vec![])
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Attempt to describe a user credential that does not exist: {name}"
                            )))),
                    }
                };
                out.push(r);
            }
            out
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    broker: &Broker,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    let mut changes = Vec::new();
    for d in &req.deletions {
        changes.push(ScramChange {
            user: d.name.to_string(),
            mechanism: d.mechanism,
            credential: None,
        });
    }
    for u in &req.upsertions {
        let iterations = u.iterations.max(0) as u32;
        // The client salted the password; the keys are derived here and only they are kept.
        // An unknown mechanism or an empty password leaves the keys empty, which the
        // controller refuses (UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL).
        let secret = match Mechanism::from_code(u.mechanism) {
            Some(m) if !u.salted_password.is_empty() => {
                let c = Credential::from_salted_password(
                    m,
                    &u.salted_password,
                    u.salt.to_vec(),
                    iterations,
                );
                ScramSecret {
                    salt: c.salt,
                    iterations,
                    stored_key: c.stored_key,
                    server_key: c.server_key,
                }
            }
            _ => ScramSecret {
                salt: u.salt.to_vec(),
                iterations,
                stored_key: vec![],
                server_key: vec![],
            },
        };
        changes.push(ScramChange {
            user: u.name.to_string(),
            mechanism: u.mechanism,
            credential: Some(secret),
        });
    }
    let results = match broker
        .controller
        .alter_scram_credentials(changes.clone())
        .await
    {
        Ok(results) => results
            .into_iter()
            .map(|(user, r)| {
                let out = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
                match r {
                    Ok(()) => out,
                    Err(e) => out
                        .with_error_code(e.kafka_code())
                        .with_error_message(Some(str_bytes(e.to_string()))),
                }
            })
            .collect(),
        Err(e) => {
            let mut users: Vec<&str> = Vec::new();
            for c in &changes {
                if !users.contains(&c.user.as_str()) {
                    users.push(&c.user);
                }
            }
            users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(str_bytes(u))
                        .with_error_code(e.kafka_code())
                        .with_error_message(Some(str_bytes(e.to_string())))
                })
                .collect()
        }
    };
    AlterUserScramCredentialsResponse::default().with_results(results)
}
