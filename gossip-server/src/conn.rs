//! One connection (TCP or WebSocket, inbound or outbound) and the task that pumps it.
//!
//! Every transport is reduced to a stream of [`LinkIn`] and a sink of [`LinkOut`], so the same
//! pump serves axum's WebSocket, tokio-tungstenite and length-prefixed TCP, and tests can drive it
//! with channels.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use gossip_core::NodeId;
use gossip_core::link::{CloseCode, HelloError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's number, unique for the life of the node.
pub(crate) type ConnId = u64;

/// What a transport delivered.
#[derive(Debug)]
pub(crate) enum LinkIn {
    /// A binary message: a frame, or a hello.
    Binary(Vec<u8>),
    /// A text message (refused: binary only).
    Text,
    /// A message over the frame limit.
    TooBig,
    /// The peer closed, or the transport failed.
    End,
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
}

impl Closer {
    pub(crate) fn new(parent: &CancellationToken) -> Arc<Closer> {
        Arc::new(Closer {
            token: parent.child_token(),
            reason: Mutex::new(None),
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
    },
    /// A hello arrived (the server at the other end of an outbound WebSocket says who it is):
    /// its decoded id, or why it does not decode.
    Hello {
        id: ConnId,
        hello: Result<NodeId, HelloError>,
    },
    /// A frame arrived on a connection.
    Frame { id: ConnId, bytes: Vec<u8> },
    /// A connection ended.
    Closed { id: ConnId },
    /// Seeds resolved: join through them.
    Join(Vec<gossip_core::Address>),
}

/// Which kind of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    WebSocket,
}

/// Runs a connection until either side ends it: frames from `rx` go out (after `hello`, if any),
/// messages that arrive go to the driver. Closes with the [`Closer`]'s reason.
pub(crate) async fn pump<Si, St>(
    id: ConnId,
    mut sink: Si,
    mut stream: St,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closer: Arc<Closer>,
    inbound: mpsc::Sender<Input>,
    hello: Option<Vec<u8>>,
) where
    Si: Sink<LinkOut> + Unpin,
    St: Stream<Item = LinkIn> + Unpin,
{
    let reader = async {
        loop {
            let item = tokio::select! {
                _ = closer.token.cancelled() => return,
                item = stream.next() => item.unwrap_or(LinkIn::End),
            };
            match item {
                LinkIn::Binary(bytes) if gossip_core::link::is_hello(&bytes) => {
                    // Whether a hello is welcome here is the session's call, in the driver.
                    let hello = gossip_core::link::decode_hello(&bytes);
                    if inbound.send(Input::Hello { id, hello }).await.is_err() {
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
            }
        }
    };
    // The greeting goes out before anything is read, so a client always gets it first.
    let greeted = match hello {
        Some(hello) => tokio::select! {
            _ = closer.token.cancelled() => false,
            sent = sink.send(LinkOut::Binary(hello)) => sent.is_ok(),
        },
        None => true,
    };
    let writer = async {
        if !greeted {
            return;
        }
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
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
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
    let _ = inbound.send(Input::Closed { id }).await;
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
    hello: Option<Vec<u8>>,
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
        hello,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

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

    #[tokio::test]
    async fn text_message_closes_with_4415_and_reports_the_end() {
        let (sink, mut out) = sink_channel();
        let incoming = stream::iter(vec![LinkIn::Binary(vec![1, 2, 3]), LinkIn::Text])
            .chain(stream::pending());
        let (_tx, rx) = mpsc::channel(4);
        let (in_tx, mut in_rx) = mpsc::channel(4);
        let closer = Closer::new(&CancellationToken::new());
        pump(
            7,
            sink,
            Box::pin(incoming),
            rx,
            closer,
            in_tx,
            Some(b"hi".to_vec()),
        )
        .await;
        assert!(
            matches!(in_rx.recv().await, Some(Input::Frame { id: 7, ref bytes }) if bytes == &[1, 2, 3])
        );
        assert!(matches!(in_rx.recv().await, Some(Input::Closed { id: 7 })));
        assert!(matches!(out.recv().await, Some(LinkOut::Binary(b)) if b == b"hi"));
        assert!(matches!(
            out.recv().await,
            Some(LinkOut::Close(CloseCode::BinaryOnly, _))
        ));
    }

    #[tokio::test]
    async fn driver_close_sends_the_reason() {
        let (sink, mut out) = sink_channel();
        let (tx, rx) = mpsc::channel(4);
        let (in_tx, mut in_rx) = mpsc::channel(4);
        let closer = Closer::new(&CancellationToken::new());
        tx.send(vec![9]).await.unwrap();
        let task = tokio::spawn(pump(
            1,
            sink,
            Box::pin(stream::pending()),
            rx,
            closer.clone(),
            in_tx,
            None,
        ));
        assert!(matches!(out.recv().await, Some(LinkOut::Binary(b)) if b == [9]));
        closer.close(CloseCode::SlowConsumer, "too slow");
        task.await.unwrap();
        assert!(
            matches!(out.recv().await, Some(LinkOut::Close(CloseCode::SlowConsumer, r)) if r == "too slow")
        );
        assert!(matches!(in_rx.recv().await, Some(Input::Closed { id: 1 })));
    }
}
