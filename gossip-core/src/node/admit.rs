//! Members without the cluster key, connected to this node: their links' keys and their grants.
//! The rules are in [`crate::admission`]. Without the `admission` feature (a browser, which
//! admits no one) nobody is admitted and every check passes.

#[cfg(feature = "admission")]
use std::collections::HashMap;

#[cfg(feature = "admission")]
use rand_core::Rng;

use super::Node;
use crate::address::Address;
#[cfg(feature = "admission")]
use crate::admission::{Bucket, Grant};
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
#[cfg(feature = "admission")]
use crate::keyring::ClusterKey;
#[cfg(feature = "admission")]
use crate::message::{ApplicationMessage, MembershipMessage};
use crate::message::{Message, UpdateMessage};
use crate::time::Instant;

/// The admitted members this node serves.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    #[cfg(feature = "admission")]
    grants: HashMap<NodeId, (Grant, Bucket)>,
}

#[cfg(not(feature = "admission"))]
impl Admitted {
    pub(super) fn check_update(
        &self,
        _server: NodeId,
        _origin: &NodeId,
        _update: &UpdateMessage,
    ) -> Result<(), DropReason> {
        Ok(())
    }

    pub(super) fn check(
        &self,
        _server: NodeId,
        _origin: &NodeId,
        _message: &Message,
    ) -> Result<(), DropReason> {
        Ok(())
    }
}

#[cfg(not(feature = "admission"))]
impl Node {
    pub(super) fn admitted_rate(
        &mut self,
        _now: Instant,
        _from: &Address,
    ) -> Result<(), DropReason> {
        Ok(())
    }
}

#[cfg(feature = "admission")]
impl Admitted {
    /// Whether `origin` may say `update` (always, for a member that is not admitted here).
    /// `server` is this node: an admitted member is reachable only through it.
    pub(super) fn check_update(
        &self,
        server: NodeId,
        origin: &NodeId,
        update: &UpdateMessage,
    ) -> Result<(), DropReason> {
        let Some((grant, _)) = self.grants.get(origin) else {
            return Ok(());
        };
        let allowed = match update {
            UpdateMessage::Alive(a) => {
                grant.allows_name(&a.name) && a.addrs == [Address::Relayed(server)]
            }
            UpdateMessage::Suspect(_) | UpdateMessage::Dead(_) => false,
            UpdateMessage::Broadcast(b) => grant.allows_topic(&b.topic),
            UpdateMessage::Leave(_) | UpdateMessage::Metadata(_) => true,
            // Admitted members write no replicated state (the browser build has none); they may
            // read it by sync, as they read metadata.
            #[cfg(feature = "state")]
            UpdateMessage::State(_) => false,
        };
        allowed.then_some(()).ok_or(DropReason::Forbidden)
    }

    /// Whether `origin` may send `message` (always, for a member that is not admitted here).
    pub(super) fn check(
        &self,
        server: NodeId,
        origin: &NodeId,
        message: &Message,
    ) -> Result<(), DropReason> {
        let Some((grant, _)) = self.grants.get(origin) else {
            return Ok(());
        };
        let allowed = match message {
            Message::Update(u) => return self.check_update(server, origin, u),
            // An indirect probe makes this node probe others on its word.
            Message::Membership(MembershipMessage::PingReq(_)) => false,
            Message::Membership(_) => true,
            Message::Application(ApplicationMessage::Direct(d)) => grant.allows_topic(&d.topic),
            Message::Application(ApplicationMessage::Request(r)) => grant.allows_topic(&r.topic),
            Message::Application(ApplicationMessage::Response(_)) => true,
            Message::Stream(_) => true,
            Message::Overlay(_) => false,
        };
        allowed.then_some(()).ok_or(DropReason::Forbidden)
    }

    pub(super) fn is_admitted(&self, id: &NodeId) -> bool {
        self.grants.contains_key(id)
    }
}

#[cfg(feature = "admission")]
impl Node {
    /// Admits `peer`, a member without the cluster key, over the link it has at `from` (the
    /// address its frames arrive from), whose handshake agreed `key`. From now on its frames are
    /// opened with `key` and must be its own, frames for it are sealed with `key`, and what it
    /// says is held to `grant` (see [`crate::admission`]). Admitting it again replaces the link.
    pub fn admit_link(
        &mut self,
        now: Instant,
        from: Address,
        peer: NodeId,
        key: ClusterKey,
        grant: Grant,
    ) {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        self.shell.open_link(peer, from, key, seed);
        let bucket = Bucket::full(now, &grant);
        self.admitted.grants.insert(peer, (grant, bucket));
    }

    /// `peer`'s link closed: its key and grant are forgotten (its records stay, as any
    /// member's; it is probed and buried like any member that went away).
    pub fn release_link(&mut self, peer: &NodeId) {
        self.shell.close_link(peer);
        self.admitted.grants.remove(peer);
    }

    /// Revokes `peer`'s admission: its link is forgotten and this node declares it dead at the
    /// incarnation it last signed, which every member accepts (the driver closes its
    /// connection). It comes back only by being admitted again, with a new incarnation. `false`
    /// when `peer` is not admitted here: a server revokes only its own admissions.
    pub fn revoke(&mut self, now: Instant, peer: &NodeId) -> bool {
        if !self.admitted.is_admitted(peer) {
            return false;
        }
        self.release_link(peer);
        let Some(incarnation) = self.members.get(peer).map(|m| m.incarnation) else {
            return true;
        };
        let msg = crate::message::Dead {
            node: *peer,
            incarnation,
        };
        if let Some(packet) = self.shell.sign(now, msg.clone().into())
            && self.apply_dead(now, msg, &packet).is_news()
        {
            self.enqueue(super::backlog::Subject::Member(*peer), packet);
        }
        self.flush(now);
        true
    }

    /// The grant of an admitted member connected to this node.
    pub fn grant(&self, peer: &NodeId) -> Option<&Grant> {
        self.admitted.grants.get(peer).map(|(g, _)| g)
    }

    /// Takes a frame's worth of `from`'s rate, when `from` is an admitted member's link: before
    /// any decryption or signature check, so a flood costs no more than a map lookup.
    pub(super) fn admitted_rate(&mut self, now: Instant, from: &Address) -> Result<(), DropReason> {
        let Some(peer) = self.shell.link_peer(from) else {
            return Ok(());
        };
        match self.admitted.grants.get_mut(&peer) {
            Some((grant, bucket)) => {
                if bucket.take(now, grant) {
                    Ok(())
                } else {
                    Err(DropReason::RateLimited)
                }
            }
            None => Ok(()),
        }
    }
}
