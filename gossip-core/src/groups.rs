//! Groups: live views of the cluster members whose metadata matches some criteria.
//!
//! Applications rarely want "the member table"; they want "every node with `role=db`" and to be
//! told when a node enters or leaves that set, so they can open or close a connection, rebalance
//! a shard map, or redraw a list. Recomputing such sets from snapshots loses the transitions and
//! costs a full scan per question, so [`Groups`] keeps each set up to date incrementally and
//! reports every transition as a [`GroupEvent`].
//!
//! Design choices:
//!
//! - **Liveness is the caller's decision.** [`Groups`] never sees member states: the node passes
//!   the members it considers live to [`Groups::define`] and reports a member going down as
//!   [`Groups::member_changed`] with `None`. This keeps the module a pure function of its calls
//!   (sans-IO, trivially testable) and leaves policy, such as whether a suspect member still
//!   counts, in one place: the node.
//! - **Criteria compare bytes.** Metadata values are opaque bytes on the wire, so matching never
//!   assumes an encoding; only the text form used by UIs and CLIs is UTF-8, with a `\xNN` escape
//!   for bytes that are not, so every spec with non-empty keys survives a round trip through text.
//! - **No copy of the metadata is kept.** Storing every member's metadata per group would
//!   multiply memory by the number of groups. The cost is that [`Groups`] cannot tell whether a
//!   still-matching member's metadata really changed, so it reports [`GroupChange::Updated`] on
//!   every call for it; the node only calls on real changes, so that is exact in practice.
//! - **Events are exact.** A member is added to a group at most once per membership and removed
//!   only while it is a member, so an application can mirror a group (and the resources tied to
//!   it) from the events alone, without reconciling against [`Groups::members`].
//! - **User data lives and dies with the membership.** Bytes attached with [`Groups::set_data`]
//!   usually name per-membership resources (a connection handle, a shard slot); keeping them past
//!   a removal would hand a stale handle to the member if it matched again later, so they are
//!   dropped when it leaves the group.
//! - **The number of groups is bounded** ([`MAX_GROUPS`]): every member change is evaluated
//!   against every group, so a UI or a buggy application defining groups in a loop must not be
//!   able to make each gossip update arbitrarily expensive.
//! - **Group ids are not reused** (until the 32-bit counter wraps): a stale [`GroupId`] kept by
//!   the application after [`Groups::remove`] must not silently refer to a different group.
//! - **Iteration is deterministic** (ordered maps everywhere), so simulations and tests replay
//!   exactly, and events come out ordered by group id.

use core::fmt;
use core::str::FromStr;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::identity::NodeId;

/// The most groups a [`Groups`] holds at once.
pub const MAX_GROUPS: usize = 256;

/// One condition on a member's metadata.
///
/// Every variant fails on a member that lacks `key`: absence is never a match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Criterion {
    /// The value under `key` is exactly `value`. Text form: `key=value`.
    Equals {
        /// Metadata key.
        key: String,
        /// Required value.
        value: Vec<u8>,
    },
    /// The member has `key`, whatever its value. Text form: `key?`.
    Exists {
        /// Metadata key.
        key: String,
    },
    /// The value under `key` starts with `prefix` (an empty prefix matches any value).
    /// Text form: `key^prefix`.
    Prefix {
        /// Metadata key.
        key: String,
        /// Required prefix.
        prefix: Vec<u8>,
    },
    /// The value under `key` contains `needle` as a contiguous byte run (an empty needle matches
    /// any value). Text form: `key~needle`.
    Contains {
        /// Metadata key.
        key: String,
        /// Required substring.
        needle: Vec<u8>,
    },
}

impl Criterion {
    /// The metadata key this criterion looks at.
    pub fn key(&self) -> &str {
        match self {
            Criterion::Equals { key, .. }
            | Criterion::Exists { key }
            | Criterion::Prefix { key, .. }
            | Criterion::Contains { key, .. } => key,
        }
    }

    /// Whether `metadata` satisfies this criterion.
    pub fn matches(&self, metadata: &BTreeMap<String, Vec<u8>>) -> bool {
        let Some(found) = metadata.get(self.key()) else {
            return false;
        };
        match self {
            Criterion::Equals { value, .. } => found == value,
            Criterion::Exists { .. } => true,
            Criterion::Prefix { prefix, .. } => found.starts_with(prefix),
            // `windows(0)` panics, and the empty byte string is a substring of every value.
            Criterion::Contains { needle, .. } => {
                needle.is_empty() || found.windows(needle.len()).any(|w| w == needle.as_slice())
            }
        }
    }

    fn operator(&self) -> char {
        match self {
            Criterion::Equals { .. } => '=',
            Criterion::Exists { .. } => '?',
            Criterion::Prefix { .. } => '^',
            Criterion::Contains { .. } => '~',
        }
    }
}

/// What a group selects: members matching every criterion.
///
/// An empty spec matches every member it is shown, that is every live member.
///
/// Text form (for UIs and CLIs): comma-separated terms `key=value` ([`Criterion::Equals`]),
/// `key~value` ([`Criterion::Contains`]), `key^value` ([`Criterion::Prefix`]) and `key?`
/// ([`Criterion::Exists`]), e.g. `role=db, zone^eu-, leader?`. Whitespace around terms, keys and
/// values is ignored; a term splits at its first operator, so values may contain operator
/// characters. A backslash takes the next character literally (`\,`, `\=`, `\\`, `\ ` for a
/// space at either end) and `\xNN` is a raw byte, for values that are not UTF-8. Blank text is
/// the empty spec. [`Display`](fmt::Display) writes this form with the escapes needed for
/// parsing to give back an equal spec, for every spec whose keys are non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GroupSpec {
    /// All of these must match.
    pub criteria: Vec<Criterion>,
}

impl GroupSpec {
    /// Whether `metadata` satisfies every criterion.
    pub fn matches(&self, metadata: &BTreeMap<String, Vec<u8>>) -> bool {
        self.criteria.iter().all(|c| c.matches(metadata))
    }
}

/// Why text is not a [`GroupSpec`]. `term` is the zero-based position of the offending term.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseGroupSpecError {
    /// A term is empty or blank (for example `a=1,,b=2` or a trailing comma).
    #[error("term {term} is empty")]
    EmptyTerm {
        /// Position of the term.
        term: usize,
    },
    /// A term has no key before its operator (for example `=db`).
    #[error("term {term} has an empty key")]
    EmptyKey {
        /// Position of the term.
        term: usize,
    },
    /// A term has none of the operators `=`, `~`, `^`, `?`.
    #[error("term {term} has no operator (expected key=value, key~value, key^value or key?)")]
    MissingOperator {
        /// Position of the term.
        term: usize,
    },
    /// Something follows the `?` of an existence test.
    #[error("term {term}: nothing may follow `?`")]
    ValueAfterExists {
        /// Position of the term.
        term: usize,
    },
    /// A backslash ends the text, or `\x` is not followed by two hex digits.
    #[error("term {term} has an incomplete escape")]
    BadEscape {
        /// Position of the term.
        term: usize,
    },
    /// A key's `\xNN` escapes do not form UTF-8 (keys are strings; only values are bytes).
    #[error("term {term} has a key that is not UTF-8")]
    KeyNotUtf8 {
        /// Position of the term.
        term: usize,
    },
}

/// A character or raw byte of the text form, with whether it was escaped (escaped units are
/// never operators, separators or trimmable whitespace).
#[derive(Clone, Copy)]
enum Unit {
    Char { c: char, escaped: bool },
    Byte(u8),
}

impl Unit {
    fn plain(self) -> Option<char> {
        match self {
            Unit::Char { c, escaped: false } => Some(c),
            _ => None,
        }
    }
}

fn trim_units(mut units: &[Unit]) -> &[Unit] {
    while let [first, rest @ ..] = units {
        if !first.plain().is_some_and(char::is_whitespace) {
            break;
        }
        units = rest;
    }
    while let [rest @ .., last] = units {
        if !last.plain().is_some_and(char::is_whitespace) {
            break;
        }
        units = rest;
    }
    units
}

fn units_to_bytes(units: &[Unit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        match *unit {
            Unit::Char { c, .. } => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            Unit::Byte(b) => out.push(b),
        }
    }
    out
}

/// Splits `s` into terms of units at unescaped commas, resolving escapes.
fn tokenize(s: &str) -> Result<Vec<Vec<Unit>>, ParseGroupSpecError> {
    let mut terms = vec![Vec::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let term = terms.len() - 1;
        match c {
            ',' => terms.push(Vec::new()),
            '\\' => {
                let unit = match chars.next() {
                    None => return Err(ParseGroupSpecError::BadEscape { term }),
                    Some('x') => {
                        let hex = |c: Option<char>| c.and_then(|c| c.to_digit(16));
                        match (hex(chars.next()), hex(chars.next())) {
                            // Two hex digits are at most 0xff: the cast is lossless.
                            (Some(hi), Some(lo)) => Unit::Byte((hi * 16 + lo) as u8),
                            _ => return Err(ParseGroupSpecError::BadEscape { term }),
                        }
                    }
                    Some(c) => Unit::Char { c, escaped: true },
                };
                terms[term].push(unit);
            }
            c => terms[term].push(Unit::Char { c, escaped: false }),
        }
    }
    Ok(terms)
}

fn parse_term(term: usize, units: &[Unit]) -> Result<Criterion, ParseGroupSpecError> {
    let units = trim_units(units);
    if units.is_empty() {
        return Err(ParseGroupSpecError::EmptyTerm { term });
    }
    let (at, op) = units
        .iter()
        .enumerate()
        .find_map(|(i, u)| u.plain().filter(|c| "=~^?".contains(*c)).map(|c| (i, c)))
        .ok_or(ParseGroupSpecError::MissingOperator { term })?;
    let key = trim_units(&units[..at]);
    let value = units_to_bytes(trim_units(&units[at + 1..]));
    if key.is_empty() {
        return Err(ParseGroupSpecError::EmptyKey { term });
    }
    let key = String::from_utf8(units_to_bytes(key))
        .map_err(|_| ParseGroupSpecError::KeyNotUtf8 { term })?;
    Ok(match op {
        '=' => Criterion::Equals { key, value },
        '~' => Criterion::Contains { key, needle: value },
        '^' => Criterion::Prefix { key, prefix: value },
        _ if value.is_empty() => Criterion::Exists { key },
        _ => return Err(ParseGroupSpecError::ValueAfterExists { term }),
    })
}

impl FromStr for GroupSpec {
    type Err = ParseGroupSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Blank text must parse, or the empty spec (which displays as "") could not round-trip.
        if s.trim().is_empty() {
            return Ok(GroupSpec::default());
        }
        let criteria = tokenize(s)?
            .iter()
            .enumerate()
            .map(|(term, units)| parse_term(term, units))
            .collect::<Result<_, _>>()?;
        Ok(GroupSpec { criteria })
    }
}

/// Writes `units` escaped so that parsing gives them back: backslashes, commas and `specials`
/// always, whitespace only at either end (where parsing would trim it), raw bytes as `\xNN`.
fn write_escaped(f: &mut fmt::Formatter<'_>, units: &[Unit], specials: &str) -> fmt::Result {
    let last = units.len().saturating_sub(1);
    for (i, unit) in units.iter().enumerate() {
        match *unit {
            Unit::Char { c, .. } => {
                let edge = i == 0 || i == last;
                if c == '\\' || c == ',' || specials.contains(c) || (edge && c.is_whitespace()) {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            Unit::Byte(b) => write!(f, "\\x{b:02x}")?,
        }
    }
    Ok(())
}

fn bytes_to_units(bytes: &[u8]) -> Vec<Unit> {
    let mut units = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        units.extend(
            chunk
                .valid()
                .chars()
                .map(|c| Unit::Char { c, escaped: false }),
        );
        units.extend(chunk.invalid().iter().copied().map(Unit::Byte));
    }
    units
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: Vec<Unit> = self
            .key()
            .chars()
            .map(|c| Unit::Char { c, escaped: false })
            .collect();
        // Operators split a term at the first one, so only the key must escape them.
        write_escaped(f, &key, "=~^?")?;
        write!(f, "{}", self.operator())?;
        match self {
            Criterion::Equals { value: bytes, .. }
            | Criterion::Prefix { prefix: bytes, .. }
            | Criterion::Contains { needle: bytes, .. } => {
                write_escaped(f, &bytes_to_units(bytes), "")
            }
            Criterion::Exists { .. } => Ok(()),
        }
    }
}

impl fmt::Display for GroupSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, criterion) in self.criteria.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{criterion}")?;
        }
        Ok(())
    }
}

/// Identifies a group within one [`Groups`]. Not reused after [`Groups::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(u32);

impl GroupId {
    /// The number behind the id, for logs and UIs.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a member's relation to a group changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupChange {
    /// It was not in the group and now matches.
    Added,
    /// It was in the group and no longer matches, or went down. Its user data was dropped.
    Removed,
    /// It is still in the group and its metadata changed.
    Updated,
}

/// A member's relation to a group changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupEvent {
    /// The group.
    pub group: GroupId,
    /// The member.
    pub node: NodeId,
    /// What happened.
    pub change: GroupChange,
}

/// Misuse of the [`Groups`] API.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// [`MAX_GROUPS`] groups are already defined; remove one first.
    #[error("too many groups: at most {0} may be defined")]
    TooManyGroups(usize),
    /// No group has this id (it was never defined, or was removed).
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
}

#[derive(Debug, Clone)]
struct Group {
    spec: GroupSpec,
    members: BTreeMap<NodeId, Option<Vec<u8>>>,
}

/// The matching live members of `members` under `spec`; for a node listed twice the last entry
/// wins, as if it had been reported twice through [`Groups::member_changed`].
fn initial_members<'a>(
    spec: &GroupSpec,
    members: impl IntoIterator<Item = (NodeId, &'a BTreeMap<String, Vec<u8>>)>,
) -> BTreeMap<NodeId, Option<Vec<u8>>> {
    let mut matching = BTreeMap::new();
    for (node, metadata) in members {
        if spec.matches(metadata) {
            matching.insert(node, None);
        } else {
            matching.remove(&node);
        }
    }
    matching
}

/// The defined groups and their current members. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    next_id: u32,
    groups: BTreeMap<GroupId, Group>,
}

impl Groups {
    /// No groups.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines a group selecting `spec` among `members`, the currently live members with their
    /// metadata (the caller leaves out dead and left ones). Returns its id and an
    /// [`GroupChange::Added`] event per initial member, in node order.
    pub fn define<'a>(
        &mut self,
        spec: GroupSpec,
        members: impl IntoIterator<Item = (NodeId, &'a BTreeMap<String, Vec<u8>>)>,
    ) -> Result<(GroupId, Vec<GroupEvent>), GroupError> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(GroupError::TooManyGroups(MAX_GROUPS));
        }
        let group = self.allocate_id();
        let members = initial_members(&spec, members);
        let events = members
            .keys()
            .map(|&node| GroupEvent {
                group,
                node,
                change: GroupChange::Added,
            })
            .collect();
        self.groups.insert(group, Group { spec, members });
        Ok((group, events))
    }

    /// Replaces a group's spec, re-evaluating it against `members` (the currently live members,
    /// as for [`Groups::define`]). Members that stay keep their user data and get no event;
    /// the others get [`GroupChange::Removed`] (in node order), then new matches get
    /// [`GroupChange::Added`] (in node order).
    pub fn redefine<'a>(
        &mut self,
        group: GroupId,
        spec: GroupSpec,
        members: impl IntoIterator<Item = (NodeId, &'a BTreeMap<String, Vec<u8>>)>,
    ) -> Result<Vec<GroupEvent>, GroupError> {
        let entry = self
            .groups
            .get_mut(&group)
            .ok_or(GroupError::UnknownGroup(group))?;
        let mut next = initial_members(&spec, members);
        let event = |node, change| GroupEvent {
            group,
            node,
            change,
        };
        let mut events: Vec<GroupEvent> = entry
            .members
            .keys()
            .filter(|node| !next.contains_key(node))
            .map(|&node| event(node, GroupChange::Removed))
            .collect();
        for (node, data) in next.iter_mut() {
            match entry.members.remove(node) {
                Some(kept) => *data = kept,
                None => events.push(event(*node, GroupChange::Added)),
            }
        }
        entry.spec = spec;
        entry.members = next;
        Ok(events)
    }

    /// Removes a group and its members' user data. Returns whether it existed.
    pub fn remove(&mut self, group: GroupId) -> bool {
        self.groups.remove(&group).is_some()
    }

    /// Re-evaluates `node` against every group after it joined or changed its metadata
    /// (`Some(metadata)`), or went down or left (`None`). Returns the resulting events, ordered
    /// by group id: [`GroupChange::Added`] where it now matches and was not a member,
    /// [`GroupChange::Removed`] where it was a member and no longer matches or is down (its user
    /// data is dropped), [`GroupChange::Updated`] where it was and still is a member.
    pub fn member_changed(
        &mut self,
        node: NodeId,
        metadata: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Vec<GroupEvent> {
        let mut events = Vec::new();
        for (&group, entry) in &mut self.groups {
            let matches = metadata.is_some_and(|m| entry.spec.matches(m));
            let change = match (matches, entry.members.contains_key(&node)) {
                (true, false) => {
                    entry.members.insert(node, None);
                    GroupChange::Added
                }
                (true, true) => GroupChange::Updated,
                (false, true) => {
                    entry.members.remove(&node);
                    GroupChange::Removed
                }
                (false, false) => continue,
            };
            events.push(GroupEvent {
                group,
                node,
                change,
            });
        }
        events
    }

    /// The group's current members in node order, or `None` for an unknown group.
    pub fn members(&self, group: GroupId) -> Option<impl Iterator<Item = NodeId> + '_> {
        self.groups
            .get(&group)
            .map(|entry| entry.members.keys().copied())
    }

    /// Whether `node` is currently a member of `group` (false for an unknown group).
    pub fn contains(&self, group: GroupId, node: NodeId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|entry| entry.members.contains_key(&node))
    }

    /// The number of current members of `group`, or `None` for an unknown group.
    pub fn len(&self, group: GroupId) -> Option<usize> {
        self.groups.get(&group).map(|entry| entry.members.len())
    }

    /// The group's spec, or `None` for an unknown group.
    pub fn spec(&self, group: GroupId) -> Option<&GroupSpec> {
        self.groups.get(&group).map(|entry| &entry.spec)
    }

    /// The ids of the defined groups, in ascending order.
    pub fn ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Attaches `data` to `node`'s membership of `group`, replacing any earlier data. Returns
    /// false (and stores nothing) if the group is unknown or `node` is not a member of it.
    pub fn set_data(&mut self, group: GroupId, node: NodeId, data: Vec<u8>) -> bool {
        match self
            .groups
            .get_mut(&group)
            .and_then(|entry| entry.members.get_mut(&node))
        {
            Some(slot) => {
                *slot = Some(data);
                true
            }
            None => false,
        }
    }

    /// The data attached to `node`'s membership of `group`, if it is a member and data was set.
    pub fn data(&self, group: GroupId, node: NodeId) -> Option<&[u8]> {
        self.groups.get(&group)?.members.get(&node)?.as_deref()
    }

    fn allocate_id(&mut self) -> GroupId {
        // At most MAX_GROUPS ids are in use, far fewer than 2^32, so this finds one quickly even
        // after the counter wraps.
        loop {
            let id = GroupId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if !self.groups.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn meta(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn eq(key: &str, value: &[u8]) -> Criterion {
        Criterion::Equals {
            key: key.into(),
            value: value.into(),
        }
    }

    fn ev(group: GroupId, n: u8, change: GroupChange) -> GroupEvent {
        GroupEvent {
            group,
            node: node(n),
            change,
        }
    }

    #[test]
    fn equals_matches_exact_value_only() {
        let c = eq("role", b"db");
        assert!(c.matches(&meta(&[("role", b"db")])));
        assert!(!c.matches(&meta(&[("role", b"dbx")])));
        assert!(!c.matches(&meta(&[("role", b"d")])));
        assert!(!c.matches(&meta(&[("other", b"db")])));
        assert!(!c.matches(&BTreeMap::new()));
        assert!(eq("role", b"").matches(&meta(&[("role", b"")])));
        assert!(!eq("role", b"").matches(&BTreeMap::new()));
    }

    #[test]
    fn exists_needs_the_key_only() {
        let c = Criterion::Exists {
            key: "leader".into(),
        };
        assert!(c.matches(&meta(&[("leader", b"")])));
        assert!(c.matches(&meta(&[("leader", b"anything")])));
        assert!(!c.matches(&meta(&[("leaders", b"1")])));
        assert!(!c.matches(&BTreeMap::new()));
    }

    #[test]
    fn prefix_matches_starts_only() {
        let c = Criterion::Prefix {
            key: "zone".into(),
            prefix: b"eu-".to_vec(),
        };
        assert!(c.matches(&meta(&[("zone", b"eu-west")])));
        assert!(c.matches(&meta(&[("zone", b"eu-")])));
        assert!(!c.matches(&meta(&[("zone", b"us-east")])));
        assert!(!c.matches(&meta(&[("zone", b"xeu-west")])));
        // Prefix longer than the value.
        assert!(!c.matches(&meta(&[("zone", b"eu")])));
        assert!(!c.matches(&BTreeMap::new()));
        let empty = Criterion::Prefix {
            key: "zone".into(),
            prefix: Vec::new(),
        };
        assert!(empty.matches(&meta(&[("zone", b"")])));
        assert!(!empty.matches(&BTreeMap::new()));
    }

    #[test]
    fn contains_matches_substrings() {
        let c = Criterion::Contains {
            key: "tags".into(),
            needle: b"gpu".to_vec(),
        };
        assert!(c.matches(&meta(&[("tags", b"gpu")])));
        assert!(c.matches(&meta(&[("tags", b"ssd,gpu,big")])));
        assert!(!c.matches(&meta(&[("tags", b"gp,u")])));
        assert!(!c.matches(&meta(&[("tags", b"gp")])));
        assert!(!c.matches(&meta(&[("tags", b"")])));
        assert!(!c.matches(&meta(&[("other", b"gpu")])));
        // An empty needle is in every value, but absence still fails (and nothing panics).
        let empty = Criterion::Contains {
            key: "tags".into(),
            needle: Vec::new(),
        };
        assert!(empty.matches(&meta(&[("tags", b"")])));
        assert!(empty.matches(&meta(&[("tags", b"x")])));
        assert!(!empty.matches(&BTreeMap::new()));
    }

    #[test]
    fn spec_needs_all_criteria_and_empty_spec_matches_all() {
        let spec = GroupSpec {
            criteria: vec![
                eq("role", b"db"),
                Criterion::Exists {
                    key: "leader".into(),
                },
            ],
        };
        assert!(spec.matches(&meta(&[("role", b"db"), ("leader", b"")])));
        assert!(!spec.matches(&meta(&[("role", b"db")])));
        assert!(!spec.matches(&meta(&[("leader", b"")])));
        assert!(GroupSpec::default().matches(&BTreeMap::new()));
        assert!(GroupSpec::default().matches(&meta(&[("a", b"b")])));
    }

    #[test]
    fn text_form_parses_and_displays() {
        let spec: GroupSpec = "  role=db , zone^eu-,tags~gpu,  leader? ".parse().unwrap();
        assert_eq!(
            spec.criteria,
            vec![
                eq("role", b"db"),
                Criterion::Prefix {
                    key: "zone".into(),
                    prefix: b"eu-".to_vec()
                },
                Criterion::Contains {
                    key: "tags".into(),
                    needle: b"gpu".to_vec()
                },
                Criterion::Exists {
                    key: "leader".into()
                },
            ]
        );
        assert_eq!(spec.to_string(), "role=db,zone^eu-,tags~gpu,leader?");
        assert_eq!(spec.to_string().parse::<GroupSpec>().unwrap(), spec);
        // Whitespace around the operator is not part of the key or value.
        assert_eq!(
            "role = db".parse::<GroupSpec>().unwrap().criteria,
            vec![eq("role", b"db")]
        );
        // A term splits at its first operator; later ones belong to the value.
        assert_eq!(
            "url=http://a?b=c^d~e"
                .parse::<GroupSpec>()
                .unwrap()
                .criteria,
            vec![eq("url", b"http://a?b=c^d~e")]
        );
        // An empty value is allowed.
        assert_eq!(
            "role=".parse::<GroupSpec>().unwrap().criteria,
            vec![eq("role", b"")]
        );
        assert_eq!("".parse::<GroupSpec>().unwrap(), GroupSpec::default());
        assert_eq!(" \t ".parse::<GroupSpec>().unwrap(), GroupSpec::default());
        assert_eq!(GroupSpec::default().to_string(), "");
    }

    #[test]
    fn text_form_escapes_round_trip() {
        let spec = GroupSpec {
            criteria: vec![
                eq("a=b,c?~^", b"x,y\\z"),
                eq(" padded key ", b"  padded value\t"),
                eq("bin", &[0xff, b'a', 0x80, 0xc3]),
                eq("utf8", "héllo ✓".as_bytes()),
                Criterion::Exists { key: "q?".into() },
                Criterion::Prefix {
                    key: "p".into(),
                    prefix: b" ".to_vec(),
                },
                Criterion::Contains {
                    key: "c".into(),
                    needle: Vec::new(),
                },
            ],
        };
        let text = spec.to_string();
        assert_eq!(text.parse::<GroupSpec>().unwrap(), spec, "text: {text}");
        assert_eq!(
            eq("bin", &[0xff, b'a']).to_string(),
            "bin=\\xffa",
            "raw bytes are hex-escaped"
        );
        assert_eq!(
            "k=\\x41\\X".parse::<GroupSpec>().unwrap().criteria,
            vec![eq("k", b"AX")]
        );
    }

    #[test]
    fn text_form_errors() {
        use ParseGroupSpecError::*;
        let err = |s: &str| s.parse::<GroupSpec>().unwrap_err();
        assert_eq!(err("a=1,,b?"), EmptyTerm { term: 1 });
        assert_eq!(err("a=1, "), EmptyTerm { term: 1 });
        assert_eq!(err(",a=1"), EmptyTerm { term: 0 });
        assert_eq!(err("=db"), EmptyKey { term: 0 });
        assert_eq!(err("a=1, ?"), EmptyKey { term: 1 });
        assert_eq!(err("a=1,  ~x"), EmptyKey { term: 1 });
        assert_eq!(err("role"), MissingOperator { term: 0 });
        assert_eq!(err("role\\=db"), MissingOperator { term: 0 });
        assert_eq!(err("leader?yes"), ValueAfterExists { term: 0 });
        assert_eq!(err("a=1,b=\\"), BadEscape { term: 1 });
        assert_eq!(err("a=\\xg0"), BadEscape { term: 0 });
        assert_eq!(err("a=\\x1"), BadEscape { term: 0 });
        assert_eq!(err("\\xff=1"), KeyNotUtf8 { term: 0 });
        assert!(!EmptyKey { term: 3 }.to_string().is_empty());
    }

    #[test]
    fn define_reports_initial_members() {
        let db = meta(&[("role", b"db")]);
        let web = meta(&[("role", b"web")]);
        let mut groups = Groups::new();
        let spec: GroupSpec = "role=db".parse().unwrap();
        let (g, events) = groups
            .define(
                spec.clone(),
                [(node(3), &db), (node(1), &db), (node(2), &web)],
            )
            .unwrap();
        assert_eq!(
            events,
            vec![ev(g, 1, GroupChange::Added), ev(g, 3, GroupChange::Added)]
        );
        assert_eq!(
            groups.members(g).unwrap().collect::<Vec<_>>(),
            vec![node(1), node(3)]
        );
        assert_eq!(groups.len(g), Some(2));
        assert!(groups.contains(g, node(1)));
        assert!(!groups.contains(g, node(2)));
        assert_eq!(groups.spec(g), Some(&spec));
        assert_eq!(groups.ids().collect::<Vec<_>>(), vec![g]);

        // A node listed twice: the last entry wins, and it is added at most once.
        let (g2, events) = groups
            .define(
                spec,
                [
                    (node(5), &db),
                    (node(5), &db),
                    (node(6), &db),
                    (node(6), &web),
                ],
            )
            .unwrap();
        assert_ne!(g, g2);
        assert_eq!(events, vec![ev(g2, 5, GroupChange::Added)]);
        assert_eq!(groups.ids().collect::<Vec<_>>(), vec![g, g2]);
    }

    #[test]
    fn member_lifecycle_emits_exact_events_and_drops_data() {
        let mut groups = Groups::new();
        let (g, initial) = groups
            .define("role=db".parse().unwrap(), std::iter::empty())
            .unwrap();
        assert!(initial.is_empty());
        assert_eq!(groups.len(g), Some(0));

        // Joins matching.
        let events = groups.member_changed(node(1), Some(&meta(&[("role", b"db")])));
        assert_eq!(events, vec![ev(g, 1, GroupChange::Added)]);
        assert!(groups.set_data(g, node(1), b"conn-7".to_vec()));
        assert_eq!(groups.data(g, node(1)), Some(&b"conn-7"[..]));

        // Changes metadata, still matching: data kept.
        let events = groups.member_changed(node(1), Some(&meta(&[("role", b"db"), ("v", b"2")])));
        assert_eq!(events, vec![ev(g, 1, GroupChange::Updated)]);
        assert_eq!(groups.data(g, node(1)), Some(&b"conn-7"[..]));

        // Changes to not matching: removed, data dropped.
        let events = groups.member_changed(node(1), Some(&meta(&[("role", b"web")])));
        assert_eq!(events, vec![ev(g, 1, GroupChange::Removed)]);
        assert!(!groups.contains(g, node(1)));
        assert_eq!(groups.data(g, node(1)), None);

        // Still not matching: nothing.
        assert!(
            groups
                .member_changed(node(1), Some(&meta(&[("role", b"cache")])))
                .is_empty()
        );

        // Changes back: added again, without the old data.
        let events = groups.member_changed(node(1), Some(&meta(&[("role", b"db")])));
        assert_eq!(events, vec![ev(g, 1, GroupChange::Added)]);
        assert_eq!(groups.data(g, node(1)), None);
        assert!(groups.set_data(g, node(1), b"conn-8".to_vec()));

        // Goes down: removed, data dropped; a second down is silent.
        assert_eq!(
            groups.member_changed(node(1), None),
            vec![ev(g, 1, GroupChange::Removed)]
        );
        assert_eq!(groups.data(g, node(1)), None);
        assert!(groups.member_changed(node(1), None).is_empty());
        assert_eq!(groups.len(g), Some(0));
    }

    #[test]
    fn events_cover_every_group_in_id_order() {
        let mut groups = Groups::new();
        let (all, _) = groups
            .define(GroupSpec::default(), std::iter::empty())
            .unwrap();
        let (db, _) = groups
            .define("role=db".parse().unwrap(), std::iter::empty())
            .unwrap();
        let events = groups.member_changed(node(4), Some(&meta(&[("role", b"db")])));
        assert_eq!(
            events,
            vec![
                ev(all, 4, GroupChange::Added),
                ev(db, 4, GroupChange::Added)
            ]
        );
        let events = groups.member_changed(node(4), Some(&BTreeMap::new()));
        assert_eq!(
            events,
            vec![
                ev(all, 4, GroupChange::Updated),
                ev(db, 4, GroupChange::Removed)
            ]
        );
    }

    #[test]
    fn set_data_needs_membership() {
        let db = meta(&[("role", b"db")]);
        let mut groups = Groups::new();
        let (g, _) = groups
            .define("role=db".parse().unwrap(), [(node(1), &db)])
            .unwrap();
        assert!(!groups.set_data(g, node(2), vec![1]));
        assert_eq!(groups.data(g, node(2)), None);
        assert_eq!(groups.data(g, node(1)), None, "no data until set");
        assert!(groups.set_data(g, node(1), vec![1]));
        assert!(groups.set_data(g, node(1), vec![2]));
        assert_eq!(groups.data(g, node(1)), Some(&[2u8][..]));
        assert!(groups.remove(g));
        assert!(!groups.set_data(g, node(1), vec![3]));
        assert_eq!(groups.data(g, node(1)), None);
    }

    #[test]
    fn max_groups_is_enforced() {
        let mut groups = Groups::new();
        let mut ids = BTreeSet::new();
        for _ in 0..MAX_GROUPS {
            let (id, _) = groups
                .define(GroupSpec::default(), std::iter::empty())
                .unwrap();
            assert!(ids.insert(id), "ids are unique");
        }
        assert_eq!(
            groups
                .define(GroupSpec::default(), std::iter::empty())
                .unwrap_err(),
            GroupError::TooManyGroups(MAX_GROUPS)
        );
        assert_eq!(groups.ids().count(), MAX_GROUPS);
        let first = *ids.first().unwrap();
        assert!(groups.remove(first));
        let (id, _) = groups
            .define(GroupSpec::default(), std::iter::empty())
            .unwrap();
        assert!(!ids.contains(&id), "a removed id is not reused");
    }

    #[test]
    fn removed_group_is_gone() {
        let db = meta(&[("role", b"db")]);
        let mut groups = Groups::new();
        let (g, _) = groups
            .define("role=db".parse().unwrap(), [(node(1), &db)])
            .unwrap();
        assert!(groups.remove(g));
        assert!(!groups.remove(g));
        assert!(groups.members(g).is_none());
        assert_eq!(groups.len(g), None);
        assert_eq!(groups.spec(g), None);
        assert!(!groups.contains(g, node(1)));
        assert_eq!(groups.ids().count(), 0);
        assert!(groups.member_changed(node(1), Some(&db)).is_empty());
        assert!(groups.member_changed(node(1), None).is_empty());
        assert_eq!(
            groups.redefine(g, GroupSpec::default(), [(node(1), &db)]),
            Err(GroupError::UnknownGroup(g))
        );
    }

    #[test]
    fn redefine_keeps_staying_members_and_their_data() {
        let a = meta(&[("role", b"db"), ("zone", b"eu")]);
        let b = meta(&[("role", b"db"), ("zone", b"us")]);
        let c = meta(&[("role", b"web"), ("zone", b"eu")]);
        let live = [(node(1), &a), (node(2), &b), (node(3), &c)];
        let mut groups = Groups::new();
        let (g, _) = groups.define("role=db".parse().unwrap(), live).unwrap();
        assert!(groups.set_data(g, node(1), b"keep".to_vec()));
        assert!(groups.set_data(g, node(2), b"drop".to_vec()));
        let events = groups
            .redefine(g, "zone=eu".parse().unwrap(), live)
            .unwrap();
        assert_eq!(
            events,
            vec![ev(g, 2, GroupChange::Removed), ev(g, 3, GroupChange::Added)]
        );
        assert_eq!(groups.data(g, node(1)), Some(&b"keep"[..]));
        assert_eq!(groups.data(g, node(2)), None);
        assert_eq!(groups.spec(g).unwrap().to_string(), "zone=eu");
        assert_eq!(
            groups.members(g).unwrap().collect::<Vec<_>>(),
            vec![node(1), node(3)]
        );
    }

    #[test]
    fn group_id_displays_its_number() {
        assert_eq!(GroupId(42).to_string(), "42");
        assert_eq!(GroupId(42).get(), 42);
    }

    fn metadata_strategy() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
        proptest::collection::btree_map(
            prop_oneof![Just("a".to_string()), Just("b".to_string())],
            proptest::collection::vec(0u8..3, 0..3),
            0..3,
        )
    }

    fn criterion_strategy() -> impl Strategy<Value = Criterion> {
        let key = prop_oneof![Just("a".to_string()), Just("b".to_string())];
        let bytes = proptest::collection::vec(0u8..3, 0..3);
        (0u8..4, key, bytes).prop_map(|(kind, key, bytes)| match kind {
            0 => Criterion::Equals { key, value: bytes },
            1 => Criterion::Exists { key },
            2 => Criterion::Prefix { key, prefix: bytes },
            _ => Criterion::Contains { key, needle: bytes },
        })
    }

    fn text_criterion_strategy() -> impl Strategy<Value = Criterion> {
        let key = proptest::collection::vec(any::<char>(), 1..6).prop_map(String::from_iter);
        let bytes = proptest::collection::vec(any::<u8>(), 0..8);
        let text = proptest::collection::vec(any::<char>(), 0..6)
            .prop_map(|cs| String::from_iter(cs).into_bytes());
        (0u8..4, key, prop_oneof![bytes, text]).prop_map(|(kind, key, bytes)| match kind {
            0 => Criterion::Equals { key, value: bytes },
            1 => Criterion::Exists { key },
            2 => Criterion::Prefix { key, prefix: bytes },
            _ => Criterion::Contains { key, needle: bytes },
        })
    }

    type Update = (u8, Option<BTreeMap<String, Vec<u8>>>);

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// After any sequence of updates, each group holds exactly the nodes whose latest update
        /// was live metadata matching its spec, and replaying its events from empty (with
        /// strict checks: no Added twice, Removed/Updated only for members) gives the same set.
        #[test]
        fn membership_tracks_latest_updates(
            criteria in proptest::collection::vec(criterion_strategy(), 0..3),
            before in proptest::collection::vec((0u8..8, proptest::option::of(metadata_strategy())), 0..12),
            after in proptest::collection::vec((0u8..8, proptest::option::of(metadata_strategy())), 0..40),
        ) {
            let spec = GroupSpec { criteria };
            let mut latest: BTreeMap<u8, Option<BTreeMap<String, Vec<u8>>>> = BTreeMap::new();
            let apply = |latest: &mut BTreeMap<_, _>, (n, m): &Update| {
                latest.insert(*n, m.clone());
            };
            for update in &before {
                apply(&mut latest, update);
            }

            let mut groups = Groups::new();
            let live: Vec<_> = latest
                .iter()
                .filter_map(|(n, m)| m.as_ref().map(|m| (node(*n), m)))
                .collect();
            let (g, initial) = groups.define(spec.clone(), live.iter().map(|(n, m)| (*n, *m))).unwrap();
            let (all, initial_all) = groups.define(GroupSpec::default(), live.iter().map(|(n, m)| (*n, *m))).unwrap();

            let mut replayed: BTreeMap<GroupId, BTreeSet<NodeId>> = BTreeMap::new();
            let replay = |groups: &mut Groups, replayed: &mut BTreeMap<GroupId, BTreeSet<NodeId>>, events: Vec<GroupEvent>| -> Result<(), TestCaseError> {
                for e in events {
                    let set = replayed.entry(e.group).or_default();
                    match e.change {
                        GroupChange::Added => {
                            prop_assert!(set.insert(e.node), "Added twice: {:?}", e);
                            prop_assert_eq!(groups.data(e.group, e.node), None, "stale data");
                            // Attach data to every new membership; it must vanish on removal.
                            prop_assert!(groups.set_data(e.group, e.node, e.node.as_bytes().to_vec()));
                        }
                        GroupChange::Removed => prop_assert!(set.remove(&e.node), "Removed non-member: {:?}", e),
                        GroupChange::Updated => prop_assert!(set.contains(&e.node), "Updated non-member: {:?}", e),
                    }
                }
                Ok(())
            };
            replay(&mut groups, &mut replayed, initial)?;
            replay(&mut groups, &mut replayed, initial_all)?;

            let check = |groups: &Groups, latest: &BTreeMap<u8, Option<BTreeMap<String, Vec<u8>>>>, replayed: &BTreeMap<GroupId, BTreeSet<NodeId>>| -> Result<(), TestCaseError> {
                for (group, spec) in [(g, &spec), (all, &GroupSpec::default())] {
                    let expected: BTreeSet<NodeId> = latest
                        .iter()
                        .filter(|(_, m)| m.as_ref().is_some_and(|m| spec.matches(m)))
                        .map(|(n, _)| node(*n))
                        .collect();
                    let actual: BTreeSet<NodeId> = groups.members(group).unwrap().collect();
                    prop_assert_eq!(&actual, &expected);
                    prop_assert_eq!(groups.len(group), Some(expected.len()));
                    let empty = BTreeSet::new();
                    prop_assert_eq!(replayed.get(&group).unwrap_or(&empty), &expected);
                    for n in 0..8 {
                        let member = expected.contains(&node(n));
                        prop_assert_eq!(groups.contains(group, node(n)), member);
                        let id = node(n);
                        let data = groups.data(group, id);
                        prop_assert_eq!(data, member.then_some(&id.as_bytes()[..]));
                    }
                }
                Ok(())
            };
            check(&groups, &latest, &replayed)?;

            for update in &after {
                let events = groups.member_changed(node(update.0), update.1.as_ref());
                prop_assert!(events.iter().all(|e| e.node == node(update.0)));
                prop_assert!(events.windows(2).all(|w| w[0].group < w[1].group));
                apply(&mut latest, update);
                replay(&mut groups, &mut replayed, events)?;
                check(&groups, &latest, &replayed)?;
            }
        }

        #[test]
        fn text_form_round_trips(criteria in proptest::collection::vec(text_criterion_strategy(), 0..4)) {
            let spec = GroupSpec { criteria };
            let text = spec.to_string();
            prop_assert_eq!(text.parse::<GroupSpec>(), Ok(spec), "text: {:?}", text);
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Ok(spec) = text.parse::<GroupSpec>() {
                prop_assert_eq!(spec.to_string().parse::<GroupSpec>(), Ok(spec));
            }
        }
    }
}
