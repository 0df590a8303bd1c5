//! Key ownership from the node: who owns a key among the live members or a group's, and
//! watches that report when the owners of some keys change (`crate::ownership`).
//!
//! Live means alive or suspect, as for groups: a suspicion that is refuted moves no key, and
//! one that ends in a death moves keys once. Dead and left members own nothing.

use super::Node;
use crate::event::Event;
use crate::groups::{GroupChange, GroupEvent, GroupId};
use crate::identity::NodeId;
use crate::ownership::{Initial, OwnershipError, Placement, Scope, WatchId, Watches};

/// The live members as candidates, and the open watches.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    pub(super) placement: Placement,
    watches: Watches,
}

impl Ownership {
    /// A node starts as the only live member it knows.
    pub(super) fn new(me: NodeId) -> Self {
        let mut placement = Placement::new();
        placement.insert(me);
        Ownership {
            placement,
            watches: Watches::new(),
        }
    }
}

impl Node {
    /// The owner of `key` among the live members (this node included): the first of
    /// [`Node::owners`]. `None` only when no member is live (after this node left).
    pub fn owner(&self, key: &[u8]) -> Option<NodeId> {
        self.owners(key, 1).pop()
    }

    /// The `n` owners of `key` among the live members (alive or suspect, this node included),
    /// best first; all of them, ranked, when fewer than `n` are live. Every member with the same
    /// view gives the same answer.
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        self.ownership.placement.owners(key, n)
    }

    /// The `n` owners of `key` among the members of `group`, best first.
    pub fn owners_in(
        &self,
        group: GroupId,
        key: &[u8],
        n: usize,
    ) -> Result<Vec<NodeId>, OwnershipError> {
        let candidates = self.group_candidates(group)?;
        Ok(
            crate::ownership::top(crate::ownership::key_hash(key), &candidates, n)
                .into_iter()
                .map(|(_, id)| id)
                .collect(),
        )
    }

    /// Watches the `n` owners of each of `keys` among the live members (`group: None`) or the
    /// members of a group. Returns the watch and each key's owners now; every later change
    /// arrives as one [`Event::OwnershipChanged`] per watch and membership change, with each
    /// moved key's old and new owners. Closing the group closes its watches.
    pub fn ownership_watch(
        &mut self,
        keys: Vec<Vec<u8>>,
        n: usize,
        group: Option<GroupId>,
    ) -> Result<(WatchId, Initial), OwnershipError> {
        let (scope, candidates) = match group {
            None => (Scope::All, self.ownership.placement.members().to_vec()),
            Some(g) => (Scope::Group(g), self.group_candidates(g)?),
        };
        self.ownership.watches.open(keys, n, scope, &candidates)
    }

    /// Closes an ownership watch; returns whether it was open.
    pub fn ownership_unwatch(&mut self, watch: WatchId) -> bool {
        self.ownership.watches.close(watch)
    }

    fn group_candidates(&self, group: GroupId) -> Result<Vec<(NodeId, u64)>, OwnershipError> {
        let members = self
            .groups
            .members(group)
            .ok_or(OwnershipError::UnknownGroup(group))?;
        Ok(self.ownership.placement.subset(members))
    }

    /// A group was removed: its watches can no longer be kept current.
    pub(super) fn ownership_group_removed(&mut self, group: GroupId) {
        self.ownership.watches.close_scope(group);
    }

    /// `id` may have come up or gone down, and `groups` are the group changes that followed
    /// (hook in `regroup`): update the candidates and report moved keys to the watches.
    pub(super) fn ownership_member_changed(&mut self, id: NodeId, groups: &[GroupEvent]) {
        let live = self.members.get(&id).is_some_and(|m| !m.state.is_down());
        let mut moved = Vec::new();
        if live {
            if let Some(hash) = self.ownership.placement.insert(id) {
                moved.extend(self.ownership.watches.joined(Scope::All, id, hash));
            }
        } else if self.ownership.placement.remove(&id) {
            let candidates = self.ownership.placement.members();
            moved.extend(self.ownership.watches.left(Scope::All, id, candidates));
        }
        for e in groups {
            let scope = Scope::Group(e.group);
            if !self.ownership.watches.watches_scope(scope) {
                continue;
            }
            match e.change {
                GroupChange::Added => {
                    if let Some(hash) = self.ownership.placement.hash_of(&e.node) {
                        moved.extend(self.ownership.watches.joined(scope, e.node, hash));
                    }
                }
                GroupChange::Removed => {
                    let Ok(candidates) = self.group_candidates(e.group) else {
                        continue;
                    };
                    moved.extend(self.ownership.watches.left(scope, e.node, &candidates));
                }
                GroupChange::Updated => {}
            }
        }
        for (watch, changes) in moved {
            self.shell
                .push_event(Event::OwnershipChanged { watch, changes });
        }
    }
}
