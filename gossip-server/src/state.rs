//! The replicated state from the handle: set, delete, read, and watch keys by prefix.

use gossip_core::state::{StateValue, WatchId};
use gossip_core::{Event, NodeId};
use tokio::sync::{broadcast, mpsc};

use crate::driver::Job;
use crate::error::GossipError;
use crate::handle::Gossip;

/// A change of a watched key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// `key` of `owner`'s map was set, or deleted (`value` is `None`).
    Key {
        /// The member whose map it is.
        owner: NodeId,
        /// The key.
        key: String,
        /// The owner's version at the write.
        version: u64,
        /// The new value; `None` when deleted.
        value: Option<Vec<u8>>,
    },
    /// `owner`'s whole map was dropped (it died, left or restarted): forget its keys.
    Cleared {
        /// The member.
        owner: NodeId,
    },
    /// The watch fell behind and missed changes: read the state again
    /// ([`Gossip::state_entries`]) to resynchronise.
    Lagged,
}

/// Changes of the keys under one prefix, every owner's. Closes its engine watch when dropped.
#[derive(Debug)]
pub struct StateWatch {
    /// The matching keys of every owner when the watch began: `(owner, key, value, version)`.
    pub initial: Vec<(NodeId, StateValue)>,
    prefix: String,
    events: broadcast::Receiver<Event>,
    id: WatchId,
    jobs: mpsc::WeakSender<Job>,
}

impl StateWatch {
    /// The next change under the prefix; `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<StateChange> {
        loop {
            match self.events.recv().await {
                Ok(Event::StateChanged {
                    owner,
                    key,
                    version,
                    value,
                }) if key.starts_with(&self.prefix) => {
                    return Some(StateChange::Key {
                        owner,
                        key,
                        version,
                        value,
                    });
                }
                Ok(Event::StateCleared { owner }) => return Some(StateChange::Cleared { owner }),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(StateChange::Lagged),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        let id = self.id;
        if let Some(jobs) = self.jobs.upgrade() {
            // A full queue leaves the watch open: it only makes the engine report a little more.
            let _ = jobs.try_send(Box::new(move |d| {
                d.node.state_unwatch(id);
            }));
        }
    }
}

impl Gossip {
    /// Sets `key` in this member's replicated map; returns the write's version.
    pub async fn state_set(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, GossipError> {
        let (key, value) = (key.into(), value.into());
        self.with_node(move |n, now| n.state_set(now, &key, value))
            .await?
            .map_err(Into::into)
    }

    /// Deletes `key` from this member's replicated map; the write's version, or `None` if the
    /// key was not set.
    pub async fn state_delete(&self, key: impl Into<String>) -> Result<Option<u64>, GossipError> {
        let key = key.into();
        self.with_node(move |n, now| n.state_delete(now, &key))
            .await?
            .map_err(Into::into)
    }

    /// The value of `key` in `owner`'s map, as this node holds it.
    pub async fn state_get(
        &self,
        owner: NodeId,
        key: impl Into<String>,
    ) -> Result<Option<StateValue>, GossipError> {
        let key = key.into();
        self.with_node(move |n, _| n.state_get(&owner, &key)).await
    }

    /// Every live key of `owner`'s map, as this node holds it, in key order.
    pub async fn state_entries(&self, owner: NodeId) -> Result<Vec<StateValue>, GossipError> {
        self.with_node(move |n, _| n.state_entries(&owner)).await
    }

    /// Watches the keys starting with `prefix` in every member's map: the matching keys now
    /// ([`StateWatch::initial`]) and every change from that moment on, with nothing lost or
    /// repeated in between.
    pub async fn state_watch(&self, prefix: impl Into<String>) -> Result<StateWatch, GossipError> {
        let prefix = prefix.into();
        let events = self.event_sender();
        let jobs = self.weak_jobs();
        self.with_driver(move |d| {
            d.drain();
            let id = d.node.state_watch(&prefix)?;
            let initial = d
                .node
                .state_owners()
                .into_iter()
                .flat_map(|o| {
                    d.node
                        .state_entries(&o)
                        .into_iter()
                        .filter(|v| v.key.starts_with(&prefix))
                        .map(move |v| (o, v))
                })
                .collect();
            Ok::<_, gossip_core::state::StateError>(StateWatch {
                initial,
                prefix,
                events: events.subscribe(),
                id,
                jobs,
            })
        })
        .await?
        .map_err(Into::into)
    }
}
