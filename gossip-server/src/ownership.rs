//! Key ownership from the handle: the owners of a key, and watches of the owners of some keys.

use std::collections::VecDeque;

use gossip_core::groups::GroupId;
use gossip_core::ownership::{OwnershipChange, OwnershipError, WatchId};
use gossip_core::{Event, NodeId};
use tokio::sync::{broadcast, mpsc};

use crate::driver::Job;
use crate::error::GossipError;
use crate::handle::Gossip;

/// What an [`OwnershipWatch`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipEvent {
    /// The owners of a watched key changed.
    Moved(OwnershipChange),
    /// The watch fell behind and missed changes: ask [`Gossip::owners`] again for its keys.
    Lagged,
}

/// Changes of the owners of some keys. Closes its engine watch when dropped.
#[derive(Debug)]
pub struct OwnershipWatch {
    /// Each key's owners when the watch began, best first, in key order (duplicates once).
    pub initial: Vec<(Vec<u8>, Vec<NodeId>)>,
    events: broadcast::Receiver<Event>,
    pending: VecDeque<OwnershipChange>,
    id: WatchId,
    jobs: mpsc::WeakSender<Job>,
}

impl OwnershipWatch {
    /// The next change of a watched key's owners; `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<OwnershipEvent> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Some(OwnershipEvent::Moved(change));
            }
            match self.events.recv().await {
                Ok(Event::OwnershipChanged { watch, changes }) if watch == self.id => {
                    self.pending.extend(changes);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(OwnershipEvent::Lagged),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for OwnershipWatch {
    fn drop(&mut self) {
        let id = self.id;
        if let Some(jobs) = self.jobs.upgrade() {
            // A full queue leaves the watch open: it only costs the engine some bookkeeping.
            let _ = jobs.try_send(Box::new(move |d| {
                d.node.ownership_unwatch(id);
            }));
        }
    }
}

impl Gossip {
    /// The owner of `key` among the live members (alive or suspect, this node included), as
    /// this node sees them; see `docs/OWNERSHIP.md`.
    pub async fn owner(&self, key: impl Into<Vec<u8>>) -> Result<Option<NodeId>, GossipError> {
        let key = key.into();
        self.with_node(move |n, _| n.owner(&key)).await
    }

    /// The `n` owners of `key` among the live members, best first (all of them when fewer).
    pub async fn owners(
        &self,
        key: impl Into<Vec<u8>>,
        n: usize,
    ) -> Result<Vec<NodeId>, GossipError> {
        let key = key.into();
        self.with_node(move |node, _| node.owners(&key, n)).await
    }

    /// The `n` owners of `key` among the members of `group` (defined with
    /// `with_node(|n, _| n.groups().define(spec))`), best first.
    pub async fn owners_in(
        &self,
        group: GroupId,
        key: impl Into<Vec<u8>>,
        n: usize,
    ) -> Result<Vec<NodeId>, GossipError> {
        let key = key.into();
        self.with_node(move |node, _| node.owners_in(group, &key, n))
            .await?
            .map_err(Into::into)
    }

    /// Watches the `n` owners of each of `keys` among the live members (`group: None`) or a
    /// group's: their owners now ([`OwnershipWatch::initial`]) and every change after that,
    /// with nothing lost in between.
    pub async fn ownership_watch(
        &self,
        keys: Vec<Vec<u8>>,
        n: usize,
        group: Option<GroupId>,
    ) -> Result<OwnershipWatch, GossipError> {
        let events = self.event_sender();
        let jobs = self.weak_jobs();
        self.with_driver(move |d| {
            d.drain();
            let (id, initial) = d.node.ownership_watch(keys, n, group)?;
            Ok::<_, OwnershipError>(OwnershipWatch {
                initial,
                events: events.subscribe(),
                pending: VecDeque::new(),
                id,
                jobs,
            })
        })
        .await?
        .map_err(Into::into)
    }
}
