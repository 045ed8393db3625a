//! The Kafka listeners: one task per connection; requests on a connection are read, handled
//! and answered strictly in order, while a separate writer task drains the answers so that
//! handling the next request overlaps with sending the last answer.
//!
//! A connection on an SSL or SASL_SSL listener first completes a TLS handshake; one on a
//! SASL listener then authenticates (see [`crate::security::sasl`]) before any request other
//! than ApiVersions, SaslHandshake and SaslAuthenticate is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::error::ProtocolError;
use crate::handlers;
use crate::protocol::codec::FrameCodec;
use crate::protocol::{self, versions};
use crate::security::sasl::SaslServer;
use crate::security::tls::TlsContext;
use crate::security::{ListenerSpec, Session, ANONYMOUS};
use crate::Broker;

/// Answers queued per connection before the reader waits for the writer.
const PIPELINE_DEPTH: usize = 64;

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The socket read buffer under a TLS connection (four TLS records).
const TLS_READ_BUFFER: usize = 64 * 1024;

/// A bound listener and what its connections need.
pub struct Listener {
    pub spec: ListenerSpec,
    pub socket: TcpListener,
    pub tls: Option<Arc<TlsContext>>,
}

pub async fn serve(broker: Arc<Broker>, listener: Listener, mut shutdown: watch::Receiver<bool>) {
    let spec = Arc::new(listener.spec);
    loop {
        tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let quotas = broker.image().quotas.clone();
                    let throttle = broker.quotas.record_connection(&quotas, peer.ip(), broker.quotas.now_ms());
                    if !throttle.is_zero() {
                        // Over the IP's connection creation rate (KIP-612): held unread,
                        // then closed.
                        info!(%peer, listener = %spec.name, throttle_ms = throttle.as_millis() as u64, "connection throttled: closing it");
                        tokio::spawn(async move {
                            tokio::time::sleep(throttle).await;
                            drop(stream);
                        });
                        continue;
                    }
                    tokio::spawn(accept(
                        broker.clone(),
                        spec.clone(),
                        listener.tls.clone(),
                        stream,
                        peer,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    warn!(listener = %spec.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                info!(listener = %spec.name, "kafka listener stopped");
                return;
            }
        }
    }
}

/// Runs the TLS handshake if the listener has one, then the connection.
async fn accept(
    broker: Arc<Broker>,
    spec: Arc<ListenerSpec>,
    tls: Option<Arc<TlsContext>>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _open = broker.metrics.connection_opened(spec.name.as_str());
    let Some(tls) = tls else {
        let session = new_session(&spec, ANONYMOUS.to_string(), peer);
        // Plain TCP splits into owned halves (no lock between reader and writer).
        let (rd, wr) = stream.into_split();
        return connection(broker, spec, rd, wr, session, shutdown).await;
    };
    // rustls reads at most 4 KB of ciphertext per call; a buffer under it turns four or more
    // syscalls per 16 KB record of a produce request into one per 64 KB.
    let stream = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%peer, listener = %spec.name, error = %e, "closing connection: TLS handshake failed");
            broker.metrics.connections_closed_on_error.inc();
            return;
        }
        Err(_) => {
            warn!(%peer, listener = %spec.name, "closing connection: TLS handshake timed out");
            broker.metrics.connections_closed_on_error.inc();
            return;
        }
    };
    let principal = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        None => ANONYMOUS.to_string(),
        Some(cert) => match crate::security::principal::subject_dn(cert) {
            Ok(dn) => format!("User:{}", broker.principal_rules.apply(&dn)),
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: bad client certificate");
                return;
            }
        },
    };
    let session = new_session(&spec, principal, peer);
    let (rd, wr) = tokio::io::split(stream);
    connection(broker, spec, rd, wr, session, shutdown).await
}

fn new_session(spec: &ListenerSpec, principal: String, peer: SocketAddr) -> Session {
    Session {
        listener: spec.name.as_str().into(),
        principal,
        peer,
    }
}

async fn connection<R, W>(
    broker: Arc<Broker>,
    spec: Arc<ListenerSpec>,
    rd: R,
    wr: W,
    mut session: Session,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = session.peer;
    debug!(%peer, listener = %spec.name, principal = %session.principal, "connection opened");
    let mut sasl = spec.protocol.sasl().then(|| {
        SaslServer::new(
            broker.sasl_mechanisms.clone(),
            (broker.config.connections_max_reauth_ms > 0)
                .then(|| Duration::from_millis(broker.config.connections_max_reauth_ms)),
            broker.oauth.clone(),
        )
    });
    // Before authentication a frame is a SASL token at most: a small limit.
    let max_frame = if sasl.is_some() {
        broker.config.sasl_server_max_receive_size
    } else {
        broker.config.socket_request_max_bytes
    };
    let mut frames = FramedRead::with_capacity(rd, FrameCodec::new(max_frame), 64 * 1024);
    let (tx, rx) = mpsc::channel::<protocol::Frame>(PIPELINE_DEPTH);
    let writer = tokio::spawn(write_loop(wr, rx, peer));
    loop {
        let frame = tokio::select! {
            f = frames.next() => f,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame.freeze(),
            Some(Err(e)) => {
                warn!(%peer, error = %e, "closing connection: bad frame");
                broker.metrics.connections_closed_on_error.inc();
                break;
            }
        };
        if let Some(server) = sasl.as_mut().filter(|s| s.expects_raw_token()) {
            // After SaslHandshake v0 the tokens travel as bare frames.
            let Some(answer) = server.authenticate_raw(&frame, &broker.image()) else {
                info!(%peer, listener = %spec.name, "closing connection: SASL authentication failed");
                broker.metrics.failed_authentications.inc();
                break;
            };
            let mut out = bytes::BytesMut::with_capacity(4 + answer.len());
            out.extend_from_slice(&(answer.len() as i32).to_be_bytes());
            out.extend_from_slice(&answer);
            if tx.send(vec![out.freeze()]).await.is_err() {
                break;
            }
            after_sasl(&broker, server, &mut session, frames.decoder_mut());
            continue;
        }
        if let Some(server) = sasl.as_mut() {
            match sasl_step(&broker, server, &frame) {
                Ok(SaslStep::Answer(response, close)) => {
                    after_sasl(&broker, server, &mut session, frames.decoder_mut());
                    if tx.send(vec![response]).await.is_err() || close {
                        if close {
                            info!(%peer, listener = %spec.name, "closing connection: SASL authentication failed");
                            broker.metrics.failed_authentications.inc();
                        }
                        break;
                    }
                    continue;
                }
                Ok(SaslStep::Pass) => {}
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection");
                    broker.metrics.connections_closed_on_error.inc();
                    break;
                }
            }
        }
        match handlers::handle(&broker, &session, frame).await {
            Ok(reply) => {
                if let Some(response) = reply.frame {
                    if tx.send(response).await.is_err() {
                        break;
                    }
                }
                if !reply.throttle.is_zero() {
                    // Over a quota: the answer goes now, with its throttle time; nothing
                    // more is read from this connection until that time has passed.
                    debug!(%peer, throttle_ms = reply.throttle.as_millis() as u64, "connection muted");
                    tokio::select! {
                        _ = tokio::time::sleep(reply.throttle) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: bad request");
                broker.metrics.connections_closed_on_error.inc();
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "connection closed");
}

/// Writes a frame's segments in order, as few system calls as the writer allows (one
/// `writev` for a fetch answer and its records on plain TCP when the socket takes it all).
async fn write_segments<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &mut [Bytes],
) -> std::io::Result<()> {
    use bytes::Buf;
    let mut i = 0;
    while i < frame.len() {
        if frame[i].is_empty() {
            i += 1;
            continue;
        }
        let slices: Vec<std::io::IoSlice<'_>> = frame[i..]
            .iter()
            .take(64)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && i < frame.len() {
            let here = frame[i].len();
            if n >= here {
                n -= here;
                i += 1;
            } else {
                frame[i].advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// After a SASL answer: the frame limits and the session's principal follow the exchange,
/// and a completed one is counted (and logged, the first time on a connection).
fn after_sasl(
    broker: &Broker,
    server: &mut SaslServer,
    session: &mut Session,
    codec: &mut FrameCodec,
) {
    codec.accept_short_frames(server.expects_raw_token());
    let Some(reauthenticated) = server.take_completed() else {
        return;
    };
    let principal = server.principal().unwrap_or_default();
    if reauthenticated {
        broker.metrics.successful_reauthentications.inc();
    } else {
        broker.metrics.successful_authentications.inc();
        info!(
            peer = %session.peer,
            principal = %principal,
            mechanism = server.mechanism().unwrap_or(""),
            "authenticated"
        );
    }
    session.principal = principal;
    codec.set_max_frame(broker.config.socket_request_max_bytes);
}

enum SaslStep {
    /// A SASL request answered here; close the connection after the answer if `true`.
    Answer(Bytes, bool),
    /// Not a SASL request, and the connection may send it: hand it to the handlers.
    Pass,
}

/// The SASL gate: answers SaslHandshake and SaslAuthenticate, lets ApiVersions through
/// always and other requests only once authenticated and within the session's lifetime.
fn sasl_step(
    broker: &Broker,
    server: &mut SaslServer,
    frame: &Bytes,
) -> Result<SaslStep, ProtocolError> {
    let pre = protocol::preamble(frame)?;
    let api_key = ApiKey::try_from(pre.api_key).ok();
    match api_key {
        Some(k @ (ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)) => {
            let (min, max) = versions::supported(k).unwrap_or((0, 0));
            if pre.version < min || pre.version > max {
                return Err(ProtocolError::UnsupportedVersion {
                    api: versions::name(k),
                    version: pre.version,
                    min,
                    max,
                });
            }
            let request = protocol::decode_request(k, pre.version, frame.clone())?;
            let (body, close) = match request.body {
                RequestKind::SaslHandshake(r) => {
                    let a = server.handshake(&r, pre.version);
                    (ResponseKind::SaslHandshake(a.response), a.close)
                }
                RequestKind::SaslAuthenticate(r) => {
                    let a = server.authenticate(&r, &broker.image());
                    (ResponseKind::SaslAuthenticate(a.response), a.close)
                }
                _ => unreachable!("decoded as the key says"),
            };
            let bytes = protocol::encode_response(k, pre.version, pre.correlation_id, &body)?;
            Ok(SaslStep::Answer(bytes, close))
        }
        Some(ApiKey::ApiVersions) => Ok(SaslStep::Pass),
        _ if !server.authenticated() => Err(ProtocolError::Unauthenticated {
            api: api_key.map_or("an unknown API", versions::name),
        }),
        _ if server.expired(Instant::now()) => Err(ProtocolError::SessionExpired),
        _ => Ok(SaslStep::Pass),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<protocol::Frame>,
    peer: SocketAddr,
) {
    while let Some(mut frame) = rx.recv().await {
        if let Err(e) = write_segments(&mut wr, &mut frame).await {
            debug!(%peer, error = %e, "write failed");
            return;
        }
        // TLS: write_all can return with the tail of the answer still encrypted in rustls's
        // buffer (the socket was full); without a flush it would wait there for the next
        // answer, and a client waiting for this one would stall. (A no-op on plain TCP.)
        if let Err(e) = wr.flush().await {
            debug!(%peer, error = %e, "flush failed");
            return;
        }
    }
    let _ = wr.shutdown().await;
}
