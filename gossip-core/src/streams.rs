//! Byte streams between two members: the messages and a sans-IO state machine.
//!
//! The node carries these messages over a reliable, ordered link (TCP or WebSocket, possibly
//! relayed) inside its signed, encrypted frames. This module only decides what to send and what
//! to tell the application: [`Streams`] takes messages in through [`Streams::handle`] and hands
//! everything out as return values ([`StreamOutput`], message structs); it never does I/O, never
//! reads a clock and holds no randomness.
//!
//! # Lifecycle
//!
//! 1. The opener calls [`Streams::open`] and sends the [`StreamOpen`]. The acceptor's
//!    [`Streams::handle`] reports [`StreamOutput::Incoming`].
//! 2. The acceptor's application calls [`Streams::accept`] (send the [`StreamAccept`]; the opener
//!    reports [`StreamOutput::Opened`]) or [`Streams::reject`] (send the [`StreamClose`]; the
//!    opener reports [`StreamOutput::Closed`] with `by_peer: true`).
//! 3. Both sides [`Streams::write`] and [`Streams::read`]; each write returns the [`StreamData`]
//!    to send, a read may return a [`StreamCredit`] to send.
//! 4. Either side calls [`Streams::close`] and sends the [`StreamClose`]. Closing is a full close:
//!    the closing side forgets the stream at once (later messages for it are ignored). The other
//!    side reports [`StreamOutput::Closed`]; bytes it had already received stay readable until
//!    drained (see [`Streams::read`]), then the stream is forgotten.
//!
//! # Stream ids
//!
//! The opener picks the id from its own counter (63 bits, never reused by one [`Streams`]).
//! Both members may open streams to each other at the same time, so an id alone is ambiguous: a
//! stream is identified by [`StreamKey`] = (peer, id, whether we opened it). On the wire, the
//! `stream` field of every message is the opener's id, with the top bit ([`ACCEPTOR_BIT`]) set
//! when the *sender* of the message is the acceptor side. A receiver therefore maps it back
//! unambiguously: top bit clear means "the sender opened it" (`opened_by_us: false`), top bit
//! set means "we opened it" (`opened_by_us: true`). See [`StreamKey::outgoing_id`] and
//! [`StreamKey::from_incoming`].
//!
//! # Flow control
//!
//! Each side grants the other a receive window: the `window` of [`StreamOpen`] / [`StreamAccept`]
//! is what the sender of that message is ready to buffer. A writer may have at most that many
//! unconsumed bytes in flight; [`Streams::write`] accepts only what fits (back-pressure: it
//! returns 0 accepted bytes when the window is exhausted, and [`StreamOutput::Writable`] reports
//! when a [`StreamCredit`] reopened it). The reader returns credit as the application consumes
//! bytes, batched to at least a quarter of the window (or everything, once the buffer is
//! drained). So the bytes buffered for the application never exceed the window, and the window
//! never exceeds [`StreamLimits::max_buffered`].
//!
//! # Protocol violations
//!
//! A peer that breaks a rule gets the stream closed: [`Streams::handle`] returns
//! [`StreamOutput::Send`] with a [`StreamClose`] carrying a [`close_code`], and
//! [`StreamOutput::Closed`] with `by_peer: false`. The rules:
//!
//! * [`StreamData`] beyond the granted window: [`close_code::FLOW_CONTROL`].
//! * [`StreamData`] whose `seq` is not the next expected one: [`close_code::PROTOCOL`]. The link
//!   below is reliable and ordered and this layer never retransmits, so a gap means bytes were
//!   lost and a duplicate means bytes were replayed or re-sent; either way the byte stream can no
//!   longer be delivered intact, and failing loudly beats handing the application corrupt data.
//! * A [`StreamOpen`] for a stream id already in use, an [`StreamAccept`] for a stream that is
//!   not waiting for one, data or credit before the stream was accepted: [`close_code::PROTOCOL`].
//! * A [`StreamOpen`] over one of the [limits](#limits): answered with a [`StreamClose`] carrying
//!   the limit's code (the application never sees that stream).
//!
//! Messages for streams this side does not know (or that the peer already closed) are ignored:
//! they change nothing, are counted in [`StreamStats::ignored`], and [`Streams::handle`] returns
//! [`StreamError::UnknownStream`] (or [`StreamError::Closed`]). They are not answered with a
//! close, because they happen in normal operation: data or credit the peer sent before our
//! [`StreamClose`] reached it, or a close crossing our own close. Answering would only add
//! traffic (and two closes crossing would answer each other).
//!
//! Credit is added with saturation, so no credit sequence can overflow a window.
//! Memory is bounded: at most [`StreamLimits::max_streams`] streams, each buffering at most its
//! receive window; close reasons are cut to [`MAX_REASON_BYTES`].
//!
//! # Limits
//!
//! Stream slots are shared by every member, so no one member may take them all. A
//! [`StreamOpen`] is refused, with a [`StreamClose`] whose code tells the opener which limit it
//! hit, when:
//!
//! | limit | default | code |
//! |---|---|---|
//! | [`StreamLimits::max_streams`]: streams in every state, with every peer, both directions | 256 | [`close_code::TOO_MANY`] |
//! | [`StreamLimits::max_streams_per_peer`]: streams that one peer opened, in every state | 32 | [`close_code::TOO_MANY_FROM_PEER`] |
//! | [`StreamLimits::max_pending_per_peer`]: streams that one peer opened and the application has not accepted yet | 8 | [`close_code::ACCEPT_QUEUE_FULL`] |
//!
//! So one member holds at most 32 of the 256 slots: it takes eight members acting together to
//! fill the table, and an open from anyone else still succeeds while they hold fewer. The
//! per-peer limits count only streams the peer opened: streams this node opened are its own
//! application's choice and count only against [`StreamLimits::max_streams`].
//!
//! An incoming stream the application neither accepts nor rejects within
//! [`StreamLimits::accept_timeout_ms`] (default 10 s) is rejected for it: [`Streams::on_timeout`]
//! sends a [`StreamClose`] with [`close_code::ACCEPT_TIMEOUT`], reports
//! [`StreamOutput::Closed`] (`by_peer: false`) and frees the slot. The state machine reads no
//! clock: [`Streams::handle_at`] takes the time a message arrived, [`Streams::next_deadline`]
//! says when to call [`Streams::on_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

use crate::identity::NodeId;
pub use crate::message::StreamMessage;
use crate::time::Instant;

/// Set in a message's `stream` field when the message's sender is the stream's acceptor.
pub const ACCEPTOR_BIT: u64 = 1 << 63;

/// Longest close reason produced or reported, in bytes; longer ones are cut at a char boundary.
pub const MAX_REASON_BYTES: usize = 256;

/// Codes carried by [`StreamClose`] and [`StreamOutput::Closed`]. Codes below 16 are the
/// engine's; applications use their own codes from 16 up.
pub mod close_code {
    /// Normal end of the stream.
    pub const NORMAL: u32 = 0;
    /// The acceptor's application refused the stream.
    pub const REJECTED: u32 = 1;
    /// The peer sent more data than the window it was granted.
    pub const FLOW_CONTROL: u32 = 2;
    /// The peer broke the stream protocol (sequence gap or duplicate, reused id, bad state).
    pub const PROTOCOL: u32 = 3;
    /// The peer died or left the cluster.
    pub const PEER_GONE: u32 = 4;
    /// The acceptor already had as many streams as it allows
    /// ([`StreamLimits::max_streams`](super::StreamLimits::max_streams)).
    pub const TOO_MANY: u32 = 5;
    /// The acceptor already held as many streams opened by this opener as one member may
    /// ([`StreamLimits::max_streams_per_peer`](super::StreamLimits::max_streams_per_peer)).
    pub const TOO_MANY_FROM_PEER: u32 = 6;
    /// As many streams of this opener were waiting for the acceptor's application as one member
    /// may queue ([`StreamLimits::max_pending_per_peer`](super::StreamLimits::max_pending_per_peer)).
    pub const ACCEPT_QUEUE_FULL: u32 = 7;
    /// The acceptor's application did not accept the stream in time
    /// ([`StreamLimits::accept_timeout_ms`](super::StreamLimits::accept_timeout_ms)).
    pub const ACCEPT_TIMEOUT: u32 = 8;
}

/// Opens a stream. Sent by the opener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    /// The opener's stream id (top bit clear).
    pub stream: u64,
    /// Bytes the opener is ready to receive before it grants credit.
    pub window: u32,
}

/// Accepts a stream. Sent by the acceptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAccept {
    /// The opener's stream id with [`ACCEPTOR_BIT`] set.
    pub stream: u64,
    /// Bytes the acceptor is ready to receive before it grants credit.
    pub window: u32,
}

/// A piece of the byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamData {
    /// The stream (see the module docs for the id scheme).
    pub stream: u64,
    /// Position of this piece among the sender's pieces on this stream: 0, 1, 2...
    pub seq: u64,
    /// The bytes.
    pub data: ByteBuf,
}

/// Grants the other side more window as the application consumed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCredit {
    /// The stream (see the module docs for the id scheme).
    pub stream: u64,
    /// Bytes added to the other side's send window.
    pub credit: u32,
}

/// Ends a stream (or refuses an open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClose {
    /// The stream (see the module docs for the id scheme).
    pub stream: u64,
    /// One of [`close_code`], or an application code.
    pub code: u32,
    /// Human-readable reason, at most [`MAX_REASON_BYTES`] bytes when produced here.
    pub reason: String,
}

impl StreamMessage {
    /// The `stream` field of the message.
    pub fn stream(&self) -> u64 {
        match self {
            StreamMessage::Open(m) => m.stream,
            StreamMessage::Accept(m) => m.stream,
            StreamMessage::Data(m) => m.stream,
            StreamMessage::Credit(m) => m.stream,
            StreamMessage::Close(m) => m.stream,
        }
    }
}

/// Identifies a stream on this node: the peer, the opener's id, and which side opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    /// The member at the other end.
    pub peer: NodeId,
    /// The id the opener picked (top bit always clear).
    pub id: u64,
    /// Whether this node opened the stream.
    pub opened_by_us: bool,
}

impl StreamKey {
    /// The `stream` field of messages this node sends on the stream: the id, with
    /// [`ACCEPTOR_BIT`] set when this node is the acceptor.
    pub fn outgoing_id(&self) -> u64 {
        if self.opened_by_us {
            self.id
        } else {
            self.id | ACCEPTOR_BIT
        }
    }

    /// The stream a message received from `peer` with `stream` field `stream` refers to.
    pub fn from_incoming(peer: NodeId, stream: u64) -> Self {
        StreamKey {
            peer,
            id: stream & !ACCEPTOR_BIT,
            opened_by_us: stream & ACCEPTOR_BIT != 0,
        }
    }
}

/// What [`Streams`] tells the driver and the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// A peer opened a stream: the application calls [`Streams::accept`] or [`Streams::reject`].
    Incoming(StreamKey),
    /// A stream this node opened was accepted: it can be written to.
    Opened(StreamKey),
    /// Bytes arrived and can be taken with [`Streams::read`].
    Readable(StreamKey),
    /// Credit reopened the send window after a [`Streams::write`] was cut short.
    Writable(StreamKey),
    /// The stream ended. Bytes already received stay readable until drained.
    Closed {
        /// The stream.
        key: StreamKey,
        /// One of [`close_code`], or the peer application's code.
        code: u32,
        /// Why.
        reason: String,
        /// Whether the peer closed it (else this node did, on a violation or [`Streams::peer_gone`]).
        by_peer: bool,
    },
    /// Send this message to the member.
    Send(NodeId, StreamMessage),
}

/// Misuse of the [`Streams`] API, or a message that was ignored.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// No such stream (never existed, or already closed and forgotten).
    #[error("unknown stream")]
    UnknownStream,
    /// The stream has not been accepted yet.
    #[error("stream is not open yet")]
    NotOpen,
    /// The stream is not an incoming stream waiting to be accepted or rejected.
    #[error("stream is not waiting to be accepted")]
    NotIncoming,
    /// The stream was closed by the peer (or the peer is gone); only buffered bytes remain.
    #[error("stream is closed")]
    Closed,
    /// As many streams exist as [`StreamLimits::max_streams`] allows.
    #[error("too many streams")]
    TooManyStreams,
}

/// Bounds on streams (see [the module docs](self#limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most streams at once, in every state and with every peer together.
    pub max_streams: usize,
    /// Most streams one peer opened that exist at once, in every state (its share of
    /// `max_streams`).
    pub max_streams_per_peer: usize,
    /// Most streams one peer opened that wait for the application to accept them (its share of
    /// the accept queue).
    pub max_pending_per_peer: usize,
    /// How long an incoming stream may wait for [`Streams::accept`] before it is rejected with
    /// [`close_code::ACCEPT_TIMEOUT`], in milliseconds.
    pub accept_timeout_ms: u64,
    /// Initial receive window granted to the peer, in bytes (at least 1 is used).
    pub window: u32,
    /// Largest [`StreamData`] payload produced, in bytes (at least 1 is used).
    pub max_chunk: usize,
    /// Most bytes buffered per stream for the application; the window granted is the smaller of
    /// `window` and this.
    pub max_buffered: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 256,
            max_streams_per_peer: 32,
            max_pending_per_peer: 8,
            accept_timeout_ms: 10_000,
            window: 256 * 1024,
            max_chunk: 16 * 1024,
            max_buffered: 256 * 1024,
        }
    }
}

/// Counters of what [`Streams`] refused or ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Messages for unknown or already closed streams, ignored.
    pub ignored: u64,
    /// Streams closed because the peer broke a rule.
    pub violations: u64,
    /// Opens answered with a close (a limit reached, id in use).
    pub refused: u64,
    /// Incoming streams rejected because the application did not accept them in time.
    pub accept_timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// We opened it and wait for the accept.
    Opening,
    /// The peer opened it and the application has not decided yet.
    Incoming,
    /// Both ways open.
    Open,
    /// Closed by the peer or because the peer is gone; buffered bytes remain until read.
    Draining,
}

struct Stream {
    state: State,
    /// Bytes we may still send.
    send_window: u64,
    /// Seq of the next piece we send.
    send_seq: u64,
    /// A write was cut short by the window: report `Writable` on the next credit.
    blocked: bool,
    /// Bytes the peer may still send us.
    recv_window: u32,
    /// Seq of the next piece we expect.
    recv_seq: u64,
    /// Bytes the application consumed that were not credited back yet.
    unacked: u32,
    /// Received, not yet read. `buf.len() + recv_window + unacked` is the granted window.
    buf: VecDeque<u8>,
    /// While `Incoming`: when it is rejected unless accepted (also a key of `Streams::pending`).
    accept_by: Instant,
}

impl Stream {
    fn new(state: State, recv_window: u32, send_window: u64) -> Self {
        Stream {
            state,
            send_window,
            send_seq: 0,
            blocked: false,
            recv_window,
            recv_seq: 0,
            unacked: 0,
            buf: VecDeque::new(),
            accept_by: Instant::default(),
        }
    }
}

/// The streams of one node with all its peers.
pub struct Streams {
    limits: StreamLimits,
    /// Window granted to peers: `min(window, max_buffered)`, at least 1.
    window: u32,
    max_chunk: usize,
    next_id: u64,
    streams: BTreeMap<StreamKey, Stream>,
    /// Accept deadlines of the `Incoming` streams, earliest first.
    pending: BTreeSet<(Instant, StreamKey)>,
    /// The latest time handed in, for [`Streams::handle`] which gets none.
    clock: Instant,
    stats: StreamStats,
}

impl fmt::Debug for Streams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streams")
            .field("limits", &self.limits)
            .field("streams", &self.streams.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn clip(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn close_msg(key: StreamKey, code: u32, reason: &str) -> StreamClose {
    StreamClose {
        stream: key.outgoing_id(),
        code,
        reason: clip(reason),
    }
}

impl Streams {
    /// No streams yet.
    pub fn new(limits: StreamLimits) -> Self {
        let window = u64::from(limits.window)
            .min(u64::try_from(limits.max_buffered).unwrap_or(u64::MAX))
            .max(1);
        Streams {
            limits,
            window: u32::try_from(window).unwrap_or(u32::MAX),
            max_chunk: limits.max_chunk.max(1),
            next_id: 0,
            streams: BTreeMap::new(),
            pending: BTreeSet::new(),
            clock: Instant::default(),
            stats: StreamStats::default(),
        }
    }

    /// The limits this was built with.
    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    /// What was refused or ignored so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Streams that exist, in every state.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream exists.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Every stream that exists, in key order.
    pub fn keys(&self) -> impl Iterator<Item = StreamKey> + '_ {
        self.streams.keys().copied()
    }

    /// Bytes received and not yet read.
    pub fn readable(&self, key: StreamKey) -> Result<usize, StreamError> {
        let s = self.streams.get(&key).ok_or(StreamError::UnknownStream)?;
        Ok(s.buf.len())
    }

    /// Bytes [`Streams::write`] would accept now.
    pub fn writable(&self, key: StreamKey) -> Result<usize, StreamError> {
        let s = self.streams.get(&key).ok_or(StreamError::UnknownStream)?;
        match s.state {
            State::Open => Ok(usize::try_from(s.send_window).unwrap_or(usize::MAX)),
            State::Draining => Err(StreamError::Closed),
            State::Opening | State::Incoming => Err(StreamError::NotOpen),
        }
    }

    /// Opens a stream to `peer`; send the returned [`StreamOpen`] to it.
    pub fn open(&mut self, peer: NodeId) -> Result<(StreamKey, StreamOpen), StreamError> {
        if self.streams.len() >= self.limits.max_streams {
            return Err(StreamError::TooManyStreams);
        }
        // Ids are never reused unless the 63-bit counter wraps; skip any still in use then.
        let key = loop {
            let key = StreamKey {
                peer,
                id: self.next_id & !ACCEPTOR_BIT,
                opened_by_us: true,
            };
            self.next_id = self.next_id.wrapping_add(1);
            if !self.streams.contains_key(&key) {
                break key;
            }
        };
        self.streams
            .insert(key, Stream::new(State::Opening, self.window, 0));
        let open = StreamOpen {
            stream: key.outgoing_id(),
            window: self.window,
        };
        Ok((key, open))
    }

    /// Accepts an [`StreamOutput::Incoming`] stream; send the returned [`StreamAccept`].
    pub fn accept(&mut self, key: StreamKey) -> Result<StreamAccept, StreamError> {
        let s = self
            .streams
            .get_mut(&key)
            .ok_or(StreamError::UnknownStream)?;
        match s.state {
            State::Incoming => {
                s.state = State::Open;
                self.pending.remove(&(s.accept_by, key));
                Ok(StreamAccept {
                    stream: key.outgoing_id(),
                    window: self.window,
                })
            }
            State::Draining => Err(StreamError::Closed),
            State::Opening | State::Open => Err(StreamError::NotIncoming),
        }
    }

    /// Refuses an [`StreamOutput::Incoming`] stream and forgets it; send the returned
    /// [`StreamClose`] (usually with [`close_code::REJECTED`]).
    pub fn reject(
        &mut self,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<StreamClose, StreamError> {
        let s = self.streams.get(&key).ok_or(StreamError::UnknownStream)?;
        match s.state {
            State::Incoming => {
                self.forget(key);
                Ok(close_msg(key, code, reason))
            }
            State::Draining => Err(StreamError::Closed),
            State::Opening | State::Open => Err(StreamError::NotIncoming),
        }
    }

    /// Queues `data` for the peer, as much as its window allows: returns how many bytes of
    /// `data` were taken (a prefix; 0 when the window is exhausted) and the messages to send, in
    /// order. When fewer bytes than offered were taken, [`StreamOutput::Writable`] reports when
    /// the peer granted more.
    pub fn write(
        &mut self,
        key: StreamKey,
        data: &[u8],
    ) -> Result<(usize, Vec<StreamData>), StreamError> {
        let s = self
            .streams
            .get_mut(&key)
            .ok_or(StreamError::UnknownStream)?;
        match s.state {
            State::Open => {}
            State::Draining => return Err(StreamError::Closed),
            State::Opening | State::Incoming => return Err(StreamError::NotOpen),
        }
        let n = usize::try_from(s.send_window)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if n < data.len() {
            s.blocked = true;
        }
        s.send_window -= n as u64;
        let stream = key.outgoing_id();
        let out = data[..n]
            .chunks(self.max_chunk)
            .map(|chunk| {
                let seq = s.send_seq;
                s.send_seq = s.send_seq.wrapping_add(1);
                StreamData {
                    stream,
                    seq,
                    data: ByteBuf::from(chunk.to_vec()),
                }
            })
            .collect();
        Ok((n, out))
    }

    /// Takes up to `max` received bytes. Returns a [`StreamCredit`] to send when the consumed
    /// bytes reach a quarter of the window or the buffer is drained.
    ///
    /// After [`StreamOutput::Closed`], the remaining bytes can still be read; the read that
    /// drains them forgets the stream (later calls return [`StreamError::UnknownStream`]).
    pub fn read(
        &mut self,
        key: StreamKey,
        max: usize,
    ) -> Result<(Vec<u8>, Option<StreamCredit>), StreamError> {
        let s = self
            .streams
            .get_mut(&key)
            .ok_or(StreamError::UnknownStream)?;
        if matches!(s.state, State::Opening | State::Incoming) {
            return Err(StreamError::NotOpen);
        }
        let n = max.min(s.buf.len());
        let mut out = Vec::with_capacity(n);
        let (front, back) = s.buf.as_slices();
        let from_front = n.min(front.len());
        out.extend_from_slice(&front[..from_front]);
        out.extend_from_slice(&back[..n - from_front]);
        s.buf.drain(..n);
        if s.state == State::Draining {
            if s.buf.is_empty() {
                self.forget(key);
            }
            return Ok((out, None));
        }
        // `n` bytes left a buffer of at most `window` bytes, so the sum stays within `window`.
        s.unacked = s.unacked.saturating_add(n as u32);
        let threshold = (self.window / 4).max(1);
        let credit = if s.unacked > 0 && (s.unacked >= threshold || s.buf.is_empty()) {
            let credit = s.unacked;
            s.unacked = 0;
            s.recv_window = s.recv_window.saturating_add(credit);
            Some(StreamCredit {
                stream: key.outgoing_id(),
                credit,
            })
        } else {
            None
        };
        Ok((out, credit))
    }

    /// Closes the stream and forgets it, dropping unread bytes; send the returned
    /// [`StreamClose`]. If the peer had already closed it (or is gone), there is nothing to
    /// send: the stream is forgotten and [`StreamError::Closed`] returned.
    pub fn close(
        &mut self,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<StreamClose, StreamError> {
        let s = self.forget(key).ok_or(StreamError::UnknownStream)?;
        match s.state {
            State::Draining => Err(StreamError::Closed),
            State::Opening | State::Incoming | State::Open => Ok(close_msg(key, code, reason)),
        }
    }

    /// The member died or left: closes every stream with it ([`close_code::PEER_GONE`]).
    /// Bytes already received stay readable until drained.
    pub fn peer_gone(&mut self, peer: NodeId) -> Vec<StreamOutput> {
        let lo = StreamKey {
            peer,
            id: 0,
            opened_by_us: false,
        };
        let hi = StreamKey {
            peer,
            id: u64::MAX,
            opened_by_us: true,
        };
        let keys: Vec<StreamKey> = self.streams.range(lo..=hi).map(|(k, _)| *k).collect();
        let mut out = Vec::new();
        for key in keys {
            let Some(s) = self.streams.get_mut(&key) else {
                continue;
            };
            match s.state {
                State::Draining => continue,
                State::Open if !s.buf.is_empty() => s.state = State::Draining,
                _ => {
                    self.forget(key);
                }
            }
            out.push(StreamOutput::Closed {
                key,
                code: close_code::PEER_GONE,
                reason: "peer gone".to_string(),
                by_peer: false,
            });
        }
        out
    }

    /// [`Streams::handle_at`] at the latest time this was handed (by `handle_at` or
    /// [`Streams::on_timeout`]): an incoming stream's accept deadline then counts from that time,
    /// which is earlier than its arrival by at most the time since. Callers that know the time
    /// use `handle_at`.
    pub fn handle(
        &mut self,
        peer: NodeId,
        msg: StreamMessage,
    ) -> Result<Vec<StreamOutput>, StreamError> {
        self.handle_at(self.clock, peer, msg)
    }

    /// Processes a message received from `peer` at `now`. Rule violations close the stream and
    /// are reported in the outputs (see the module docs). `Err` means the message was ignored and
    /// nothing changed: [`StreamError::UnknownStream`] when it names no stream,
    /// [`StreamError::Closed`] when the peer had already closed the stream. Both are expected
    /// after a close and are only counted ([`StreamStats::ignored`]).
    pub fn handle_at(
        &mut self,
        now: Instant,
        peer: NodeId,
        msg: StreamMessage,
    ) -> Result<Vec<StreamOutput>, StreamError> {
        self.clock = self.clock.max(now);
        let key = StreamKey::from_incoming(peer, msg.stream());
        let max_buffered = self.limits.max_buffered;
        match msg {
            StreamMessage::Open(open) => self.on_open(now, key, open),
            StreamMessage::Accept(accept) => {
                let s = self.live(key)?;
                if s.state != State::Opening {
                    return Ok(self.fail(key, close_code::PROTOCOL, "unexpected accept"));
                }
                s.state = State::Open;
                s.send_window = u64::from(accept.window);
                Ok(vec![StreamOutput::Opened(key)])
            }
            StreamMessage::Data(data) => {
                let s = self.live(key)?;
                if s.state != State::Open {
                    return Ok(self.fail(key, close_code::PROTOCOL, "data before accept"));
                }
                if data.seq != s.recv_seq {
                    let why = if data.seq < s.recv_seq {
                        "duplicate data"
                    } else {
                        "data sequence gap"
                    };
                    return Ok(self.fail(key, close_code::PROTOCOL, why));
                }
                let len = data.data.len();
                let fits_window = u32::try_from(len).is_ok_and(|len| len <= s.recv_window);
                if !fits_window || s.buf.len().saturating_add(len) > max_buffered {
                    return Ok(self.fail(key, close_code::FLOW_CONTROL, "window exceeded"));
                }
                s.recv_seq = s.recv_seq.wrapping_add(1);
                s.recv_window -= len as u32;
                s.buf.extend(data.data.iter());
                Ok(if len > 0 {
                    vec![StreamOutput::Readable(key)]
                } else {
                    Vec::new()
                })
            }
            StreamMessage::Credit(credit) => {
                let s = self.live(key)?;
                if s.state != State::Open {
                    return Ok(self.fail(key, close_code::PROTOCOL, "credit before accept"));
                }
                s.send_window = s.send_window.saturating_add(u64::from(credit.credit));
                if s.blocked && credit.credit > 0 {
                    s.blocked = false;
                    Ok(vec![StreamOutput::Writable(key)])
                } else {
                    Ok(Vec::new())
                }
            }
            StreamMessage::Close(close) => {
                let s = self.live(key)?;
                if s.state == State::Open && !s.buf.is_empty() {
                    s.state = State::Draining;
                } else {
                    self.forget(key);
                }
                Ok(vec![StreamOutput::Closed {
                    key,
                    code: close.code,
                    reason: clip(&close.reason),
                    by_peer: true,
                }])
            }
        }
    }

    /// The stream a message names, if it is known and not already closed by the peer; else the
    /// message is counted as ignored.
    fn live(&mut self, key: StreamKey) -> Result<&mut Stream, StreamError> {
        let stats = &mut self.stats;
        match self.streams.get_mut(&key) {
            None => {
                stats.ignored += 1;
                Err(StreamError::UnknownStream)
            }
            Some(s) if s.state == State::Draining => {
                stats.ignored += 1;
                Err(StreamError::Closed)
            }
            Some(s) => Ok(s),
        }
    }

    /// When [`Streams::on_timeout`] has work: the earliest accept deadline of a stream waiting
    /// for the application.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.first().map(|(at, _)| *at)
    }

    /// Rejects every incoming stream whose accept deadline passed at `now`
    /// ([`close_code::ACCEPT_TIMEOUT`]): returns the [`StreamClose`] to send to each opener and
    /// [`StreamOutput::Closed`] (`by_peer: false`) for the application, which saw it `Incoming`.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<StreamOutput> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        while let Some(&(at, key)) = self.pending.first() {
            if at > now {
                break;
            }
            self.forget(key);
            self.stats.accept_timeouts += 1;
            let reason = "not accepted in time";
            let close = close_msg(key, close_code::ACCEPT_TIMEOUT, reason);
            out.push(StreamOutput::Send(key.peer, close.into()));
            out.push(StreamOutput::Closed {
                key,
                code: close_code::ACCEPT_TIMEOUT,
                reason: reason.to_string(),
                by_peer: false,
            });
        }
        out
    }

    /// Removes a stream, and its accept deadline if it had one.
    fn forget(&mut self, key: StreamKey) -> Option<Stream> {
        let s = self.streams.remove(&key)?;
        if s.state == State::Incoming {
            self.pending.remove(&(s.accept_by, key));
        }
        Some(s)
    }

    /// Streams `peer` opened that exist, and how many of them wait for the application.
    fn opened_by(&self, peer: NodeId) -> (usize, usize) {
        let lo = StreamKey {
            peer,
            id: 0,
            opened_by_us: false,
        };
        let hi = StreamKey {
            peer,
            id: u64::MAX,
            opened_by_us: false,
        };
        self.streams
            .range(lo..=hi)
            .filter(|(k, _)| !k.opened_by_us)
            .fold((0, 0), |(all, pending), (_, s)| {
                (all + 1, pending + usize::from(s.state == State::Incoming))
            })
    }

    fn on_open(
        &mut self,
        now: Instant,
        key: StreamKey,
        open: StreamOpen,
    ) -> Result<Vec<StreamOutput>, StreamError> {
        if let Some(s) = self.streams.get(&key) {
            if s.state == State::Draining {
                // The old stream is over on the peer's side; refuse the new one, keep the bytes.
                self.stats.refused += 1;
                let close = close_msg(key, close_code::PROTOCOL, "stream id in use");
                return Ok(vec![StreamOutput::Send(key.peer, close.into())]);
            }
            return Ok(self.fail(key, close_code::PROTOCOL, "duplicate open"));
        }
        if key.opened_by_us {
            // An open always comes from the opener, so its id never has the acceptor bit.
            self.stats.ignored += 1;
            return Err(StreamError::UnknownStream);
        }
        // The peer's own shares first: a member over its share learns that, not that the table
        // is full.
        let (from_peer, pending) = self.opened_by(key.peer);
        let refusal = if from_peer >= self.limits.max_streams_per_peer {
            Some((close_code::TOO_MANY_FROM_PEER, "too many streams from you"))
        } else if pending >= self.limits.max_pending_per_peer {
            Some((
                close_code::ACCEPT_QUEUE_FULL,
                "too many streams waiting to be accepted",
            ))
        } else if self.streams.len() >= self.limits.max_streams {
            Some((close_code::TOO_MANY, "too many streams"))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            self.stats.refused += 1;
            let close = close_msg(key, code, reason);
            return Ok(vec![StreamOutput::Send(key.peer, close.into())]);
        }
        let mut stream = Stream::new(State::Incoming, self.window, u64::from(open.window));
        stream.accept_by = now.plus_millis(self.limits.accept_timeout_ms);
        self.pending.insert((stream.accept_by, key));
        self.streams.insert(key, stream);
        Ok(vec![StreamOutput::Incoming(key)])
    }

    /// Closes a live stream because the peer broke a rule.
    fn fail(&mut self, key: StreamKey, code: u32, reason: &str) -> Vec<StreamOutput> {
        self.forget(key);
        self.stats.violations += 1;
        let close = close_msg(key, code, reason);
        vec![
            StreamOutput::Send(key.peer, close.into()),
            StreamOutput::Closed {
                key,
                code,
                reason: clip(reason),
                by_peer: false,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn node(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    fn small(window: u32, max_chunk: usize, max_streams: usize) -> StreamLimits {
        StreamLimits {
            max_streams,
            window,
            max_chunk,
            max_buffered: window as usize,
            ..StreamLimits::default()
        }
    }

    /// Two nodes wired to each other; messages are delivered in order.
    struct Pair {
        nodes: [Streams; 2],
        ids: [NodeId; 2],
        /// (recipient index, message).
        queue: VecDeque<(usize, StreamMessage)>,
        events: [Vec<StreamOutput>; 2],
        /// Messages the recipient ignored.
        ignored: [Vec<StreamError>; 2],
    }

    impl Pair {
        fn new(a: StreamLimits, b: StreamLimits) -> Self {
            Pair {
                nodes: [Streams::new(a), Streams::new(b)],
                ids: [node(1), node(2)],
                queue: VecDeque::new(),
                events: [Vec::new(), Vec::new()],
                ignored: [Vec::new(), Vec::new()],
            }
        }

        fn send(&mut self, from: usize, msg: impl Into<StreamMessage>) {
            self.queue.push_back((1 - from, msg.into()));
        }

        fn pump(&mut self) {
            while let Some((to, msg)) = self.queue.pop_front() {
                let from = 1 - to;
                match self.nodes[to].handle(self.ids[from], msg) {
                    Ok(outputs) => {
                        for out in outputs {
                            match out {
                                StreamOutput::Send(peer, m) => {
                                    assert_eq!(peer, self.ids[from]);
                                    self.queue.push_back((from, m));
                                }
                                other => self.events[to].push(other),
                            }
                        }
                    }
                    Err(e) => self.ignored[to].push(e),
                }
            }
        }

        fn events(&mut self, i: usize) -> Vec<StreamOutput> {
            std::mem::take(&mut self.events[i])
        }

        /// Node 0 opens a stream to node 1, which accepts it. Returns both sides' keys.
        fn connect(&mut self) -> (StreamKey, StreamKey) {
            self.connect_from(0)
        }

        fn connect_from(&mut self, opener: usize) -> (StreamKey, StreamKey) {
            let acceptor = 1 - opener;
            let (ko, open) = self.nodes[opener].open(self.ids[acceptor]).unwrap();
            self.send(opener, open);
            self.pump();
            let ka = match self.events(acceptor).as_slice() {
                [StreamOutput::Incoming(k)] => *k,
                other => panic!("expected Incoming, got {other:?}"),
            };
            assert_eq!(ka.peer, self.ids[opener]);
            assert_eq!(ka.id, ko.id);
            assert!(ko.opened_by_us && !ka.opened_by_us);
            let accept = self.nodes[acceptor].accept(ka).unwrap();
            self.send(acceptor, accept);
            self.pump();
            assert_eq!(self.events(opener), vec![StreamOutput::Opened(ko)]);
            (ko, ka)
        }

        /// Writes everything it can and queues the data messages.
        fn write(&mut self, i: usize, key: StreamKey, data: &[u8]) -> usize {
            let (n, msgs) = self.nodes[i].write(key, data).unwrap();
            for m in msgs {
                self.send(i, m);
            }
            n
        }

        /// Reads and queues the credit, if any.
        fn read(&mut self, i: usize, key: StreamKey, max: usize) -> Vec<u8> {
            let (bytes, credit) = self.nodes[i].read(key, max).unwrap();
            if let Some(c) = credit {
                self.send(i, c);
            }
            bytes
        }
    }

    fn closed(key: StreamKey, code: u32, reason: &str, by_peer: bool) -> StreamOutput {
        StreamOutput::Closed {
            key,
            code,
            reason: reason.to_string(),
            by_peer,
        }
    }

    #[test]
    fn ids_map_back_on_both_sides() {
        let a = node(1);
        let k = StreamKey {
            peer: a,
            id: 5,
            opened_by_us: true,
        };
        assert_eq!(k.outgoing_id(), 5);
        // The acceptor receives 5 and sends 5 | ACCEPTOR_BIT back.
        let at_acceptor = StreamKey::from_incoming(a, 5);
        assert!(!at_acceptor.opened_by_us);
        assert_eq!(at_acceptor.outgoing_id(), 5 | ACCEPTOR_BIT);
        assert_eq!(StreamKey::from_incoming(a, at_acceptor.outgoing_id()), k);
    }

    #[test]
    fn messages_encode_as_small_arrays() {
        let data = StreamData {
            stream: 3 | ACCEPTOR_BIT,
            seq: 7,
            data: ByteBuf::from(vec![1, 2, 3]),
        };
        let bytes = rmp_serde::to_vec(&data).unwrap();
        assert_eq!(bytes[0], 0x93, "a 3-element array");
        assert_eq!(rmp_serde::from_slice::<StreamData>(&bytes).unwrap(), data);
        let open = StreamOpen {
            stream: 1,
            window: 262_144,
        };
        let bytes = rmp_serde::to_vec(&open).unwrap();
        assert_eq!(bytes, [0x92, 0x01, 0xce, 0x00, 0x04, 0x00, 0x00]);
        let close = StreamClose {
            stream: 9,
            code: close_code::PROTOCOL,
            reason: "x".into(),
        };
        let bytes = rmp_serde::to_vec(&close).unwrap();
        assert_eq!(rmp_serde::from_slice::<StreamClose>(&bytes).unwrap(), close);
        let credit = StreamCredit {
            stream: 2,
            credit: u32::MAX,
        };
        let bytes = rmp_serde::to_vec(&credit).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<StreamCredit>(&bytes).unwrap(),
            credit
        );
        let accept = StreamAccept {
            stream: ACCEPTOR_BIT,
            window: 1,
        };
        let bytes = rmp_serde::to_vec(&accept).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<StreamAccept>(&bytes).unwrap(),
            accept
        );
    }

    #[test]
    fn open_accept_and_state_errors() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let (ka, open) = p.nodes[0].open(p.ids[1]).unwrap();
        assert_eq!(open.window, 256 * 1024);
        assert_eq!(p.nodes[0].write(ka, b"x"), Err(StreamError::NotOpen));
        assert_eq!(p.nodes[0].read(ka, 1), Err(StreamError::NotOpen));
        assert_eq!(p.nodes[0].accept(ka), Err(StreamError::NotIncoming));
        p.send(0, open);
        p.pump();
        let kb = match p.events(1).as_slice() {
            [StreamOutput::Incoming(k)] => *k,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.nodes[1].write(kb, b"x"), Err(StreamError::NotOpen));
        let accept = p.nodes[1].accept(kb).unwrap();
        assert_eq!(accept.stream, ka.id | ACCEPTOR_BIT);
        assert_eq!(p.nodes[1].accept(kb), Err(StreamError::NotIncoming));
        assert_eq!(
            p.nodes[1].reject(kb, close_code::REJECTED, ""),
            Err(StreamError::NotIncoming)
        );
        p.send(1, accept);
        p.pump();
        assert_eq!(p.events(0), vec![StreamOutput::Opened(ka)]);
        assert_eq!(p.write(0, ka, b"ping"), 4);
        assert_eq!(p.write(1, kb, b"pong"), 4);
        p.pump();
        assert_eq!(p.events(0), vec![StreamOutput::Readable(ka)]);
        assert_eq!(p.events(1), vec![StreamOutput::Readable(kb)]);
        assert_eq!(p.read(1, kb, 100), b"ping");
        assert_eq!(p.read(0, ka, 100), b"pong");
        let unknown = StreamKey {
            peer: node(9),
            id: 0,
            opened_by_us: true,
        };
        assert_eq!(
            p.nodes[0].write(unknown, b"x"),
            Err(StreamError::UnknownStream)
        );
        assert_eq!(p.nodes[0].read(unknown, 1), Err(StreamError::UnknownStream));
        assert_eq!(p.nodes[0].accept(unknown), Err(StreamError::UnknownStream));
    }

    #[test]
    fn reject_is_delivered_and_forgets_the_stream() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let (ka, open) = p.nodes[0].open(p.ids[1]).unwrap();
        p.send(0, open);
        p.pump();
        let kb = match p.events(1).as_slice() {
            [StreamOutput::Incoming(k)] => *k,
            other => panic!("{other:?}"),
        };
        let close = p.nodes[1]
            .reject(kb, close_code::REJECTED, "no thanks")
            .unwrap();
        assert!(p.nodes[1].is_empty());
        assert_eq!(p.nodes[1].accept(kb), Err(StreamError::UnknownStream));
        p.send(1, close);
        p.pump();
        assert_eq!(
            p.events(0),
            vec![closed(ka, close_code::REJECTED, "no thanks", true)]
        );
        assert!(p.nodes[0].is_empty());
    }

    #[test]
    fn both_sides_open_the_same_id_independently() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let (a_out, b_in) = p.connect_from(0);
        let (b_out, a_in) = p.connect_from(1);
        assert_eq!(a_out.id, b_out.id, "both counters start at the same id");
        assert_ne!(a_out, a_in);
        assert_ne!(b_out, b_in);
        p.write(0, a_out, b"a->b on a's stream");
        p.write(0, a_in, b"a->b on b's stream");
        p.pump();
        assert_eq!(p.read(1, b_in, 100), b"a->b on a's stream");
        assert_eq!(p.read(1, b_out, 100), b"a->b on b's stream");
    }

    #[test]
    fn ten_megabytes_both_ways_arrive_intact() {
        const TOTAL: usize = 10 * 1024 * 1024;
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let limits = StreamLimits::default();
        let window = limits.window as usize;
        let mut p = Pair::new(limits, limits);
        let (ka, kb) = p.connect();
        let keys = [ka, kb];
        let mut src = [vec![0u8; TOTAL], vec![0u8; TOTAL]];
        rng.fill_bytes(&mut src[0]);
        rng.fill_bytes(&mut src[1]);
        let mut dst: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut sent = [0usize; 2];
        let mut rounds = 0;
        let mut blocked_writes = 0;
        while dst[0].len() < TOTAL || dst[1].len() < TOTAL {
            rounds += 1;
            assert!(rounds < 100_000, "transfer stalled");
            for i in 0..2 {
                if sent[i] < TOTAL {
                    let want = (rng.next_u64() % 70_000) as usize + 1;
                    let end = (sent[i] + want).min(TOTAL);
                    let n = p.write(i, keys[i], &src[i][sent[i]..end]);
                    if n < end - sent[i] {
                        blocked_writes += 1;
                    }
                    sent[i] += n;
                }
            }
            p.pump();
            for i in 0..2 {
                assert!(p.nodes[i].readable(keys[i]).unwrap() <= window);
                // Sometimes the application does not read at all, to exercise back-pressure.
                let max = match rng.next_u64() % 4 {
                    0 => 0,
                    _ => (rng.next_u64() % 90_000) as usize + 1,
                };
                let bytes = p.read(i, keys[i], max);
                dst[i].extend_from_slice(&bytes);
            }
            p.pump();
        }
        assert!(dst[0] == src[1], "b -> a corrupted");
        assert!(dst[1] == src[0], "a -> b corrupted");
        assert!(blocked_writes > 0, "back-pressure was never exercised");
        for i in 0..2 {
            assert!(p.ignored[i].is_empty());
            assert!(
                p.events(i)
                    .iter()
                    .all(|e| matches!(e, StreamOutput::Readable(_) | StreamOutput::Writable(_))),
                "no stream was closed"
            );
            assert_eq!(p.nodes[i].stats(), StreamStats::default());
        }
    }

    #[test]
    fn back_pressure_blocks_and_resumes() {
        let limits = small(1000, 100, 8);
        let mut p = Pair::new(limits, limits);
        let (ka, kb) = p.connect();
        let (n, msgs) = p.nodes[0].write(ka, &[7; 5000]).unwrap();
        assert_eq!(n, 1000);
        assert_eq!(msgs.len(), 10);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.seq, i as u64);
            assert_eq!(m.data.len(), 100);
            assert_eq!(m.stream, ka.id);
        }
        for m in msgs {
            p.send(0, m);
        }
        p.pump();
        assert_eq!(p.events(1).len(), 10);
        assert_eq!(p.nodes[1].readable(kb), Ok(1000));
        // The reader does not read: the writer stays blocked.
        assert_eq!(p.nodes[0].writable(ka), Ok(0));
        assert_eq!(p.nodes[0].write(ka, &[1; 10]), Ok((0, Vec::new())));
        p.pump();
        assert!(p.events(0).is_empty());
        // Reading less than a quarter of the window grants nothing yet.
        assert_eq!(p.nodes[1].read(kb, 100).unwrap(), (vec![7; 100], None));
        let (bytes, credit) = p.nodes[1].read(kb, 200).unwrap();
        assert_eq!(bytes.len(), 200);
        let credit = credit.expect("300 bytes consumed >= window / 4");
        assert_eq!(credit.credit, 300);
        assert_eq!(credit.stream, kb.outgoing_id());
        p.send(1, credit);
        p.pump();
        assert_eq!(p.events(0), vec![StreamOutput::Writable(ka)]);
        assert_eq!(p.nodes[0].writable(ka), Ok(300));
        assert_eq!(p.write(0, ka, &[8; 5000]), 300);
        p.pump();
        assert_eq!(p.nodes[1].readable(kb), Ok(1000));
        // Draining the buffer returns all consumed bytes, however few.
        let all = p.read(1, kb, 2000);
        assert_eq!(all.len(), 1000);
        assert_eq!(&all[..700], &[7; 700][..]);
        assert_eq!(&all[700..], &[8; 300][..]);
        p.pump();
        assert_eq!(p.events(0), vec![StreamOutput::Writable(ka)]);
        assert_eq!(p.nodes[0].writable(ka), Ok(1000));
        assert_eq!(p.write(0, ka, b"abc"), 3);
        p.pump();
        let (bytes, credit) = p.nodes[1].read(kb, 10).unwrap();
        assert_eq!(bytes, b"abc");
        assert_eq!(credit.as_ref().map(|c| c.credit), Some(3));
        // No Writable without a blocked write.
        p.send(1, credit.unwrap());
        p.pump();
        assert!(p.events(0).is_empty());
    }

    #[test]
    fn max_buffered_caps_the_window() {
        let limits = StreamLimits {
            max_buffered: 500,
            ..small(1000, 100, 8)
        };
        let mut s = Streams::new(limits);
        let (_, open) = s.open(node(2)).unwrap();
        assert_eq!(open.window, 500);
    }

    fn violation(out: &[StreamOutput], peer: NodeId, key: StreamKey, code: u32) {
        match out {
            [
                StreamOutput::Send(to, StreamMessage::Close(c)),
                StreamOutput::Closed {
                    key: k,
                    code: cc,
                    by_peer: false,
                    ..
                },
            ] => {
                assert_eq!(*to, peer);
                assert_eq!(c.stream, key.outgoing_id());
                assert_eq!(c.code, code);
                assert_eq!(*k, key);
                assert_eq!(*cc, code);
            }
            other => panic!("expected a violation close, got {other:?}"),
        }
    }

    fn data(stream: u64, seq: u64, len: usize) -> StreamMessage {
        StreamData {
            stream,
            seq,
            data: ByteBuf::from(vec![0xAB; len]),
        }
        .into()
    }

    #[test]
    fn data_beyond_the_window_closes_with_flow_control() {
        let limits = small(1000, 100, 8);
        let mut p = Pair::new(limits, limits);
        let (ka, kb) = p.connect();
        let a = p.ids[0];
        let out = p.nodes[1].handle(a, data(ka.id, 0, 1001)).unwrap();
        violation(&out, a, kb, close_code::FLOW_CONTROL);
        assert!(p.nodes[1].is_empty());
        assert_eq!(p.nodes[1].stats().violations, 1);
        // The close reaches the offender.
        if let StreamOutput::Send(_, close) = out[0].clone() {
            p.send(1, close);
        }
        p.pump();
        assert!(matches!(
            p.events(0).as_slice(),
            [StreamOutput::Closed { key, code: close_code::FLOW_CONTROL, by_peer: true, .. }] if *key == ka
        ));
        assert!(p.nodes[0].is_empty());

        // Cumulative: within the window piece by piece, then over it.
        let (ka, kb) = p.connect();
        assert!(
            p.nodes[1]
                .handle(a, data(ka.id, 0, 600))
                .unwrap()
                .contains(&StreamOutput::Readable(kb))
        );
        let out = p.nodes[1].handle(a, data(ka.id, 1, 401)).unwrap();
        violation(&out, a, kb, close_code::FLOW_CONTROL);
    }

    #[test]
    fn credit_extends_the_window_the_peer_may_use() {
        let limits = small(1000, 100, 8);
        let mut p = Pair::new(limits, limits);
        let (ka, kb) = p.connect();
        let a = p.ids[0];
        p.nodes[1].handle(a, data(ka.id, 0, 1000)).unwrap();
        let (_, credit) = p.nodes[1].read(kb, 400).unwrap();
        assert_eq!(credit.unwrap().credit, 400);
        // 400 more fit; 401 would not.
        p.nodes[1].handle(a, data(ka.id, 1, 400)).unwrap();
        let out = p.nodes[1].handle(a, data(ka.id, 2, 1)).unwrap();
        violation(&out, a, kb, close_code::FLOW_CONTROL);

        // Bytes read but not yet credited are not window: the buffer has room, the window has not.
        let (ka, kb) = p.connect();
        p.nodes[1].handle(a, data(ka.id, 0, 1000)).unwrap();
        let (_, credit) = p.nodes[1].read(kb, 100).unwrap();
        assert_eq!(credit, None);
        assert_eq!(p.nodes[1].readable(kb), Ok(900));
        let out = p.nodes[1].handle(a, data(ka.id, 1, 1)).unwrap();
        violation(&out, a, kb, close_code::FLOW_CONTROL);
    }

    #[test]
    fn seq_gap_and_duplicate_close_with_protocol() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let a = p.ids[0];
        let (ka, kb) = p.connect();
        let out = p.nodes[1].handle(a, data(ka.id, 1, 10)).unwrap();
        violation(&out, a, kb, close_code::PROTOCOL);

        let (ka, kb) = p.connect();
        p.nodes[1].handle(a, data(ka.id, 0, 10)).unwrap();
        let out = p.nodes[1].handle(a, data(ka.id, 0, 10)).unwrap();
        violation(&out, a, kb, close_code::PROTOCOL);
        assert_eq!(p.nodes[1].stats().violations, 2);
    }

    #[test]
    fn out_of_state_messages_close_with_protocol() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let a = p.ids[0];
        // Duplicate open of a live stream.
        let (ka, kb) = p.connect();
        let dup = StreamOpen {
            stream: ka.id,
            window: 10,
        };
        let out = p.nodes[1].handle(a, dup.into()).unwrap();
        violation(&out, a, kb, close_code::PROTOCOL);
        // An accept from the opener side.
        let (ka, kb) = p.connect();
        let bogus = StreamAccept {
            stream: ka.id,
            window: 10,
        };
        let out = p.nodes[1].handle(a, bogus.into()).unwrap();
        violation(&out, a, kb, close_code::PROTOCOL);
        // Data before accept.
        let (ka, open) = p.nodes[0].open(p.ids[1]).unwrap();
        p.nodes[1].handle(a, open.into()).unwrap();
        let kb = StreamKey::from_incoming(a, ka.id);
        let out = p.nodes[1].handle(a, data(ka.id, 0, 1)).unwrap();
        violation(&out, a, kb, close_code::PROTOCOL);
        // Credit before accept, received by the opener.
        let (ka, open) = p.nodes[0].open(p.ids[1]).unwrap();
        let b = p.ids[1];
        let credit = StreamCredit {
            stream: open.stream | ACCEPTOR_BIT,
            credit: 5,
        };
        let out = p.nodes[0].handle(b, credit.into()).unwrap();
        violation(&out, b, ka, close_code::PROTOCOL);
    }

    #[test]
    fn unknown_streams_are_ignored_and_counted() {
        let mut s = Streams::new(StreamLimits::default());
        let peer = node(3);
        assert_eq!(
            s.handle(peer, data(4, 0, 10)),
            Err(StreamError::UnknownStream)
        );
        let credit = StreamCredit {
            stream: 4 | ACCEPTOR_BIT,
            credit: 10,
        };
        assert_eq!(
            s.handle(peer, credit.into()),
            Err(StreamError::UnknownStream)
        );
        let close = StreamClose {
            stream: 4,
            code: 0,
            reason: String::new(),
        };
        assert_eq!(
            s.handle(peer, close.into()),
            Err(StreamError::UnknownStream)
        );
        // An open claiming to come from the acceptor side names no stream.
        let open = StreamOpen {
            stream: 4 | ACCEPTOR_BIT,
            window: 10,
        };
        assert_eq!(s.handle(peer, open.into()), Err(StreamError::UnknownStream));
        assert_eq!(s.stats().ignored, 4);
        assert!(s.is_empty());
    }

    #[test]
    fn credit_saturates() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let b = p.ids[1];
        let (ka, _) = p.connect();
        let credit = StreamCredit {
            stream: ka.id | ACCEPTOR_BIT,
            credit: u32::MAX,
        };
        p.nodes[0].streams.get_mut(&ka).unwrap().send_window = u64::MAX - 1;
        for _ in 0..3 {
            assert_eq!(p.nodes[0].handle(b, credit.clone().into()), Ok(Vec::new()));
        }
        assert_eq!(p.nodes[0].streams[&ka].send_window, u64::MAX);
        let (n, msgs) = p.nodes[0].write(ka, &[1; 40_000]).unwrap();
        assert_eq!(n, 40_000);
        assert_eq!(msgs.len(), 3);
    }

    #[test]
    fn close_is_delivered_after_the_data_which_stays_readable() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let (ka, kb) = p.connect();
        p.write(0, ka, b"hello world");
        let close = p.nodes[0].close(ka, 42, "done").unwrap();
        assert_eq!(close.stream, ka.id);
        assert_eq!(
            p.nodes[0].write(ka, b"more"),
            Err(StreamError::UnknownStream)
        );
        assert!(p.nodes[0].is_empty());
        // Data b sent before learning about the close is ignored by a.
        p.write(1, kb, b"late");
        p.send(0, close);
        p.pump();
        assert_eq!(
            p.events(1),
            vec![StreamOutput::Readable(kb), closed(kb, 42, "done", true)]
        );
        assert_eq!(p.ignored[0], vec![StreamError::UnknownStream]);
        assert_eq!(p.nodes[0].stats().ignored, 1);
        assert_eq!(p.nodes[1].write(kb, b"x"), Err(StreamError::Closed));
        assert_eq!(p.nodes[1].writable(kb), Err(StreamError::Closed));
        assert_eq!(p.nodes[1].read(kb, 5).unwrap(), (b"hello".to_vec(), None));
        assert_eq!(
            p.nodes[1].read(kb, 100).unwrap(),
            (b" world".to_vec(), None)
        );
        assert_eq!(p.nodes[1].read(kb, 100), Err(StreamError::UnknownStream));
        assert!(p.nodes[1].is_empty());
    }

    #[test]
    fn close_without_pending_data_forgets_at_once_and_long_reasons_are_cut() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let (ka, kb) = p.connect();
        let reason = "é".repeat(MAX_REASON_BYTES);
        let close = p.nodes[1].close(kb, close_code::NORMAL, &reason).unwrap();
        assert!(close.reason.len() <= MAX_REASON_BYTES);
        assert!(reason.starts_with(&close.reason));
        p.send(1, close.clone());
        p.pump();
        assert_eq!(
            p.events(0),
            vec![closed(ka, close_code::NORMAL, &close.reason, true)]
        );
        assert!(p.nodes[0].is_empty());
        // Closing a stream the peer already closed sends nothing and frees it.
        let (ka, kb) = p.connect();
        p.write(0, ka, b"x");
        let close = p.nodes[0].close(ka, 0, "").unwrap();
        p.send(0, close);
        p.pump();
        assert_eq!(p.nodes[1].readable(kb), Ok(1));
        assert_eq!(p.nodes[1].close(kb, 0, ""), Err(StreamError::Closed));
        assert!(p.nodes[1].is_empty());
    }

    #[test]
    fn peer_gone_closes_every_stream_with_that_peer() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let b = p.ids[1];
        let (k1, _) = p.connect();
        let (k2b, k2) = p.connect_from(1);
        p.write(1, k2b, b"left over");
        p.pump();
        p.events(0);
        let (k3, _) = p.nodes[0].open(b).unwrap();
        let (kc, _) = p.nodes[0].open(node(3)).unwrap();
        let out = p.nodes[0].peer_gone(b);
        assert_eq!(out.len(), 3);
        for k in [k1, k2, k3] {
            assert!(out.contains(&closed(k, close_code::PEER_GONE, "peer gone", false)));
        }
        assert_eq!(p.nodes[0].keys().collect::<Vec<_>>(), vec![k2, kc]);
        assert_eq!(p.nodes[0].write(k1, b"x"), Err(StreamError::UnknownStream));
        assert_eq!(p.nodes[0].write(k2, b"x"), Err(StreamError::Closed));
        assert_eq!(p.nodes[0].read(k2, 100).unwrap().0, b"left over");
        assert_eq!(p.nodes[0].keys().collect::<Vec<_>>(), vec![kc]);
        // Nothing more to close.
        assert!(p.nodes[0].peer_gone(b).is_empty());
    }

    #[test]
    fn max_streams_is_enforced_on_both_sides() {
        let mut s = Streams::new(small(1000, 100, 2));
        s.open(node(2)).unwrap();
        s.open(node(3)).unwrap();
        assert_eq!(s.open(node(2)), Err(StreamError::TooManyStreams));

        let mut p = Pair::new(small(1000, 100, 10), small(1000, 100, 2));
        let mut keys = Vec::new();
        for _ in 0..3 {
            let (k, open) = p.nodes[0].open(p.ids[1]).unwrap();
            p.send(0, open);
            keys.push(k);
        }
        p.pump();
        assert_eq!(p.events(1).len(), 2);
        assert_eq!(p.nodes[1].len(), 2);
        assert_eq!(p.nodes[1].stats().refused, 1);
        assert_eq!(
            p.events(0),
            vec![closed(
                keys[2],
                close_code::TOO_MANY,
                "too many streams",
                true
            )]
        );
        assert_eq!(p.nodes[0].len(), 2);
        // A freed slot can be used again.
        let kb = StreamKey::from_incoming(p.ids[0], keys[0].id);
        let close = p.nodes[1].reject(kb, close_code::REJECTED, "").unwrap();
        p.send(1, close);
        p.pump();
        p.events(0);
        p.connect();
        assert_eq!(p.nodes[1].len(), 2);
    }

    #[test]
    fn reopening_an_id_that_still_drains_is_refused_without_losing_data() {
        let mut p = Pair::new(StreamLimits::default(), StreamLimits::default());
        let a = p.ids[0];
        let (ka, kb) = p.connect();
        p.write(0, ka, b"keep");
        let close = p.nodes[0].close(ka, 0, "").unwrap();
        p.send(0, close);
        p.pump();
        p.events(1);
        let reopen = StreamOpen {
            stream: ka.id,
            window: 10,
        };
        let out = p.nodes[1].handle(a, reopen.into()).unwrap();
        assert!(matches!(
            out.as_slice(),
            [StreamOutput::Send(
                _,
                StreamMessage::Close(StreamClose {
                    code: close_code::PROTOCOL,
                    ..
                })
            )]
        ));
        assert_eq!(p.nodes[1].read(kb, 10).unwrap().0, b"keep");
    }

    /// Random messages from a hostile peer never panic and never exceed the bounds.
    #[test]
    fn hostile_messages_stay_bounded() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let limits = StreamLimits {
            accept_timeout_ms: 60,
            max_streams_per_peer: 6,
            max_pending_per_peer: 3,
            ..small(4096, 512, 16)
        };
        let mut s = Streams::new(limits);
        let peers = [node(1), node(2)];
        let mut now = Instant::default();
        for _ in 0..20_000 {
            now = now.plus_millis(rng.next_u64() % 50);
            let peer = peers[(rng.next_u64() % 2) as usize];
            let stream = (rng.next_u64() % 8)
                | if rng.next_u64() % 2 == 0 {
                    0
                } else {
                    ACCEPTOR_BIT
                };
            let msg: StreamMessage = match rng.next_u64() % 6 {
                0 => StreamOpen {
                    stream,
                    window: rng.next_u32(),
                }
                .into(),
                1 => StreamAccept {
                    stream,
                    window: rng.next_u32(),
                }
                .into(),
                2 | 3 => data(stream, rng.next_u64() % 3, (rng.next_u64() % 2048) as usize),
                4 => StreamCredit {
                    stream,
                    credit: rng.next_u32(),
                }
                .into(),
                _ => StreamClose {
                    stream,
                    code: 0,
                    reason: String::new(),
                }
                .into(),
            };
            if let Ok(out) = s.handle_at(now, peer, msg) {
                for o in out {
                    // Leave some waiting, for the accept timeout.
                    if let StreamOutput::Incoming(k) = o
                        && rng.next_u64() % 3 > 0
                    {
                        let _ = s.accept(k);
                    }
                }
            }
            if s.next_deadline().is_some_and(|at| at <= now) {
                assert!(!s.on_timeout(now).is_empty());
            }
            match rng.next_u64() % 4 {
                0 => {
                    let _ = s.open(peers[0]);
                }
                1 => {
                    let first = s.keys().next();
                    if let Some(k) = first {
                        let _ = s.read(k, 1000);
                        let _ = s.write(k, &[0; 100]);
                    }
                }
                _ => {}
            }
            assert!(s.len() <= limits.max_streams);
            for p in peers {
                let (all, pending) = s.opened_by(p);
                assert!(all <= limits.max_streams_per_peer);
                assert!(pending <= limits.max_pending_per_peer);
            }
            // Exactly the waiting streams have a deadline.
            let waiting = s.streams.values().filter(|st| st.state == State::Incoming);
            assert_eq!(waiting.count(), s.pending.len());
            for k in s.keys().collect::<Vec<_>>() {
                assert!(s.readable(k).unwrap() <= 4096);
            }
        }
        assert!(s.stats().violations > 0);
        assert!(s.stats().accept_timeouts > 0);
    }

    fn open_msg(id: u64) -> StreamMessage {
        StreamOpen {
            stream: id,
            window: 1000,
        }
        .into()
    }

    /// The code of the close `out` sends back, if `out` is a refusal.
    fn refusal(out: &[StreamOutput]) -> Option<u32> {
        match out {
            [StreamOutput::Send(_, StreamMessage::Close(c))] => Some(c.code),
            _ => None,
        }
    }

    /// Feeds `n` opens from `peer` (ids from `first`), accepting each `Incoming` when `accept`;
    /// returns how many arrived and the codes of the refusals.
    fn flood(
        s: &mut Streams,
        now: Instant,
        peer: NodeId,
        first: u64,
        n: u64,
        accept: bool,
    ) -> (usize, Vec<u32>) {
        let (mut arrived, mut refused) = (0, Vec::new());
        for id in first..first + n {
            let out = s.handle_at(now, peer, open_msg(id)).unwrap();
            match out.as_slice() {
                [StreamOutput::Incoming(k)] => {
                    arrived += 1;
                    if accept {
                        s.accept(*k).unwrap();
                    }
                }
                other => refused.push(refusal(other).expect("a refusal")),
            }
        }
        (arrived, refused)
    }

    #[test]
    fn one_peer_opening_300_streams_cannot_make_another_peers_open_fail() {
        let now = Instant::from_millis(1);
        let (hostile, honest) = (node(1), node(2));
        // The application accepts everything (as both drivers do): the per-peer share holds.
        let mut s = Streams::new(StreamLimits::default());
        let (arrived, refused) = flood(&mut s, now, hostile, 0, 300, true);
        assert_eq!(arrived, 32);
        assert_eq!(refused.len(), 268);
        assert!(refused.iter().all(|c| *c == close_code::TOO_MANY_FROM_PEER));
        assert_eq!(s.stats().refused, 268);
        let out = s.handle_at(now, honest, open_msg(0)).unwrap();
        assert_eq!(
            out,
            vec![StreamOutput::Incoming(StreamKey::from_incoming(honest, 0))]
        );

        // The application accepts nothing: the per-peer accept queue holds.
        let mut s = Streams::new(StreamLimits::default());
        let (arrived, refused) = flood(&mut s, now, hostile, 0, 300, false);
        assert_eq!(arrived, 8);
        assert!(refused.iter().all(|c| *c == close_code::ACCEPT_QUEUE_FULL));
        let out = s.handle_at(now, honest, open_msg(0)).unwrap();
        assert!(matches!(out.as_slice(), [StreamOutput::Incoming(_)]));
    }

    #[test]
    fn limits_are_per_peer_and_the_table_limit_still_holds() {
        let now = Instant::from_millis(1);
        let limits = StreamLimits {
            max_streams: 5,
            max_streams_per_peer: 2,
            max_pending_per_peer: 1,
            ..StreamLimits::default()
        };
        let mut s = Streams::new(limits);
        let (a, b, c) = (node(1), node(2), node(3));
        // One waiting stream per peer at a time.
        assert_eq!(
            flood(&mut s, now, a, 0, 2, false).1,
            [close_code::ACCEPT_QUEUE_FULL]
        );
        s.accept(StreamKey::from_incoming(a, 0)).unwrap();
        // Two streams per peer, whatever their state.
        assert_eq!(flood(&mut s, now, a, 2, 1, false), (1, vec![]));
        assert_eq!(
            flood(&mut s, now, a, 3, 1, false).1,
            [close_code::TOO_MANY_FROM_PEER]
        );
        // Another peer has its own share.
        assert_eq!(
            flood(&mut s, now, b, 0, 3, true),
            (2, vec![close_code::TOO_MANY_FROM_PEER])
        );
        // Streams this node opens count only against the table.
        let (mine, _) = s.open(a).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(flood(&mut s, now, c, 0, 1, true).1, [close_code::TOO_MANY]);
        assert_eq!(s.open(c), Err(StreamError::TooManyStreams));
        // A freed slot serves the next opener.
        s.close(mine, close_code::NORMAL, "").unwrap();
        assert_eq!(flood(&mut s, now, c, 0, 1, true), (1, vec![]));
        // A peer closing one of its streams gets its share back.
        let close = StreamClose {
            stream: 2,
            code: close_code::NORMAL,
            reason: String::new(),
        };
        s.handle_at(now, a, close.into()).unwrap();
        assert_eq!(flood(&mut s, now, a, 4, 1, false), (1, vec![]));
        assert_eq!(s.stats().refused, 4);
    }

    #[test]
    fn the_accept_timeout_frees_the_slot_and_tells_the_opener() {
        let limits = StreamLimits {
            max_pending_per_peer: 1,
            ..StreamLimits::default()
        };
        let mut p = Pair::new(limits, limits);
        let a = p.ids[0];
        let t0 = Instant::from_millis(1_000);
        let (ka, open) = p.nodes[0].open(p.ids[1]).unwrap();
        let out = p.nodes[1].handle_at(t0, a, open.into()).unwrap();
        let kb = StreamKey::from_incoming(a, ka.id);
        assert_eq!(out, vec![StreamOutput::Incoming(kb)]);
        assert_eq!(p.nodes[1].next_deadline(), Some(t0.plus_millis(10_000)));
        // The queue of this peer is full until the deadline.
        let (ka2, open2) = p.nodes[0].open(p.ids[1]).unwrap();
        let out = p.nodes[1].handle_at(t0, a, open2.clone().into()).unwrap();
        assert_eq!(refusal(&out), Some(close_code::ACCEPT_QUEUE_FULL));
        assert!(p.nodes[1].on_timeout(t0.plus_millis(9_999)).is_empty());
        let out = p.nodes[1].on_timeout(t0.plus_millis(10_000));
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            closed(
                kb,
                close_code::ACCEPT_TIMEOUT,
                "not accepted in time",
                false
            )
        );
        let StreamOutput::Send(to, close) = out[0].clone() else {
            panic!("expected the close first, got {out:?}");
        };
        assert_eq!(to, a);
        assert!(p.nodes[1].is_empty());
        assert_eq!(p.nodes[1].next_deadline(), None);
        assert_eq!(p.nodes[1].stats().accept_timeouts, 1);
        assert_eq!(p.nodes[1].accept(kb), Err(StreamError::UnknownStream));
        // The opener learns why.
        p.send(1, close);
        p.pump();
        assert_eq!(
            p.events(0),
            vec![closed(
                ka,
                close_code::ACCEPT_TIMEOUT,
                "not accepted in time",
                true
            )]
        );
        // The freed slot takes the next stream of the same peer; accepted in time, it stays.
        let out = p.nodes[1]
            .handle_at(t0.plus_millis(10_000), a, open2.into())
            .unwrap();
        let kb2 = StreamKey::from_incoming(a, ka2.id);
        assert_eq!(out, vec![StreamOutput::Incoming(kb2)]);
        p.nodes[1].accept(kb2).unwrap();
        assert_eq!(p.nodes[1].next_deadline(), None);
        assert!(p.nodes[1].on_timeout(t0.plus_millis(60_000)).is_empty());
        assert_eq!(p.nodes[1].len(), 1);
        // Without a time, the latest one handed in counts: here the last on_timeout.
        let (ka3, open3) = p.nodes[0].open(p.ids[1]).unwrap();
        p.nodes[1].handle(a, open3.into()).unwrap();
        assert_eq!(p.nodes[1].next_deadline(), Some(t0.plus_millis(70_000)));
        // A rejected or peer-closed waiting stream leaves no deadline behind.
        let kb3 = StreamKey::from_incoming(a, ka3.id);
        p.nodes[1].reject(kb3, close_code::REJECTED, "").unwrap();
        assert_eq!(p.nodes[1].next_deadline(), None);
        let (ka4, open4) = p.nodes[0].open(p.ids[1]).unwrap();
        p.nodes[1].handle(a, open4.into()).unwrap();
        let close = p.nodes[0].close(ka4, close_code::NORMAL, "").unwrap();
        p.nodes[1].handle(a, close.into()).unwrap();
        assert_eq!(p.nodes[1].next_deadline(), None);
        assert!(p.nodes[1].on_timeout(t0.plus_millis(600_000)).is_empty());
    }
}
