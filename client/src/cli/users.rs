//! `strom users list|add|remove`: SCRAM users, as `kafka-configs.sh --entity-type users`
//! manages them.

use std::io::Write;

use super::{CliError, Target, UsersCommand};
use crate::admin::ScramAlteration;
use crate::auth::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

fn mechanisms(name: Option<&str>) -> Result<Vec<Mechanism>, CliError> {
    match name {
        None => Ok(Mechanism::ALL.to_vec()),
        Some(n) => Mechanism::from_name(n).map(|m| vec![m]).ok_or_else(|| {
            CliError::Input(format!(
                "--mechanism '{n}' is not SCRAM-SHA-256 or SCRAM-SHA-512"
            ))
        }),
    }
}

pub async fn run(target: &Target, cmd: UsersCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    let changes = match cmd {
        UsersCommand::List { users } => {
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "User\tMechanism\tIterations");
            for u in admin.describe_user_scram_credentials(&names).await? {
                for (m, iterations) in &u.credentials {
                    let _ = writeln!(out, "{}\t{m}\t{iterations}", u.user);
                }
            }
            return Ok(());
        }
        UsersCommand::Add {
            user,
            password,
            mechanism,
            iterations,
        } => {
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(CliError::Input(format!(
                    "--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
                )));
            }
            mechanisms(mechanism.as_deref())?
                .into_iter()
                .map(|m| ScramAlteration::Upsert {
                    user: user.clone(),
                    mechanism: m,
                    password: password.clone(),
                    iterations,
                })
                .collect::<Vec<_>>()
        }
        UsersCommand::Remove { user, mechanism } => {
            // Without --mechanism: whichever of the two the user has.
            let wanted = match mechanism.as_deref() {
                Some(_) => mechanisms(mechanism.as_deref())?,
                None => admin
                    .describe_user_scram_credentials(&[user.as_str()])
                    .await?
                    .into_iter()
                    .flat_map(|u| u.credentials.into_iter().map(|(m, _)| m))
                    .collect(),
            };
            wanted
                .into_iter()
                .map(|m| ScramAlteration::Delete {
                    user: user.clone(),
                    mechanism: m,
                })
                .collect()
        }
    };
    for (user, result) in admin.alter_user_scram_credentials(&changes).await? {
        match result {
            Ok(()) => eprintln!("user {user}: done"),
            Err(e) => return Err(super::broker_error(e, &format!("user '{user}'"))),
        }
    }
    Ok(())
}
