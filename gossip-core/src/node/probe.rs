#[cfg(feature = "phi")]
use crate::detector::PhiDetector;
use std::collections::BTreeSet;
use std::collections::{HashMap, HashSet};

use super::Node;
use super::backlog::Subject;
use super::send::shuffle;
use super::timers::Timer;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
use crate::membership::State;
use crate::message::{Ack, Dead, Nack, Ping, PingReq, Suspect};
use crate::time::Instant;

/// A round-robin pass over a shuffled list of members, reshuffled each pass.
#[derive(Debug, Default)]
pub(super) struct Lane {
    pub(super) order: Vec<NodeId>,
    pub(super) index: usize,
}

impl Lane {
    /// Puts a member at a random place in the rest of the current pass, so it is probed soon.
    pub(super) fn insert(&mut self, draw: u64, id: NodeId) {
        let at = self.index + (draw as usize) % (self.order.len() - self.index + 1);
        self.order.insert(at, id);
    }
}

/// SWIM's failure detector with Lifeguard: the probe cycle, indirect probes, suspicions, local
/// health and (optionally) phi-accrual detectors.
#[derive(Debug)]
pub(super) struct Probing {
    /// Members that answered a direct probe of ours in their current life: someone listens at
    /// the address they signed. Any key holder can mint members that never answer, as many as
    /// the intake caps let in; they and genuine newcomers wait in the unconfirmed lane, so a
    /// pass over the members we know answer takes at most twice as long as without them.
    pub(super) confirmed: HashSet<NodeId>,
    /// Probe order of confirmed members.
    pub(super) lane: Lane,
    /// Probe order of the others.
    pub(super) unconfirmed: Lane,
    /// How many probes the unconfirmed lane is owed (see `next_probe_target`).
    pub(super) credit: u64,
    /// The probe in flight.
    pub(super) current: Option<Probe>,
    /// Last probe sequence number used (also for indirect pings).
    pub(super) seq: u32,
    /// Pings this node sends on another member's behalf, by our sequence number.
    pub(super) indirect: HashMap<u32, IndirectProbe>,
    /// Lifeguard's local health.
    pub(super) awareness: Awareness,
    pub(super) suspicions: HashMap<NodeId, Suspicion>,
    #[cfg(feature = "phi")]
    pub(super) detectors: HashMap<NodeId, PhiDetector>,
}

impl Probing {
    pub(super) fn new(seq: u32) -> Self {
        Probing {
            confirmed: HashSet::new(),
            lane: Lane::default(),
            unconfirmed: Lane::default(),
            credit: 0,
            current: None,
            seq,
            indirect: HashMap::new(),
            awareness: Awareness::default(),
            suspicions: HashMap::new(),
            #[cfg(feature = "phi")]
            detectors: HashMap::new(),
        }
    }

    /// The earliest of the probe's next stage, a suspicion's end and an indirect probe's end.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let probe = self.current.as_ref().map(|p| {
            if p.indirect_sent {
                p.deadline
            } else {
                p.indirect_at
            }
        });
        let suspicions = self.suspicions.values().map(|s| s.deadline);
        let indirect = self.indirect.values().map(|i| i.deadline);
        probe.into_iter().chain(suspicions).chain(indirect).min()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) target: NodeId,
    pub(super) seq: u32,
    pub(super) sent: Instant,
    pub(super) indirect_at: Instant,
    pub(super) deadline: Instant,
    pub(super) acked: bool,
    pub(super) indirect_sent: bool,
    pub(super) nacks_expected: u32,
    pub(super) nacks: u32,
}

#[derive(Debug, Clone)]
pub(super) struct IndirectProbe {
    pub(super) requester: NodeId,
    pub(super) reply_to: Address,
    pub(super) seq: u32,
    pub(super) deadline: Instant,
}

#[derive(Debug, Clone)]
pub(super) struct Suspicion {
    pub(super) incarnation: u64,
    pub(super) start: Instant,
    pub(super) min_ms: u64,
    pub(super) max_ms: u64,
    pub(super) expected: u32,
    pub(super) confirmations: BTreeSet<NodeId>,
    pub(super) deadline: Instant,
}
impl Suspicion {
    /// Lifeguard: the timeout falls from max towards min as independent suspicions arrive.
    pub(super) fn recompute(&mut self) {
        let ms = suspicion_timeout_ms(
            self.confirmations.len(),
            self.expected,
            self.min_ms,
            self.max_ms,
        );
        self.deadline = self.start.plus_millis(ms);
    }
}

/// Lifeguard's suspicion timeout, in ms from the first suspicion, once `accusers` distinct
/// members (the first included) suspect the same incarnation and `expected` independent
/// confirmations are hoped for: `max` with one accuser, falling logarithmically to `min` as
/// confirmations reach `expected`, never below `min` (memberlist's `remainingSuspicionTime`).
/// With nobody to confirm (`expected` 0: a cluster of two or three) it is `min`.
pub(super) fn suspicion_timeout_ms(
    accusers: usize,
    expected: u32,
    min_ms: u64,
    max_ms: u64,
) -> u64 {
    let c = accusers.saturating_sub(1) as f64;
    let k = f64::from(expected);
    let span = max_ms.saturating_sub(min_ms) as f64;
    if k < 1.0 {
        return min_ms;
    }
    let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
    (max_ms as f64 - span * frac).max(min_ms as f64) as u64
}

/// Lifeguard's local health: missed acks, nacks that did not come and suspicions about
/// ourselves raise it; acks lower it. Probe intervals and timeouts stretch by its multiplier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Awareness {
    score: u32,
}

impl Awareness {
    /// The current score, from 0 (healthy) to `max_multiplier - 1`.
    pub(super) fn score(self) -> u32 {
        self.score
    }

    /// How much slower to probe: `score + 1`.
    pub(super) fn multiplier(self) -> u64 {
        u64::from(self.score) + 1
    }

    /// Moves the score by `delta`, kept within `[0, max_multiplier - 1]`.
    pub(super) fn apply(&mut self, delta: i64, max_multiplier: u32) {
        let max = i64::from(max_multiplier.saturating_sub(1));
        self.score = i64::from(self.score).saturating_add(delta).clamp(0, max) as u32;
    }
}

impl Node {
    pub(super) fn multiplier(&self) -> u64 {
        self.probing.awareness.multiplier()
    }

    pub(super) fn adjust_awareness(&mut self, delta: i64) {
        let max = self.config.awareness_max_multiplier;
        self.probing.awareness.apply(delta, max);
    }

    pub(super) fn probe_tick(&mut self, now: Instant) {
        if let Some(p) = self.probing.current.clone() {
            if p.acked {
                self.probing.current = None;
            } else if !p.indirect_sent && now >= p.indirect_at {
                // Lifeguard's local health counts this node's own slowness: a stage handled
                // more than a probe timeout after it was due means the node's loop was busy
                // (a driver behind on its frames, a starved process), not that the target is
                // gone, so later probes get longer timeouts. A driver that fires timers on time
                // (the simulator) never gets here.
                let late_us = now.micros_since(p.indirect_at);
                if late_us > self.config.probe_timeout_ms.saturating_mul(1_000) {
                    self.adjust_awareness(1);
                }
                self.send_indirect_probes(now, &p);
            } else if p.indirect_sent && now >= p.deadline {
                // Lifeguard: nacks we expected but did not get point at our own network.
                let delta = if p.nacks_expected > 0 {
                    p.nacks_expected.saturating_sub(p.nacks) as i64
                } else {
                    1
                };
                // Lifeguard's local health before this probe's own missing nacks.
                let healthy = self.probing.awareness.score() == 0;
                self.adjust_awareness(delta);
                self.probing.current = None;
                // A failed first probe is the intake's evidence of a mint (`Pool::probed`),
                // but only from a node that trusts its own timing: healthy by Lifeguard's count
                // (no missed nacks, late stages or suspicions of itself outstanding), with
                // this deadline handled on time, and with the silence corroborated: every
                // helper it knows to answer nacked (`delta` 0; with no such helper, Lifeguard
                // blames the node itself, and so does the intake). A node behind on its own
                // loop (a starved process in a join storm) fails probes whose answers may not
                // even have been sent yet; a seed that has confirmed nobody yet has nobody to
                // corroborate its first failed probe. In joins of 100 `fast` nodes in one process on a 2-core machine,
                // 179 of 228 failed first probes were handled over 40 ms late (up to 730 ms),
                // and the rest came from nodes whose health score was 1 to 7; one counted
                // failure against ~90 unconfirmed joiners made the seed withhold them from its
                // join answers (`withholding`), and the joiners it answered then knew 3 members
                // for up to 30 s.
                let behind = now.micros_since(p.deadline)
                    > self.config.probe_timeout_ms.saturating_mul(1_000);
                let counts = healthy && delta == 0 && !behind;
                if counts && !self.probing.confirmed.contains(&p.target) {
                    self.gate.pool.probed(&p.target, false);
                }
                // In phi mode a missed probe is only suspicious if the silence is too.
                #[cfg(feature = "phi")]
                let silent = match (self.config.phi, self.probing.detectors.get(&p.target)) {
                    (Some(phi), Some(d)) => d.phi(now, &phi).is_none_or(|v| v >= phi.threshold),
                    _ => true,
                };
                #[cfg(not(feature = "phi"))]
                let silent = true;
                if silent {
                    self.suspect(now, p.target);
                }
            }
        }
        if self.probing.current.is_none() && self.timers.is_due(Timer::Probe, now) {
            self.start_probe(now);
        }
    }

    pub(super) fn start_probe(&mut self, now: Instant) {
        let interval = self.config.probe_interval_ms * self.multiplier();
        self.timers.set(Timer::Probe, now.plus_millis(interval));
        let Some(target) = self.next_probe_target() else {
            return;
        };
        self.probing.seq = self.probing.seq.wrapping_add(1);
        let seq = self.probing.seq;
        self.probing.current = Some(Probe {
            target,
            seq,
            sent: now,
            indirect_at: now.plus_millis(self.config.probe_timeout_ms * self.multiplier()),
            deadline: now.plus_millis(interval),
            acked: false,
            indirect_sent: false,
            nacks_expected: 0,
            nacks: 0,
        });
        let budget = self.piggyback_budget();
        let piggyback = self.take_piggyback_for(budget, target);
        self.send_to_member(
            now,
            target,
            Ping {
                seq,
                target,
                piggyback,
            }
            .into(),
            false,
        );
    }

    /// Round-robin over a shuffled list, reshuffled each pass (SWIM's bounded detection time),
    /// one per lane. The lanes share the probes in proportion to their sizes, as one list would,
    /// except that the unconfirmed lane weighs at most as much as the confirmed one: however many
    /// members a key holder mints, confirmed members keep at least half the probe rate. An empty
    /// lane gives its turn to the other.
    pub(super) fn next_probe_target(&mut self) -> Option<NodeId> {
        let confirmed = self.probing.confirmed.len() as u64;
        let others = (self.live_count() as u64).saturating_sub(1 + confirmed);
        let weight = others.min(confirmed.max(1));
        // Smooth weighted round-robin: the credit is what the unconfirmed lane is owed.
        let total = weight + confirmed;
        self.probing.credit = self.probing.credit.saturating_add(weight);
        let unconfirmed_first = self.probing.credit >= total;
        if unconfirmed_first {
            self.probing.credit -= total;
        }
        for confirmed in [!unconfirmed_first, unconfirmed_first] {
            if let Some(id) = self.next_in_lane(confirmed) {
                return Some(id);
            }
        }
        None
    }

    /// The cluster size suspicion timeouts scale with: live members, with the unconfirmed ones
    /// (see [`Probing::confirmed`]) weighing at most as much as the confirmed ones, as in the
    /// probe lanes. Minted members that never answer would otherwise stretch every timeout with
    /// the log of their number (10,000 of them: four times the timeout of a cluster of ten).
    pub(super) fn counted_members(&self) -> usize {
        let confirmed = self.probing.confirmed.len();
        let others = self.live_count().saturating_sub(1 + confirmed);
        1 + confirmed + others.min(confirmed + 1)
    }

    fn next_in_lane(&mut self, confirmed: bool) -> Option<NodeId> {
        // A relayed member probes only members with an address of their own: another relayed
        // member is probed by its relay, over its link, and a probe between two of them would
        // cross both relays for nothing (and carry piggyback that the other's view may not
        // allow, see `ViewScope`).
        let relayed = self.local().relay().is_some();
        let in_lane = move |node: &Node, id: &NodeId| {
            node.probing.confirmed.contains(id) == confirmed
                && node.members.get(id).is_some_and(|m| {
                    let dialable_by_me = !relayed || m.relay().is_none();
                    !m.state.is_down() && !m.addrs.is_empty() && dialable_by_me
                })
        };
        while !confirmed && let Some(id) = self.gate.pool.next_soon() {
            if in_lane(self, &id) {
                return Some(id);
            }
        }
        for _ in 0..2 {
            loop {
                let lane = self.lane_mut(confirmed);
                let Some(&id) = lane.order.get(lane.index) else {
                    break;
                };
                lane.index += 1;
                if in_lane(self, &id) {
                    return Some(id);
                }
            }
            let mut order: Vec<NodeId> = self
                .members
                .values()
                .filter(|m| m.id != self.id && in_lane(self, &m.id))
                .map(|m| m.id)
                .collect();
            if order.is_empty() {
                return None;
            }
            crate::sort::unstable(&mut order);
            shuffle(&mut self.rng, &mut order);
            let lane = self.lane_mut(confirmed);
            lane.order = order;
            lane.index = 0;
        }
        None
    }

    fn lane_mut(&mut self, confirmed: bool) -> &mut Lane {
        if confirmed {
            &mut self.probing.lane
        } else {
            &mut self.probing.unconfirmed
        }
    }

    /// A member leaves the confirmed lane when it goes down: its next life proves itself again.
    pub(super) fn unconfirm(&mut self, id: &NodeId) {
        self.probing.confirmed.remove(id);
    }

    pub(super) fn send_indirect_probes(&mut self, now: Instant, p: &Probe) {
        let target = p.target;
        // Helpers we know answer: a helper that is not there sends no nack, which Lifeguard
        // would blame on our own health, so minted members chosen as helpers would slow every
        // probe we make. Unconfirmed members top up the count (a fresh node has confirmed
        // nobody yet), but only confirmed helpers' nacks are expected.
        let k = self.config.indirect_checks;
        let confirmed = std::mem::take(&mut self.probing.confirmed);
        let mut helpers = self.random_members(k, |m| {
            m.id != target && m.state == State::Alive && confirmed.contains(&m.id)
        });
        let expected = helpers.len() as u32;
        let more = self.random_members(k - helpers.len(), |m| {
            m.id != target && m.state == State::Alive && !confirmed.contains(&m.id)
        });
        self.probing.confirmed = confirmed;
        helpers.extend(more);
        let addrs = self
            .members
            .get(&target)
            .map(|m| m.addrs.clone())
            .unwrap_or_default();
        for helper in &helpers {
            let req = PingReq {
                seq: p.seq,
                target,
                addrs: addrs.clone(),
            };
            self.send_to_member(now, *helper, req.into(), false);
        }
        if let Some(probe) = self.probing.current.as_mut() {
            probe.indirect_sent = true;
            probe.nacks_expected = expected;
            // The helpers get the whole window from when their requests actually leave: a
            // stage that fired late (the loop was busy) would otherwise reach its deadline at
            // once and suspect the target before any helper could answer.
            let window = p.deadline.micros_since(p.indirect_at);
            let floor = Instant::from_micros(now.as_micros().saturating_add(window));
            if floor > probe.deadline {
                probe.deadline = floor;
                // The next probe cannot start before this one ends: left where it was, the probe
                // timer would stay due and every call would come straight back.
                let next = self
                    .timers
                    .get(Timer::Probe)
                    .map_or(floor, |t| t.max(floor));
                self.timers.set(Timer::Probe, next);
            }
        }
    }

    pub(super) fn on_ack(&mut self, now: Instant, origin: NodeId, seq: u32) {
        if let Some(p) = self
            .probing
            .current
            .as_mut()
            .filter(|p| p.seq == seq && !p.acked)
        {
            p.acked = true;
            let (target, sent, direct) = (p.target, p.sent, origin == p.target);
            self.adjust_awareness(-1);
            if !self.probing.confirmed.contains(&target) {
                self.gate.pool.probed(&target, true);
            }
            let up = direct
                && self.members.get_mut(&target).is_some_and(|mut m| {
                    m.rtt_micros = Some(now.micros_since(sent));
                    !m.state.is_down()
                });
            if up {
                self.confirm(target);
            }
            return;
        }
        if let Some(ind) = self.probing.indirect.remove(&seq) {
            let ack = Ack {
                seq: ind.seq,
                piggyback: Vec::new(),
            };
            self.reply(now, ind.requester, ind.reply_to, ack.into(), false);
        }
    }

    pub(super) fn on_ping_req(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: Address,
        req: PingReq,
    ) {
        if self.left || req.target == self.id {
            return;
        }
        self.probing.seq = self.probing.seq.wrapping_add(1);
        let seq = self.probing.seq;
        if self.probing.indirect.len() >= self.config.max_queue {
            return self.shell.count_drop(DropReason::IndirectProbeOverflow);
        }
        // The requester counts our nack only if it is back before its probe period ends: it
        // sent the request `probe_timeout_ms` into that period, so answer within four fifths of
        // what is left. With `probe_timeout_ms` at half the interval (lan, wan) a nack sent a full
        // timeout later always came too late and counted against the requester's health: every
        // probe of a member that is gone (each minted one) slowed its probing.
        let c = &self.config;
        let nack_ms = c
            .probe_timeout_ms
            .min(c.probe_interval_ms.saturating_sub(c.probe_timeout_ms) * 4 / 5);
        self.probing.indirect.insert(
            seq,
            IndirectProbe {
                requester: origin,
                reply_to: from,
                seq: req.seq,
                deadline: now.plus_millis(nack_ms),
            },
        );
        let ping = Ping {
            seq,
            target: req.target,
            piggyback: Vec::new(),
        };
        // Only members are dialed, at the addresses they signed themselves: the addresses in the
        // request are the requester's word, and dialing them would let any key holder make this
        // node connect anywhere (with its credentials). An unknown target gets a nack in time.
        if self.members.contains_key(&req.target) {
            self.send_to_member(now, req.target, ping.into(), false);
        } else {
            self.shell.count_drop(DropReason::UnknownProbeTarget);
        }
    }

    pub(super) fn indirect_tick(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .probing
            .indirect
            .iter()
            .filter(|(_, i)| now >= i.deadline)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(ind) = self.probing.indirect.remove(&seq) {
                self.reply(
                    now,
                    ind.requester,
                    ind.reply_to,
                    Nack { seq: ind.seq }.into(),
                    false,
                );
            }
        }
    }

    pub(super) fn suspect(&mut self, now: Instant, target: NodeId) {
        let Some(m) = self.members.get(&target) else {
            return;
        };
        // An already-suspect member is suspected again: our own failed probe is an independent
        // confirmation that shortens the Lifeguard timeout (and is gossiped so others count it).
        if m.state.is_down() {
            return;
        }
        let msg = Suspect {
            node: target,
            incarnation: m.incarnation,
        };
        if let Some(packet) = self.shell.sign(now, msg.clone().into())
            && self.apply_suspect(now, self.id, msg, &packet).is_news()
        {
            self.enqueue(Subject::Member(target), packet);
        }
    }

    pub(super) fn suspicion_tick(&mut self, now: Instant) {
        let due: Vec<(NodeId, u64)> = self
            .probing
            .suspicions
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(id, s)| (*id, s.incarnation))
            .collect();
        for (node, incarnation) in due {
            self.probing.suspicions.remove(&node);
            let msg = Dead { node, incarnation };
            if let Some(packet) = self.shell.sign(now, msg.clone().into())
                && self.apply_dead(now, msg, &packet).is_news()
            {
                self.enqueue(Subject::Member(node), packet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_timeout_falls_from_max_to_min_with_independent_confirmations() {
        let (min, max) = (4_000, 24_000);
        // One accuser: the full timeout.
        assert_eq!(suspicion_timeout_ms(1, 3, min, max), max);
        let two = suspicion_timeout_ms(2, 3, min, max);
        let three = suspicion_timeout_ms(3, 3, min, max);
        assert!(min < three && three < two && two < max, "{two} {three}");
        // log(2)/log(4) of the span is gone after one confirmation.
        assert_eq!(two, 14_000);
        // `expected` confirmations reach the minimum, and more never go below it.
        assert_eq!(suspicion_timeout_ms(4, 3, min, max), min);
        assert_eq!(suspicion_timeout_ms(100, 3, min, max), min);
        // Nobody to confirm: the minimum at once.
        assert_eq!(suspicion_timeout_ms(1, 0, min, max), min);
        // Degenerate configs do not panic or go below min.
        assert_eq!(suspicion_timeout_ms(0, 3, min, max), max);
        assert_eq!(suspicion_timeout_ms(2, 3, max, min), max);
    }

    #[test]
    fn local_health_is_bounded_and_stretches_probes() {
        let mut a = Awareness::default();
        assert_eq!(a.multiplier(), 1);
        a.apply(3, 8);
        assert_eq!((a.score(), a.multiplier()), (3, 4));
        a.apply(100, 8);
        assert_eq!(a.score(), 7, "at most max_multiplier - 1");
        a.apply(-1, 8);
        assert_eq!(a.score(), 6);
        a.apply(i64::MIN, 8);
        assert_eq!(a.score(), 0, "never below 0, even from a huge delta");
        a.apply(i64::MAX, 0);
        assert_eq!(a.score(), 0, "a zero multiplier keeps it healthy");
    }
}
