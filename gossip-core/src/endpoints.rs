//! Named endpoints (the `endpoints` feature): a member registers a name (`"orders"`), and any
//! member resolves it to the live members holding it and picks one (or all) to send a request or
//! open a stream to.
//!
//! A registration is one key of the registering member's replicated state
//! ([`KEY_PREFIX`]` + name`, empty value). So it spreads like any state write (gossip, then
//! anti-entropy), an unregister is a delete (a tombstone), and a holder that dies or leaves drops
//! out everywhere with the rest of its map, without any message of its own. Nothing is owned: any
//! member holding the cluster key can register any name, and a hostile one can attract requests
//! meant for a name; what it can register is bounded by the state limits of every receiver
//! (`StateConfig::max_keys_per_member`, `max_bytes_per_member`, `max_cluster_bytes`). See
//! `docs/ENDPOINTS.md`.

use crate::identity::NodeId;
use crate::membership::State;
use crate::state::StateError;

/// The state key prefix of registrations: the key of name `n` is `KEY_PREFIX + n`. Keys under it
/// are reserved for endpoints; writing one with `Node::state_set` registers a name.
pub const KEY_PREFIX: &str = "endpoint/";

/// Limits on names, applied to this node's registrations (and to what it resolves: a longer
/// name held by another member is never resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Longest name, in bytes.
    pub max_name_bytes: usize,
    /// Names this member may hold at once.
    pub max_names_per_member: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_name_bytes: 64,
            max_names_per_member: 64,
        }
    }
}

/// How to choose among the live holders of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// One holder drawn at random (alive ones before suspect ones).
    Any,
    /// The holder with the smallest round-trip time measured by this node's probes (alive ones
    /// before suspect ones; holders never probed yet come last).
    Nearest,
    /// Every live holder (a request fans out; not for streams).
    All,
}

/// A live holder of a name, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The member.
    pub id: NodeId,
    /// Alive or suspect (dead and departed members hold nothing).
    pub state: State,
    /// The round-trip time of this node's last direct probe of it, in microseconds.
    pub rtt_micros: Option<u64>,
}

/// Why a name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("empty endpoint name")]
    Empty,
    /// The name is longer than [`EndpointConfig::max_name_bytes`].
    #[error("endpoint name of {len} bytes exceeds the {max} byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character other than ASCII letters, digits and `-_.:/`.
    #[error("endpoint name holds {0:?}: only ASCII letters, digits and -_.:/ are allowed")]
    BadChar(char),
}

/// Why an endpoint command was refused. Nothing was signed or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// This member already holds [`EndpointConfig::max_names_per_member`] names.
    #[error("this member already holds {max} endpoint names")]
    TooManyNames {
        /// The limit.
        max: usize,
    },
    /// The replicated state refused the write (a size limit, the node left...).
    #[error(transparent)]
    State(#[from] StateError),
    /// No live member other than this one holds the name.
    #[error("no live holder of endpoint {0:?}")]
    NoHolder(String),
    /// [`Policy::All`] asked for something that goes to one member (a stream).
    #[error("policy All picks several holders; a stream goes to one")]
    NotOne,
    /// The engine refused the request or stream (too many outstanding, the node left...).
    #[error(transparent)]
    Command(#[from] crate::node::CommandError),
}

/// Checks a name against the limits.
pub fn check_name(name: &str, config: &EndpointConfig) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > config.max_name_bytes {
        return Err(NameError::TooLong {
            len: name.len(),
            max: config.max_name_bytes,
        });
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/".contains(*c)))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

/// The state key of a name.
pub fn key_of(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// Chooses among `holders` by `policy`; `draw` gives a random number for [`Policy::Any`]. Alive
/// holders are preferred to suspect ones: a suspect is probably gone.
pub fn pick(holders: &[Holder], policy: Policy, draw: impl FnOnce() -> u64) -> Vec<NodeId> {
    let alive: Vec<&Holder> = holders.iter().filter(|h| h.state == State::Alive).collect();
    let pool: Vec<&Holder> = if alive.is_empty() {
        holders.iter().collect()
    } else {
        alive
    };
    if pool.is_empty() {
        return Vec::new();
    }
    match policy {
        Policy::All => holders.iter().map(|h| h.id).collect(),
        Policy::Any => {
            // `pool.len()` is at least 1 and fits u64.
            let i = (draw() % pool.len() as u64) as usize;
            vec![pool[i].id]
        }
        Policy::Nearest => pool
            .iter()
            .min_by_key(|h| (h.rtt_micros.unwrap_or(u64::MAX), h.id))
            .map(|h| vec![h.id])
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn id(n: u8) -> NodeId {
        Identity::from_secret_bytes([n; 32]).id()
    }

    fn holder(n: u8, state: State, rtt: Option<u64>) -> Holder {
        Holder {
            id: id(n),
            state,
            rtt_micros: rtt,
        }
    }

    #[test]
    fn names_are_checked() {
        let c = EndpointConfig::default();
        assert_eq!(check_name("orders", &c), Ok(()));
        assert_eq!(check_name("svc/orders-v2.eu:1_a", &c), Ok(()));
        assert_eq!(check_name("", &c), Err(NameError::Empty));
        let long = "a".repeat(65);
        assert_eq!(
            check_name(&long, &c),
            Err(NameError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(check_name(&long[..64], &c), Ok(()));
        assert_eq!(check_name("a b", &c), Err(NameError::BadChar(' ')));
        assert_eq!(check_name("é", &c), Err(NameError::BadChar('é')));
        assert_eq!(check_name("a\0", &c), Err(NameError::BadChar('\0')));
        assert_eq!(key_of("orders"), "endpoint/orders");
    }

    #[test]
    fn nearest_prefers_alive_then_smallest_rtt_then_measured() {
        let hs = [
            holder(1, State::Alive, None),
            holder(2, State::Alive, Some(900)),
            holder(3, State::Suspect, Some(10)),
            holder(4, State::Alive, Some(300)),
        ];
        assert_eq!(pick(&hs, Policy::Nearest, || 0), vec![id(4)]);
        // Never probed: after every measured holder.
        assert_eq!(pick(&hs[..2], Policy::Nearest, || 0), vec![id(2)]);
        // Only suspects left: the nearest of them.
        let suspects = [
            holder(3, State::Suspect, Some(10)),
            holder(5, State::Suspect, Some(5)),
        ];
        assert_eq!(pick(&suspects, Policy::Nearest, || 0), vec![id(5)]);
    }

    #[test]
    fn any_draws_among_alive_holders_only() {
        let hs = [
            holder(1, State::Suspect, Some(1)),
            holder(2, State::Alive, None),
            holder(3, State::Alive, None),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for draw in 0..10u64 {
            let p = pick(&hs, Policy::Any, || draw);
            assert_eq!(p.len(), 1);
            seen.insert(p[0]);
        }
        assert_eq!(seen, [id(2), id(3)].into_iter().collect());
        // A huge draw is reduced, never out of range.
        assert_eq!(pick(&hs, Policy::Any, || u64::MAX).len(), 1);
    }

    #[test]
    fn all_takes_every_live_holder_and_nothing_picks_from_none() {
        let hs = [
            holder(1, State::Suspect, None),
            holder(2, State::Alive, None),
        ];
        assert_eq!(pick(&hs, Policy::All, || 0), vec![id(1), id(2)]);
        for p in [Policy::Any, Policy::Nearest, Policy::All] {
            assert!(pick(&[], p, || 7).is_empty());
        }
    }
}
