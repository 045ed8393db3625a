//! One HTTP/1.1 exchange with a JSON API (a Connect worker's REST API, a controller's HTTP
//! API): enough for the CLI, without an HTTP client crate.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CliError;

/// Sends `method path` with an optional JSON body to `url` (`http://host:port`) and returns
/// the status and the JSON answer; `unreachable` explains a refused connection. A 4xx/5xx is
/// an error carrying the answer's message (`message`, or `error.message`).
pub(super) async fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    unreachable: &str,
) -> Result<(u16, Value), CliError> {
    let hostport = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| CliError::Input(format!("--url {url}: only http:// URLs are supported")))?;
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| CliError::Input(format!("cannot reach {url} ({e}); {unreachable}")))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| CliError::Input(e.to_string()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| CliError::Input(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    if status >= 400 {
        let msg = json["message"]
            .as_str()
            .or(json["error"]["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        return Err(CliError::Input(format!("{status}: {msg}")));
    }
    Ok((status, json))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
