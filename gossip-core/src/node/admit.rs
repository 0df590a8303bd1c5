//! Members without the cluster key: the grants of those connected to this node (their links'
//! keys, their rates), and the admissions of every admitted member this node knows of. The rules
//! are in [`crate::admission`]. Without the `admission` feature (a browser, which admits no one
//! and trusts its server to check the others) nobody is admitted and every check passes.

#[cfg(feature = "admission")]
use std::collections::HashMap;

#[cfg(feature = "admission")]
use rand_core::Rng;

use super::Node;
use crate::address::Address;
#[cfg(feature = "admission")]
use crate::admission::{
    ADMISSION_TTL_MS, Bucket, Grant, MAX_ADMISSION_MS, MIN_RENEWAL_MS, topic_allowed,
};
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
#[cfg(feature = "admission")]
use crate::keyring::ClusterKey;
#[cfg(feature = "admission")]
use crate::membership::State;
#[cfg(feature = "admission")]
use crate::message::{Admission, ApplicationMessage, MembershipMessage};
use crate::message::{Message, UpdateMessage};
use crate::time::Instant;
#[cfg(feature = "admission")]
use crate::wire::SignedPacket;

#[cfg(feature = "admission")]
use super::apply::Applied;
#[cfg(feature = "admission")]
use super::backlog::Subject;

/// The wire kind of an admission: tabs do not decode it, so it is not handed to them.
#[cfg(feature = "admission")]
pub(super) const ADMISSION_KIND: u8 = 36;

/// Admitted members: those this node serves, and the admissions it holds.
#[cfg(feature = "admission")]
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// Members connected to this node, by member.
    served: HashMap<NodeId, Served>,
    /// The newest admission held of each admitted member, by member.
    certs: HashMap<NodeId, Cert>,
    /// When the next renewals and expiries are checked (once a second while there are any).
    next_tick: Option<Instant>,
}

/// A member connected to this node.
#[cfg(feature = "admission")]
#[derive(Debug)]
struct Served {
    grant: Grant,
    bucket: Bucket,
    /// When the admission last issued for it expires (wall ms).
    expires: u64,
    /// When its grant's lifetime ends (wall ms), if it has one.
    ends: Option<u64>,
}

/// An admission as held: who signed it, its id (orders a member's admissions), what it allows.
#[cfg(feature = "admission")]
#[derive(Debug, Clone)]
struct Cert {
    issuer: NodeId,
    id: u64,
    expires: u64,
    name: String,
    topics: Option<Vec<String>>,
    packet: SignedPacket,
}

/// What an admitted member may do, from its grant (here) or its admission (elsewhere).
#[cfg(feature = "admission")]
struct Rights<'a> {
    /// The server it is relayed through.
    server: NodeId,
    name: &'a str,
    topics: Option<&'a [String]>,
    /// It is connected here: its relays come to this node, which opens them.
    local: bool,
}

#[cfg(feature = "admission")]
impl Rights<'_> {
    fn permits(&self, message: &Message) -> bool {
        match message {
            Message::Update(u) => self.permits_update(u),
            // An indirect probe makes the receiver probe others on its word.
            Message::Membership(MembershipMessage::PingReq(_)) => false,
            // Only its own server opens its relays (and holds what is inside to the grant).
            Message::Membership(MembershipMessage::Relay(_)) => self.local,
            Message::Membership(_) => true,
            Message::Application(ApplicationMessage::Direct(d)) => self.topic(&d.topic),
            Message::Application(ApplicationMessage::Request(r)) => self.topic(&r.topic),
            Message::Application(ApplicationMessage::Response(_)) => true,
            Message::Stream(_) => true,
            Message::Overlay(_) => false,
        }
    }

    fn permits_update(&self, update: &UpdateMessage) -> bool {
        match update {
            UpdateMessage::Alive(a) => self.permits_alive(&a.name, &a.addrs),
            UpdateMessage::Suspect(_) | UpdateMessage::Dead(_) => false,
            UpdateMessage::Broadcast(b) => self.topic(&b.topic),
            UpdateMessage::Leave(_) | UpdateMessage::Metadata(_) => true,
            // Admitted members write no replicated state (the browser build has none); they may
            // read it by sync, as they read metadata.
            #[cfg(feature = "state")]
            UpdateMessage::State(_) => false,
            // Nor do they admit anyone.
            UpdateMessage::Admission(_) => false,
        }
    }

    /// Its name within the prefix, and reachable only through its server (nobody dials it).
    fn permits_alive(&self, name: &str, addrs: &[Address]) -> bool {
        name.starts_with(self.name) && addrs == [Address::Relayed(self.server)]
    }

    fn topic(&self, topic: &str) -> bool {
        topic_allowed(self.topics, topic)
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

    pub(super) fn admission_check(
        &self,
        _now: Instant,
        _origin: &NodeId,
        _message: &Message,
    ) -> Result<(), DropReason> {
        Ok(())
    }

    pub(super) fn admission_check_update(
        &self,
        _now: Instant,
        _origin: &NodeId,
        _update: &UpdateMessage,
    ) -> Result<(), DropReason> {
        Ok(())
    }
}

/// Whether `addrs` has an address that is not a relay's: someone can dial it.
#[cfg(feature = "admission")]
fn has_own_address(addrs: &[Address]) -> bool {
    addrs.iter().any(|a| !matches!(a, Address::Relayed(_)))
}

#[cfg(feature = "admission")]
impl Admitted {
    pub(super) fn is_admitted(&self, id: &NodeId) -> bool {
        self.served.contains_key(id)
    }
}

#[cfg(feature = "admission")]
impl Node {
    /// Admits `peer`, a member without the cluster key, over the link it has at `from` (the
    /// address its frames arrive from), whose handshake agreed `key`. From now on its frames are
    /// opened with `key` and must be its own, frames for it are sealed with `key`, and what it
    /// says is held to `grant` (see [`crate::admission`]). This node signs its admission for
    /// every member to check, and renews it while the link lasts. Admitting it again replaces
    /// the link.
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
        let wall = self.shell.wall(now);
        let served = Served {
            bucket: Bucket::full(now, &grant),
            ends: grant.lifetime_ms.map(|ms| wall.saturating_add(ms)),
            grant,
            expires: 0,
        };
        self.admitted.served.insert(peer, served);
        self.renew(now, peer);
    }

    /// `peer`'s link closed: its key and grant are forgotten and its admission is no longer
    /// renewed (its records stay, as any member's, until its admission expires).
    pub fn release_link(&mut self, peer: &NodeId) {
        self.shell.close_link(peer);
        self.admitted.served.remove(peer);
    }

    /// Revokes `peer`'s admission: its link is forgotten, and this node signs a revocation that
    /// every member holding its admission honours (the member is left everywhere; the driver
    /// closes its connection). It comes back only by being admitted again. `false` when `peer`
    /// is not admitted here: a server revokes only its own admissions.
    pub fn revoke(&mut self, now: Instant, peer: &NodeId) -> bool {
        if !self.admitted.is_admitted(peer) {
            return false;
        }
        self.release_link(peer);
        self.issue(now, *peer, 0, String::new(), None);
        self.flush(now);
        true
    }

    /// The grant of an admitted member connected to this node.
    pub fn grant(&self, peer: &NodeId) -> Option<&Grant> {
        self.admitted.served.get(peer).map(|s| &s.grant)
    }

    /// Who admitted `member` and until when (wall ms; 0: revoked), by the admission this node
    /// holds of it. `None`: a full member, or one whose admission has not reached this node.
    pub fn admission_of(&self, member: &NodeId) -> Option<(NodeId, u64)> {
        self.admitted
            .certs
            .get(member)
            .map(|c| (c.issuer, c.expires))
    }

    pub(super) fn is_served(&self, id: &NodeId) -> bool {
        self.admitted.is_admitted(id)
    }

    /// Takes a frame's worth of `from`'s rate, when `from` is an admitted member's link: before
    /// any decryption or signature check, so a flood costs no more than a map lookup.
    pub(super) fn admitted_rate(&mut self, now: Instant, from: &Address) -> Result<(), DropReason> {
        let Some(peer) = self.shell.link_peer(from) else {
            return Ok(());
        };
        match self.admitted.served.get_mut(&peer) {
            Some(s) => {
                if s.bucket.take(now, &s.grant) {
                    Ok(())
                } else {
                    Err(DropReason::RateLimited)
                }
            }
            None => Ok(()),
        }
    }

    /// What `origin` may do: `Ok(None)` for a full member, `Err` for an admitted member whose
    /// admission no longer holds here.
    fn rights(&self, now: Instant, origin: &NodeId) -> Result<Option<Rights<'_>>, DropReason> {
        if let Some(s) = self.admitted.served.get(origin) {
            return Ok(Some(Rights {
                server: self.id,
                name: &s.grant.name_prefix,
                topics: s.grant.topics.as_deref(),
                local: true,
            }));
        }
        let Some(cert) = self.admitted.certs.get(origin) else {
            return Ok(None);
        };
        // A member with an address of its own is a full member, whoever claims to admit it: a
        // key holder cannot demote one by admitting it.
        if self
            .members
            .get(origin)
            .is_some_and(|m| has_own_address(&m.addrs))
        {
            return Ok(None);
        }
        if !self.cert_holds(cert, self.shell.wall(now)) {
            return Err(DropReason::NotAdmitted);
        }
        Ok(Some(Rights {
            server: cert.issuer,
            name: &cert.name,
            topics: cert.topics.as_deref(),
            local: false,
        }))
    }

    /// Whether `origin` may send `message` (always, for a full member).
    pub(super) fn admission_check(
        &self,
        now: Instant,
        origin: &NodeId,
        message: &Message,
    ) -> Result<(), DropReason> {
        match self.rights(now, origin)? {
            Some(r) if !r.permits(message) => Err(DropReason::Forbidden),
            _ => Ok(()),
        }
    }

    /// Whether `origin` may say `update`, however it arrived (a frame, a piggyback, a sync).
    pub(super) fn admission_check_update(
        &self,
        now: Instant,
        origin: &NodeId,
        update: &UpdateMessage,
    ) -> Result<(), DropReason> {
        match self.rights(now, origin)? {
            Some(r) if !r.permits_update(update) => Err(DropReason::Forbidden),
            _ => Ok(()),
        }
    }

    /// Whether `cert` lets its member speak at `wall`: unexpired, not revoked, from a live full
    /// member.
    fn cert_holds(&self, cert: &Cert, wall: u64) -> bool {
        cert.expires > wall && self.is_live_full_member(&cert.issuer)
    }

    /// A full member: this node, or a live member with an address of its own (an admitted
    /// member has none: its server refuses any other).
    fn is_live_full_member(&self, id: &NodeId) -> bool {
        *id == self.id
            || self
                .members
                .get(id)
                .is_some_and(|m| !m.state.is_down() && has_own_address(&m.addrs))
    }

    /// Signs `member`'s admission (`expires` 0: its revocation), holds it and spreads it.
    fn issue(
        &mut self,
        now: Instant,
        member: NodeId,
        expires: u64,
        name: String,
        topics: Option<Vec<String>>,
    ) {
        let admission = Admission {
            member,
            expires,
            name,
            topics,
        };
        let Some(packet) = self.shell.sign(now, admission.clone().into()) else {
            return;
        };
        self.hold(now, self.id, admission, packet.clone());
        self.enqueue(Subject::Admission(member), packet);
    }

    /// Issues a fresh admission for `peer`, served here, unless its grant's lifetime is over.
    fn renew(&mut self, now: Instant, peer: NodeId) {
        let wall = self.shell.wall(now);
        let Some(s) = self.admitted.served.get_mut(&peer) else {
            return;
        };
        let expires = wall
            .saturating_add(ADMISSION_TTL_MS)
            .min(s.ends.unwrap_or(u64::MAX));
        if expires <= wall {
            return;
        }
        s.expires = expires;
        let (name, topics) = (s.grant.name_prefix.clone(), s.grant.topics.clone());
        self.issue(now, peer, expires, name, topics);
    }

    /// An admission arrived, signed by `issuer`.
    pub(super) fn apply_admission(
        &mut self,
        now: Instant,
        issuer: NodeId,
        a: Admission,
        packet: &SignedPacket,
    ) -> Applied {
        if issuer == self.id {
            return Applied::Known;
        }
        let wall = self.shell.wall(now);
        let full = self
            .members
            .get(&a.member)
            .is_some_and(|m| has_own_address(&m.addrs));
        let may_issue = a.member != issuer
            && a.member != self.id
            && !full
            && self.is_live_full_member(&issuer)
            && a.expires <= wall.saturating_add(MAX_ADMISSION_MS);
        if !may_issue {
            return Applied::Refused(DropReason::AdmissionRefused);
        }
        let id = packet.id();
        match self.admitted.certs.get(&a.member) {
            Some(held) if held.id >= id.to_u64() => return Applied::Known,
            Some(held)
                if a.expires != 0
                    && id.millis()
                        < crate::hlc::Timestamp::from_u64(held.id)
                            .millis()
                            .saturating_add(MIN_RENEWAL_MS) =>
            {
                return Applied::Refused(DropReason::AdmissionTooSoon);
            }
            Some(_) => {}
            None if self.admitted.certs.len() >= self.config.max_members => {
                return Applied::Refused(DropReason::TooManyMembers);
            }
            None => {}
        }
        self.hold(now, issuer, a, packet.clone());
        Applied::News
    }

    /// Holds an admission and holds its member to it at once: a member whose admission no longer
    /// holds, or whose alive record it does not allow, is left here; one left only for want of
    /// an admission comes back with a valid one.
    fn hold(&mut self, now: Instant, issuer: NodeId, a: Admission, packet: SignedPacket) {
        let member = a.member;
        let cert = Cert {
            issuer,
            id: packet.id().to_u64(),
            expires: a.expires,
            name: a.name,
            topics: a.topics,
            packet,
        };
        self.admitted.certs.insert(member, cert);
        self.judge(now, member);
    }

    /// Holds `member` to its admission: left here when the admission does not hold or does not
    /// allow its alive record; alive again when a valid one arrives for a member left for want
    /// of one.
    fn judge(&mut self, now: Instant, member: NodeId) {
        let Some(m) = self.members.get(&member) else {
            return;
        };
        let lapsed_here = m.state == State::Left
            && m.status
                .as_ref()
                .is_some_and(|s| s.kind() == ADMISSION_KIND);
        let allowed = match self.rights(now, &member) {
            Ok(Some(r)) => r.permits_alive(&m.name, &m.addrs),
            Ok(None) => true,
            Err(_) => false,
        };
        if !allowed && !m.state.is_down() {
            self.lapse(now, member);
        } else if allowed && lapsed_here {
            let mut m = self.members.get_mut(&member).expect("checked above");
            m.state = State::Alive;
            m.status = None;
            m.since = now;
            drop(m);
            self.track_leaf(member);
            self.shell
                .push_event(crate::event::Event::MemberAlive { id: member });
            self.regroup(member);
        }
    }

    /// `member`'s admission stopped holding here: it is left, with its admission as the record
    /// that says why (push-pull hands it on; each member judges it by its own clock and view).
    fn lapse(&mut self, now: Instant, member: NodeId) {
        let cert = self.admitted.certs.get(&member).map(|c| c.packet.clone());
        let Some(mut m) = self.members.get_mut(&member) else {
            return;
        };
        m.state = State::Left;
        m.status = cert;
        m.since = now;
        let incarnation = m.incarnation;
        drop(m);
        self.probing.suspicions.remove(&member);
        self.shell
            .push_event(crate::event::Event::MemberLeft { id: member });
        self.member_down(member);
        // The members relayed through this node do not decode admissions: tell them in words
        // they know, and only them (every other member judges for itself).
        if !self.hub.leaves.is_empty() {
            let dead = crate::message::Dead {
                node: member,
                incarnation,
            };
            if let Some(packet) = self.shell.sign(now, dead.into()) {
                self.hub.pending.push(packet);
            }
        }
    }

    /// `issuer` went down here: every admission it issued lapses with it.
    pub(super) fn issuer_down(&mut self, now: Instant, issuer: NodeId) {
        let mut members: Vec<NodeId> = self
            .admitted
            .certs
            .iter()
            .filter(|(_, c)| c.issuer == issuer)
            .map(|(m, _)| *m)
            .collect();
        crate::sort::unstable(&mut members);
        for m in members {
            self.judge(now, m);
        }
    }

    /// Once a second: renews the admissions of members served here that are past half their
    /// life, lapses the admissions that expired, and forgets those of members long gone.
    pub(super) fn admission_tick(&mut self, now: Instant) {
        if self.admitted.next_tick.is_some_and(|at| now < at) {
            return;
        }
        self.admitted.next_tick = Some(now.plus_millis(1_000));
        let wall = self.shell.wall(now);
        let mut due: Vec<NodeId> = self
            .admitted
            .served
            .iter()
            .filter(|(_, s)| s.expires.saturating_sub(wall) < ADMISSION_TTL_MS / 2)
            .filter(|(_, s)| s.ends.is_none_or(|end| s.expires < end))
            .map(|(id, _)| *id)
            .collect();
        crate::sort::unstable(&mut due);
        for peer in due {
            self.renew(now, peer);
        }
        let mut expired: Vec<NodeId> = self
            .admitted
            .certs
            .iter()
            .filter(|(id, c)| {
                c.expires <= wall && self.members.get(id).is_some_and(|m| !m.state.is_down())
            })
            .map(|(id, _)| *id)
            .collect();
        crate::sort::unstable(&mut expired);
        for member in expired {
            self.lapse(now, member);
        }
        // An admission is kept while its member is known, and after that until it expired (a
        // revocation: for as long as the admission it revoked could have lasted), so that an
        // older one replayed meanwhile is still recognised as older.
        let members = &self.members;
        self.admitted.certs.retain(|id, c| {
            let issued = crate::hlc::Timestamp::from_u64(c.id).millis();
            let lasts = if c.expires == 0 { issued } else { c.expires };
            members.contains_key(id) || lasts.saturating_add(MAX_ADMISSION_MS) > wall
        });
    }

    /// When [`Node::admission_tick`] is due: only while there are admissions to renew or expire.
    pub(super) fn admission_deadline(&self) -> Option<Instant> {
        let any = !self.admitted.served.is_empty() || !self.admitted.certs.is_empty();
        any.then(|| self.admitted.next_tick.unwrap_or(self.timers.latest()))
    }

    /// The admission held of `member`, to send with its alive record.
    pub(super) fn admission_record(&self, member: &NodeId) -> Option<&SignedPacket> {
        self.admitted.certs.get(member).map(|c| &c.packet)
    }
}
