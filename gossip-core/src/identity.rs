//! Node identity: an Ed25519 keypair whose public key is the node id.

use core::fmt;
use core::str::FromStr;

use ed25519_dalek::ed25519::signature::MultipartSigner;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// Length of a node id in bytes (an Ed25519 public key).
pub const NODE_ID_LEN: usize = 32;

/// Characters of the short text form returned by [`NodeId::short`].
pub const SHORT_ID_LEN: usize = 10;

/// A node's id: its Ed25519 public key.
///
/// Text form: lowercase RFC 4648 base32 without padding (52 characters), stable for the key's
/// lifetime. [`NodeId::short`] gives the first 10 characters for logs and UIs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "serde_bytes")] [u8; NODE_ID_LEN]);

impl NodeId {
    /// Wraps raw public-key bytes. Whether they are a valid key is checked when a signature is verified.
    pub const fn from_bytes(bytes: [u8; NODE_ID_LEN]) -> Self {
        NodeId(bytes)
    }

    /// The raw public-key bytes.
    pub const fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    /// The first [`SHORT_ID_LEN`] characters of the text form.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_LEN);
        s
    }

    /// Parses the key for verification, refusing invalid and weak (small-order) points, for which
    /// anyone could forge signatures.
    pub(crate) fn verifying_key(&self) -> Option<VerifyingKey> {
        let key = VerifyingKey::from_bytes(&self.0).ok()?;
        (!key.is_weak()).then_some(key)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase(),
        )
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// The text is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a node id: expected 52 base32 characters")]
pub struct ParseNodeIdError;

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| ParseNodeIdError)?;
        let bytes: [u8; NODE_ID_LEN] = bytes.try_into().map_err(|_| ParseNodeIdError)?;
        Ok(NodeId(bytes))
    }
}

/// A node's keypair. The secret never leaves this type except through [`Identity::secret_bytes`].
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    id: NodeId,
}

impl Identity {
    /// Generates a new identity from the driver's cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::from_secret_bytes(secret)
    }

    /// Restores an identity from its 32-byte secret (as returned by [`Identity::secret_bytes`]).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&secret);
        let id = NodeId(signing.verifying_key().to_bytes());
        Identity { signing, id }
    }

    /// The 32-byte secret, for persisting the identity across restarts.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// This node's id (its public key).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Signs the concatenation of `parts` without copying them together.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> Signature {
        self.signing
            .try_multipart_sign(parts)
            .expect("ed25519 signing with a valid key cannot fail")
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_is_stable() {
        let id = Identity::from_secret_bytes([7; 32]).id();
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short(), text[..SHORT_ID_LEN]);
        // Same secret, same id: the text form is a function of the key alone.
        assert_eq!(Identity::from_secret_bytes([7; 32]).id().to_string(), text);
        assert_ne!(Identity::from_secret_bytes([8; 32]).id(), id);
    }

    #[test]
    fn bad_text_is_refused() {
        assert!("".parse::<NodeId>().is_err());
        assert!("abc".parse::<NodeId>().is_err());
        assert!("1".repeat(52).parse::<NodeId>().is_err());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (0, 1) encodes as 0x01 followed by zeros: small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(NodeId::from_bytes(weak).verifying_key().is_none());
        assert!(
            Identity::from_secret_bytes([1; 32])
                .id()
                .verifying_key()
                .is_some()
        );
    }
}
