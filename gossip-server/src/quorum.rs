//! Quorum requests from the handle: one request to several members, one outcome.

use std::time::Duration;

use gossip_core::{NodeId, Quorum, QuorumOutcome};
use tokio::sync::oneshot;

use crate::error::GossipError;
use crate::handle::Gossip;

impl Gossip {
    /// Sends the same request (`topic`, `data`) to each of `members` and returns once `quorum`
    /// answers arrived or no longer can: members not alive when it starts, dead or leaving before
    /// they answer, or silent until `timeout`, count as failed. `outcome.reached` says which; the
    /// answers gathered by then are in `outcome.answered` (later ones are ignored). Members answer
    /// as they answer [`Gossip::request`] ([`Event::Request`](gossip_core::Event::Request),
    /// then [`Gossip::respond`]).
    ///
    /// ```no_run
    /// # async fn f(gossip: gossip_server::Gossip, peers: Vec<gossip_server::gossip_core::NodeId>)
    /// # -> Result<(), gossip_server::GossipError> {
    /// use gossip_server::gossip_core::Quorum;
    /// let outcome = gossip
    ///     .quorum_request(peers, "lock", b"orders".to_vec(), Quorum::Majority,
    ///                     std::time::Duration::from_secs(2))
    ///     .await?;
    /// if outcome.reached {
    ///     println!("granted by {} members", outcome.answered.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn quorum_request(
        &self,
        members: Vec<NodeId>,
        topic: impl Into<String>,
        data: impl Into<Vec<u8>>,
        quorum: Quorum,
        timeout: Duration,
    ) -> Result<QuorumOutcome, GossipError> {
        let (topic, data) = (topic.into(), data.into());
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let (tx, rx) = oneshot::channel();
        self.with_driver(move |d| {
            let now = d.now();
            let id = d
                .node
                .quorum_request(now, &members, &topic, data, quorum, timeout_ms)?;
            // Its outcome is read from the engine after this job, never before.
            d.quorums.insert(id, tx);
            Ok::<_, GossipError>(())
        })
        .await??;
        rx.await.map_err(|_| GossipError::Stopped)
    }
}
