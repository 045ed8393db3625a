//! `strom metadata-quorum`, like kafka-metadata-quorum.sh: describe the Raft metadata quorum,
//! and add or remove controllers at run time (KIP-853), through a controller's HTTP API
//! (`--bootstrap-controller`; any controller forwards a change to the active one).
//!
//! ```text
//! strom metadata-quorum --bootstrap-controller HOST:PORT describe
//! strom metadata-quorum --bootstrap-controller HOST:PORT add-controller --controller-id 4 --controller-address HOST:PORT
//! strom metadata-quorum --bootstrap-controller HOST:PORT remove-controller --controller-id 4
//! ```
//!
//! A controller to add is started first with `--join` and `--voters` naming the current voters (not
//! itself): it waits, catches up as a learner when added, then votes.

use std::io::Write;

use serde_json::{json, Value};

use super::{CliError, QuorumArgs, QuorumCommand};

const HINT: &str = "is a controller (strom-quorum) listening there? (--bootstrap-controller)";

fn voters_line(v: &Value) -> String {
    v["voters"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|x| format!("{}@{}", x["id"], x["addr"].as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub async fn run(args: QuorumArgs) -> Result<(), CliError> {
    let url = format!("http://{}", args.bootstrap_controller);
    let mut out = std::io::stdout().lock();
    match args.command {
        QuorumCommand::Describe => {
            let (_, c) = super::http::call(&url, "GET", "/v1/cluster", None, HINT).await?;
            let (_, v) = super::http::call(&url, "GET", "/v1/quorum/voters", None, HINT).await?;
            let _ = writeln!(
                out,
                "ClusterId:              {}",
                c["cluster_id"].as_str().unwrap_or("?")
            );
            let _ = writeln!(out, "LeaderId:               {}", c["controller_id"]);
            let _ = writeln!(out, "LeaderEpoch:            {}", c["raft"]["term"]);
            let _ = writeln!(out, "HighWatermark:          {}", c["raft"]["last_applied"]);
            let _ = writeln!(out, "CurrentVoters:          [{}]", voters_line(&v));
        }
        QuorumCommand::AddController {
            controller_id,
            controller_address,
        } => {
            let body = json!({"id": controller_id, "addr": controller_address});
            let (_, v) =
                super::http::call(&url, "POST", "/v1/quorum/voters", Some(&body), HINT).await?;
            let _ = writeln!(
                out,
                "Added controller {controller_id} with address {controller_address}; voters are now [{}]",
                voters_line(&v)
            );
        }
        QuorumCommand::RemoveController { controller_id } => {
            let path = format!("/v1/quorum/voters/{controller_id}");
            let (_, v) = super::http::call(&url, "DELETE", &path, None, HINT).await?;
            let _ = writeln!(
                out,
                "Removed controller {controller_id}; voters are now [{}]",
                voters_line(&v)
            );
        }
    }
    Ok(())
}
