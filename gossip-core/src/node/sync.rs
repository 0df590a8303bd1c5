use std::collections::HashMap;

use rand_core::Rng;

use super::Node;
use super::backlog::ITEM_OVERHEAD;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
use crate::membership::{Member, State, outranks};
use crate::message::Message;
use crate::message::{DigestEntry, Sync, sync_phase};
use crate::time::Instant;
use crate::wire::SignedPacket;

/// Push-pull state: follow-ups of answers cut by the budget, and the quick syncs after a join.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// Follow-up rounds run with each peer whose answer was cut.
    pub(super) followups: HashMap<NodeId, u8>,
    /// Quick push-pulls still to run after a join, one probe interval apart.
    pub(super) bootstrap_syncs: u8,
}

/// Follow-up push-pull rounds when an answer was cut by the byte budget.
pub(super) const MAX_SYNC_FOLLOWUPS: u8 = 32;

/// Quick push-pulls after a join, one probe interval apart.
pub(super) const BOOTSTRAP_SYNCS: u8 = 3;

impl Node {
    pub(super) fn digest(&self) -> Vec<DigestEntry> {
        let mut d: Vec<DigestEntry> = self.members.values().map(Member::digest).collect();
        crate::sort::unstable_by_key(&mut d, |e| e.node);
        d.truncate(self.config.limits.max_items);
        d
    }

    /// The digest to send `peer`: a member with a limited view (see
    /// [`crate::admission::ViewScope`]) is not told, even by a digest entry, of members it may
    /// not see.
    pub(super) fn digest_for(&self, peer: &NodeId) -> Vec<DigestEntry> {
        if !self.is_limited(peer) {
            return self.digest();
        }
        let mut d: Vec<DigestEntry> = self
            .members
            .values()
            .filter(|m| self.sees(peer, &m.id))
            .map(Member::digest)
            .collect();
        crate::sort::unstable_by_key(&mut d, |e| e.node);
        d.truncate(self.config.limits.max_items);
        d
    }

    pub(super) fn own_records(&self) -> Vec<SignedPacket> {
        let me = self.local();
        let mut v = vec![me.alive.clone()];
        v.extend(me.meta.clone());
        v
    }

    /// The records a peer with `digest` lacks, cut to the sync budget.
    /// `peer` is who asked: members relayed through this node (tabs) get no admissions, which
    /// they do not decode.
    pub(super) fn delta(
        &mut self,
        digest: &[DigestEntry],
        #[allow(unused_variables)] peer: NodeId,
    ) -> (Vec<SignedPacket>, bool) {
        let theirs: HashMap<NodeId, &DigestEntry> = digest.iter().map(|e| (e.node, e)).collect();
        let ids = self.delta_order();
        let (mut out, mut size, mut cut) = (Vec::new(), 0usize, false);
        // Admissions go after every alive record: their issuers are then known to the peer,
        // and a member it took before its admission arrived is judged by it at once.
        #[cfg(feature = "admission")]
        let mut admissions = Vec::new();
        #[cfg(feature = "admission")]
        let to_tab = self.hub.leaves.contains(&peer);
        // A member with a limited view gets only the records of members it may see.
        let limited = self.is_limited(&peer);
        let mut shown = Vec::new();
        let budget = self.config.max_sync_bytes;
        // Members a mint is likely to have made are not handed on (see `withholding`).
        let withholding = self.withholding();
        for id in ids {
            if (limited && !self.sees(&peer, &id)) || (withholding && self.unvouched(&id)) {
                continue;
            }
            let m = &self.members[&id];
            let e = theirs.get(&id);
            let their_state = e.and_then(|e| State::from_code(e.state).map(|s| (e.incarnation, s)));
            let mut records = Vec::new();
            match their_state {
                None if m.state.is_down() => {}
                None => records.push(&m.alive),
                Some((inc, st)) if outranks(m.incarnation, m.state, inc, st) => {
                    if inc < m.incarnation || st != State::Alive {
                        records.push(&m.alive);
                    }
                    records.extend(m.status.as_ref());
                }
                Some(_) => {}
            }
            if e.is_none_or(|e| e.meta_version < m.meta_version) && !m.state.is_down() {
                records.extend(m.meta.as_ref());
            }
            #[cfg(feature = "admission")]
            if !records.is_empty()
                && !to_tab
                && let Some(a) = self.admission_record(&id)
                && !records.contains(&a)
            {
                admissions.push(a.clone());
            }
            if limited && id != peer && !records.is_empty() {
                shown.push(id);
            }
            for r in records {
                if size + r.len() + ITEM_OVERHEAD > budget
                    || out.len() >= self.config.limits.max_items
                {
                    cut = true;
                    continue;
                }
                size += r.len() + ITEM_OVERHEAD;
                out.push(r.clone());
            }
        }
        #[cfg(feature = "admission")]
        for r in admissions {
            if size + r.len() + ITEM_OVERHEAD > budget || out.len() >= self.config.limits.max_items
            {
                cut = true;
                break;
            }
            size += r.len() + ITEM_OVERHEAD;
            out.push(r);
        }
        if limited {
            self.note_shown(&peer, shown);
        }
        (out, cut)
    }

    pub(super) fn push_pull_round(&mut self, now: Instant) {
        // A relayed member (a tab) push-pulls with its relay only. Any other member answers it
        // with the view every stranger gets (full members only, see `view_of`), so a sync with
        // another server could never bring it a record of a tab it missed, while its digest
        // costs as much as a useful one. The relay carries all its traffic anyway, and it has
        // nobody to reconnect to behind a partition but the relay.
        if let Some(relay) = self.local().relay() {
            if self.members.contains_key(&relay) {
                self.open_push_pull(now, relay);
            }
            return;
        }
        let mut peers = self.random_members(1, |m| m.state == State::Alive);
        // Serf-style reconnect: also sync with one member we believe dead, so the two sides of a
        // healed partition find each other (the buried learn it and refute) before reaping.
        let dead = self.random_members(1, |m| m.state == State::Dead);
        let buried = dead.is_empty();
        peers.extend(dead);
        for peer in peers {
            self.open_push_pull(now, peer);
        }
        // Once the dead are reaped the other side of a long partition is only tombstones: try
        // one at the address it last signed. If it is alive its answer carries its alive record,
        // which the tombstone turns into a challenge, and it comes back refuted.
        if buried && !self.gate.last_seen_at.is_empty() {
            let mut ids: Vec<NodeId> = self.gate.last_seen_at.keys().copied().collect();
            crate::sort::unstable(&mut ids);
            let id = ids[(self.rng.next_u64() % ids.len() as u64) as usize];
            let addr = self.gate.last_seen_at[&id].clone();
            let msg = Sync {
                phase: sync_phase::OPEN,
                digest: self.digest_for(&id),
                states: Vec::new(),
            };
            self.send_to_addr(now, addr, Some(id), msg.into(), true);
        }
    }

    /// Opens a push-pull with `peer`, with the digest it may be shown: its answer tells what it
    /// holds, and our close brings it what it lacks.
    pub(super) fn open_push_pull(&mut self, now: Instant, peer: NodeId) {
        self.opened_sync(now, peer);
        let msg = Sync {
            phase: sync_phase::OPEN,
            digest: self.digest_for(&peer),
            states: Vec::new(),
        };
        self.send_to_member(now, peer, msg.into(), true);
    }

    pub(super) fn on_sync(&mut self, now: Instant, origin: NodeId, from: Address, sync: Sync) {
        let states = self.take_answer(now, origin, sync.phase, sync.states);
        let learned_from_peer = self.apply_states(now, states);
        self.answer_applied();
        match sync.phase {
            sync_phase::OPEN | sync_phase::JOIN => {
                if sync.phase == sync_phase::JOIN {
                    self.gate.pool.asked_to_join(origin);
                }
                let (states, _) = self.delta(&sync.digest, origin);
                let answer = Sync {
                    phase: sync_phase::ANSWER,
                    digest: self.digest_for(&origin),
                    states,
                };
                self.reply(now, origin, from, answer.into(), true);
            }
            sync_phase::ANSWER => {
                let (states, _) = self.delta(&sync.digest, origin);
                if !states.is_empty() {
                    let close = Sync {
                        phase: sync_phase::CLOSE,
                        digest: Vec::new(),
                        states,
                    };
                    self.reply(now, origin, from.clone(), close.into(), true);
                }
                // The answer was cut by the budget if the peer still knows more than we do now.
                let behind = sync.digest.iter().any(|e| self.lacks(e));
                let rounds = self.sync.followups.entry(origin).or_insert(0);
                if behind && learned_from_peer && *rounds < MAX_SYNC_FOLLOWUPS {
                    *rounds += 1;
                    self.opened_sync(now, origin);
                    let again = Sync {
                        phase: sync_phase::OPEN,
                        digest: self.digest_for(&origin),
                        states: Vec::new(),
                    };
                    self.reply(now, origin, from, again.into(), true);
                } else {
                    self.sync.followups.remove(&origin);
                }
            }
            _ => {}
        }
    }

    /// Applies the records of a push-pull; whether any was news.
    pub(super) fn apply_states(&mut self, now: Instant, states: Vec<SignedPacket>) -> bool {
        let mut learned = false;
        for state in states {
            // A record we hold byte for byte was verified when it arrived: checking its
            // signature again is the most common wasted verification in a join storm.
            if self.holds(&state) {
                continue;
            }
            match self.shell.codec.verify(&state) {
                Ok(Message::Update(update)) => {
                    learned |= self.apply_and_spread(now, state.origin(), update, state);
                }
                Ok(_) => self.shell.count_drop(DropReason::NotAnUpdate),
                Err(e) => self.shell.drop_counted(&e),
            }
        }
        learned
    }

    /// Whether `record` is the alive record or the metadata this node holds for its origin.
    fn holds(&self, record: &SignedPacket) -> bool {
        self.members
            .get(&record.origin())
            .is_some_and(|m| m.alive == *record || m.meta.as_ref() == Some(record))
    }

    pub(super) fn lacks(&self, e: &DigestEntry) -> bool {
        let Some(state) = State::from_code(e.state) else {
            return false;
        };
        match self.members.get(&e.node) {
            None => {
                !state.is_down()
                    && self
                        .gate
                        .tombstones
                        .get(&e.node)
                        .is_none_or(|(inc, _)| *inc < e.incarnation)
            }
            Some(m) => {
                outranks(e.incarnation, state, m.incarnation, m.state)
                    || e.meta_version > m.meta_version
            }
        }
    }
}
