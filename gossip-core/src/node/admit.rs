//! Members without the cluster key: the grants of those connected to this node (their links'
//! keys, their rates), and the admissions of every admitted member this node knows of. The rules
//! are in [`crate::admission`]. Without the `admission` feature (a browser, which admits no one
//! and trusts its server to check the others) nobody is admitted and every check passes.

#[cfg(feature = "admission")]
use std::collections::{HashMap, HashSet};

#[cfg(feature = "admission")]
use rand_core::Rng;

use super::Node;
use crate::address::Address;
#[cfg(feature = "admission")]
use crate::admission::{
    ADMISSION_TTL_MS, Bucket, Grant, MAX_ADMISSION_MS, MIN_RENEWAL_MS, ViewScope, topic_allowed,
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
use super::backlog::Subject;
use super::hub::Piece;

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
    /// The relayed members it was told about under a `Groups` scope: they stay in its view
    /// until they are down and gone, so it hears of their death or leave.
    shown: HashSet<NodeId>,
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
    /// It may write its own replicated state.
    state: bool,
    packet: SignedPacket,
}

/// What an admitted member may do, from its grant (here) or its admission (elsewhere).
#[cfg(feature = "admission")]
struct Rights<'a> {
    /// The server it is relayed through.
    server: NodeId,
    name: &'a str,
    topics: Option<&'a [String]>,
    /// It may write its own replicated state ([`Grant::state`]).
    #[cfg_attr(not(feature = "state"), allow(dead_code))]
    state: bool,
    /// It is connected here: its relays come to this node, which opens them.
    local: bool,
    /// Its grant's metadata limit (known only where it is connected).
    max_metadata: Option<usize>,
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
            // An admitted member writes its own replicated state only when its grant says so
            // (its entries are signed by it, so it can write no one else's); it may always read
            // it by sync, as it reads metadata.
            #[cfg(feature = "state")]
            UpdateMessage::State(_) => self.state,
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

    /// Why `update` is refused, if it is: metadata past the grant's limit is told apart from
    /// what the grant forbids outright.
    fn refuses(&self, update: &UpdateMessage) -> Option<DropReason> {
        if let (UpdateMessage::Metadata(m), Some(max)) = (update, self.max_metadata) {
            let bytes = m
                .entries
                .iter()
                .fold(0usize, |sum, (k, v)| sum.saturating_add(k.len() + v.len()));
            if bytes > max {
                return Some(DropReason::MetadataTooLarge);
            }
        }
        (!self.permits_update(update)).then_some(DropReason::Forbidden)
    }
}

/// The view a relayed member gets from a member that does not relay it: only what every view
/// holds.
#[cfg(feature = "admission")]
static FOREIGN_VIEW: ViewScope = ViewScope::None;

/// `leaf`'s view here, when it is limited: its scope, and (served here) the members it was shown.
///
/// Only a relayed member's own server knows its scope, and its server tells it everything its
/// view holds. Any other member (`me`) gives a member relayed by someone else (or an admitted
/// member whose record has not arrived) the view every scope includes, full members and
/// itself, in push-pull answers and piggyback: so nothing reaches a tab around its scope, even
/// from a member that has not yet received its admission.
#[cfg(feature = "admission")]
fn view_of<'a>(
    admitted: &'a Admitted,
    members: &super::table::Members,
    me: &NodeId,
    leaf: &NodeId,
) -> Option<(&'a ViewScope, Option<&'a HashSet<NodeId>>)> {
    if let Some(s) = admitted.served.get(leaf) {
        return (s.grant.scope != ViewScope::All).then_some((&s.grant.scope, Some(&s.shown)));
    }
    let foreign = match members.get(leaf) {
        Some(m) => m.relay().is_some_and(|relay| relay != *me),
        None => admitted.certs.contains_key(leaf),
    };
    foreign.then_some((&FOREIGN_VIEW, None))
}

/// Whether `leaf` may be told about `member` (see [`ViewScope`]): always, unless it is an
/// admitted member whose view is limited.
#[cfg(feature = "admission")]
pub(super) fn sees(
    admitted: &Admitted,
    members: &super::table::Members,
    me: &NodeId,
    leaf: &NodeId,
    member: &NodeId,
) -> bool {
    let Some((scope, shown)) = view_of(admitted, members, me, leaf) else {
        return true;
    };
    if member == leaf
        || members
            .get(member)
            .is_some_and(|m| has_own_address(&m.addrs))
    {
        return true;
    }
    match scope {
        ViewScope::Groups(specs) => {
            shown.is_some_and(|s| s.contains(member))
                || match (members.get(leaf), members.get(member)) {
                    (Some(a), Some(b)) if !b.state.is_down() => specs
                        .iter()
                        .any(|g| g.matches(&a.metadata) && g.matches(&b.metadata)),
                    _ => false,
                }
        }
        _ => false,
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

    #[cfg(feature = "state")]
    pub(super) fn admission_check_state(
        &self,
        _now: Instant,
        _owner: &NodeId,
    ) -> Result<(), DropReason> {
        Ok(())
    }

    pub(super) fn sees(&self, _leaf: &NodeId, _member: &NodeId) -> bool {
        true
    }

    pub(super) fn is_limited(&self, _leaf: &NodeId) -> bool {
        false
    }

    pub(super) fn note_shown(&mut self, _leaf: &NodeId, _members: Vec<NodeId>) {}

    pub(super) fn limited_view(
        &mut self,
        _leaf: NodeId,
        _pending: &[(Subject, crate::wire::SignedPacket)],
        _refresh: &mut Vec<NodeId>,
    ) -> Option<Vec<Piece>> {
        None
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
            shown: HashSet::new(),
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
        self.issue(now, *peer, 0, String::new(), None, false);
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
                state: s.grant.state,
                local: true,
                max_metadata: s.grant.max_metadata_bytes,
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
            state: cert.state,
            local: false,
            max_metadata: None,
        }))
    }

    /// Whether `origin` may send `message` (always, for a full member).
    pub(super) fn admission_check(
        &self,
        now: Instant,
        origin: &NodeId,
        message: &Message,
    ) -> Result<(), DropReason> {
        match (self.rights(now, origin)?, message) {
            (Some(r), Message::Update(u)) => r.refuses(u).map_or(Ok(()), Err),
            (Some(r), _) if !r.permits(message) => Err(DropReason::Forbidden),
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
            Some(r) => r.refuses(update).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Whether `owner`'s replicated state may be taken in, however it arrived: the state sync's
    /// batches carry entries outside any update frame, so they are held to this separately.
    #[cfg(feature = "state")]
    pub(super) fn admission_check_state(
        &self,
        now: Instant,
        owner: &NodeId,
    ) -> Result<(), DropReason> {
        match self.rights(now, owner)? {
            Some(r) if !r.state => Err(DropReason::Forbidden),
            _ => Ok(()),
        }
    }

    /// Whether `leaf` may be told about `member` (see [`ViewScope`]).
    pub(super) fn sees(&self, leaf: &NodeId, member: &NodeId) -> bool {
        sees(&self.admitted, &self.members, &self.id, leaf, member)
    }

    /// Whether `leaf` has a view narrower than the whole cluster here.
    pub(super) fn is_limited(&self, leaf: &NodeId) -> bool {
        view_of(&self.admitted, &self.members, &self.id, leaf).is_some()
    }

    /// `leaf` was sent records of `members`: under a `Groups` scope those relayed members stay in
    /// its view (it must hear when they go down).
    pub(super) fn note_shown(&mut self, leaf: &NodeId, members: Vec<NodeId>) {
        let Some(s) = self.admitted.served.get_mut(leaf) else {
            return;
        };
        if matches!(s.grant.scope, ViewScope::Groups(_)) {
            s.shown.extend(members);
        }
    }

    /// What of `pending` the member `leaf` may see, `None` when it sees everything. Its own
    /// words are not echoed back to it. A relayed member it is told about for the first time
    /// (it came to share a group) comes with its alive record and metadata, which it needs to
    /// take the news. A change of `leaf`'s own metadata under a `Groups` scope may widen its
    /// view: it is put in `refresh`, to be synced.
    pub(super) fn limited_view(
        &mut self,
        leaf: NodeId,
        pending: &[(Subject, SignedPacket)],
        refresh: &mut Vec<NodeId>,
    ) -> Option<Vec<Piece>> {
        if !self.is_limited(&leaf) {
            return None;
        }
        let groups = self
            .admitted
            .served
            .get(&leaf)
            .is_some_and(|s| matches!(s.grant.scope, ViewScope::Groups(_)));
        let mut pieces = Vec::new();
        let mut first = Vec::new();
        for (i, (subject, packet)) in pending.iter().enumerate() {
            if packet.origin() == leaf {
                if groups && *subject == Subject::Metadata(leaf) && !refresh.contains(&leaf) {
                    refresh.push(leaf);
                }
                continue;
            }
            let member = subject.member();
            if !self.sees(&leaf, &member) {
                continue;
            }
            let relayed = member != leaf
                && self
                    .members
                    .get(&member)
                    .is_some_and(|m| !has_own_address(&m.addrs));
            let shown = self
                .admitted
                .served
                .get(&leaf)
                .is_some_and(|s| s.shown.contains(&member));
            if groups && relayed && !shown && !first.contains(&member) {
                first.push(member);
                let m = &self.members[&member];
                if m.alive != *packet {
                    pieces.push(Piece::Alive(member));
                }
                if m.meta.is_some() && *subject != Subject::Metadata(member) {
                    pieces.push(Piece::Meta(member));
                }
            }
            pieces.push(Piece::Pending(i));
        }
        self.note_shown(&leaf, first);
        Some(pieces)
    }

    /// Holds the records of its own that a member served here carries in a frame it has this
    /// node relay (a push-pull, a gossip, a probe's piggyback) to its grant, as if it had sent
    /// them here: only this node knows the grant's metadata limit, so the member's records
    /// must not reach others around it.
    pub(super) fn check_carried(
        &mut self,
        now: Instant,
        origin: &NodeId,
        message: &Message,
    ) -> Result<(), DropReason> {
        let items: &[SignedPacket] = match message {
            // A state sync carries maps outside any update frame. A browser member checks no
            // admission (it trusts its server), so a map whose owner may not write state must
            // stop here, or a tab that opens a state sync with this member would take it in.
            #[cfg(feature = "state")]
            Message::Membership(MembershipMessage::StateSync(s)) => {
                for batch in &s.batches {
                    self.admission_check_state(now, &batch.owner)?;
                }
                return Ok(());
            }
            Message::Membership(MembershipMessage::Sync(s)) => &s.states,
            Message::Membership(MembershipMessage::Gossip(g)) => &g.items,
            Message::Membership(MembershipMessage::Ping(p)) => &p.piggyback,
            Message::Membership(MembershipMessage::Ack(a)) => &a.piggyback,
            _ => return Ok(()),
        };
        for item in items.iter().filter(|i| i.origin() == *origin) {
            // One that does not verify is the recipient's to refuse.
            if let Ok(Message::Update(update)) = self.shell.codec.verify(item) {
                self.admission_check_update(now, origin, &update)?;
            }
        }
        Ok(())
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
        state: bool,
    ) {
        let admission = Admission {
            member,
            expires,
            name,
            topics,
            state,
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
        let state = s.grant.state;
        self.issue(now, peer, expires, name, topics, state);
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
            state: a.state,
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
                self.hub.pending.push((Subject::Member(member), packet));
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
        // A view keeps the members it was shown while they are known here.
        let members = &self.members;
        for s in self.admitted.served.values_mut() {
            s.shown.retain(|id| members.contains_key(id));
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
