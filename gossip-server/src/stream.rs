//! Streams as tokio `AsyncRead + AsyncWrite`.
//!
//! The engine owns flow control (windows, credit); the driver moves bytes between it and a pair
//! of bounded buffers per stream that the [`GossipStream`] reads and writes without waiting for
//! the driver. A full read buffer stops the driver from reading the engine, which stops granting
//! credit: back-pressure reaches the sending peer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use gossip_core::link::Outbox;
use gossip_core::streams::{StreamKey, StreamOutput, close_code};
use gossip_core::{Instant, Node, NodeId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::GossipError;

#[derive(Debug, Default)]
struct Buffers {
    read: VecDeque<u8>,
    read_waker: Option<Waker>,
    /// Written by the application, waiting for the engine's window.
    write: Outbox,
    write_waker: Option<Waker>,
    /// The peer (or the engine) ended the stream: no more bytes will be pulled after `read`.
    ended: Option<(u32, String)>,
    /// This side asked to end the stream (shutdown or drop).
    finishing: bool,
    /// The close went out (or the stream is gone): writes fail, shutdown completes.
    closed: bool,
}

impl Buffers {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug)]
struct StreamState {
    buffers: Mutex<Buffers>,
    cap: usize,
}

impl StreamState {
    fn lock(&self) -> MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Streams the driver must look at (bytes written, buffer space freed), and the signal to do so.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    keys: Mutex<HashSet<StreamKey>>,
    notify: Notify,
}

impl Dirty {
    fn mark(&self, key: StreamKey) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        self.notify.notify_one();
    }

    /// Resolves when a stream was marked.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await
    }

    fn take(&self) -> Vec<StreamKey> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// A byte stream to another member: ordered, flow-controlled, authenticated and encrypted.
///
/// `shutdown` closes the whole stream once written bytes are out (there is no half-close): finish
/// reading what you expect before shutting down. Dropping it closes it too.
#[derive(Debug)]
pub struct GossipStream {
    key: StreamKey,
    state: Arc<StreamState>,
    dirty: Arc<Dirty>,
}

impl GossipStream {
    /// The member at the other end.
    pub fn peer(&self) -> NodeId {
        self.key.peer
    }

    /// The engine's key of this stream.
    pub fn key(&self) -> StreamKey {
        self.key
    }
}

impl AsyncRead for GossipStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut b = self.state.lock();
        if !b.read.is_empty() {
            let n = buf.remaining().min(b.read.len());
            let (front, back) = b.read.as_slices();
            let from_front = n.min(front.len());
            buf.put_slice(&front[..from_front]);
            buf.put_slice(&back[..n - from_front]);
            b.read.drain(..n);
            if b.read.len() < self.state.cap / 2 {
                self.dirty.mark(self.key);
            }
            return Poll::Ready(Ok(()));
        }
        match &b.ended {
            Some((close_code::NORMAL, _)) => Poll::Ready(Ok(())),
            Some((code, reason)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream closed with code {code}: {reason}"),
            ))),
            None if b.closed => Poll::Ready(Ok(())),
            None => {
                b.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GossipStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut b = self.state.lock();
        if b.closed || b.ended.is_some() || b.finishing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = b.write.room(self.state.cap);
        if room == 0 {
            b.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        b.write.push(&data[..n]);
        drop(b);
        self.dirty.mark(self.key);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut b = self.state.lock();
        if b.write.is_empty() {
            Poll::Ready(Ok(()))
        } else if b.closed || b.ended.is_some() {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        } else {
            b.write_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut b = self.state.lock();
        if b.closed || b.ended.is_some() {
            return Poll::Ready(Ok(()));
        }
        b.write_waker = Some(cx.waker().clone());
        if !b.finishing {
            b.finishing = true;
            drop(b);
            self.dirty.mark(self.key);
        }
        Poll::Pending
    }
}

impl Drop for GossipStream {
    fn drop(&mut self) {
        let mut b = self.state.lock();
        if !b.closed {
            b.finishing = true;
            drop(b);
            self.dirty.mark(self.key);
        }
    }
}

/// The driver's side: every live stream's buffers, streams being opened, and incoming ones.
#[derive(Debug)]
pub(crate) struct StreamTable {
    streams: HashMap<StreamKey, Arc<StreamState>>,
    opening: HashMap<StreamKey, oneshot::Sender<Result<GossipStream, GossipError>>>,
    incoming: mpsc::Sender<GossipStream>,
    dirty: Arc<Dirty>,
    cap: usize,
}

impl StreamTable {
    /// A table whose accepted incoming streams go to `incoming` (bounded: when it is full, new
    /// streams are refused).
    pub(crate) fn new(incoming: mpsc::Sender<GossipStream>, cap: usize) -> StreamTable {
        StreamTable {
            streams: HashMap::new(),
            opening: HashMap::new(),
            incoming,
            dirty: Arc::new(Dirty::default()),
            cap,
        }
    }

    pub(crate) fn dirty(&self) -> Arc<Dirty> {
        self.dirty.clone()
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn make(&mut self, key: StreamKey) -> GossipStream {
        let state = Arc::new(StreamState {
            buffers: Mutex::new(Buffers::default()),
            cap: self.cap,
        });
        self.streams.insert(key, state.clone());
        GossipStream {
            key,
            state,
            dirty: self.dirty.clone(),
        }
    }

    pub(crate) fn opening(
        &mut self,
        key: StreamKey,
        reply: oneshot::Sender<Result<GossipStream, GossipError>>,
    ) {
        self.opening.insert(key, reply);
    }

    /// Reacts to a stream event of the engine.
    pub(crate) fn on_event(&mut self, node: &mut Node, now: Instant, out: StreamOutput) {
        match out {
            StreamOutput::Incoming(key) => {
                let incoming = self.incoming.clone();
                match incoming.try_reserve() {
                    Ok(permit) => {
                        if node.streams().accept(now, key).is_ok() {
                            permit.send(self.make(key));
                        }
                    }
                    Err(_) => {
                        let _ = node.streams().reject(
                            now,
                            key,
                            close_code::REJECTED,
                            "accept queue full",
                        );
                    }
                }
            }
            StreamOutput::Opened(key) => {
                if let Some(reply) = self.opening.remove(&key) {
                    let stream = self.make(key);
                    if reply.send(Ok(stream)).is_err() {
                        // The opener gave up waiting: its drop already marked the stream.
                    }
                }
            }
            StreamOutput::Readable(key) | StreamOutput::Writable(key) => {
                self.service_one(node, now, key)
            }
            StreamOutput::Closed {
                key, code, reason, ..
            } => {
                if let Some(reply) = self.opening.remove(&key) {
                    let _ = reply.send(Err(GossipError::StreamRefused { code, reason }));
                    return;
                }
                if let Some(state) = self.streams.get(&key).cloned() {
                    // Pull what the engine still holds before marking the end.
                    self.pull(node, now, key, &state);
                    let mut b = state.lock();
                    b.ended = Some((code, reason));
                    b.wake_all();
                }
            }
            StreamOutput::Send(..) => {}
        }
    }

    /// Moves bytes for every stream marked dirty.
    pub(crate) fn service(&mut self, node: &mut Node, now: Instant) {
        for key in self.dirty.take() {
            self.service_one(node, now, key);
        }
    }

    fn service_one(&mut self, node: &mut Node, now: Instant, key: StreamKey) {
        let Some(state) = self.streams.get(&key).cloned() else {
            return;
        };
        self.pull(node, now, key, &state);
        let mut b = state.lock();
        if !b.closed
            && b.ended.is_none()
            && b.write
                .flush(|chunk| node.streams().write(now, key, chunk))
                .is_err()
        {
            b.closed = true;
        }
        if b.write.len() < state.cap
            && let Some(w) = b.write_waker.take()
        {
            w.wake();
        }
        if b.finishing && !b.closed && (b.write.is_empty() || b.ended.is_some()) {
            let _ = node.streams().close(now, key, close_code::NORMAL, "done");
            b.closed = true;
            b.wake_all();
        }
        let gone = b.closed || b.ended.is_some();
        let drained = b.read.is_empty();
        drop(b);
        if gone && drained && Arc::strong_count(&state) <= 2 {
            // Only the table (and this local) hold it: the user dropped the stream.
            self.streams.remove(&key);
        }
    }

    fn pull(&self, node: &mut Node, now: Instant, key: StreamKey, state: &StreamState) {
        let mut b = state.lock();
        let room = state.cap.saturating_sub(b.read.len());
        if room == 0 {
            return;
        }
        if let Ok(data) = node.streams().read(now, key, room)
            && !data.is_empty()
        {
            b.read.extend(data);
            if let Some(w) = b.read_waker.take() {
                w.wake();
            }
        }
    }

    /// The node stopped: every stream ends with an error and every open attempt fails.
    pub(crate) fn stop_all(&mut self) {
        for (_, reply) in self.opening.drain() {
            let _ = reply.send(Err(GossipError::Stopped));
        }
        for state in self.streams.values() {
            let mut b = state.lock();
            b.ended
                .get_or_insert((close_code::PEER_GONE, "node stopped".into()));
            b.closed = true;
            b.wake_all();
        }
    }
}
