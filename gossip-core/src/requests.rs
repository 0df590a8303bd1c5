//! Bookkeeping of outstanding requests and quorum requests: correlation, deadlines, and the
//! quorum rules (first / majority / threshold / all, as gorums' quorum functions).
//!
//! Pure state: the node sends the frames and feeds answers, deaths and time in here.

use std::collections::{BTreeMap, HashMap};

use crate::event::Event;
use crate::identity::NodeId;
use crate::time::Instant;

/// Correlates a request with its response.
pub type RequestId = u64;
/// Identifies a quorum request.
pub type QuorumId = u64;

/// How many answers complete a quorum request over `n` members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// The first answer.
    First,
    /// More than half: `n / 2 + 1`.
    Majority,
    /// At least this many (more than `n` can never be reached).
    Threshold(usize),
    /// Every member.
    All,
}

impl Quorum {
    /// Answers needed out of `n`.
    pub fn needed(self, n: usize) -> usize {
        match self {
            Quorum::First => 1,
            Quorum::Majority => n / 2 + 1,
            Quorum::Threshold(t) => t,
            Quorum::All => n,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No answer before the deadline.
    Timeout,
    /// The addressee died or left before answering.
    MemberDown,
    /// The addressee was not a known, live member when the request was made.
    Unreachable,
}

/// How a quorum request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumOutcome {
    /// The quorum request.
    pub id: QuorumId,
    /// Whether enough members answered.
    pub reached: bool,
    /// Who answered, and what, in answer order.
    pub answered: Vec<(NodeId, Vec<u8>)>,
    /// Who failed, and why.
    pub failed: Vec<(NodeId, FailReason)>,
    /// Who was still outstanding when the outcome was decided (their late answers are ignored).
    pub unanswered: Vec<NodeId>,
}

#[derive(Debug, Clone)]
struct Pending {
    to: NodeId,
    deadline: Instant,
    quorum: Option<QuorumId>,
}

#[derive(Debug, Clone)]
struct QuorumState {
    needed: usize,
    outstanding: BTreeMap<RequestId, NodeId>,
    answered: Vec<(NodeId, Vec<u8>)>,
    failed: Vec<(NodeId, FailReason)>,
}

/// Outstanding requests of one node.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    next: u64,
    pending: HashMap<RequestId, Pending>,
    quorums: HashMap<QuorumId, QuorumState>,
}

impl Requests {
    pub(crate) fn new(first_id: u64) -> Self {
        Requests {
            next: first_id,
            ..Requests::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    fn next_id(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }

    /// Registers a request to `to`; its id goes in the frame.
    pub(crate) fn start(&mut self, to: NodeId, deadline: Instant) -> RequestId {
        let id = self.next_id();
        self.pending.insert(
            id,
            Pending {
                to,
                deadline,
                quorum: None,
            },
        );
        id
    }

    /// Registers a quorum request; returns its id and the request id for each reachable member.
    /// Unreachable members are failed at once; the outcome may already be decided (in `events`).
    pub(crate) fn start_quorum(
        &mut self,
        quorum: Quorum,
        reachable: &[NodeId],
        unreachable: &[NodeId],
        deadline: Instant,
        events: &mut Vec<Event>,
    ) -> (QuorumId, Vec<(NodeId, RequestId)>) {
        let qid = self.next_id();
        let n = reachable.len() + unreachable.len();
        let mut state = QuorumState {
            needed: quorum.needed(n),
            outstanding: BTreeMap::new(),
            answered: Vec::new(),
            failed: unreachable
                .iter()
                .map(|m| (*m, FailReason::Unreachable))
                .collect(),
        };
        let mut sends = Vec::new();
        for &m in reachable {
            let id = self.next_id();
            self.pending.insert(
                id,
                Pending {
                    to: m,
                    deadline,
                    quorum: Some(qid),
                },
            );
            state.outstanding.insert(id, m);
            sends.push((m, id));
        }
        self.quorums.insert(qid, state);
        self.settle(qid, events);
        // A decided quorum sends nothing.
        if !self.quorums.contains_key(&qid) {
            sends.clear();
        }
        (qid, sends)
    }

    /// An answer arrived from `from`. Answers from anyone but the addressee are ignored.
    pub(crate) fn on_response(
        &mut self,
        from: NodeId,
        id: RequestId,
        data: Vec<u8>,
        events: &mut Vec<Event>,
    ) -> bool {
        if self.pending.get(&id).is_none_or(|p| p.to != from) {
            return false;
        }
        let p = self.pending.remove(&id).expect("checked above");
        match p.quorum {
            None => events.push(Event::Response { id, from, data }),
            Some(qid) => {
                if let Some(q) = self.quorums.get_mut(&qid) {
                    q.outstanding.remove(&id);
                    q.answered.push((from, data));
                }
                self.settle(qid, events);
            }
        }
        true
    }

    /// Fails every request whose deadline passed.
    pub(crate) fn on_timeout(&mut self, now: Instant, events: &mut Vec<Event>) {
        let due: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fail(id, FailReason::Timeout, events);
        }
    }

    /// Fails every request to a member that died or left.
    pub(crate) fn on_member_down(&mut self, member: NodeId, events: &mut Vec<Event>) {
        let ids: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to == member)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.fail(id, FailReason::MemberDown, events);
        }
    }

    fn fail(&mut self, id: RequestId, reason: FailReason, events: &mut Vec<Event>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match p.quorum {
            None => events.push(Event::RequestFailed {
                id,
                to: p.to,
                reason,
            }),
            Some(qid) => {
                if let Some(q) = self.quorums.get_mut(&qid) {
                    q.outstanding.remove(&id);
                    q.failed.push((p.to, reason));
                }
                self.settle(qid, events);
            }
        }
    }

    /// Decides a quorum as soon as it is reached or can no longer be.
    fn settle(&mut self, qid: QuorumId, events: &mut Vec<Event>) {
        let Some(q) = self.quorums.get(&qid) else {
            return;
        };
        let reached = q.answered.len() >= q.needed;
        let impossible = q.answered.len() + q.outstanding.len() < q.needed;
        if !reached && !impossible {
            return;
        }
        let q = self.quorums.remove(&qid).expect("checked above");
        for id in q.outstanding.keys() {
            self.pending.remove(id);
        }
        events.push(Event::QuorumDone(QuorumOutcome {
            id: qid,
            reached,
            answered: q.answered,
            failed: q.failed,
            unanswered: q.outstanding.into_values().collect(),
        }));
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn outcome(events: &[Event]) -> &QuorumOutcome {
        match events {
            [Event::QuorumDone(o)] => o,
            other => panic!("expected one QuorumDone, got {other:?}"),
        }
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(Quorum::First.needed(5), 1);
        assert_eq!(Quorum::Majority.needed(5), 3);
        assert_eq!(Quorum::Majority.needed(4), 3);
        assert_eq!(Quorum::Threshold(2).needed(5), 2);
        assert_eq!(Quorum::All.needed(5), 5);
    }

    #[test]
    fn single_request_answer_timeout_and_impostor() {
        let mut r = Requests::new(0);
        let mut ev = Vec::new();
        let a = r.start(node(1), t(100));
        assert!(
            !r.on_response(node(2), a, b"forged".to_vec(), &mut ev),
            "only the addressee answers"
        );
        assert!(r.on_response(node(1), a, b"ok".to_vec(), &mut ev));
        assert_eq!(
            ev,
            vec![Event::Response {
                id: a,
                from: node(1),
                data: b"ok".to_vec()
            }]
        );
        assert!(
            !r.on_response(node(1), a, b"again".to_vec(), &mut ev),
            "a second answer is ignored"
        );
        ev.clear();
        let b = r.start(node(1), t(100));
        r.on_timeout(t(99), &mut ev);
        assert!(ev.is_empty());
        r.on_timeout(t(100), &mut ev);
        assert_eq!(
            ev,
            vec![Event::RequestFailed {
                id: b,
                to: node(1),
                reason: FailReason::Timeout
            }]
        );
        assert_eq!(r.len(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn majority_completes_early_and_reports_the_rest() {
        let mut r = Requests::new(0);
        let mut ev = Vec::new();
        let (qid, sends) = r.start_quorum(
            Quorum::Majority,
            &[node(1), node(2), node(3)],
            &[],
            t(100),
            &mut ev,
        );
        assert!(ev.is_empty());
        r.on_response(node(1), sends[0].1, b"1".to_vec(), &mut ev);
        assert!(ev.is_empty());
        r.on_response(node(3), sends[2].1, b"3".to_vec(), &mut ev);
        let o = outcome(&ev);
        assert_eq!((o.id, o.reached), (qid, true));
        assert_eq!(
            o.answered,
            vec![(node(1), b"1".to_vec()), (node(3), b"3".to_vec())]
        );
        assert_eq!(o.unanswered, vec![node(2)]);
        assert_eq!(r.len(), 0, "outstanding requests are dropped once decided");
    }

    #[test]
    fn quorum_fails_as_soon_as_it_cannot_be_reached() {
        let mut r = Requests::new(0);
        let mut ev = Vec::new();
        let (_, sends) = r.start_quorum(
            Quorum::All,
            &[node(1), node(2)],
            &[node(9)],
            t(100),
            &mut ev,
        );
        let o = outcome(&ev);
        assert!(!o.reached);
        assert_eq!(o.failed, vec![(node(9), FailReason::Unreachable)]);
        assert!(sends.is_empty(), "a decided quorum sends nothing");

        ev.clear();
        let (_, sends) = r.start_quorum(
            Quorum::Threshold(2),
            &[node(1), node(2), node(3)],
            &[],
            t(100),
            &mut ev,
        );
        r.on_member_down(node(1), &mut ev);
        r.on_timeout(t(100), &mut ev);
        let o = outcome(&ev);
        assert!(!o.reached);
        assert_eq!(o.failed[0], (node(1), FailReason::MemberDown));
        assert_eq!(o.failed.len() + o.unanswered.len(), 3);
        assert_eq!(sends.len(), 3);
    }

    #[test]
    fn first_and_threshold_zero() {
        let mut r = Requests::new(0);
        let mut ev = Vec::new();
        let (_, sends) = r.start_quorum(Quorum::First, &[node(1), node(2)], &[], t(100), &mut ev);
        r.on_response(node(2), sends[1].1, vec![], &mut ev);
        assert!(outcome(&ev).reached);
        ev.clear();
        r.start_quorum(Quorum::Threshold(0), &[node(1)], &[], t(100), &mut ev);
        assert!(outcome(&ev).reached);
        ev.clear();
        r.start_quorum(Quorum::Threshold(3), &[node(1)], &[], t(100), &mut ev);
        assert!(!outcome(&ev).reached, "more than n can never be reached");
    }
}
