//! Leader election from the handle: a task that ticks `gossip_core::election::Election` with
//! the node and publishes this member's lease (docs/ELECTION.md).

use std::time::{Duration, Instant as StdInstant};

use gossip_core::election::{Election, ElectionConfig, ElectionError};
use gossip_core::state::StateError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::GossipError;
use crate::handle::Gossip;

/// Why [`Gossip::elect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectError {
    /// The configuration was refused (voters, name, lease).
    #[error(transparent)]
    Config(#[from] ElectionError),
    /// The node has stopped.
    #[error(transparent)]
    Gossip(#[from] GossipError),
}

/// This member's lease, as the election task last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The term it leads in.
    pub term: u64,
    /// When the lease ends unless renewed, on this process's clock (never later than the
    /// engine's own view of it).
    pub until: StdInstant,
}

/// A running election (from [`Gossip::elect`]). Dropping it stops the task: this member stops
/// voting and bidding, and its lease (if any) ends by itself.
#[derive(Debug)]
pub struct Leadership {
    lease: watch::Receiver<Option<Lease>>,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Leadership {
    /// Whether this member leads now. Check it right before each action taken as leader.
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// The term this member leads in now (a fencing token: a later leader has a higher term
    /// unless voters restarted in between, see docs/ELECTION.md), if it leads.
    pub fn term(&self) -> Option<u64> {
        let lease = *self.lease.borrow();
        lease
            .filter(|l| StdInstant::now() < l.until)
            .map(|l| l.term)
    }

    /// Waits until the lease changes: elected, renewed with a new end, or lost.
    pub async fn changed(&mut self) -> Option<Lease> {
        let _ = self.lease.changed().await;
        *self.lease.borrow_and_update()
    }

    /// Stops the task, deleting this member's bid; its lease ends at once.
    pub async fn resign(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gossip {
    /// Joins the election `config` names and ticks it in a task: ten times per lease (every
    /// 20 ms at least), reading and writing the replicated state. Every member of the
    /// election must be given the same configuration; members not among its voters follow it
    /// without voting.
    ///
    /// ```no_run
    /// # async fn f(gossip: gossip_server::Gossip, voters: Vec<gossip_server::gossip_core::NodeId>)
    /// # -> Result<(), gossip_server::ElectError> {
    /// use gossip_server::gossip_core::election::ElectionConfig;
    /// let leadership = gossip.elect(ElectionConfig::new("scheduler", voters)).await?;
    /// if leadership.is_leader() {
    ///     // run the scheduler for this round
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn elect(&self, config: ElectionConfig) -> Result<Leadership, ElectError> {
        let every = Duration::from_millis((config.lease_ms / 10).max(20));
        let me = self.id();
        let election = self
            .with_node(move |_, now| Election::new(now, me, config))
            .await??;
        let (tx, lease) = watch::channel(None);
        let (stop, mut stopped) = watch::channel(false);
        let gossip = self.clone();
        let task = tokio::spawn(async move {
            let mut election = election;
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => {
                        let _ = gossip
                            .with_node(move |n, now| election.resign(n, now))
                            .await;
                        let _ = tx.send(None);
                        return;
                    }
                }
                // Taken before the engine reads its clock: the lease mapped onto this clock
                // from here ends no later than the engine's.
                let before = StdInstant::now();
                let ticked = gossip
                    .with_node(move |n, now| {
                        let r = election.tick(n, now);
                        let left = election
                            .lease_until(now)
                            .map(|u| (u.micros_since(now), election.leader_term(now)));
                        (election, r, left)
                    })
                    .await;
                let Ok((e, result, left)) = ticked else {
                    let _ = tx.send(None);
                    return; // the node stopped
                };
                election = e;
                if let Err(err) = result {
                    tick_failed(&err);
                }
                let lease = left.and_then(|(micros, term)| {
                    Some(Lease {
                        term: term?,
                        until: before + Duration::from_micros(micros),
                    })
                });
                tx.send_if_modified(|old| {
                    let changed = *old != lease;
                    *old = lease;
                    changed
                });
            }
        });
        Ok(Leadership { lease, task, stop })
    }
}

fn tick_failed(err: &StateError) {
    // A full map or a node that left: the election keeps trying, the lease lapses.
    tracing::warn!(%err, "election tick could not write its state");
}
