//! Leader election by leases over the replicated state (the `election` feature,
//! docs/ELECTION.md).
//!
//! A candidate writes a *bid* (term, life, round) to its own state map; a voter writes a
//! *vote* naming one candidate's round. A candidate leads for `lease` from the moment it wrote
//! a round that a majority of the configured voters voted for; a voter promises not to vote
//! for anyone else for `lease` from the moment it voted. A vote is cast after the bid it
//! names was written, so every lease a candidate counts ends before the promises behind it do,
//! and two majorities of one fixed voter set always share a voter: two leases never overlap.
//! Nothing here touches the wire: it reads and writes keys with `Node::state_get` /
//! `Node::state_set`, which are signed by their owner.

use std::collections::{BTreeMap, VecDeque};

use crate::identity::{NODE_ID_LEN, NodeId};
use crate::node::Node;
use crate::state::StateError;
use crate::time::Instant;

/// Rounds of its own bid a candidate remembers the write time of: votes for older rounds are
/// ignored (their leases have ended long ago at four renewals per lease).
const ROUNDS_KEPT: usize = 8;
/// Longest election name: the keys `election/<name>/bid` and `.../vote` must stay far below the
/// state's key limit.
pub const MAX_NAME_BYTES: usize = 64;
/// Shortest lease: the lease must cover several state round trips and ticks.
pub const MIN_LEASE_MS: u64 = 100;
/// Most voters: each tick reads one bid and one vote per voter.
pub const MAX_VOTERS: usize = 64;

const BID_LEN: usize = 24;
const VOTE_LEN: usize = NODE_ID_LEN + 24;

/// How an election is set up. Every member of one election must be given the same name,
/// voters and lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Which election (several may run side by side): keys live under `election/<name>/`.
    pub name: String,
    /// The members whose votes count, fixed for the election's lifetime. A majority of *this*
    /// set is needed, whatever the member table currently says (docs/ELECTION.md says why).
    pub voters: Vec<NodeId>,
    /// How long a majority of votes makes a leader, and a vote binds its voter, in ms.
    pub lease_ms: u64,
    /// How much shorter a leader's own view of its lease is than the voters' promises, in
    /// thousandths: the clocks of different machines may run at slightly different rates.
    pub drift_permille: u64,
}

impl ElectionConfig {
    /// An election named `name` among `voters`, with a 2 s lease and a 10 % clock margin.
    pub fn new(name: impl Into<String>, voters: Vec<NodeId>) -> ElectionConfig {
        ElectionConfig {
            name: name.into(),
            voters,
            lease_ms: 2_000,
            drift_permille: 100,
        }
    }

    /// The same with another lease.
    pub fn with_lease_ms(mut self, lease_ms: u64) -> ElectionConfig {
        self.lease_ms = lease_ms;
        self
    }
}

/// Why an election could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// The voter set is empty or larger than [`MAX_VOTERS`].
    #[error("between 1 and {MAX_VOTERS} voters are needed, got {0}")]
    Voters(usize),
    /// The name is empty, longer than [`MAX_NAME_BYTES`] or contains `/`.
    #[error("election names are 1-{MAX_NAME_BYTES} bytes without '/'")]
    Name,
    /// The lease is shorter than [`MIN_LEASE_MS`] or the drift margin is 1,000 ‰ or more.
    #[error("the lease must be at least {MIN_LEASE_MS} ms with a drift margin below 1000 permille")]
    Lease,
}

/// What changed for this member at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderChange {
    /// This member now leads, in `term`, until at least the instant given (renewals extend it).
    Elected {
        /// The term (higher than any term this member had seen when it bid).
        term: u64,
        /// When the lease ends unless renewed.
        until: Instant,
    },
    /// This member no longer leads (its lease ended without a renewal reaching a majority).
    Deposed {
        /// The term it led.
        term: u64,
    },
}

/// How far above every term it knows a bid may reach and still be heard. Elections take one
/// term each, so a cluster never legitimately moves this far while a member looks away; a voter
/// that keeps leaping needs 2^40 bids to use the terms up.
const MAX_TERM_LEAP: u64 = 1 << 24;

/// A bid as read from a member's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Bid {
    term: u64,
    life: u64,
    round: u64,
}

/// A vote as read from a member's map: for `candidate`'s `round` of its bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vote {
    candidate: NodeId,
    bid: Bid,
}

impl Bid {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(BID_LEN);
        v.extend_from_slice(&self.term.to_le_bytes());
        v.extend_from_slice(&self.life.to_le_bytes());
        v.extend_from_slice(&self.round.to_le_bytes());
        v
    }

    /// Any other length is ignored: a member may write what it likes under its own keys.
    fn decode(b: &[u8]) -> Option<Bid> {
        if b.len() != BID_LEN {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Some(Bid {
            term: word(0),
            life: word(1),
            round: word(2),
        })
    }
}

impl Vote {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(VOTE_LEN);
        v.extend_from_slice(self.candidate.as_bytes());
        v.extend_from_slice(&self.bid.encode());
        v
    }

    fn decode(b: &[u8]) -> Option<Vote> {
        if b.len() != VOTE_LEN {
            return None;
        }
        let mut id = [0u8; NODE_ID_LEN];
        id.copy_from_slice(&b[..NODE_ID_LEN]);
        Some(Vote {
            candidate: NodeId::from_bytes(id),
            bid: Bid::decode(&b[NODE_ID_LEN..])?,
        })
    }
}

/// A vote this member cast and may not go back on before `until`.
#[derive(Debug, Clone, Copy)]
struct Promise {
    vote: Vote,
    until: Instant,
}

/// This member's own bid while it is a candidate.
#[derive(Debug, Clone)]
struct Candidacy {
    bid: Bid,
    /// When each recent round was written: a lease runs from there.
    rounds: VecDeque<(u64, Instant)>,
    /// The last time it was leader or, before that, when it began.
    progress: Instant,
}

/// One member's part in one election: call [`Election::tick`] every few tens of milliseconds
/// (at least ten times per lease) with the member's node, and ask [`Election::is_leader`]
/// before acting as leader.
#[derive(Debug, Clone)]
pub struct Election {
    me: NodeId,
    bid_key: String,
    vote_key: String,
    voters: Vec<NodeId>,
    lease_ms: u64,
    /// The leader's view of its lease: `lease_ms` less the drift margin.
    own_lease_ms: u64,
    /// No voting or bidding before this: a restarted member forgot the promises it made.
    quiet_until: Instant,
    /// Not before this either: after a failed bid.
    backoff_until: Instant,
    promise: Option<Promise>,
    /// The highest term this member voted in.
    voted_term: u64,
    /// The highest term seen in any bid or vote.
    seen_term: u64,
    /// Other voters' bids and when each last changed (a bid that stops changing is abandoned).
    bids: BTreeMap<NodeId, (Bid, Instant)>,
    candidacy: Option<Candidacy>,
    /// Until when this member leads, and in which term.
    lease: Option<(u64, Instant)>,
    /// Whether the last tick reported this member as leader.
    reported: Option<u64>,
}

impl Election {
    /// This member (`me`, the node's id) joins the election at `now`: it neither votes nor
    /// bids for one lease, so a member that restarted cannot break a promise it forgot.
    pub fn new(
        now: Instant,
        me: NodeId,
        config: ElectionConfig,
    ) -> Result<Election, ElectionError> {
        let mut voters = config.voters;
        voters.sort_unstable();
        voters.dedup();
        if voters.is_empty() || voters.len() > MAX_VOTERS {
            return Err(ElectionError::Voters(voters.len()));
        }
        if config.name.is_empty() || config.name.len() > MAX_NAME_BYTES || config.name.contains('/')
        {
            return Err(ElectionError::Name);
        }
        if config.lease_ms < MIN_LEASE_MS || config.drift_permille >= 1_000 {
            return Err(ElectionError::Lease);
        }
        let margin = config.lease_ms / 1_000 * config.drift_permille
            + config.lease_ms % 1_000 * config.drift_permille / 1_000;
        Ok(Election {
            me,
            bid_key: format!("election/{}/bid", config.name),
            vote_key: format!("election/{}/vote", config.name),
            voters,
            lease_ms: config.lease_ms,
            own_lease_ms: config.lease_ms - margin.max(1),
            quiet_until: now.plus_millis(config.lease_ms),
            backoff_until: now,
            promise: None,
            voted_term: 0,
            seen_term: 0,
            bids: BTreeMap::new(),
            candidacy: None,
            lease: None,
            reported: None,
        })
    }

    /// Votes needed: a majority of the configured voters.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether this member leads at `now`. Act as leader only while this holds, and check it
    /// again before each action: the lease ends by itself if renewals stop reaching a majority.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_term(now).is_some()
    }

    /// The term this member leads in at `now`, if it leads.
    pub fn leader_term(&self, now: Instant) -> Option<u64> {
        self.lease
            .filter(|(_, until)| now < *until)
            .map(|(term, _)| term)
    }

    /// Until when this member leads unless renewed, if it leads at `now`.
    pub fn lease_until(&self, now: Instant) -> Option<Instant> {
        self.lease.map(|(_, u)| u).filter(|u| now < *u)
    }

    /// The voter whose current bid a majority voted for, as far as this member's copy of the
    /// state shows: who appears to lead (a hint for routing; only the leader itself knows).
    pub fn apparent_leader(&self, node: &Node) -> Option<(NodeId, u64)> {
        let mut counts: BTreeMap<(NodeId, Bid), usize> = BTreeMap::new();
        for v in &self.voters {
            if let Some(vote) = self.read_vote(node, v) {
                let current = self.read_bid(node, &vote.candidate);
                if current.is_some_and(|b| b.term == vote.bid.term && b.life == vote.bid.life) {
                    *counts.entry((vote.candidate, vote.bid)).or_default() += 1;
                }
            }
        }
        let need = self.majority();
        counts
            .into_iter()
            .filter(|(_, c)| *c >= need)
            .map(|((id, bid), _)| (id, bid.term))
            .max_by_key(|(_, term)| *term)
    }

    /// Gives up leading or bidding now: the bid is deleted and the lease dropped. Voters
    /// stay bound by their promises until those end, so the next leader comes within about
    /// two leases.
    pub fn resign(&mut self, node: &mut Node, now: Instant) -> Result<(), StateError> {
        self.withdraw(node, now)
    }

    /// Reads the other voters' bids and votes from the node's state and acts: renews or
    /// withdraws this member's bid, votes, or bids. Returns what changed for this member.
    pub fn tick(
        &mut self,
        node: &mut Node,
        now: Instant,
    ) -> Result<Option<LeaderChange>, StateError> {
        self.observe(node, now);
        self.count(node, now);
        if now >= self.quiet_until {
            self.candidate_step(node, now)?;
            self.vote_step(node, now)?;
        }
        let term = self.leader_term(now);
        let change = match (self.reported, term) {
            (None, Some(term)) => Some(LeaderChange::Elected {
                term,
                until: self.lease_until(now).unwrap_or(now),
            }),
            (Some(old), None) => Some(LeaderChange::Deposed { term: old }),
            (Some(old), Some(new)) if old != new => Some(LeaderChange::Elected {
                term: new,
                until: self.lease_until(now).unwrap_or(now),
            }),
            _ => None,
        };
        self.reported = term;
        Ok(change)
    }

    fn is_voter(&self, id: &NodeId) -> bool {
        self.voters.binary_search(id).is_ok()
    }

    fn read_bid(&self, node: &Node, of: &NodeId) -> Option<Bid> {
        if *of == self.me {
            return self.candidacy.as_ref().map(|c| c.bid);
        }
        node.state_get(of, &self.bid_key)
            .and_then(|v| Bid::decode(&v.value))
    }

    fn read_vote(&self, node: &Node, of: &NodeId) -> Option<Vote> {
        node.state_get(of, &self.vote_key)
            .and_then(|v| Vote::decode(&v.value))
            .filter(|v| self.is_voter(&v.candidate))
    }

    /// Notes the other voters' bids, and when each last moved, and the highest term around.
    /// A bid or vote more than `MAX_TERM_LEAP` terms above every term this member knows is
    /// ignored: honest candidates bid one above what they have seen, and a voter that bid
    /// `u64::MAX` would otherwise leave no higher term for anyone, ending elections for good.
    fn observe(&mut self, node: &Node, now: Instant) {
        let ceiling = self
            .seen_term
            .max(self.voted_term)
            .saturating_add(MAX_TERM_LEAP);
        let mut bids = BTreeMap::new();
        for v in self.voters.iter().filter(|v| **v != self.me) {
            if let Some(bid) = self.read_bid(node, v).filter(|b| b.term <= ceiling) {
                self.seen_term = self.seen_term.max(bid.term);
                let since = match self.bids.get(v) {
                    Some((old, since)) if *old == bid => *since,
                    _ => now,
                };
                bids.insert(*v, (bid, since));
            }
            if let Some(vote) = self.read_vote(node, v).filter(|v| v.bid.term <= ceiling) {
                self.seen_term = self.seen_term.max(vote.bid.term);
            }
        }
        self.bids = bids;
    }

    /// A bid still being renewed: it moved within the last lease.
    fn fresh(&self, since: Instant, now: Instant) -> bool {
        now < since.plus_millis(self.lease_ms)
    }

    /// Counts the votes for this member's recent rounds and extends its lease.
    fn count(&mut self, node: &Node, now: Instant) {
        let Some(c) = &self.candidacy else {
            return;
        };
        let mut best: Option<Instant> = None;
        for (round, written) in &c.rounds {
            let want = Bid {
                round: *round,
                ..c.bid
            };
            let votes = self
                .voters
                .iter()
                .filter(|v| {
                    self.read_vote(node, v)
                        .is_some_and(|vote| vote.candidate == self.me && vote.bid == want)
                })
                .count();
            if votes >= self.majority() {
                let until = written.plus_millis(self.own_lease_ms);
                best = Some(best.map_or(until, |b| b.max(until)));
            }
        }
        if let Some(until) = best.filter(|u| now < *u) {
            let term = c.bid.term;
            let extended = match self.lease {
                Some((t, old)) if t == term => old.max(until),
                _ => until,
            };
            self.lease = Some((term, extended));
            if let Some(c) = &mut self.candidacy {
                c.progress = now;
            }
        }
    }

    fn candidate_step(&mut self, node: &mut Node, now: Instant) -> Result<(), StateError> {
        if let Some(c) = &self.candidacy {
            let stalled = now >= c.progress.plus_millis(self.lease_ms.saturating_mul(2));
            let leading = self.is_leader(now);
            let outbid = self
                .bids
                .values()
                .any(|(b, since)| b.term > c.bid.term && self.fresh(*since, now));
            if stalled || (outbid && !leading) {
                return self.withdraw(node, now);
            }
            let last = c.rounds.back().map_or(now, |(_, t)| *t);
            if now >= last.plus_millis(self.lease_ms / 4) {
                self.renew(node, now)?;
            }
            return Ok(());
        }
        if now < self.backoff_until || self.promised_to_another(now) {
            return Ok(());
        }
        // Voters wait in id order, so a crashed leader's successor is usually alone to bid.
        let rank = self.voters.iter().position(|v| *v == self.me);
        let Some(rank) = rank else {
            return Ok(());
        };
        let wait = self
            .lease_ms
            .saturating_add((rank as u64).saturating_mul(self.lease_ms / 2));
        let quiet = self
            .bids
            .values()
            .all(|(_, since)| now >= since.plus_millis(wait));
        if !quiet {
            return Ok(());
        }
        let Some(term) = self.seen_term.max(self.voted_term).checked_add(1) else {
            return Ok(()); // unreachable short of 2^40 leaps (`MAX_TERM_LEAP`)
        };
        let life = node.state_life();
        self.candidacy = Some(Candidacy {
            bid: Bid {
                term,
                life,
                round: 0,
            },
            rounds: VecDeque::new(),
            progress: now,
        });
        self.seen_term = term;
        self.renew(node, now)
    }

    /// Writes the next round of this member's bid.
    fn renew(&mut self, node: &mut Node, now: Instant) -> Result<(), StateError> {
        let Some(c) = &mut self.candidacy else {
            return Ok(());
        };
        c.bid.round = c.bid.round.saturating_add(1);
        if c.rounds.len() == ROUNDS_KEPT {
            c.rounds.pop_front();
        }
        c.rounds.push_back((c.bid.round, now));
        let bytes = c.bid.encode();
        node.state_set(now, &self.bid_key, bytes)?;
        Ok(())
    }

    fn withdraw(&mut self, node: &mut Node, now: Instant) -> Result<(), StateError> {
        self.candidacy = None;
        self.lease = None;
        let rank = self.voters.iter().position(|v| *v == self.me).unwrap_or(0) as u64;
        self.backoff_until = now.plus_millis(
            self.lease_ms
                .saturating_add(rank.saturating_mul(self.lease_ms / 2)),
        );
        node.state_delete(now, &self.bid_key)?;
        Ok(())
    }

    fn promised_to_another(&self, now: Instant) -> bool {
        self.promise
            .is_some_and(|p| now < p.until && p.vote.candidate != self.me)
    }

    fn vote_step(&mut self, node: &mut Node, now: Instant) -> Result<(), StateError> {
        if !self.is_voter(&self.me) {
            return Ok(());
        }
        let mine = self.candidacy.as_ref().map(|c| (self.me, c.bid, now));
        let current = |id: &NodeId| -> Option<Bid> {
            if *id == self.me {
                return mine.map(|(_, b, _)| b);
            }
            self.bids
                .get(id)
                .filter(|(_, since)| self.fresh(*since, now))
                .map(|(b, _)| *b)
        };
        let choice = match self.promise {
            Some(p) if now < p.until => {
                // Bound: only the same candidate's later rounds of the same bid.
                match current(&p.vote.candidate) {
                    Some(b)
                        if b.term == p.vote.bid.term
                            && b.life == p.vote.bid.life
                            && b.round > p.vote.bid.round =>
                    {
                        Some(Vote {
                            candidate: p.vote.candidate,
                            bid: b,
                        })
                    }
                    _ => None,
                }
            }
            previous => {
                // Free: the fresh bid with the highest term this member has not voted in yet
                // (or the one it voted for last, continued).
                let same = |id: &NodeId, b: &Bid| {
                    previous.is_some_and(|p| {
                        p.vote.candidate == *id
                            && p.vote.bid.term == b.term
                            && p.vote.bid.life == b.life
                    })
                };
                self.bids
                    .iter()
                    .filter(|(_, (_, since))| self.fresh(*since, now))
                    .map(|(id, (b, _))| (*id, *b))
                    .chain(mine.map(|(id, b, _)| (id, b)))
                    .filter(|(id, b)| b.term > self.voted_term || same(id, b))
                    .max_by(|(ia, a), (ib, b)| a.term.cmp(&b.term).then(ib.cmp(ia)))
                    .map(|(candidate, bid)| Vote { candidate, bid })
            }
        };
        let Some(vote) = choice else {
            return Ok(());
        };
        // The promise starts before the write, so it covers every moment the vote is out.
        self.promise = Some(Promise {
            vote,
            until: now.plus_millis(self.lease_ms),
        });
        self.voted_term = self.voted_term.max(vote.bid.term);
        node.state_set(now, &self.vote_key, vote.encode())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_and_votes_round_trip_and_other_lengths_are_ignored() {
        let bid = Bid {
            term: 7,
            life: 3,
            round: u64::MAX,
        };
        assert_eq!(Bid::decode(&bid.encode()), Some(bid));
        let vote = Vote {
            candidate: NodeId::from_bytes([9; NODE_ID_LEN]),
            bid,
        };
        assert_eq!(Vote::decode(&vote.encode()), Some(vote));
        for len in [0, 1, BID_LEN - 1, BID_LEN + 1, VOTE_LEN + 1, 10_000] {
            let junk = vec![0xffu8; len];
            assert_eq!(Bid::decode(&junk), None, "{len}");
            assert_eq!(Vote::decode(&junk), None, "{len}");
        }
    }

    #[test]
    fn configurations_are_checked() {
        let id = NodeId::from_bytes([1; NODE_ID_LEN]);
        let now = Instant::from_millis(0);
        let new = |c| Election::new(now, id, c);
        assert_eq!(
            new(ElectionConfig::new("x", vec![])).unwrap_err(),
            ElectionError::Voters(0)
        );
        assert_eq!(
            new(ElectionConfig::new("a/b", vec![id])).unwrap_err(),
            ElectionError::Name
        );
        assert_eq!(
            new(ElectionConfig::new("x", vec![id]).with_lease_ms(10)).unwrap_err(),
            ElectionError::Lease
        );
        let five: Vec<NodeId> = (0..5u8)
            .map(|i| NodeId::from_bytes([i; NODE_ID_LEN]))
            .chain([id, id])
            .collect();
        let e = new(ElectionConfig::new("x", five)).unwrap();
        assert_eq!(e.voters.len(), 5, "duplicates count once");
        assert_eq!(e.majority(), 3);
        assert_eq!(e.own_lease_ms, 1_800);
        assert!(!e.is_leader(now));
    }
}
