//! The retransmit backlog: updates waiting to be piggybacked and gossiped.
//!
//! Like foca's broadcast backlog, a newer update about the same [`Subject`] replaces the queued
//! one (only broadcasts accumulate), items are taken least-sent first within a byte budget, and
//! each retires once it has been sent its retransmit budget of times.

use crate::identity::NodeId;
use crate::wire::SignedPacket;

/// Bytes a piggybacked packet costs on top of its own length (MessagePack `bin` header).
pub(super) const ITEM_OVERHEAD: usize = 5;

/// What an update is about: a newer update about the same subject replaces the queued one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Subject {
    Member(NodeId),
    Metadata(NodeId),
    Broadcast(NodeId, u64),
    /// A key of a member's replicated state (by the key's hash).
    #[cfg(feature = "state")]
    State(NodeId, u64),
    /// The admission of a member (by the member).
    #[cfg(feature = "admission")]
    Admission(NodeId),
}

impl Subject {
    /// The member the update is about (a broadcast: its origin).
    #[cfg(feature = "admission")]
    pub(super) fn member(&self) -> NodeId {
        match *self {
            Subject::Member(id) | Subject::Metadata(id) | Subject::Broadcast(id, _) => id,
            #[cfg(feature = "state")]
            Subject::State(id, _) => id,
            #[cfg(feature = "admission")]
            Subject::Admission(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
struct Queued {
    subject: Subject,
    packet: SignedPacket,
    transmits: u32,
}

/// Updates to piggyback and gossip, each until its retransmit budget is spent.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    queue: Vec<Queued>,
}

impl Backlog {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Queues `packet` under `subject`, replacing what was queued about the same member or
    /// metadata. When `max` items are queued, the most-sent one goes: it had the most chances.
    pub(super) fn push(&mut self, subject: Subject, packet: SignedPacket, max: usize) {
        self.queue
            .retain(|q| q.subject != subject || matches!(subject, Subject::Broadcast(..)));
        if self.queue.len() >= max
            && let Some(i) = self
                .queue
                .iter()
                .enumerate()
                .max_by_key(|(_, q)| q.transmits)
                .map(|(i, _)| i)
        {
            self.queue.swap_remove(i);
        }
        self.queue.push(Queued {
            subject,
            packet,
            transmits: 0,
        });
    }

    /// Items too large to ever fit `budget`, each counted as sent once: they go in frames of
    /// their own over a reliable link, and retire after `limit` sends like the rest.
    pub(super) fn take_oversized(&mut self, budget: usize, limit: u32) -> Vec<SignedPacket> {
        let mut out = Vec::new();
        for q in self
            .queue
            .iter_mut()
            .filter(|q| q.packet.len() + ITEM_OVERHEAD > budget)
        {
            q.transmits += 1;
            out.push(q.packet.clone());
        }
        if !out.is_empty() {
            self.queue.retain(|q| q.transmits < limit);
        }
        out
    }

    /// Least-sent items first, within `budget` bytes; an item retires after `limit` sends.
    pub(super) fn take(&mut self, budget: usize, limit: u32) -> Vec<SignedPacket> {
        self.take_where(budget, limit, |_, _| true)
    }

    /// [`Backlog::take`] of the items `keep` lets through only: the others are neither sent
    /// nor counted as sent (a member with a limited view gets no piggyback it may not see,
    /// and those items keep their retransmit budget for members that may).
    pub(super) fn take_where(
        &mut self,
        budget: usize,
        limit: u32,
        keep: impl Fn(&Subject, &SignedPacket) -> bool,
    ) -> Vec<SignedPacket> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        crate::sort::stable_by_key(&mut self.queue, |q| q.transmits);
        let mut used = 0;
        let mut out = Vec::new();
        for q in self.queue.iter_mut() {
            let cost = q.packet.len() + ITEM_OVERHEAD;
            if used + cost > budget || !keep(&q.subject, &q.packet) {
                continue;
            }
            used += cost;
            q.transmits += 1;
            out.push(q.packet.clone());
        }
        self.queue.retain(|q| q.transmits < limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::identity::Identity;
    use crate::keyring::{ClusterKey, Keyring};
    use crate::limits::Limits;
    use crate::message::Broadcast;
    use crate::replay::ReplayConfig;
    use crate::wire::Codec;

    fn packet(codec: &Codec, id: u64, size: usize) -> SignedPacket {
        let msg = Broadcast {
            topic: "t".into(),
            // Incompressible, so the size is what goes on the wire.
            data: (0..size as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect::<Vec<u8>>()
                .into(),
        };
        codec
            .sign(Timestamp::from_u64(id << 16), &msg.into())
            .expect("fits")
    }

    fn codec() -> Codec {
        Codec::new(
            Identity::from_secret_bytes([1; 32]),
            Keyring::new(ClusterKey::from_bytes([2; 32])),
            Limits::default(),
            ReplayConfig::default(),
        )
    }

    #[test]
    fn a_newer_update_replaces_the_queued_one_about_the_same_subject() {
        let c = codec();
        let me = c.identity().id();
        let mut b = Backlog::default();
        b.push(Subject::Member(me), packet(&c, 1, 10), 100);
        b.push(Subject::Member(me), packet(&c, 2, 10), 100);
        assert_eq!(b.len(), 1);
        // Broadcasts never replace each other.
        b.push(Subject::Broadcast(me, 3), packet(&c, 3, 10), 100);
        b.push(Subject::Broadcast(me, 4), packet(&c, 4, 10), 100);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn take_fills_the_budget_least_sent_first_and_retires_after_the_limit() {
        let c = codec();
        let me = c.identity().id();
        let mut b = Backlog::default();
        for i in 0..4 {
            b.push(Subject::Broadcast(me, i), packet(&c, i + 1, 100), 100);
        }
        let one = packet(&c, 1, 100).len() + ITEM_OVERHEAD;
        // Room for two items: the budget is never exceeded.
        let first = b.take(2 * one + one / 2, 3);
        assert_eq!(first.len(), 2);
        // The two that were not sent go first next time.
        let second = b.take(2 * one, 3);
        assert_eq!(second.len(), 2);
        assert!(second.iter().all(|p| !first.contains(p)));
        // Each item retires after its third send: 4 items x 3 sends, 2 per take.
        for _ in 0..4 {
            assert_eq!(b.take(2 * one, 3).len(), 2);
        }
        assert!(b.is_empty());
        assert!(b.take(2 * one, 3).is_empty());
    }

    #[test]
    fn an_item_larger_than_the_budget_is_taken_alone_and_still_retires() {
        let c = codec();
        let me = c.identity().id();
        let mut b = Backlog::default();
        b.push(Subject::Broadcast(me, 1), packet(&c, 1, 3_000), 100);
        b.push(Subject::Broadcast(me, 2), packet(&c, 2, 10), 100);
        let budget = 1_000;
        // The piggyback skips it, so before this it never left the queue.
        assert_eq!(b.take(budget, 3).len(), 1);
        for _ in 0..3 {
            let big = b.take_oversized(budget, 3);
            assert_eq!(big, vec![packet(&c, 1, 3_000)]);
        }
        assert!(b.take_oversized(budget, 3).is_empty());
        assert_eq!(b.len(), 1, "the small one is still queued");
    }

    #[test]
    fn a_full_backlog_drops_the_most_sent_item() {
        let c = codec();
        let me = c.identity().id();
        let mut b = Backlog::default();
        b.push(Subject::Broadcast(me, 1), packet(&c, 1, 10), 2);
        let _ = b.take(1_000, 10);
        b.push(Subject::Broadcast(me, 2), packet(&c, 2, 10), 2);
        b.push(Subject::Broadcast(me, 3), packet(&c, 3, 10), 2);
        assert_eq!(b.len(), 2);
        let left = b.take(1_000, 10);
        assert!(
            !left.contains(&packet(&c, 1, 10)),
            "the sent one was dropped"
        );
    }
}
