//! Named endpoints from the handle: register a name, resolve it, and send a request or open a
//! stream to its holders by name (see `docs/ENDPOINTS.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use gossip_core::NodeId;
use gossip_core::endpoints::{EndpointError, Holder, Policy, key_of};
use tokio::sync::{mpsc, oneshot};

use crate::driver::Job;
use crate::error::GossipError;
use crate::handle::Gossip;
use crate::state::{StateChange, StateWatch};
use crate::stream::GossipStream;

/// The answer of one holder to [`Gossip::request_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointReply {
    /// The holder.
    pub from: NodeId,
    /// Its answer, or why there is none (timeout, the holder died or left...).
    pub result: Result<Vec<u8>, GossipError>,
}

impl Gossip {
    /// Registers `name` as held by this member: every member resolves it to this one within a
    /// few gossip rounds, until [`Gossip::unregister_endpoint`], or this member's death or leave.
    /// `Ok(false)` if it already held it. Requests by name arrive as
    /// [`Event::Request`] whose topic is the name; streams by name as
    /// [`Gossip::accept_stream`] does.
    pub async fn register_endpoint(&self, name: impl Into<String>) -> Result<bool, GossipError> {
        let name = name.into();
        self.with_node(move |n, now| n.endpoint_register(now, &name))
            .await?
            .map_err(Into::into)
    }

    /// Stops holding `name`; `Ok(false)` if this member did not hold it.
    pub async fn unregister_endpoint(&self, name: impl Into<String>) -> Result<bool, GossipError> {
        let name = name.into();
        self.with_node(move |n, now| n.endpoint_unregister(now, &name))
            .await?
            .map_err(Into::into)
    }

    /// The live holders of `name` as this node sees them (itself included if it holds it),
    /// with their state and round-trip time.
    pub async fn resolve(&self, name: impl Into<String>) -> Result<Vec<Holder>, GossipError> {
        let name = name.into();
        self.with_node(move |n, _| n.endpoint_holders(&name))
            .await?
            .map_err(Into::into)
    }

    /// Every name a live member holds, with its number of holders.
    pub async fn endpoints(&self) -> Result<BTreeMap<String, usize>, GossipError> {
        self.with_node(|n, _| n.endpoint_names()).await
    }

    /// Sends a request (topic: the name) to the holder(s) of `name` picked by `policy`, this
    /// node excluded, and waits for the answers: one reply for [`Policy::Any`] and
    /// [`Policy::Nearest`], one per live holder for [`Policy::All`], each an answer or why there
    /// is none (all share `timeout`). `Err` when nobody else holds the name.
    ///
    /// ```no_run
    /// # async fn f(gossip: gossip_server::Gossip) -> Result<(), gossip_server::GossipError> {
    /// use gossip_server::gossip_core::endpoints::Policy;
    /// let replies = gossip
    ///     .request_endpoint("orders", Policy::Nearest, b"count".to_vec(),
    ///                       std::time::Duration::from_secs(2))
    ///     .await?;
    /// println!("{:?}", replies[0].result);
    /// # Ok(()) }
    /// ```
    pub async fn request_endpoint(
        &self,
        name: impl Into<String>,
        policy: Policy,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Vec<EndpointReply>, GossipError> {
        let (name, payload) = (name.into(), payload.into());
        let waiting = self
            .with_driver(move |d| {
                let targets = d.node.endpoint_pick(&name, policy)?;
                let mut waiting = Vec::with_capacity(targets.len());
                for to in targets {
                    let (tx, rx) = oneshot::channel();
                    d.request(to, &name, payload.clone(), timeout, tx);
                    waiting.push((to, rx));
                }
                Ok::<_, EndpointError>(waiting)
            })
            .await??;
        let mut replies = Vec::with_capacity(waiting.len());
        // Every request is under way in the driver already: waiting in turn costs no time.
        for (from, rx) in waiting {
            let result = rx.await.unwrap_or(Err(GossipError::Stopped));
            replies.push(EndpointReply { from, result });
        }
        Ok(replies)
    }

    /// Opens a stream to the holder of `name` picked by `policy` ([`Policy::Any`] or
    /// [`Policy::Nearest`]; [`Policy::All`] is refused), and waits until it accepts.
    pub async fn open_stream_to_endpoint(
        &self,
        name: impl Into<String>,
        policy: Policy,
    ) -> Result<GossipStream, GossipError> {
        let name = name.into();
        let (tx, rx) = oneshot::channel();
        self.with_driver(move |d| {
            if policy == Policy::All {
                return Err(EndpointError::NotOne);
            }
            let to = d.node.endpoint_pick(&name, policy)?[0];
            d.open_stream(to, tx);
            Ok(())
        })
        .await??;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Watches the holders of `name`: the live holders now ([`EndpointWatch::holders`]), then
    /// every change of that set (a registration, an unregister, a holder's death or leave).
    pub async fn watch_endpoint(
        &self,
        name: impl Into<String>,
    ) -> Result<EndpointWatch, GossipError> {
        let name = name.into();
        self.resolve(name.clone()).await?;
        let key = key_of(&name);
        let state = self.state_watch(key.clone()).await?;
        let holders = holder_ids(self.weak_jobs(), name.clone()).await?;
        Ok(EndpointWatch {
            holders,
            key,
            name,
            state,
            jobs: self.weak_jobs(),
        })
    }
}

/// The holders of one name and their changes (see [`Gossip::watch_endpoint`]). Closes its
/// engine watch when dropped.
#[derive(Debug)]
pub struct EndpointWatch {
    /// The live holders, in id order, as of the last change returned.
    pub holders: Vec<NodeId>,
    key: String,
    name: String,
    state: StateWatch,
    jobs: mpsc::WeakSender<Job>,
}

impl EndpointWatch {
    /// Waits until the set of holders changes and returns it (also in
    /// [`EndpointWatch::holders`]); `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Vec<NodeId>> {
        loop {
            match self.state.next().await? {
                StateChange::Key { key, .. } if key != self.key => continue,
                StateChange::Key { .. } | StateChange::Cleared { .. } | StateChange::Lagged => {}
            }
            // Read back from the engine rather than patched from the event: it is the view
            // `resolve` gives, and it repairs whatever a lag lost.
            let now = holder_ids(self.jobs.clone(), self.name.clone())
                .await
                .ok()?;
            if now != self.holders {
                self.holders = now.clone();
                return Some(now);
            }
        }
    }
}

async fn holder_ids(jobs: mpsc::WeakSender<Job>, name: String) -> Result<Vec<NodeId>, GossipError> {
    let jobs = jobs.upgrade().ok_or(GossipError::Stopped)?;
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |d| {
        let ids = d
            .node
            .endpoint_holders(&name)
            .map(|hs| hs.into_iter().map(|h| h.id).collect::<Vec<_>>());
        let _ = tx.send(ids);
    });
    jobs.send(job).await.map_err(|_| GossipError::Stopped)?;
    rx.await
        .map_err(|_| GossipError::Stopped)?
        .map_err(Into::into)
}
