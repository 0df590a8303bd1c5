//! State the transport tasks share with the driver.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gossip_core::Identity;
use gossip_core::link::LinkDrop;
use gossip_core::link::handshake::Versions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::DriverLimits;
use crate::conn::{ConnId, Input};

/// Read-mostly state every task of one node holds.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Signs this node's half of every connection's handshake.
    pub(crate) identity: Identity,
    /// The versions this node's handshakes announce, and the peers' must overlap.
    pub(crate) versions: Versions,
    pub(crate) limits: DriverLimits,
    pub(crate) inbound: mpsc::Sender<Input>,
    /// Cancelled when the node stops: every task ends.
    pub(crate) cancel: CancellationToken,
    pub(crate) token: Option<String>,
    pub(crate) dial_token: Option<String>,
    /// The `ws://`/`wss://` seeds of this node's own configuration: the only URLs the dial token
    /// is presented to (an address learned from a peer could be anyone's).
    pub(crate) token_seeds: Vec<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) admission: Option<crate::Admission>,
    /// TLS settings for `wss://` dials when extra roots are trusted (`None`: the library's own,
    /// with the public web roots).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    conn_ids: AtomicU64,
    /// Connections of proven members, and those this node dialed (`max_connections`).
    open: AtomicUsize,
    /// Accepted connections that have not proven membership yet (`max_pending_connections`).
    pending: AtomicUsize,
    pub(crate) sent: SentCounters,
    drops: Mutex<BTreeMap<&'static str, u64>>,
}

/// How frames left this node.
#[derive(Debug, Default)]
pub(crate) struct SentCounters {
    pub(crate) udp: AtomicU64,
    pub(crate) udp_max: AtomicU64,
    pub(crate) reliable: AtomicU64,
}

impl SentCounters {
    pub(crate) fn datagram(&self, len: usize) {
        self.udp.fetch_add(1, Ordering::Relaxed);
        self.udp_max.fetch_max(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn reliable(&self) {
        self.reliable.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.udp.load(Ordering::Relaxed),
            self.udp_max.load(Ordering::Relaxed),
            self.reliable.load(Ordering::Relaxed),
        )
    }
}

/// A connection's place in one of the two budgets, given back when the last holder (the
/// connection's task, the driver) drops it.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<Shared>,
    established: AtomicBool,
}

impl Slot {
    /// Moves an accepted connection whose peer proved membership from the pending budget to the
    /// established one, if that has room (checked and counted in one step). `false`: no room,
    /// the slot stays pending.
    pub(crate) fn establish(&self) -> bool {
        if self.established.load(Ordering::Acquire) {
            return true;
        }
        if !reserve(&self.shared.open, self.shared.limits.max_connections) {
            return false;
        }
        self.established.store(true, Ordering::Release);
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = if self.established.load(Ordering::Acquire) {
            &self.shared.open
        } else {
            &self.shared.pending
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts one more in `counter` if it is below `max`, in one step: checking then counting let a
/// burst of accepts overshoot the limit.
fn reserve(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        identity: Identity,
        versions: Versions,
        limits: DriverLimits,
        inbound: mpsc::Sender<Input>,
        token: Option<String>,
        dial_token: Option<String>,
        token_seeds: Vec<String>,
        allowed_origins: Vec<String>,
        admission: Option<crate::Admission>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Shared {
        Shared {
            identity,
            versions,
            limits,
            inbound,
            cancel: CancellationToken::new(),
            token,
            dial_token,
            token_seeds,
            allowed_origins,
            admission,
            tls,
            conn_ids: AtomicU64::new(1),
            sent: SentCounters::default(),
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            drops: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection as established (a dial, which the driver checked against the limit).
    pub(crate) fn connection_opened(self: &Arc<Self>) -> Arc<Slot> {
        self.open.fetch_add(1, Ordering::AcqRel);
        Arc::new(Slot {
            shared: self.clone(),
            established: AtomicBool::new(true),
        })
    }

    /// Counts an inbound connection as pending if the pending budget allows, in one step when it
    /// is accepted. Pending connections have a budget of their own, so silent or unproven
    /// connections never take the slots of members' connections.
    pub(crate) fn try_open(self: &Arc<Self>) -> Option<Arc<Slot>> {
        reserve(&self.pending, self.limits.max_pending_connections).then(|| {
            Arc::new(Slot {
                shared: self.clone(),
                established: AtomicBool::new(false),
            })
        })
    }

    /// Accepted connections that have not proven membership yet.
    pub(crate) fn pending_connections(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The dial token, if `url` is one of this node's own seeds.
    pub(crate) fn dial_token_for(&self, url: &str) -> Option<&str> {
        self.dial_token
            .as_deref()
            .filter(|_| self.token_seeds.iter().any(|s| s == url))
    }

    /// Whether another connection may be opened.
    pub(crate) fn has_room(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.limits.max_connections
    }

    /// Counts a drop at the driver level (the engine counts its own in `Stats::drops`).
    pub(crate) fn count_drop(&self, reason: LinkDrop) {
        let reason = reason.as_str();
        metrics::counter!("gossip_drops_total", "reason" => reason).increment(1);
        *self
            .drops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_insert(0) += 1;
    }

    pub(crate) fn drops(&self) -> BTreeMap<&'static str, u64> {
        self.drops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
