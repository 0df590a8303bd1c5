use crate::detector::PhiDetector;
use std::collections::BTreeSet;
use std::collections::HashMap;

use super::Node;
use super::send::shuffle;
use super::spread::Subject;
use super::timers::Timer;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
use crate::membership::State;
use crate::message::{Ack, Dead, Nack, Ping, PingReq, Suspect};
use crate::time::Instant;

/// SWIM's failure detector with Lifeguard: the probe cycle, indirect probes, suspicions, local
/// health and (optionally) phi-accrual detectors.
#[derive(Debug)]
pub(super) struct Probing {
    /// This pass's probe order (round-robin over a shuffled list).
    pub(super) order: Vec<NodeId>,
    pub(super) index: usize,
    /// The probe in flight.
    pub(super) current: Option<Probe>,
    /// Last probe sequence number used (also for indirect pings).
    pub(super) seq: u32,
    /// Pings this node sends on another member's behalf, by our sequence number.
    pub(super) indirect: HashMap<u32, IndirectProbe>,
    /// Lifeguard's local health score: probe intervals and timeouts stretch by `awareness + 1`.
    pub(super) awareness: u32,
    pub(super) suspicions: HashMap<NodeId, Suspicion>,
    pub(super) detectors: HashMap<NodeId, PhiDetector>,
}

impl Probing {
    pub(super) fn new(seq: u32) -> Self {
        Probing {
            order: Vec::new(),
            index: 0,
            current: None,
            seq,
            indirect: HashMap::new(),
            awareness: 0,
            suspicions: HashMap::new(),
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
        let c = self.confirmations.len().saturating_sub(1) as f64;
        let k = self.expected as f64;
        let span = (self.max_ms - self.min_ms) as f64;
        let ms = if k < 1.0 {
            self.min_ms
        } else {
            let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
            (self.max_ms as f64 - span * frac).max(self.min_ms as f64) as u64
        };
        self.deadline = self.start.plus_millis(ms);
    }
}

impl Node {
    pub(super) fn multiplier(&self) -> u64 {
        u64::from(self.probing.awareness) + 1
    }

    pub(super) fn adjust_awareness(&mut self, delta: i64) {
        let max = i64::from(self.config.awareness_max_multiplier.saturating_sub(1));
        self.probing.awareness = (i64::from(self.probing.awareness) + delta).clamp(0, max) as u32;
    }

    pub(super) fn probe_tick(&mut self, now: Instant) {
        if let Some(p) = self.probing.current.clone() {
            if p.acked {
                self.probing.current = None;
            } else if !p.indirect_sent && now >= p.indirect_at {
                self.send_indirect_probes(now, &p);
            } else if p.indirect_sent && now >= p.deadline {
                // Lifeguard: nacks we expected but did not get point at our own network.
                let delta = if p.nacks_expected > 0 {
                    p.nacks_expected.saturating_sub(p.nacks) as i64
                } else {
                    1
                };
                self.adjust_awareness(delta);
                self.probing.current = None;
                // In phi mode a missed probe is only suspicious if the silence is too.
                let silent = match (self.config.phi, self.probing.detectors.get(&p.target)) {
                    (Some(phi), Some(d)) => d.phi(now, &phi).is_none_or(|v| v >= phi.threshold),
                    _ => true,
                };
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
        let piggyback = self.take_piggyback(budget);
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

    /// Round-robin over a shuffled list, reshuffled each pass (SWIM's bounded detection time).
    pub(super) fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.probing.index < self.probing.order.len() {
                let id = self.probing.order[self.probing.index];
                self.probing.index += 1;
                if self
                    .members
                    .get(&id)
                    .is_some_and(|m| !m.state.is_down() && !m.addrs.is_empty())
                {
                    return Some(id);
                }
            }
            let mut order: Vec<NodeId> = self
                .members
                .values()
                .filter(|m| m.id != self.id && !m.state.is_down())
                .map(|m| m.id)
                .collect();
            order.sort_unstable();
            shuffle(&mut self.rng, &mut order);
            self.probing.order = order;
            self.probing.index = 0;
        }
        None
    }

    pub(super) fn send_indirect_probes(&mut self, now: Instant, p: &Probe) {
        let target = p.target;
        let helpers = self.random_members(self.config.indirect_checks, |m| {
            m.id != target && m.state == State::Alive
        });
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
            probe.nacks_expected = helpers.len() as u32;
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
            if direct && let Some(m) = self.members.get_mut(&target) {
                m.rtt_micros = Some(now.micros_since(sent));
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
        self.probing.indirect.insert(
            seq,
            IndirectProbe {
                requester: origin,
                reply_to: from,
                seq: req.seq,
                deadline: now.plus_millis(self.config.probe_timeout_ms),
            },
        );
        let ping = Ping {
            seq,
            target: req.target,
            piggyback: Vec::new(),
        };
        if self.members.contains_key(&req.target) {
            self.send_to_member(now, req.target, ping.into(), false);
        } else if let Some(addr) = req.addrs.first().cloned() {
            self.send_to_addr(now, addr, Some(req.target), ping.into(), false);
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
            && self.apply_suspect(now, self.id, msg, &packet)
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
                && self.apply_dead(now, msg, &packet)
            {
                self.enqueue(Subject::Member(node), packet);
            }
        }
    }
}
