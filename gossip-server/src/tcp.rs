//! TCP: length-prefixed frames (a 4-byte big-endian length, then the frame).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use gossip_core::link::LinkDrop;

use crate::conn::{self, ConnHandle, ConnId, Input, LinkIn, LinkOut, Opening, Transport};
use crate::shared::{Shared, Slot};

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame)
        .new_codec()
}

/// Runs `socket` as a connection (either direction, as `opening` says).
pub(crate) async fn run(
    shared: Arc<Shared>,
    id: ConnId,
    socket: TcpStream,
    rx: mpsc::Receiver<Vec<u8>>,
    handle: ConnHandle,
    open: Arc<Slot>,
    opening: Opening,
) {
    let _ = socket.set_nodelay(true);
    let (sink, stream) = Framed::new(socket, codec(shared.limits.max_frame)).split();
    // TCP has no close message: a close becomes no frame at all, then the socket shuts.
    let sink = sink.with_flat_map(|out: LinkOut| {
        futures_util::stream::iter(match out {
            LinkOut::Binary(b) => Some(Ok(Bytes::from(b))),
            LinkOut::Close(..) => None,
        })
    });
    let stream = stream.map(|item| match item {
        Ok(b) => LinkIn::Binary(b.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => LinkIn::TooBig,
        Err(_) => LinkIn::End,
    });
    conn::run(&shared, open, id, sink, stream, rx, handle.closer, opening).await;
}

/// Dials `addr` and runs the connection; frames queued meanwhile wait in `rx` (until the
/// handshake proved the peer, `expected` when dialed for a known member).
pub(crate) async fn dial(
    shared: Arc<Shared>,
    id: ConnId,
    addr: std::net::SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
    handle: ConnHandle,
    expected: Option<gossip_core::NodeId>,
) {
    let connect = tokio::time::timeout(shared.limits.dial_timeout, TcpStream::connect(addr));
    let socket = tokio::select! {
        _ = handle.closer_cancelled() => Err("cancelled".to_string()),
        r = connect => match r {
            Ok(Ok(socket)) => Ok(socket),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "tcp dial failed");
                Err(e.to_string())
            }
            Err(_) => Err("timed out".to_string()),
        },
    };
    let opening = Opening::dial(&shared.identity, shared.versions, expected)
        .ok_or_else(|| "no randomness".to_string());
    match socket.and_then(|s| opening.map(|o| (s, o))) {
        Ok((socket, opening)) => {
            let open = shared.connection_opened();
            run(shared, id, socket, rx, handle, open, opening).await
        }
        Err(reason) => {
            shared.count_drop(LinkDrop::DialFailed);
            let _ = shared.inbound.send(Input::DialFailed { id, reason }).await;
        }
    }
}

/// Accepts TCP connections until the node stops; refuses those over the connection limit.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(opening) = Opening::accept(&shared.identity, shared.versions) else {
            drop(socket);
            continue;
        };
        let Some(open) = shared.try_open() else {
            // The pending budget is full: a flood of unproven connections is refused here, and
            // never takes the slots of members' connections.
            shared.count_drop(LinkDrop::TooManyConnections);
            drop(socket);
            continue;
        };
        let id = shared.next_conn_id();
        let (tx, rx) = mpsc::channel(shared.limits.conn_queue);
        let handle = ConnHandle {
            tx,
            closer: conn::Closer::new(&shared.cancel),
        };
        tracing::debug!(conn = id, %peer, "tcp accepted");
        let input = Input::Accepted {
            id,
            handle: handle.clone(),
            transport: Transport::Tcp,
            slot: open.clone(),
            grant: None,
        };
        if shared.inbound.send(input).await.is_err() {
            return;
        }
        tokio::spawn(run(shared.clone(), id, socket, rx, handle, open, opening));
    }
}
