//! The member table's records and SWIM's precedence rules between updates.

use std::collections::BTreeMap;

use crate::address::Address;
use crate::identity::NodeId;
use crate::message::DigestEntry;
use crate::time::Instant;
use crate::wire::SignedPacket;

/// What a node believes about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared dead after a suspicion timed out.
    Dead,
    /// Left gracefully (announced by itself).
    Left,
}

impl State {
    /// Wire code in digests.
    pub fn code(self) -> u8 {
        match self {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead => 2,
            State::Left => 3,
        }
    }

    /// Inverse of [`State::code`].
    pub fn from_code(code: u8) -> Option<State> {
        Some(match code {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Dead,
            3 => State::Left,
            _ => return None,
        })
    }

    /// Dead or left.
    pub fn is_down(self) -> bool {
        matches!(self, State::Dead | State::Left)
    }

    /// Name for logs and UIs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        }
    }
}

/// Whether `(inc_a, a)` is newer information than `(inc_b, b)`: a higher incarnation wins, and at
/// the same incarnation suspect beats alive and dead/left beat suspect (SWIM's precedence).
pub fn outranks(inc_a: u64, a: State, inc_b: u64, b: State) -> bool {
    (inc_a, a.code()) > (inc_b, b.code())
}

/// A member as this node sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Where it can be reached.
    pub addrs: Vec<Address>,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its state.
    pub state: State,
    /// When this node last changed the member's state.
    pub since: Instant,
    /// Its metadata.
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// Version of its metadata (0: none yet).
    pub meta_version: u64,
    /// Last measured round-trip time of a direct probe, in microseconds.
    pub rtt_micros: Option<u64>,
    /// Its latest self-signed alive record.
    pub(crate) alive: SignedPacket,
    /// The signed record that set a non-alive state (suspect, dead or leave).
    pub(crate) status: Option<SignedPacket>,
    /// Its latest signed metadata.
    pub(crate) meta: Option<SignedPacket>,
}

impl Member {
    /// Its digest entry.
    pub(crate) fn digest(&self) -> DigestEntry {
        DigestEntry {
            node: self.id,
            incarnation: self.incarnation,
            state: self.state.code(),
            meta_version: self.meta_version,
        }
    }

    /// The relay this member is reached through, if it cannot be dialed.
    pub fn relay(&self) -> Option<NodeId> {
        self.addrs.iter().find_map(|a| match a {
            Address::Relayed(via) => Some(*via),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_swim() {
        use State::*;
        assert!(outranks(1, Suspect, 1, Alive));
        assert!(outranks(1, Dead, 1, Suspect));
        assert!(outranks(2, Alive, 1, Suspect));
        assert!(outranks(2, Alive, 1, Dead));
        assert!(!outranks(1, Alive, 1, Suspect));
        assert!(!outranks(1, Suspect, 2, Alive));
        assert!(!outranks(1, Alive, 1, Alive));
        for s in [Alive, Suspect, Dead, Left] {
            assert_eq!(State::from_code(s.code()), Some(s));
        }
        assert_eq!(State::from_code(9), None);
    }
}
