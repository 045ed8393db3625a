//! The Kafka listener: one task per connection; requests on a connection are read, handled
//! and answered strictly in order, while a separate writer task drains the answers so that
//! handling the next request overlaps with sending the last answer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::handlers;
use crate::metrics::Metrics;
use crate::protocol::codec::FrameCodec;
use crate::Broker;

/// Answers queued per connection before the reader waits for the writer.
const PIPELINE_DEPTH: usize = 64;

pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    Metrics::add(&broker.metrics.connections_opened, 1);
                    tokio::spawn(connection(broker.clone(), stream, peer, shutdown.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                info!("kafka listener stopped");
                return;
            }
        }
    }
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    debug!(%peer, "connection opened");
    let (rd, wr) = stream.into_split();
    let mut frames = FramedRead::with_capacity(
        rd,
        FrameCodec::new(broker.config.socket_request_max_bytes),
        64 * 1024,
    );
    let (tx, rx) = mpsc::channel::<Bytes>(PIPELINE_DEPTH);
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
                Metrics::add(&broker.metrics.connections_closed_on_error, 1);
                break;
            }
        };
        match handlers::handle(&broker, frame).await {
            Ok(Some(response)) => {
                if tx.send(response).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(%peer, error = %e, "closing connection: bad request");
                Metrics::add(&broker.metrics.connections_closed_on_error, 1);
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "connection closed");
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, peer: SocketAddr) {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = wr.write_all(&frame).await {
            debug!(%peer, error = %e, "write failed");
            return;
        }
    }
    let _ = wr.shutdown().await;
}
