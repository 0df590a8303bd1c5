//! One connection (TCP or WebSocket, inbound or outbound) and the task that pumps it.
//!
//! Every transport is reduced to a stream of [`LinkIn`] and a sink of [`LinkOut`], so the same
//! pump serves axum's WebSocket, tokio-tungstenite and length-prefixed TCP, and tests can drive it
//! with channels.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use gossip_core::link::handshake::{NONCE_LEN, Versions};
use gossip_core::link::{CloseCode, Handshake, HandshakeError, is_handshake};
use gossip_core::{ClusterKey, Grant, Identity, NodeId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's number, unique for the life of the node.
pub(crate) type ConnId = u64;

/// What a transport delivered.
#[derive(Debug)]
pub(crate) enum LinkIn {
    /// A binary message: a frame, or a handshake message.
    Binary(Vec<u8>),
    /// A text message (refused: binary only).
    Text,
    /// A message over the frame limit.
    TooBig,
    /// The peer closed, or the transport failed.
    End,
    /// The peer closed with a code and reason (a WebSocket close frame).
    PeerClosed(u16, String),
}

/// What the pump sends.
#[derive(Debug)]
pub(crate) enum LinkOut {
    /// A binary message.
    Binary(Vec<u8>),
    /// A close with a code and reason (WebSocket; TCP just shuts down).
    Close(CloseCode, Cow<'static, str>),
}

/// Asks a connection to close, once, with a reason.
#[derive(Debug)]
pub(crate) struct Closer {
    token: CancellationToken,
    reason: Mutex<Option<(CloseCode, Cow<'static, str>)>>,
    /// How the peer closed, when it said (a WebSocket close frame).
    by_peer: Mutex<Option<(u16, String)>>,
}

impl Closer {
    pub(crate) fn new(parent: &CancellationToken) -> Arc<Closer> {
        Arc::new(Closer {
            token: parent.child_token(),
            reason: Mutex::new(None),
            by_peer: Mutex::new(None),
        })
    }

    /// Closes with `code` and `reason` unless a close is already under way.
    pub(crate) fn close(&self, code: CloseCode, reason: impl Into<Cow<'static, str>>) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some((code, reason.into()));
        }
        self.token.cancel();
    }

    fn reason(&self) -> (CloseCode, Cow<'static, str>) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or((
                CloseCode::GoingAway,
                Cow::Borrowed(CloseCode::GoingAway.reason()),
            ))
    }

    fn closed_by_peer(&self, code: u16, reason: String) {
        *self.by_peer.lock().unwrap_or_else(|p| p.into_inner()) = Some((code, reason));
    }

    fn peer_close(&self) -> Option<(u16, String)> {
        self.by_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The driver's side of a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::Sender<Vec<u8>>,
    pub(crate) closer: Arc<Closer>,
}

impl ConnHandle {
    /// Resolves once the connection is asked to close (or the node stops).
    pub(crate) async fn closer_cancelled(&self) {
        self.closer.token.cancelled().await
    }
}

/// What transport tasks tell the driver.
#[derive(Debug)]
pub(crate) enum Input {
    /// A UDP datagram.
    Datagram {
        from: std::net::SocketAddr,
        bytes: Vec<u8>,
    },
    /// An inbound connection was accepted.
    Accepted {
        id: ConnId,
        handle: ConnHandle,
        transport: Transport,
        /// Its place in the pending budget; the driver moves it to the established one when
        /// the peer proves membership.
        slot: Arc<crate::shared::Slot>,
        /// What the admission hook granted, for a client without the cluster key.
        grant: Option<Grant>,
    },
    /// The handshake proved the peer and agreed the link's key: the connection may carry frames.
    Linked {
        id: ConnId,
        peer: NodeId,
        key: ClusterKey,
    },
    /// The handshake failed (or a handshake message came after it): the session closes.
    HandshakeFailed { id: ConnId, error: HandshakeError },
    /// A frame arrived on a connection.
    Frame { id: ConnId, bytes: Vec<u8> },
    /// A connection ended; `peer` is the code and reason the peer closed it with, if it said.
    Closed {
        id: ConnId,
        peer: Option<(u16, String)>,
    },
    /// A dial failed before any connection existed.
    DialFailed { id: ConnId, reason: String },
    /// A seed did not parse or resolve.
    SeedUnresolved { seed: String, reason: String },
    /// Seeds resolved: join through them.
    Join(Vec<gossip_core::Address>),
}

/// Which kind of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    WebSocket,
}

/// How a connection opens: the handshake this side runs before any frame.
pub(crate) struct Opening {
    identity: Identity,
    handshake: Handshake,
    /// The challenge an acceptor sends first.
    first: Option<Vec<u8>>,
}

impl Opening {
    /// The accepting side; `None` when the OS has no randomness for the nonce.
    pub(crate) fn accept(identity: &Identity, versions: Versions) -> Option<Opening> {
        let (handshake, challenge) = Handshake::accept_versioned(identity, versions, nonce()?);
        Some(Opening {
            identity: identity.clone(),
            handshake,
            first: Some(challenge),
        })
    }

    /// The dialing side, for `expected` when dialed for a known member.
    pub(crate) fn dial(
        identity: &Identity,
        versions: Versions,
        expected: Option<NodeId>,
    ) -> Option<Opening> {
        Some(Opening {
            identity: identity.clone(),
            handshake: Handshake::dial_versioned(versions, nonce()?, expected),
            first: None,
        })
    }
}

fn nonce() -> Option<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    match getrandom::fill(&mut n) {
        Ok(()) => Some(n),
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a handshake nonce: connection refused");
            None
        }
    }
}

/// What the handshake phase ended with.
enum Opened {
    Linked(NodeId, ClusterKey),
    Failed(HandshakeError),
    /// The transport ended, or the pump closed it itself (text, oversized).
    Ended,
}

/// Runs the handshake: nothing else is read or written until the peer is proven. The driver's
/// session holds the deadline (a silent peer is closed by it, through the closer).
async fn open<Si, St>(sink: &mut Si, stream: &mut St, opening: Opening, closer: &Closer) -> Opened
where
    Si: Sink<LinkOut> + Unpin,
    St: Stream<Item = LinkIn> + Unpin,
{
    let Opening {
        identity,
        mut handshake,
        first,
    } = opening;
    if let Some(first) = first
        && sink.send(LinkOut::Binary(first)).await.is_err()
    {
        return Opened::Ended;
    }
    loop {
        match stream.next().await.unwrap_or(LinkIn::End) {
            LinkIn::Binary(bytes) => match handshake.on_message(&identity, &bytes) {
                Ok(step) => {
                    if let Some(reply) = step.reply
                        && sink.send(LinkOut::Binary(reply)).await.is_err()
                    {
                        return Opened::Ended;
                    }
                    if let (Some(peer), Some(key)) = (step.peer, step.key) {
                        return Opened::Linked(peer, key);
                    }
                }
                Err(error) => return Opened::Failed(error),
            },
            LinkIn::Text => {
                closer.close(CloseCode::BinaryOnly, CloseCode::BinaryOnly.reason());
                return Opened::Ended;
            }
            LinkIn::TooBig => {
                closer.close(CloseCode::TooLarge, CloseCode::TooLarge.reason());
                return Opened::Ended;
            }
            // Closed before the answer: when the challenge already showed why (no common
            // version), say so; over TCP no close code will.
            LinkIn::End => return handshake.refusal().map_or(Opened::Ended, Opened::Failed),
            LinkIn::PeerClosed(code, reason) => {
                closer.closed_by_peer(code, reason);
                return handshake.refusal().map_or(Opened::Ended, Opened::Failed);
            }
        }
    }
}

/// Runs a connection until either side ends it: first the handshake, then frames from `rx` go
/// out and messages that arrive go to the driver. Closes with the [`Closer`]'s reason.
pub(crate) async fn pump<Si, St>(
    id: ConnId,
    mut sink: Si,
    mut stream: St,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closer: Arc<Closer>,
    inbound: mpsc::Sender<Input>,
    opening: Opening,
) where
    Si: Sink<LinkOut> + Unpin,
    St: Stream<Item = LinkIn> + Unpin,
{
    let opened = tokio::select! {
        _ = closer.token.cancelled() => Opened::Ended,
        o = open(&mut sink, &mut stream, opening, &closer) => o,
    };
    let linked = match opened {
        Opened::Linked(peer, key) => inbound.send(Input::Linked { id, peer, key }).await.is_ok(),
        Opened::Failed(error) => {
            // The session decides (and counts); the close it asks for ends the wait below.
            if inbound
                .send(Input::HandshakeFailed { id, error })
                .await
                .is_ok()
            {
                closer.token.cancelled().await;
            }
            false
        }
        Opened::Ended => false,
    };
    let reader = async {
        loop {
            let item = tokio::select! {
                _ = closer.token.cancelled() => return,
                item = stream.next() => item.unwrap_or(LinkIn::End),
            };
            match item {
                LinkIn::Binary(bytes) if is_handshake(&bytes) => {
                    // A second handshake: the session closes the link.
                    let error = HandshakeError::OutOfOrder;
                    if inbound
                        .send(Input::HandshakeFailed { id, error })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                LinkIn::Binary(bytes) => {
                    // Waiting here is the back-pressure: a busy engine stops reading the socket.
                    if inbound.send(Input::Frame { id, bytes }).await.is_err() {
                        return;
                    }
                }
                LinkIn::Text => {
                    return closer.close(CloseCode::BinaryOnly, CloseCode::BinaryOnly.reason());
                }
                LinkIn::TooBig => {
                    return closer.close(CloseCode::TooLarge, CloseCode::TooLarge.reason());
                }
                LinkIn::End => return,
                LinkIn::PeerClosed(code, reason) => return closer.closed_by_peer(code, reason),
            }
        }
    };
    let writer = async {
        loop {
            let frame = tokio::select! {
                _ = closer.token.cancelled() => return,
                frame = rx.recv() => match frame {
                    Some(frame) => frame,
                    None => return,
                },
            };
            tokio::select! {
                _ = closer.token.cancelled() => return,
                sent = sink.send(LinkOut::Binary(frame)) => if sent.is_err() { return },
            }
        }
    };
    if linked {
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
    } else {
        drop((reader, writer));
    }
    if closer.is_closed() {
        let (code, reason) = closer.reason();
        tracing::debug!(conn = id, code = code.code(), %reason, "closing connection");
        let bye = async {
            let _ = sink.send(LinkOut::Close(code, reason)).await;
            let _ = sink.close().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), bye).await;
    } else {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    }
    closer.token.cancel();
    let peer = closer.peer_close();
    let _ = inbound.send(Input::Closed { id, peer }).await;
}

/// Runs a transport's connection, counted as open while it lasts (`open`): the one way every
/// transport (TCP, the WebSocket route, the WebSocket client) hands its link to [`pump`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<Si, St>(
    shared: &crate::shared::Shared,
    open: Arc<crate::shared::Slot>,
    id: ConnId,
    sink: Si,
    stream: St,
    rx: mpsc::Receiver<Vec<u8>>,
    closer: Arc<Closer>,
    opening: Opening,
) where
    Si: Sink<LinkOut>,
    St: Stream<Item = LinkIn>,
{
    let _open = open;
    let inbound = shared.inbound.clone();
    pump(
        id,
        Box::pin(sink),
        Box::pin(stream),
        rx,
        closer,
        inbound,
        opening,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_channel() -> (
        impl Sink<LinkOut, Error = mpsc::error::SendError<LinkOut>> + Unpin,
        mpsc::UnboundedReceiver<LinkOut>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = futures_util::sink::unfold(tx, |tx, item| async move {
            tx.send(item)?;
            Ok::<_, mpsc::error::SendError<LinkOut>>(tx)
        });
        (Box::pin(sink), rx)
    }

    struct Harness {
        out: mpsc::UnboundedReceiver<LinkOut>,
        peer_in: mpsc::UnboundedSender<LinkIn>,
        to_peer: mpsc::Sender<Vec<u8>>,
        inputs: mpsc::Receiver<Input>,
        closer: Arc<Closer>,
        task: tokio::task::JoinHandle<()>,
    }

    /// A pump on the accepting side of a connection, `server` its identity.
    fn accepting(server: &Identity) -> Harness {
        let (sink, out) = sink_channel();
        let (peer_in, incoming) = mpsc::unbounded_channel();
        let (to_peer, rx) = mpsc::channel(4);
        let (in_tx, inputs) = mpsc::channel(4);
        let closer = Closer::new(&CancellationToken::new());
        let task = tokio::spawn(pump(
            7,
            sink,
            Box::pin(futures_util::stream::unfold(
                incoming,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            )),
            rx,
            closer.clone(),
            in_tx,
            Opening::accept(server, Versions::DEFAULT).unwrap(),
        ));
        Harness {
            out,
            peer_in,
            to_peer,
            inputs,
            closer,
            task,
        }
    }

    async fn binary(out: &mut mpsc::UnboundedReceiver<LinkOut>) -> Vec<u8> {
        match out.recv().await {
            Some(LinkOut::Binary(b)) => b,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Runs the dialer's half of the handshake against `h`.
    async fn link(h: &mut Harness, server: &Identity, client: &Identity) {
        let mut dialer = Handshake::dial([5; NONCE_LEN], Some(server.id()));
        let challenge = binary(&mut h.out).await;
        let proof = dialer
            .on_message(client, &challenge)
            .unwrap()
            .reply
            .unwrap();
        // Frames queued for the peer wait for the handshake.
        h.to_peer.send(vec![9]).await.unwrap();
        h.peer_in.send(LinkIn::Binary(proof)).unwrap();
        let answer = binary(&mut h.out).await;
        assert_eq!(
            dialer.on_message(client, &answer).unwrap().peer,
            Some(server.id())
        );
        assert!(
            matches!(h.inputs.recv().await, Some(Input::Linked { id: 7, peer, .. }) if peer == client.id())
        );
        assert_eq!(
            binary(&mut h.out).await,
            [9],
            "queued frame after the answer"
        );
    }

    fn pair() -> (Identity, Identity) {
        (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        )
    }

    #[tokio::test]
    async fn frames_flow_after_the_handshake_and_text_closes_with_4415() {
        let (server, client) = pair();
        let mut h = accepting(&server);
        link(&mut h, &server, &client).await;
        h.peer_in.send(LinkIn::Binary(vec![1, 2, 3])).unwrap();
        assert!(
            matches!(h.inputs.recv().await, Some(Input::Frame { id: 7, ref bytes }) if bytes == &[1, 2, 3])
        );
        h.peer_in.send(LinkIn::Text).unwrap();
        h.task.await.unwrap();
        assert!(matches!(
            h.inputs.recv().await,
            Some(Input::Closed { id: 7, .. })
        ));
        assert!(matches!(
            h.out.recv().await,
            Some(LinkOut::Close(CloseCode::BinaryOnly, _))
        ));
    }

    #[tokio::test]
    async fn a_frame_before_the_handshake_is_reported_and_nothing_is_sent() {
        let (server, _) = pair();
        let mut h = accepting(&server);
        let _challenge = binary(&mut h.out).await;
        h.to_peer.send(vec![9]).await.unwrap();
        // A captured frame replayed as the first message of a connection.
        h.peer_in.send(LinkIn::Binary(vec![1, 0, 0, 0])).unwrap();
        assert!(matches!(
            h.inputs.recv().await,
            Some(Input::HandshakeFailed {
                id: 7,
                error: HandshakeError::FrameFirst
            })
        ));
        h.closer.close(CloseCode::BadFrame, "handshake failed");
        h.task.await.unwrap();
        assert!(matches!(
            h.out.recv().await,
            Some(LinkOut::Close(CloseCode::BadFrame, _))
        ));
        assert!(h.out.try_recv().is_err(), "the queued frame never left");
        assert!(matches!(
            h.inputs.recv().await,
            Some(Input::Closed { id: 7, .. })
        ));
    }

    #[tokio::test]
    async fn a_second_handshake_after_the_link_is_reported() {
        let (server, client) = pair();
        let mut h = accepting(&server);
        link(&mut h, &server, &client).await;
        let (_, challenge) = Handshake::accept(&client, [3; NONCE_LEN]);
        h.peer_in.send(LinkIn::Binary(challenge)).unwrap();
        assert!(matches!(
            h.inputs.recv().await,
            Some(Input::HandshakeFailed {
                id: 7,
                error: HandshakeError::OutOfOrder
            })
        ));
    }

    #[tokio::test]
    async fn driver_close_sends_the_reason() {
        let (server, client) = pair();
        let mut h = accepting(&server);
        link(&mut h, &server, &client).await;
        h.closer.close(CloseCode::SlowConsumer, "too slow");
        h.task.await.unwrap();
        assert!(
            matches!(h.out.recv().await, Some(LinkOut::Close(CloseCode::SlowConsumer, r)) if r == "too slow")
        );
        assert!(matches!(
            h.inputs.recv().await,
            Some(Input::Closed { id: 7, .. })
        ));
    }
}
