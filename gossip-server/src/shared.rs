//! State the transport tasks share with the driver.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gossip_core::NodeId;
use gossip_core::link::LinkDrop;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::DriverLimits;
use crate::conn::{ConnId, Input};

/// Read-mostly state every task of one node holds.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) limits: DriverLimits,
    pub(crate) inbound: mpsc::Sender<Input>,
    /// Cancelled when the node stops: every task ends.
    pub(crate) cancel: CancellationToken,
    pub(crate) token: Option<String>,
    pub(crate) dial_token: Option<String>,
    pub(crate) allowed_origins: Vec<String>,
    /// TLS settings for `wss://` dials when extra roots are trusted (`None`: the library's own,
    /// with the public web roots).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    conn_ids: AtomicU64,
    open: AtomicUsize,
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

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn new(
        id: NodeId,
        limits: DriverLimits,
        inbound: mpsc::Sender<Input>,
        token: Option<String>,
        dial_token: Option<String>,
        allowed_origins: Vec<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Shared {
        Shared {
            id,
            limits,
            inbound,
            cancel: CancellationToken::new(),
            token,
            dial_token,
            allowed_origins,
            tls,
            conn_ids: AtomicU64::new(1),
            sent: SentCounters::default(),
            open: AtomicUsize::new(0),
            drops: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection as open (a dial, which the driver checked against the limit).
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// Counts an inbound connection as open if the limit allows. Checked and counted in one
    /// step when it is accepted: counting only once its task runs let a burst of accepts
    /// overshoot the limit.
    pub(crate) fn try_open(self: &Arc<Self>) -> Option<OpenGuard> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenGuard(self.clone()))
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
