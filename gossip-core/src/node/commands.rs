use rand_core::Rng;
use serde_bytes::ByteBuf;

use super::Node;
use super::backlog::Subject;
use super::sync::BOOTSTRAP_SYNCS;
use super::timers::Timer;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::error::EncodeError;
use crate::event::Event;
use crate::groups::GroupId;
use crate::identity::NodeId;
use crate::membership::State;
use crate::message::{
    Alive, Broadcast, Direct, Leave, Metadata, Request, Response, Sync, sync_phase,
};
use crate::requests::{Quorum, QuorumId, RequestId};
use crate::streams::{StreamError, StreamMessage, StreamOutput};
use crate::time::Instant;

/// Why a command was refused. Nothing was sent and no state changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Left,
    /// The addressee is not a known, live member.
    #[error("unknown or unreachable member {0}")]
    UnknownMember(NodeId),
    /// The metadata would exceed `Config::max_metadata_bytes`.
    #[error("metadata of {size} bytes exceeds the {max} byte limit")]
    MetadataTooLarge {
        /// Resulting size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// A stream operation failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// No group with that id.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// Too many requests are outstanding (`Config::max_queue`).
    #[error("too many outstanding requests")]
    TooManyRequests,
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Node {
    /// Joins through seed addresses: a push-pull with each, which teaches them this node and
    /// this node the cluster.
    pub fn join(&mut self, now: Instant, seeds: &[Address]) {
        // Members that join together learn little from the seed's first answer: a few quick
        // push-pulls with random members close the gap in seconds instead of a full interval.
        self.sync.bootstrap_syncs = BOOTSTRAP_SYNCS;
        let jitter = self.rng.next_u64() % self.config.probe_interval_ms.max(1);
        if self.config.push_pull_interval_ms > 0 {
            let at = now.plus_millis(self.config.probe_interval_ms / 2 + jitter);
            self.timers.set(Timer::PushPull, at);
        }
        let digest = self.digest();
        let states = self.own_records();
        self.joining(seeds.len());
        for seed in seeds {
            let msg = Sync {
                phase: sync_phase::JOIN,
                digest: digest.clone(),
                states: states.clone(),
            };
            self.send_to_addr(now, seed.clone(), None, msg.into(), true);
        }
    }

    /// Sets (or with `None` removes) a metadata key and disseminates the new version. Setting a
    /// key to the value it has (or removing one that is absent) changes nothing and signs
    /// nothing: a new version of the same entries would cost every member a verification.
    pub fn set_metadata(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let mut entries = self.local().metadata.clone();
        match value {
            Some(v) => entries.insert(key.to_owned(), v),
            None => entries.remove(key),
        };
        if entries == self.local().metadata {
            return Ok(());
        }
        let size: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > self.config.max_metadata_bytes {
            return Err(CommandError::MetadataTooLarge {
                size,
                max: self.config.max_metadata_bytes,
            });
        }
        let id = self.shell.next_id(now);
        let meta = Metadata {
            version: id.to_u64(),
            entries: entries
                .iter()
                .map(|(k, v)| (k.clone(), ByteBuf::from(v.clone())))
                .collect(),
        };
        let packet = self.shell.codec.sign(id, &meta.into())?;
        let mut me = self
            .members
            .get_mut(&self.id)
            .expect("self is always a member");
        me.metadata = entries;
        me.meta_version = id.to_u64();
        me.meta = Some(packet.clone());
        drop(me);
        self.shell.push_event(Event::MetadataChanged {
            id: self.id,
            version: id.to_u64(),
        });
        self.regroup(self.id);
        self.enqueue(Subject::Metadata(self.id), packet);
        self.flush(now);
        Ok(())
    }

    /// Broadcasts to every member (each receives it once).
    pub fn broadcast(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let id = self.shell.next_id(now);
        let msg = Broadcast {
            topic: topic.to_owned(),
            data: data.into(),
        };
        let packet = self.shell.codec.sign(id, &msg.into())?;
        self.enqueue(Subject::Broadcast(self.id, id.to_u64()), packet);
        self.flush(now);
        Ok(())
    }

    /// Sends a message to one member; `reliable` asks the driver for a reliable link.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if !self.reachable(&to) {
            return Err(CommandError::UnknownMember(to));
        }
        let msg = Direct {
            to,
            topic: topic.to_owned(),
            data: data.into(),
        };
        let id = self.shell.next_id(now);
        let packet = self.shell.codec.sign(id, &msg.into())?;
        self.route_packet(now, to, &packet, reliable);
        Ok(())
    }

    /// Sends a request to `to`; the answer arrives as [`Event::Response`], or
    /// [`Event::RequestFailed`] on timeout or if `to` dies or leaves first.
    pub fn request(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        data: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<RequestId, CommandError> {
        self.check_can_request(to)?;
        let id = self.requests.start(to, now.plus_millis(timeout_ms));
        let msg = Request {
            req: id,
            to,
            topic: topic.to_owned(),
            data: data.into(),
        };
        self.send_to_member(now, to, msg.into(), true);
        Ok(id)
    }

    /// Sends the same request to each of `members` and completes, with one
    /// [`Event::QuorumDone`], as soon as `quorum` answers arrived or can no longer arrive.
    pub fn quorum_request(
        &mut self,
        now: Instant,
        members: &[NodeId],
        topic: &str,
        data: Vec<u8>,
        quorum: Quorum,
        timeout_ms: u64,
    ) -> Result<QuorumId, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if self.requests.len() + members.len() > self.config.max_queue {
            return Err(CommandError::TooManyRequests);
        }
        let (reachable, unreachable): (Vec<NodeId>, Vec<NodeId>) = members
            .iter()
            .partition(|m| self.members.get(m).is_some_and(|m| !m.state.is_down()));
        let mut events = Vec::new();
        let (qid, sends) = self.requests.start_quorum(
            quorum,
            &reachable,
            &unreachable,
            now.plus_millis(timeout_ms),
            &mut events,
        );
        for (to, req) in sends {
            let msg = Request {
                req,
                to,
                topic: topic.to_owned(),
                data: data.clone().into(),
            };
            self.send_to_member(now, to, msg.into(), true);
        }
        events.into_iter().for_each(|e| self.shell.push_event(e));
        Ok(qid)
    }

    /// Answers request `id` from `to` (as received in [`Event::Request`]).
    pub fn respond(
        &mut self,
        now: Instant,
        to: NodeId,
        id: RequestId,
        data: Vec<u8>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if !self.reachable(&to) {
            return Err(CommandError::UnknownMember(to));
        }
        self.send_to_member(
            now,
            to,
            Response {
                req: id,
                to,
                data: data.into(),
            }
            .into(),
            true,
        );
        Ok(())
    }

    /// Whether `to` can be written to: a live member, or for a relayed member any member (its
    /// relay routes it; its view may leave out who wrote to it, see `ViewScope`).
    fn reachable(&self, to: &NodeId) -> bool {
        match self.members.get(to) {
            Some(m) => !m.state.is_down(),
            None => *to != self.id && self.local().relay().is_some(),
        }
    }

    pub(super) fn check_can_request(&self, to: NodeId) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if !self.reachable(&to) {
            return Err(CommandError::UnknownMember(to));
        }
        if self.requests.len() >= self.config.max_queue {
            return Err(CommandError::TooManyRequests);
        }
        Ok(())
    }

    pub(super) fn on_stream_message(&mut self, now: Instant, origin: NodeId, msg: StreamMessage) {
        match self.streams.handle_at(now, origin, msg) {
            Ok(outputs) => self.stream_outputs(now, outputs),
            Err(_) => self.shell.count_drop(DropReason::StreamIgnored),
        }
    }

    pub(super) fn stream_outputs(&mut self, now: Instant, outputs: Vec<StreamOutput>) {
        for out in outputs {
            match out {
                StreamOutput::Send(peer, msg) => self.send_to_member(now, peer, msg.into(), true),
                other => self.shell.push_event(Event::Stream(other)),
            }
        }
    }

    /// [`Node::broadcast`] of a serde value (see [`crate::typed`]).
    pub fn broadcast_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        topic: &str,
        value: &T,
    ) -> Result<(), CommandError> {
        self.broadcast(now, topic, crate::typed::to_bytes(value)?)
    }

    /// [`Node::send`] of a serde value.
    pub fn send_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        value: &T,
        reliable: bool,
    ) -> Result<(), CommandError> {
        self.send(now, to, topic, crate::typed::to_bytes(value)?, reliable)
    }

    /// [`Node::request`] with a serde value.
    pub fn request_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        value: &T,
        timeout_ms: u64,
    ) -> Result<RequestId, CommandError> {
        self.request(now, to, topic, crate::typed::to_bytes(value)?, timeout_ms)
    }

    /// [`Node::respond`] with a serde value.
    pub fn respond_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        id: RequestId,
        value: &T,
    ) -> Result<(), CommandError> {
        self.respond(now, to, id, crate::typed::to_bytes(value)?)
    }

    /// Changes where this node can be reached (a browser that lost its server and re-joins
    /// through another one) and announces it with a new incarnation, which outranks every record
    /// of the old addresses.
    pub fn set_addresses(&mut self, now: Instant, addrs: Vec<Address>) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let me = self.local();
        let incarnation = me.incarnation.max(self.shell.wall(now)).saturating_add(1);
        let alive = Alive {
            incarnation,
            addrs: addrs.clone(),
            name: me.name.clone(),
        };
        let id = self.shell.next_id(now);
        let packet = self.shell.codec.sign(id, &alive.into())?;
        let mut me = self
            .members
            .get_mut(&self.id)
            .expect("self is always a member");
        me.incarnation = incarnation;
        me.addrs = addrs;
        me.alive = packet.clone();
        drop(me);
        self.enqueue(Subject::Member(self.id), packet);
        self.flush(now);
        Ok(())
    }

    /// Leaves the cluster: announces a leave signed by this node and stops probing. Keep the
    /// driver running a moment (a few gossip intervals) so the announcement spreads.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let incarnation = self.local().incarnation;
        if let Some(packet) = self.shell.sign(now, Leave { incarnation }.into()) {
            let mut me = self
                .members
                .get_mut(&self.id)
                .expect("self is always a member");
            me.state = State::Left;
            me.status = Some(packet.clone());
            me.since = now;
            drop(me);
            self.enqueue(Subject::Member(self.id), packet);
            self.flush(now);
            // Give the leave a second push so it survives a lost datagram.
            self.gossip_round(now);
        }
        self.left = true;
        self.probing.current = None;
    }
}
