//! `strom connect ...`: a Kafka Connect worker's REST API from the command line (any
//! worker: strom-connect or Kafka Connect itself).
//!
//! ```text
//! strom connect list                      names, types, states and tasks
//! strom connect status NAME               the connector's and each task's state
//! strom connect create FILE               from a .properties file or {"name", "config"} JSON
//! strom connect apply FILE                create or update (PUT /connectors/{name}/config)
//! strom connect config|offsets NAME       as JSON
//! strom connect pause|resume|stop|delete NAME
//! strom connect restart NAME [--include-tasks] [--only-failed] [--task N]
//! strom connect plugins
//! ```

use std::io::Write;

use serde_json::{json, Value};

use super::{CliError, ConnectArgs, ConnectCommand};

/// One HTTP/1.1 exchange with the worker (the connection closes after it).
async fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), CliError> {
    let hint = "is the Connect worker (strom-connect) running there? (--url or STROM_CONNECT_URL)";
    super::http::call(url, method, path, body, hint).await
}

/// A connector definition from a file: Kafka Connect's JSON, or a .properties file.
fn load(file: &str) -> Result<(String, Value), CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| CliError::Input(format!("{file}: {e}")))?;
    let config: Value = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.get("config").is_some() => {
            let mut c = v["config"].clone();
            if let (Some(n), Some(o)) = (v["name"].as_str(), c.as_object_mut()) {
                o.insert("name".into(), json!(n));
            }
            c
        }
        Ok(v) => v,
        Err(_) => json!(crate::properties::parse(&text)),
    };
    let name = config["name"]
        .as_str()
        .ok_or_else(|| CliError::Input(format!("{file}: the connector has no name")))?
        .to_string();
    Ok((name, config))
}

pub async fn run(args: ConnectArgs) -> Result<(), CliError> {
    let url = args.url.as_str();
    let mut out = std::io::stdout().lock();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match args.command {
        ConnectCommand::List => {
            let (_, all) = call(url, "GET", "/connectors?expand=status", None).await?;
            let _ = writeln!(out, "NAME\tTYPE\tSTATE\tTASKS");
            if let Some(o) = all.as_object() {
                for (name, v) in o {
                    let s = &v["status"];
                    let tasks: Vec<String> = s["tasks"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .map(|t| {
                                    format!("{}:{}", t["id"], t["state"].as_str().unwrap_or("?"))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{name}\t{}\t{}\t{}",
                        s["type"].as_str().unwrap_or("?"),
                        s["connector"]["state"].as_str().unwrap_or("?"),
                        tasks.join(",")
                    );
                }
            }
        }
        ConnectCommand::Status { name } => {
            let (_, s) = call(url, "GET", &format!("/connectors/{name}/status"), None).await?;
            let _ = writeln!(
                out,
                "{name} ({}): {} on {}",
                s["type"].as_str().unwrap_or("?"),
                s["connector"]["state"].as_str().unwrap_or("?"),
                s["connector"]["worker_id"].as_str().unwrap_or("?")
            );
            for t in s["tasks"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  task {}: {} on {}",
                    t["id"],
                    t["state"].as_str().unwrap_or("?"),
                    t["worker_id"].as_str().unwrap_or("?")
                );
                if let Some(trace) = t["trace"].as_str() {
                    let _ = writeln!(out, "    {trace}");
                }
            }
        }
        ConnectCommand::Create { file } => {
            let (name, config) = load(&file)?;
            call(
                url,
                "POST",
                "/connectors",
                Some(&json!({"name": name, "config": config})),
            )
            .await?;
            let _ = writeln!(out, "Created connector {name}.");
        }
        ConnectCommand::Apply { file } => {
            let (name, config) = load(&file)?;
            let (code, _) = call(
                url,
                "PUT",
                &format!("/connectors/{name}/config"),
                Some(&config),
            )
            .await?;
            let _ = writeln!(
                out,
                "{} connector {name}.",
                if code == 201 { "Created" } else { "Updated" }
            );
        }
        ConnectCommand::Config { name } => {
            let (_, c) = call(url, "GET", &format!("/connectors/{name}/config"), None).await?;
            let _ = writeln!(out, "{}", pretty(&c));
        }
        ConnectCommand::Offsets { name } => {
            let (_, o) = call(url, "GET", &format!("/connectors/{name}/offsets"), None).await?;
            let _ = writeln!(out, "{}", pretty(&o));
        }
        ConnectCommand::Pause { name } => {
            call(url, "PUT", &format!("/connectors/{name}/pause"), None).await?;
            let _ = writeln!(out, "Paused connector {name}.");
        }
        ConnectCommand::Resume { name } => {
            call(url, "PUT", &format!("/connectors/{name}/resume"), None).await?;
            let _ = writeln!(out, "Resumed connector {name}.");
        }
        ConnectCommand::Stop { name } => {
            call(url, "PUT", &format!("/connectors/{name}/stop"), None).await?;
            let _ = writeln!(out, "Stopped connector {name}.");
        }
        ConnectCommand::Delete { name } => {
            call(url, "DELETE", &format!("/connectors/{name}"), None).await?;
            let _ = writeln!(out, "Deleted connector {name}.");
        }
        ConnectCommand::Restart {
            name,
            include_tasks,
            only_failed,
            task,
        } => {
            let path = match task {
                Some(t) => format!("/connectors/{name}/tasks/{t}/restart"),
                None => format!("/connectors/{name}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}"),
            };
            call(url, "POST", &path, None).await?;
            let _ = writeln!(
                out,
                "Restarting {name}{}.",
                task.map(|t| format!(" task {t}")).unwrap_or_default()
            );
        }
        ConnectCommand::Plugins => {
            let (_, p) = call(url, "GET", "/connector-plugins", None).await?;
            let _ = writeln!(out, "CLASS\tTYPE\tVERSION");
            for p in p.as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}",
                    p["class"].as_str().unwrap_or("?"),
                    p["type"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}
