//! TLS for the quorum's HTTP: Raft RPC between controllers, controller RPC from brokers and
//! the JSON API. With TLS on, both ends present certificates signed by one CA (mutual TLS):
//! the controller link is the cluster's control plane, so a peer without a certificate of
//! that CA may not even connect.
//!
//! ```text
//!   broker / controller --(https, client certificate)--> controller
//!        QuorumHttp (reqwest + rustls)          TlsListener (axum::serve over rustls)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a peer has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The PEM files of one node: its certificate chain and key, and the CA every peer's
/// certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

/// Both sides of the quorum's mutual TLS.
#[derive(Clone)]
pub struct QuorumTls {
    /// Serves with the node's certificate; requires a client certificate of the CA.
    pub server: Arc<ServerConfig>,
    /// Trusts the CA; presents the node's certificate.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuorumTls")
    }
}

impl QuorumTls {
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let roots = Arc::new(roots(&files.ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates(&files.certificate)?, key(&files.key)?)
            .map_err(|e| format!("{}: {e}", files.certificate.display()))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certificates(&files.certificate)?, key(&files.key)?)
            .map_err(|e| format!("{}: {e}", files.certificate.display()))?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// An HTTP client for the quorum: `http://` or, with TLS, `https://` with the node's
/// certificate.
#[derive(Clone)]
pub struct QuorumHttp {
    client: reqwest::Client,
    scheme: &'static str,
}

impl QuorumHttp {
    pub fn new(tls: Option<&Arc<ClientConfig>>, idle: Option<Duration>) -> Result<Self, String> {
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_millis(500));
        if let Some(idle) = idle {
            b = b.pool_idle_timeout(idle);
        }
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls((**tls).clone());
        }
        Ok(Self {
            client: b.build().map_err(|e| e.to_string())?,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    /// A POST to `path` on the node at `addr` (host:port).
    pub fn post(&self, addr: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}://{addr}{path}", self.scheme))
    }

    pub fn get(&self, addr: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}://{addr}{path}", self.scheme))
    }
}

/// Where the TLS handshakes of new connections get their acceptor (a broker's may change
/// when its certificate files do).
pub type AcceptorSource = Arc<dyn Fn() -> TlsAcceptor + Send + Sync>;

/// A listener for `axum::serve` that hands over connections once their TLS handshake is
/// done. Handshakes run concurrently, so a slow peer holds up nobody else.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: AcceptorSource) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "closing https connection: TLS handshake failed")
                        }
                        Err(_) => {
                            debug!(%peer, "closing https connection: TLS handshake timed out")
                        }
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The peer of an HTTP request, over plain TCP or TLS (axum's `ConnectInfo` for either
/// listener): what an endpoint open to the local host only checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ends only when aborted, with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
