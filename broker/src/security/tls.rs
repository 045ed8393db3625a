//! TLS for the SSL and SASL_SSL listeners, with rustls from PEM files. The certificate, key
//! and CA are read again when their files change: new connections get the new ones, open
//! connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use strom_client::security::read_certificates;
use tokio::sync::watch;
use tracing::{info, warn};

/// `--ssl-client-auth` (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A client certificate is asked for and checked if given.
    Requested,
    /// A client certificate signed by --ssl-ca is required.
    Required,
}

/// The PEM files a TLS listener serves from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.certificate.as_path(), self.key.as_path()];
        p.extend(self.ca.as_deref());
        p
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// The server's TLS configuration, swapped whole when the files change.
pub struct TlsContext {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificates of `path` as a root store.
pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certificates(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn build(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = read_certificates(&files.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (files.client_auth, &files.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("--ssl-client-auth needs --ssl-ca".into()),
        (auth, Some(ca)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.certificate.display()))
}

impl TlsContext {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let stamps = files.stamps();
        let config = build(&files)?;
        Ok(Self {
            files,
            config: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// What a new connection is served with.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.read().clone())
    }

    /// Rebuilds the configuration if a file changed since the last look. A file that does not
    /// read (half written, say) keeps the old configuration and is tried again next time.
    pub fn reload_if_changed(&self) -> bool {
        let now = self.files.stamps();
        if *self.stamps.lock() == now {
            return false;
        }
        match build(&self.files) {
            Ok(c) => {
                *self.config.write() = Arc::new(c);
                *self.stamps.lock() = now;
                info!(certificate = %self.files.certificate.display(), "TLS certificates reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "TLS certificates changed but do not load; keeping the old ones");
                false
            }
        }
    }

    /// Looks at the files every `period` until shutdown.
    pub async fn watch(self: Arc<Self>, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}
