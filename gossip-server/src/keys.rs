//! Cluster-key rotation on a running node: add a key, make it primary, remove the old one, each
//! on every member before the next step (the procedure is in docs/SECURITY.md).

use gossip_core::error::KeyringError;
use gossip_core::keyring::MAX_KEYS;
use gossip_core::{ClusterKey, Keyring};

use crate::error::{GossipError, StartError};
use crate::handle::Gossip;

/// The ring a node starts with: `primary` encrypts, `accepted` only decrypt.
pub(crate) fn ring(
    primary: Option<ClusterKey>,
    accepted: Vec<ClusterKey>,
) -> Result<Keyring, StartError> {
    let Some(primary) = primary else {
        if accepted.is_empty() {
            return Ok(Keyring::unencrypted());
        }
        return Err(StartError::Config(
            "accepted keys without a cluster key: set the primary key too".into(),
        ));
    };
    build(primary, accepted).map_err(|e| StartError::Config(format!("cluster keys: {e}")))
}

fn build(primary: ClusterKey, accepted: Vec<ClusterKey>) -> Result<Keyring, KeyringError> {
    let mut ring = Keyring::new(primary);
    for key in accepted {
        ring.add(key)?;
    }
    Ok(ring)
}

/// Keyring rotation. Each method returns the number of keys the ring holds afterwards.
impl Gossip {
    /// Accepts frames sealed with `key` too (step 1 of a rotation, on every member).
    pub async fn add_key(&self, key: ClusterKey) -> Result<usize, GossipError> {
        self.change_keys(move |ring| ring.add(key)).await
    }

    /// Encrypts with `key` from now on, adding it if needed; the previous primary stays accepted
    /// (step 2, once every member has the key).
    pub async fn use_key(&self, key: ClusterKey) -> Result<usize, GossipError> {
        self.change_keys(move |ring| ring.use_primary(key)).await
    }

    /// Stops accepting `key` (step 3, once every member encrypts with the new one). The primary
    /// cannot be removed.
    pub async fn remove_key(&self, key: ClusterKey) -> Result<usize, GossipError> {
        self.change_keys(move |ring| ring.remove(&key)).await
    }

    /// Replaces the whole ring: the first key encrypts, the others are accepted (what
    /// `gossip-node` does when it re-reads its key file). Nothing changes on an error.
    pub async fn set_keys(&self, keys: Vec<ClusterKey>) -> Result<usize, GossipError> {
        self.change_keys(move |ring| {
            let mut keys = keys.into_iter();
            let primary = keys.next().ok_or(KeyringError::RemovePrimary)?;
            *ring = build(primary, keys.collect())?;
            Ok(())
        })
        .await
    }

    /// How many keys the ring holds (0: plain-text mode).
    pub async fn key_count(&self) -> Result<usize, GossipError> {
        self.with_node(|node, _| node.keyring_mut().len()).await
    }

    async fn change_keys(
        &self,
        f: impl FnOnce(&mut Keyring) -> Result<(), KeyringError> + Send + 'static,
    ) -> Result<usize, GossipError> {
        self.with_node(move |node, _| {
            let ring = node.keyring_mut();
            if !ring.is_encrypted() {
                return Err(GossipError::Unencrypted);
            }
            f(ring)?;
            debug_assert!(ring.is_encrypted() && ring.len() <= MAX_KEYS);
            tracing::info!(keys = ring.len(), "keyring changed");
            Ok(ring.len())
        })
        .await?
    }
}
