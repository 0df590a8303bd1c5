//! Borrowed facades over the node's streams and groups: every change goes through the node, so
//! its rules (who may be addressed, which frames to send, which events to report) always apply.

use std::ops::Deref;

use super::{CommandError, Node};
use crate::event::Event;
use crate::groups::{GroupError, GroupId, GroupSpec, Groups};
use crate::identity::NodeId;
use crate::streams::StreamKey;
use crate::time::Instant;

impl Node {
    /// This node's byte streams: open, accept, read, write, close.
    pub fn streams(&mut self) -> NodeStreams<'_> {
        NodeStreams { node: self }
    }

    /// This node's groups: define, remove, attach data, send to one; reads through [`Deref`].
    pub fn groups(&mut self) -> NodeGroups<'_> {
        NodeGroups { node: self }
    }

    /// The groups, read-only (for a node only borrowed shared).
    pub fn group_view(&self) -> &Groups {
        &self.groups
    }
}

/// The streams of a [`Node`] (see [`Node::streams`]).
#[derive(Debug)]
pub struct NodeStreams<'a> {
    node: &'a mut Node,
}

impl NodeStreams<'_> {
    /// Opens a byte stream to `peer`; [`Event::Stream`] reports `Opened` once it accepts.
    pub fn open(&mut self, now: Instant, peer: NodeId) -> Result<StreamKey, CommandError> {
        let node = &mut *self.node;
        node.check_can_request(peer)?;
        let (key, open) = node.streams.open(peer)?;
        node.send_to_member(now, peer, open.into(), true);
        Ok(key)
    }

    /// Accepts a stream a peer opened (reported as `Incoming`).
    pub fn accept(&mut self, now: Instant, key: StreamKey) -> Result<(), CommandError> {
        let accept = self.node.streams.accept(key)?;
        self.node.send_to_member(now, key.peer, accept.into(), true);
        Ok(())
    }

    /// Refuses a stream a peer opened.
    pub fn reject(
        &mut self,
        now: Instant,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<(), CommandError> {
        let close = self.node.streams.reject(key, code, reason)?;
        self.node.send_to_member(now, key.peer, close.into(), true);
        Ok(())
    }

    /// Writes as much of `data` as the peer's window allows; returns how much was taken (0 when
    /// the window is full: wait for `Writable`).
    pub fn write(
        &mut self,
        now: Instant,
        key: StreamKey,
        data: &[u8],
    ) -> Result<usize, CommandError> {
        let (taken, frames) = self.node.streams.write(key, data)?;
        for frame in frames {
            self.node.send_to_member(now, key.peer, frame.into(), true);
        }
        Ok(taken)
    }

    /// Reads up to `max` buffered bytes, granting the peer window for them.
    pub fn read(
        &mut self,
        now: Instant,
        key: StreamKey,
        max: usize,
    ) -> Result<Vec<u8>, CommandError> {
        let (data, credit) = self.node.streams.read(key, max)?;
        if let Some(credit) = credit {
            self.node.send_to_member(now, key.peer, credit.into(), true);
        }
        Ok(data)
    }

    /// Bytes waiting to be read on a stream.
    pub fn readable(&self, key: StreamKey) -> Result<usize, CommandError> {
        Ok(self.node.streams.readable(key)?)
    }

    /// Closes a stream with a code and reason.
    pub fn close(
        &mut self,
        now: Instant,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<(), CommandError> {
        let close = self.node.streams.close(key, code, reason)?;
        self.node.send_to_member(now, key.peer, close.into(), true);
        Ok(())
    }
}

/// The groups of a [`Node`] (see [`Node::groups`]); reads go to [`Groups`] through `Deref`.
#[derive(Debug)]
pub struct NodeGroups<'a> {
    node: &'a mut Node,
}

impl Deref for NodeGroups<'_> {
    type Target = Groups;

    fn deref(&self) -> &Groups {
        &self.node.groups
    }
}

impl NodeGroups<'_> {
    /// Defines a group: a live view of the members (this node included) whose metadata matches
    /// `spec`. Its changes arrive as [`Event::Group`], starting with one `Added` per current match.
    pub fn define(&mut self, spec: GroupSpec) -> Result<GroupId, GroupError> {
        let node = &mut *self.node;
        let live = node
            .members
            .values()
            .filter(|m| !m.state.is_down())
            .map(|m| (m.id, &m.metadata));
        let (id, events) = node.groups.define(spec, live)?;
        events
            .into_iter()
            .for_each(|e| node.shell.push_event(Event::Group(e)));
        Ok(id)
    }

    /// Forgets a group (and closes the ownership watches scoped to it).
    pub fn remove(&mut self, group: GroupId) -> bool {
        #[cfg(feature = "ownership")]
        self.node.ownership_group_removed(group);
        self.node.groups.remove(group)
    }

    /// Attaches user data to a current member of a group (dropped when it leaves the group);
    /// false if it is not one.
    pub fn set_data(&mut self, group: GroupId, member: NodeId, data: Vec<u8>) -> bool {
        self.node.groups.set_data(group, member, data)
    }

    /// Sends a message to every current member of a group (this node excluded); returns how
    /// many it was sent to.
    pub fn send(
        &mut self,
        now: Instant,
        group: GroupId,
        topic: &str,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<usize, CommandError> {
        let node = &mut *self.node;
        let targets: Vec<NodeId> = node
            .groups
            .members(group)
            .ok_or(CommandError::UnknownGroup(group))?
            .filter(|id| *id != node.id)
            .collect();
        for to in &targets {
            node.send(now, *to, topic, data.clone(), reliable)?;
        }
        Ok(targets.len())
    }
}
