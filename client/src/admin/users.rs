//! SCRAM users, like `kafka-configs.sh --entity-type users --alter --add-config
//! 'SCRAM-SHA-512=[password=...]'`: DescribeUserScramCredentials and
//! AlterUserScramCredentials (KIP-554). The password is salted here; only the salted form
//! travels, and the broker keeps only keys derived from it.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{check, Admin, AdminError};
use crate::auth::scram::Mechanism;
use crate::BrokerError;

/// One user's SCRAM credentials: (mechanism, iterations) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub user: String,
    pub credentials: Vec<(Mechanism, i32)>,
}

/// A change to one user's SCRAM credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramAlteration {
    Upsert {
        user: String,
        mechanism: Mechanism,
        password: String,
        iterations: u32,
    },
    Delete {
        user: String,
        mechanism: Mechanism,
    },
}

impl Admin {
    /// The SCRAM credentials of `users`, or of every user with none named.
    pub async fn describe_user_scram_credentials(
        &mut self,
        users: &[&str],
    ) -> Result<Vec<ScramUser>, AdminError> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(
            (!users.is_empty()).then(|| {
                users
                    .iter()
                    .map(|u| UserName::default().with_name(StrBytes::from_string(u.to_string())))
                    .collect()
            }),
        );
        let r = self.any_send(req, 0).await?;
        check(
            "DescribeUserScramCredentials",
            r.error_code,
            r.error_message.as_deref(),
        )?;
        r.results
            .iter()
            .map(|u| {
                check(
                    format!("user '{}'", u.user.as_str()),
                    u.error_code,
                    u.error_message.as_deref(),
                )?;
                Ok(ScramUser {
                    user: u.user.to_string(),
                    credentials: u
                        .credential_infos
                        .iter()
                        .filter_map(|c| {
                            Mechanism::from_code(c.mechanism).map(|m| (m, c.iterations))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Applies `changes`; each user's come back as one result (all of a user's changes apply
    /// or none do).
    pub async fn alter_user_scram_credentials(
        &mut self,
        changes: &[ScramAlteration],
    ) -> Result<Vec<(String, Result<(), BrokerError>)>, AdminError> {
        let mut req = AlterUserScramCredentialsRequest::default();
        for c in changes {
            match c {
                ScramAlteration::Upsert {
                    user,
                    mechanism,
                    password,
                    iterations,
                } => {
                    let salt = crate::auth::scram::random_salt();
                    let salted = mechanism.salted_password(password.as_bytes(), &salt, *iterations);
                    req.upsertions.push(
                        ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_string(user.clone()))
                            .with_mechanism(mechanism.code())
                            .with_iterations(*iterations as i32)
                            .with_salt(salt.into())
                            .with_salted_password(salted.into()),
                    );
                }
                ScramAlteration::Delete { user, mechanism } => req.deletions.push(
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(user.clone()))
                        .with_mechanism(mechanism.code()),
                ),
            }
        }
        let r = self.any_send(req, 0).await?;
        Ok(r.results
            .iter()
            .map(|u| {
                let result = if u.error_code == 0 {
                    Ok(())
                } else {
                    Err(BrokerError::new(u.error_code, u.error_message.as_deref()))
                };
                (u.user.to_string(), result)
            })
            .collect())
    }
}
