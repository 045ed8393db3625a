//! # integration-tests: real Strom processes on 127.0.0.1
//!
//! [`BrokerProcess`] starts the `strom-broker` binary on free loopback ports with its own data
//! dir, waits (by polling, with a deadline) until it answers, and can kill -9 and restart it.
//! The binary is `$STROM_BROKER_BIN`, or `strom-broker` next to the test executable's target
//! dir (build it first: `cargo build --bins`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The broker binary under test.
pub fn broker_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("STROM_BROKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/strom-broker
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target dir")?;
    let bin = profile_dir.join("strom-broker");
    if !bin.exists() {
        bail!(
            "{} does not exist: run `cargo build --bins` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free port on 127.0.0.1 (bound and released; good enough on a test machine).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

pub struct BrokerProcess {
    pub data_dir: PathBuf,
    pub kafka: SocketAddr,
    pub http: SocketAddr,
    pub quorum: SocketAddr,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl BrokerProcess {
    /// Starts a broker in `--dev` mode with `extra_args` and waits until it answers.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut b = Self {
            data_dir: data_dir.to_path_buf(),
            kafka: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            http: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            quorum: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))?;
        let child = Command::new(broker_binary()?)
            .arg("--dev")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--kafka-listen")
            .arg(self.kafka.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--quorum-listen")
            .arg(self.quorum.to_string())
            .args(&self.extra_args)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning strom-broker")?;
        self.child = Some(child);
        let kafka = self.kafka;
        wait_for(
            Duration::from_secs(30),
            "the broker to accept connections",
            || TcpStream::connect_timeout(&kafka, Duration::from_millis(200)).ok(),
        )?;
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        self.spawn()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
