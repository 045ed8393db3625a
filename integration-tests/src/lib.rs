//! # integration-tests: real Strom processes on 127.0.0.1
//!
//! [`BrokerProcess`] starts the `strom-broker` binary (in `--dev` mode, or joining a quorum) on
//! free loopback ports with its own data dir; [`ControllerProcess`] starts `strom-quorum`;
//! [`Cluster`] starts N of one and M of the other. Every process can be killed with SIGKILL,
//! paused with SIGSTOP, resumed and restarted; readiness is polled with a deadline.
//! Binaries are `$STROM_BROKER_BIN` / `$STROM_QUORUM_BIN`, or the ones next to the test
//! executable's target dir (build them first: `cargo build --bins`).

pub mod checker;
pub mod producer;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A Strom binary under test: `$<env>`, or `name` in the test executable's target dir.
pub fn binary(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/<test-exe> (or examples/<exe>) -> target/<profile>/<name>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target dir")?;
    let bin = profile_dir.join(name);
    if !bin.exists() {
        bail!(
            "{} does not exist: run `cargo build --bins` first",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn broker_binary() -> anyhow::Result<PathBuf> {
    binary("strom-broker", "STROM_BROKER_BIN")
}

pub fn quorum_binary() -> anyhow::Result<PathBuf> {
    binary("strom-quorum", "STROM_QUORUM_BIN")
}

/// A free port on 127.0.0.1 for a process under test to listen on, taken below Linux's
/// ephemeral range (32768+): a port the OS hands out for `bind(0)` can be taken again as the
/// source port of some outgoing connection before the process binds it, which then fails
/// with "address in use". Ports are handed out in turn from a per-process start, and each is
/// checked to be bindable now.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = (std::process::id() % 100) * 120;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Blocks until `addr` accepts TCP connections.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    wait_for(timeout, &format!("{addr} to accept connections"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    })
    .map(drop)
}

/// GET a JSON document from `http://addr/path`, blocking (for harness polling).
pub fn http_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    http_request(addr, "GET", path, None, Duration::from_secs(5)).map(|(_, body)| body)
}

/// Sends `method path` with a JSON body to `http://addr`, blocking; (status, JSON body or
/// Null).
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    http_request(addr, method, path, body, Duration::from_secs(60))
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(timeout))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf.split_once("\r\n\r\n").context("no http body")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no http status")?;
    let json = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body)?
    };
    Ok((status, json))
}

/// The last `n` lines of a process log, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A process under test, with the signals a failure test needs.
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(Self { child: Some(child) })
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        if let Some(pid) = self.child.as_ref().map(Child::id) {
            let status = Command::new("kill")
                .arg(sig)
                .arg(pid.to_string())
                .status()?;
            if !status.success() {
                bail!("kill {sig} {pid} failed");
            }
        }
        Ok(())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// What every harness process can be made to suffer.
macro_rules! faults {
    () => {
        /// SIGKILL, no goodbye.
        pub fn kill9(&mut self) -> anyhow::Result<()> {
            match self.proc.take() {
                Some(mut p) => p.kill9(),
                None => Ok(()),
            }
        }

        pub fn restart(&mut self) -> anyhow::Result<()> {
            self.kill9()?;
            self.spawn()
        }

        /// SIGSTOP: the process holds its sockets but does nothing.
        pub fn pause(&self) -> anyhow::Result<()> {
            self.proc.as_ref().map_or(Ok(()), |p| p.signal("-STOP"))
        }

        /// SIGCONT after [`Self::pause`].
        pub fn resume(&self) -> anyhow::Result<()> {
            self.proc.as_ref().map_or(Ok(()), |p| p.signal("-CONT"))
        }

        pub fn is_running(&mut self) -> bool {
            self.proc.as_mut().is_some_and(Proc::running)
        }
    };
}

/// `args` then `--state-dir <state>`, as owned strings.
pub fn state_args(args: &[&str], state: &Path) -> Vec<String> {
    args.iter()
        .map(|s| s.to_string())
        .chain(["--state-dir".to_string(), state.display().to_string()])
        .collect()
}

/// A client application under test (a streams example, say): `bin` in the target dir's
/// `examples/` (or `$<env>`), with its own log.
pub struct AppProcess {
    bin: PathBuf,
    args: Vec<String>,
    pub log: PathBuf,
    proc: Option<Proc>,
}

impl AppProcess {
    pub fn start(
        example: &str,
        env: &str,
        args: Vec<String>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut a = Self {
            bin: binary(&format!("examples/{example}"), env)?,
            args,
            log,
            proc: None,
        };
        a.spawn()?;
        Ok(a)
    }

    /// A binary of the workspace (`strom-connect`, say) rather than an example.
    pub fn start_bin(
        name: &str,
        env: &str,
        args: Vec<String>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut a = Self {
            bin: binary(name, env)?,
            args,
            log,
            proc: None,
        };
        a.spawn()?;
        Ok(a)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .env("RUST_LOG", "info,strom_client=warn")
            .stdin(Stdio::null());
        self.proc = Some(Proc::spawn(&mut cmd, &self.log)?);
        Ok(())
    }

    /// SIGTERM, then waits (up to a minute) for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut p) = self.proc.take() else {
            return Ok(());
        };
        p.signal("-TERM")?;
        let mut child = p.child.take().context("no child")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("exited with {status}:\n{}", tail(&self.log, 30));
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        bail!("did not stop on SIGTERM:\n{}", tail(&self.log, 30))
    }

    /// Fails if the process has exited on its own.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if self.proc.as_mut().is_some_and(|p| !p.running()) {
            bail!("exited:\n{}", tail(&self.log, 40));
        }
        Ok(())
    }

    faults!();
}

/// One `strom-broker`.
pub struct BrokerProcess {
    pub data_dir: PathBuf,
    pub kafka: SocketAddr,
    pub http: SocketAddr,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl BrokerProcess {
    /// Starts a broker in `--dev` mode with `extra_args` and waits until it answers.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec![
            "--dev".to_string(),
            "--quorum-listen".to_string(),
            format!("127.0.0.1:{}", free_port()?),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        Self::start_with(data_dir, args)
    }

    /// Starts a broker with `args` besides its data dir and listeners.
    pub fn start_with(data_dir: &Path, args: Vec<String>) -> anyhow::Result<Self> {
        let mut b = Self {
            data_dir: data_dir.to_path_buf(),
            kafka: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            http: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            args,
            proc: None,
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(broker_binary()?);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--kafka-listen")
            .arg(self.kafka.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .args(&self.args);
        self.proc = Some(Proc::spawn(&mut cmd, &self.data_dir.with_extension("log"))?);
        // The HTTP API comes up once the broker has joined the quorum and caught up.
        let http = self.http;
        let log = self.data_dir.with_extension("log");
        let proc = &mut self.proc;
        wait_for(Duration::from_secs(60), "the broker to serve", || {
            if proc.as_mut().is_some_and(|p| !p.running()) {
                return Some(None);
            }
            http_json(http, "/v1/cluster").ok().map(Some)
        })
        .and_then(|r| match r {
            Some(_) => Ok(()),
            None => Err(anyhow::anyhow!("the broker exited while starting")),
        })
        .with_context(|| format!("broker log {}:\n{}", log.display(), tail(&log, 30)))?;
        Ok(())
    }

    faults!();
}

/// One `strom-quorum` controller.
pub struct ControllerProcess {
    pub id: u64,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    voters: String,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl ControllerProcess {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(quorum_binary()?);
        cmd.arg("--node-id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--voters")
            .arg(&self.voters)
            .args(&self.args);
        self.proc = Some(Proc::spawn(&mut cmd, &self.data_dir.with_extension("log"))?);
        wait_listening(self.addr, Duration::from_secs(30))
    }

    faults!();

    /// This controller's `/v1/cluster` document.
    pub fn cluster(&self) -> anyhow::Result<serde_json::Value> {
        http_json(self.addr, "/v1/cluster")
    }
}

/// N controllers and M brokers on 127.0.0.1, each with its own data dir under a root.
pub struct Cluster {
    pub controllers: Vec<ControllerProcess>,
    pub brokers: Vec<BrokerProcess>,
}

impl Cluster {
    /// Starts `controllers` controllers and `brokers` brokers (ids from 1) and waits until
    /// every broker is registered and alive. `controller_args` and `broker_args` are extra
    /// flags for each.
    pub fn start(
        root: &Path,
        controllers: u64,
        brokers: i32,
        controller_args: &[&str],
        broker_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..controllers {
            ports.push(free_port()?);
        }
        let voters = (1..=controllers)
            .zip(&ports)
            .map(|(id, p)| format!("{id}@127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cs = Vec::new();
        for (id, port) in (1..=controllers).zip(&ports) {
            let mut c = ControllerProcess {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                data_dir: root.join(format!("controller-{id}")),
                voters: voters.clone(),
                args: controller_args.iter().map(|s| s.to_string()).collect(),
                proc: None,
            };
            c.spawn()?;
            cs.push(c);
        }
        let quorum = cs
            .iter()
            .map(|c| c.addr.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut bs = Vec::new();
        for id in 1..=brokers {
            let mut args = vec![
                "--node-id".to_string(),
                id.to_string(),
                "--quorum".to_string(),
                quorum.clone(),
            ];
            args.extend(broker_args.iter().map(|s| s.to_string()));
            bs.push(BrokerProcess::start_with(
                &root.join(format!("broker-{id}")),
                args,
            )?);
        }
        let cluster = Self {
            controllers: cs,
            brokers: bs,
        };
        cluster.wait_brokers_alive(brokers as usize, Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// A running controller.
    pub fn any_controller(&mut self) -> anyhow::Result<&ControllerProcess> {
        let idx = self
            .controllers
            .iter_mut()
            .position(|c| c.is_running())
            .context("no controller is running")?;
        Ok(&self.controllers[idx])
    }

    /// The active controller's id, once a running controller reports itself as leader.
    pub fn active_controller(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let addrs: Vec<SocketAddr> = self
            .controllers
            .iter_mut()
            .filter_map(|c| c.is_running().then_some(c.addr))
            .collect();
        wait_for(timeout, "an active controller", || {
            addrs.iter().find_map(|a| {
                let doc = http_json(*a, "/v1/cluster").ok()?;
                let leader = doc["controller_id"].as_u64()?;
                (doc["raft"]["state"] == "Leader" && doc["node_id"].as_u64() == Some(leader))
                    .then_some(leader)
            })
        })
    }

    /// Waits until at least `n` brokers are registered and alive, as a controller sees them.
    pub fn wait_brokers_alive(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let addrs: Vec<SocketAddr> = self.controllers.iter().map(|c| c.addr).collect();
        wait_for(timeout, &format!("{n} live brokers"), || {
            addrs.iter().find_map(|a| {
                let doc = http_json(*a, "/v1/brokers").ok()?;
                let alive = doc
                    .as_array()?
                    .iter()
                    .filter(|b| b["state"] == "alive")
                    .count();
                (alive >= n).then_some(())
            })
        })
    }
}
