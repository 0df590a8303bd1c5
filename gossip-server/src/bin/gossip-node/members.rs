//! Which member a command means: a name, a whole id, or a unique prefix of an id (`members`
//! prints the first ten characters).

use gossip_core::NodeId;
use gossip_server::MemberStatus;

/// What [`resolve`] looks at of a member.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub short: &'a str,
    pub name: &'a str,
    pub state: &'a str,
}

impl<'a> From<&'a MemberStatus> for Candidate<'a> {
    fn from(m: &'a MemberStatus) -> Self {
        Candidate {
            id: &m.id,
            short: &m.short,
            name: &m.name,
            state: m.state,
        }
    }
}

/// Finds the one member `word` names, or says why there is not exactly one.
///
/// A name beats an id prefix (names are what people type). Among members of the same name, the
/// ones not dead or gone win: a restarted process comes back with a new id and the old one lingers
/// as dead for a while.
pub fn resolve(members: &[Candidate<'_>], word: &str) -> Result<NodeId, String> {
    if word.is_empty() {
        return Err("no member given".into());
    }
    let up = |m: &&Candidate<'_>| m.state == "alive" || m.state == "suspect";
    let named: Vec<&Candidate<'_>> = members.iter().filter(|m| m.name == word).collect();
    let named = if named.iter().any(up) {
        named.into_iter().filter(up).collect()
    } else {
        named
    };
    let found = if named.is_empty() {
        let prefix = word.to_ascii_lowercase();
        members
            .iter()
            .filter(|m| m.id.starts_with(&prefix))
            .collect()
    } else {
        named
    };
    match found.as_slice() {
        [one] => one
            .id
            .parse()
            .map_err(|e| format!("member {:?} has a bad id {:?}: {e}", one.name, one.id)),
        [] => Err(format!(
            "no member is named {word:?} or has an id starting with it (see `members`)"
        )),
        many => Err(format!(
            "{word:?} is ambiguous: it matches {}; give more of the id",
            many.iter()
                .map(|m| format!("{} ({}, {})", m.name, m.short, m.state))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &'static str, id_byte: u8, state: &'static str) -> Candidate<'static> {
        let id: &'static str = NodeId::from_bytes([id_byte; 32]).to_string().leak();
        Candidate {
            id,
            short: &id[..10],
            name,
            state,
        }
    }

    fn id(byte: u8) -> NodeId {
        NodeId::from_bytes([byte; 32])
    }

    #[test]
    fn names_whole_ids_and_unique_prefixes() {
        // In base32, [0; 32] is "aaaa...", [1; 32] "aeaq..." and [0xff; 32] "7777...".
        let ms = [
            member("a", 0, "alive"),
            member("b", 1, "alive"),
            member("c", 0xff, "alive"),
        ];
        assert_eq!(resolve(&ms, "b"), Ok(id(1)));
        assert_eq!(resolve(&ms, &id(1).to_string()), Ok(id(1)));
        assert_eq!(resolve(&ms, "7"), Ok(id(0xff)));
        // Prefixes are case-insensitive, as people copy ids by hand.
        assert_eq!(
            resolve(&ms, &id(0).to_string()[..12].to_ascii_uppercase()),
            Ok(id(0))
        );
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let ms = [member("x", 0, "alive"), member("y", 1, "suspect")];
        let err = resolve(&ms, "a").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains(&format!("x ({}, alive)", ms[0].short)),
            "{err}"
        );
        assert!(
            err.contains(&format!("y ({}, suspect)", ms[1].short)),
            "{err}"
        );
        assert_eq!(resolve(&ms, "ae"), Ok(id(1)));
    }

    #[test]
    fn unknown_and_empty_are_errors() {
        let ms = [member("a", 0, "alive")];
        assert!(resolve(&ms, "zzz").unwrap_err().contains("no member"));
        assert!(resolve(&ms, "").is_err());
    }

    #[test]
    fn a_live_member_beats_a_dead_one_of_the_same_name() {
        let ms = [member("web", 0, "dead"), member("web", 0xff, "alive")];
        assert_eq!(resolve(&ms, "web"), Ok(id(0xff)));
        let both_up = [member("web", 0, "alive"), member("web", 0xff, "alive")];
        assert!(resolve(&both_up, "web").unwrap_err().contains("ambiguous"));
    }
}
