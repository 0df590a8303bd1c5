use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};

use rand_core::Rng;

use super::Node;
use super::backlog::Subject;
use super::intake::{Pool, Voucher};
use super::probe::Suspicion;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::event::Event;
use crate::identity::NodeId;
use crate::membership::{Member, State};
use crate::message::{Alive, Dead, Leave, Message, Metadata, Suspect, UpdateMessage};
use crate::time::Instant;
use crate::wire::SignedPacket;

/// What applying one verified update did. Only news is passed on; a refusal was counted.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// It changed what this node knows.
    News,
    /// It was known already, is older than what is known, or is about nobody we know.
    Known,
    /// A rule refused it (counted under the reason).
    Refused(DropReason),
}

impl Applied {
    pub(super) fn is_news(self) -> bool {
        self == Applied::News
    }
}

/// How far above our own incarnation an accusation about us may be and still be refuted: a
/// previous life of ours may have signed a higher incarnation than this one started at, but
/// nobody honest holds one 2^32 above it, and refuting that would hand the accuser our counter.
const MAX_REFUTE_JUMP: u64 = 1 << 32;

/// Who may enter the member table: members buried and forgotten (kept long enough to refuse
/// their stale records) and the bounds on how fast new members come in.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Reaped members: the incarnation they were buried at, and until when it is remembered.
    pub(super) tombstones: HashMap<NodeId, (u64, Instant)>,
    /// Where reaped members were last reachable, for as long as their tombstone lasts: the
    /// reconnect push-pull tries them so the sides of a long partition find each other again.
    pub(super) last_seen_at: HashMap<NodeId, Address>,
    /// Members challenged with their burial, and when they may be challenged again.
    pub(super) challenged: HashMap<NodeId, Instant>,
    /// Members added while handling the current frame.
    pub(super) added_this_frame: usize,
    /// Members each sender introduced (other than itself) in the current intake window.
    introduced: HashMap<NodeId, usize>,
    intake_window_end: Option<Instant>,
    /// Members not yet heard answering, by who vouched for them: what a full table forgets.
    pub(super) pool: Pool,
}

/// Newcomers remembered per input; one frame holds at most a few hundred items.
pub(super) const NEWCOMERS_MAX: usize = 1_024;

impl Node {
    pub(super) fn reap(&mut self, now: Instant) {
        let retention = self.config.dead_retention_ms;
        let gone: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| {
                m.id != self.id
                    && m.state.is_down()
                    && now.micros_since(m.since) / 1_000 >= retention
            })
            .map(|m| m.id)
            .collect();
        for id in gone {
            #[cfg(feature = "phi")]
            self.probing.detectors.remove(&id);
            self.unconfirm(&id);
            self.gate.pool.leave(&id);
            self.hub.leaves.remove(&id);
            if let Some(m) = self.members.remove(&id) {
                self.gate
                    .tombstones
                    .insert(id, (m.incarnation, now.plus_millis(retention * 10)));
                if let Some(addr) = m.addrs.iter().find(|a| !matches!(a, Address::Relayed(_))) {
                    self.gate.last_seen_at.insert(id, addr.clone());
                }
            }
        }
        self.gate.tombstones.retain(|_, (_, until)| *until > now);
        let gate = &mut self.gate;
        gate.last_seen_at
            .retain(|id, _| gate.tombstones.contains_key(id));
        self.gate.challenged.retain(|_, next| *next > now);
    }

    pub(super) fn receive_items(&mut self, now: Instant, items: Vec<SignedPacket>) {
        let wall = self.shell.wall(now);
        for item in items {
            match self.shell.codec.accept(&item, wall) {
                Ok(Message::Update(update)) => {
                    self.apply_and_spread(now, item.origin(), update, item);
                }
                Ok(_) => self.shell.count_drop(DropReason::NotAnUpdate),
                Err(e) => self.shell.drop_counted(&e),
            }
        }
    }

    /// Applies a verified update and, if it was news, queues it to be passed on under its
    /// subject (a newer update about the same subject replaces a queued older one).
    pub(super) fn apply_and_spread(
        &mut self,
        now: Instant,
        origin: NodeId,
        update: UpdateMessage,
        packet: SignedPacket,
    ) -> bool {
        // An admitted member's words, however they arrived (a frame, a piggyback, a sync).
        if let Err(reason) = self.admission_check_update(now, &origin, &update) {
            self.shell.count_drop(reason);
            return false;
        }
        let subject = match &update {
            UpdateMessage::Alive(_) | UpdateMessage::Leave(_) => Subject::Member(origin),
            UpdateMessage::Suspect(s) => Subject::Member(s.node),
            UpdateMessage::Dead(d) => Subject::Member(d.node),
            UpdateMessage::Metadata(_) => Subject::Metadata(origin),
            UpdateMessage::Broadcast(_) => Subject::Broadcast(origin, packet.id().to_u64()),
            #[cfg(feature = "state")]
            UpdateMessage::State(e) => {
                Subject::State(origin, crate::state::store::key_subject(&e.key))
            }
            #[cfg(feature = "admission")]
            UpdateMessage::Admission(a) => Subject::Admission(a.member),
        };
        let alive = matches!(update, UpdateMessage::Alive(_));
        let applied = self.apply(now, origin, update, &packet);
        match applied {
            Applied::News if alive && self.unvouched(&origin) && self.withholding() => {
                self.gate.pool.withhold(origin);
                self.shell.stats.news_withheld += 1;
            }
            Applied::News => self.enqueue(subject, packet),
            Applied::Refused(reason) => self.shell.count_drop(reason),
            Applied::Known => {}
        }
        applied.is_news()
    }

    /// Applies a verified update.
    pub(super) fn apply(
        &mut self,
        now: Instant,
        origin: NodeId,
        update: UpdateMessage,
        packet: &SignedPacket,
    ) -> Applied {
        match update {
            UpdateMessage::Alive(a) => self.apply_alive(now, origin, a, packet),
            UpdateMessage::Suspect(s) => self.apply_suspect(now, origin, s, packet),
            UpdateMessage::Dead(d) => self.apply_dead(now, d, packet),
            UpdateMessage::Leave(l) => self.apply_leave(now, origin, l, packet),
            UpdateMessage::Metadata(m) => self.apply_metadata(origin, m, packet),
            #[cfg(feature = "state")]
            UpdateMessage::State(e) => self.apply_state(now, origin, e, packet),
            #[cfg(feature = "admission")]
            UpdateMessage::Admission(a) => self.apply_admission(now, origin, a, packet),
            UpdateMessage::Broadcast(b) => {
                if origin != self.id {
                    self.shell.push_event(Event::Broadcast {
                        from: origin,
                        topic: b.topic,
                        data: b.data.into_vec(),
                    });
                }
                Applied::News
            }
        }
    }

    pub(super) fn apply_alive(
        &mut self,
        now: Instant,
        origin: NodeId,
        a: Alive,
        packet: &SignedPacket,
    ) -> Applied {
        if origin == self.id {
            return Applied::Known;
        }
        if let Some(&(buried_at, _)) = self.gate.tombstones.get(&origin)
            && buried_at >= a.incarnation
        {
            self.challenge(now, origin, buried_at, &a.addrs);
            return Applied::Known;
        }
        let renamed = self.members.get(&origin).is_none_or(|m| m.name != a.name);
        if renamed && self.name_taken(origin, &a.name) {
            return Applied::Refused(DropReason::NameTaken);
        }
        match self.members.get(&origin) {
            None => {
                let Some(voucher) = self.admit(now, origin) else {
                    return Applied::Refused(DropReason::TooManyMembers);
                };
                let name = a.name.clone();
                self.members.insert(
                    origin,
                    Member {
                        id: origin,
                        name: a.name,
                        addrs: a.addrs,
                        incarnation: a.incarnation,
                        state: State::Alive,
                        since: now,
                        metadata: BTreeMap::new(),
                        meta_version: 0,
                        rtt_micros: None,
                        alive: packet.clone(),
                        status: None,
                        meta: None,
                    },
                );
                self.gate.tombstones.remove(&origin);
                self.gate.last_seen_at.remove(&origin);
                self.track_leaf(origin);
                if self.spread.newcomers.len() < NEWCOMERS_MAX {
                    self.spread.newcomers.push(origin);
                }
                // Probe newcomers soon: first if the intake says so, else at a random place in
                // the current unconfirmed pass.
                if !self.gate.pool.enter(origin, voucher) {
                    let draw = self.rng.next_u64();
                    self.probing.unconfirmed.insert(draw, origin);
                }
                self.shell.push_event(Event::MemberJoined {
                    id: origin,
                    name: name.clone(),
                });
                self.regroup(origin);
                Applied::News
            }
            Some(_) => {
                let Some(mut m) = self.members.get_mut(&origin) else {
                    return Applied::Known;
                };
                if a.incarnation <= m.incarnation {
                    return Applied::Known;
                }
                let was = m.state;
                let moved = m.addrs != a.addrs;
                m.incarnation = a.incarnation;
                m.addrs = a.addrs;
                m.name = a.name.clone();
                m.alive = packet.clone();
                m.status = None;
                m.state = State::Alive;
                if was != State::Alive {
                    m.since = now;
                }
                drop(m);
                self.track_leaf(origin);
                self.probing.suspicions.remove(&origin);
                if moved {
                    // An answer at the old address proves nothing about the new one.
                    self.unconfirm(&origin);
                }
                if was != State::Alive {
                    self.shell.push_event(Event::MemberAlive { id: origin });
                }
                if was.is_down() {
                    self.regroup(origin);
                }
                Applied::News
            }
        }
    }

    /// Whether a member new to this node may be added, within the intake bounds per frame and
    /// per sender (see `Config::max_new_members_per_sender`) and `max_members`, and who vouches
    /// for it if so (see `intake`). A member introducing itself costs its sender nothing: that
    /// is how every join starts. A full table makes room if fairness between vouchers allows.
    fn admit(&mut self, now: Instant, newcomer: NodeId) -> Option<Voucher> {
        let gate = &mut self.gate;
        if gate.intake_window_end.is_none_or(|end| now >= end) {
            gate.introduced.clear();
            gate.intake_window_end = Some(now.plus_millis(self.config.intake_window_ms));
        }
        let sender = self.spread.fresh_from.filter(|s| *s != newcomer);
        // A member relayed through a server (a browser tab) learns every member from that one
        // server, in its hub's batches and push-pull answers: the server already holds the
        // tab's view (it applies the grant's scope) and bounded what it took in with its own
        // intake caps, and the tab must trust it for its view anyway. Capping its frames here
        // would only lose what the tab is meant to see (issue 14: 2,000 tabs under `All` held
        // 1,355 members of 2,005). Anyone else's frames, relayed to the tab or not, stay
        // capped: a frame relayed on behalf of another member carries that member's origin.
        let from_own_relay = sender.is_some() && sender == self.own_relay();
        let gate = &mut self.gate;
        if !from_own_relay {
            if gate.added_this_frame >= self.config.max_new_members_per_frame {
                return None;
            }
            if let Some(sender) = sender
                && gate.introduced.get(&sender).copied().unwrap_or(0)
                    >= self.config.max_new_members_per_sender
            {
                return None;
            }
        }
        // A member that answered us, or one that such a member vouched for modestly (at a
        // joiner, the members its seed taught it): in a join storm most news of newcomers comes
        // from members not yet probed, and counting all of it as nobody's would hold it back.
        let voucher =
            sender.filter(|s| self.probing.confirmed.contains(s) || self.gate.pool.is_vouched(s));
        if self.members.len() >= self.config.max_members {
            let (me, leaves) = (self.id, &self.hub.leaves);
            let victim = self
                .gate
                .pool
                .evict(voucher, |id| *id == me || leaves.contains(id))?;
            self.forget(victim);
        }
        let gate = &mut self.gate;
        if let Some(sender) = sender {
            // Bounded: a sender enters the map only by introducing a member, at most
            // `max_members` senders per window can.
            *gate.introduced.entry(sender).or_insert(0) += 1;
        }
        gate.added_this_frame += 1;
        Some(voucher)
    }

    /// The server this node is relayed through, if it is an admitted member behind one (its
    /// own record's relayed address: set by this node, never by a peer).
    fn own_relay(&self) -> Option<NodeId> {
        self.members.get(&self.id).and_then(Member::relay)
    }

    /// Drops a member this node never heard answer from a full table (see `intake`). It is not
    /// buried: nothing says it is gone, and it may be learned again.
    fn forget(&mut self, id: NodeId) {
        #[cfg(feature = "phi")]
        self.probing.detectors.remove(&id);
        self.unconfirm(&id);
        self.probing.suspicions.remove(&id);
        self.hub.leaves.remove(&id);
        self.shell.stats.members_evicted += 1;
        if let Some(m) = self.members.remove(&id)
            && !m.state.is_down()
        {
            // To the application it is gone, as a member that left.
            self.shell.push_event(Event::MemberLeft { id });
            self.regroup(id);
        }
    }

    /// A name belongs to one live member that answers under it (this node, or a member that
    /// answered our direct probe): another key cannot take it while its holder is up, since
    /// every node would then have to choose which of the two to believe. A holder that never
    /// answered us does not block a claim: otherwise a key holder who sends a name first (to a
    /// node that is just joining, or ahead of a member it expects) would lock the real member
    /// out. Until one of them answers, both are members under the same name, and nobody is
    /// evicted by a name. A restarted node with a new identity gets its name once the old one
    /// is dead or left; keep the identity across restarts to come back at once.
    pub(super) fn name_taken(&self, claimant: NodeId, name: &str) -> bool {
        !name.is_empty()
            && self.members.maybe_named(name).any(|m| {
                m.id != claimant
                    && m.name == name
                    && !m.state.is_down()
                    && (m.id == self.id || self.probing.confirmed.contains(&m.id))
            })
    }

    pub(super) fn apply_suspect(
        &mut self,
        now: Instant,
        accuser: NodeId,
        s: Suspect,
        packet: &SignedPacket,
    ) -> Applied {
        if s.node == self.id {
            self.refute(now, s.incarnation);
            return Applied::Known;
        }
        let n = self.live_count();
        let (min_ms, max_ms) = self.config.suspicion_timeout_ms(self.counted_members());
        let expected = if n > 2 {
            (self.config.suspicion_mult.saturating_sub(2)).min((n - 2) as u32)
        } else {
            0
        };
        let Some(mut m) = self.members.get_mut(&s.node) else {
            return Applied::Known;
        };
        // `m.incarnation` only ever comes from a record the member signed itself: nobody can
        // honestly accuse it of an incarnation it never claimed.
        if s.incarnation > m.incarnation {
            return Applied::Refused(DropReason::AccusationAhead);
        }
        if m.state.is_down() || s.incarnation < m.incarnation {
            return Applied::Known;
        }
        if m.state == State::Suspect {
            // Lifeguard: an independent confirmation shortens the timeout, and is passed on.
            let Some(sus) = self.probing.suspicions.get_mut(&s.node) else {
                return Applied::Known;
            };
            if !sus.confirmations.insert(accuser) {
                return Applied::Known;
            }
            sus.recompute();
            return Applied::News;
        }
        m.state = State::Suspect;
        m.incarnation = s.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        drop(m);
        let mut sus = Suspicion {
            incarnation: s.incarnation,
            start: now,
            min_ms,
            max_ms,
            expected,
            confirmations: BTreeSet::from([accuser]),
            deadline: now,
        };
        sus.recompute();
        self.probing.suspicions.insert(s.node, sus);
        self.shell.push_event(Event::MemberSuspect { id: s.node });
        Applied::News
    }

    pub(super) fn apply_dead(&mut self, now: Instant, d: Dead, packet: &SignedPacket) -> Applied {
        if d.node == self.id {
            self.refute(now, d.incarnation);
            return Applied::Known;
        }
        let Some(mut m) = self.members.get_mut(&d.node) else {
            return Applied::Known;
        };
        if d.incarnation > m.incarnation {
            return Applied::Refused(DropReason::AccusationAhead);
        }
        if m.state.is_down() || d.incarnation < m.incarnation {
            return Applied::Known;
        }
        m.state = State::Dead;
        m.incarnation = d.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        drop(m);
        self.probing.suspicions.remove(&d.node);
        self.shell.push_event(Event::MemberDead { id: d.node });
        self.member_down(d.node);
        Applied::News
    }

    pub(super) fn apply_leave(
        &mut self,
        now: Instant,
        origin: NodeId,
        l: Leave,
        packet: &SignedPacket,
    ) -> Applied {
        let Some(mut m) = self.members.get_mut(&origin) else {
            return Applied::Known;
        };
        if origin == self.id || m.state == State::Left || l.incarnation < m.incarnation {
            return Applied::Known;
        }
        m.state = State::Left;
        m.incarnation = l.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        drop(m);
        self.probing.suspicions.remove(&origin);
        self.shell.push_event(Event::MemberLeft { id: origin });
        self.member_down(origin);
        Applied::News
    }

    pub(super) fn apply_metadata(
        &mut self,
        origin: NodeId,
        meta: Metadata,
        packet: &SignedPacket,
    ) -> Applied {
        let max = self.config.max_metadata_bytes;
        let Some(mut m) = self.members.get_mut(&origin) else {
            return Applied::Known;
        };
        if origin == self.id || meta.version <= m.meta_version {
            return Applied::Known;
        }
        let size = meta.entries.iter().fold(0usize, |n, (k, v)| {
            n.saturating_add(k.len()).saturating_add(v.len())
        });
        if size > max {
            return Applied::Refused(DropReason::MetadataTooLarge);
        }
        // Inserted one by one (a later duplicate key wins, as with `collect`): collecting into a
        // BTreeMap links a stable sort of the pairs, kilobytes of the browser build.
        m.metadata = BTreeMap::new();
        for (k, v) in meta.entries {
            m.metadata.insert(k, v.into_vec());
        }
        m.meta_version = meta.version;
        m.meta = Some(packet.clone());
        drop(m);
        self.shell.push_event(Event::MetadataChanged {
            id: origin,
            version: meta.version,
        });
        self.regroup(origin);
        Applied::News
    }

    /// An alive record arrived for a member we buried and forgot: either it is stale, or the
    /// member is alive on the far side of a healed partition and never heard it was buried. Tell
    /// it, directly and signed: if it is alive it refutes and answers with a newer incarnation,
    /// which the tombstone lets through. Rate-limited to once per probe interval per member.
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        node: NodeId,
        incarnation: u64,
        addrs: &[Address],
    ) {
        if self
            .gate
            .challenged
            .get(&node)
            .is_some_and(|next| now < *next)
        {
            return;
        }
        let Some(addr) = addrs
            .iter()
            .find(|a| !matches!(a, Address::Relayed(_)))
            .cloned()
        else {
            return;
        };
        if self.gate.challenged.len() >= self.config.max_queue {
            self.gate.challenged.retain(|_, next| *next > now);
        }
        self.gate
            .challenged
            .insert(node, now.plus_millis(self.config.probe_interval_ms));
        self.send_to_addr(
            now,
            addr,
            Some(node),
            Dead { node, incarnation }.into(),
            false,
        );
    }

    /// Fails what was waiting on a member that is gone, and takes it out of its groups.
    pub(super) fn member_down(&mut self, id: NodeId) {
        self.unconfirm(&id);
        self.regroup(id);
        let closed = self.streams.peer_gone(id);
        let now = self.timers.latest();
        self.stream_outputs(now, closed);
        let mut events = Vec::new();
        self.requests.on_member_down(id, &mut events);
        events.into_iter().for_each(|e| self.shell.push_event(e));
        #[cfg(feature = "admission")]
        self.issuer_down(now, id);
    }

    /// Someone suspects or buried us at `incarnation`: outbid it with a fresh alive record.
    /// An accusation far above our own incarnation names a number we never signed (others
    /// refuse it for that reason): it is not refuted, so it cannot drive our counter to its end.
    pub(super) fn refute(&mut self, now: Instant, incarnation: u64) {
        let me = &self.members[&self.id];
        if self.left || incarnation < me.incarnation {
            return;
        }
        let Some(next) = incarnation
            .checked_add(1)
            .filter(|_| incarnation - me.incarnation <= MAX_REFUTE_JUMP)
        else {
            self.shell.count_drop(DropReason::AccusationAhead);
            return;
        };
        // Lifeguard: being suspected hints that our own responses are slow. Only a suspicion of
        // this life's incarnation is such a hint: nobody honest accuses above it, and counting
        // accusations above it would let any key holder slow our probing at will.
        let blame = incarnation == me.incarnation;
        let alive = Alive {
            incarnation: next,
            addrs: me.addrs.clone(),
            name: me.name.clone(),
        };
        if blame {
            self.adjust_awareness(1);
        }
        if let Some(packet) = self.shell.sign(now, alive.into()) {
            let mut me = self
                .members
                .get_mut(&self.id)
                .expect("self is always a member");
            me.incarnation = next;
            me.alive = packet.clone();
            drop(me);
            self.enqueue(Subject::Member(self.id), packet);
        }
    }

    /// Re-evaluates `id` against every group after a join, a metadata change or a death.
    pub(super) fn regroup(&mut self, id: NodeId) {
        let events = match self.members.get(&id) {
            Some(m) if !m.state.is_down() => self.groups.member_changed(id, Some(&m.metadata)),
            _ => self.groups.member_changed(id, None),
        };
        #[cfg(feature = "ownership")]
        self.ownership_member_changed(id, &events);
        events
            .into_iter()
            .for_each(|e| self.shell.push_event(Event::Group(e)));
    }
}
