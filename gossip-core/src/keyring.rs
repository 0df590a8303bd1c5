//! Cluster keys: one primary key encrypts, every key in the ring decrypts, so a key can be rotated
//! without downtime (add the new key everywhere, make it primary everywhere, remove the old one).

use core::fmt;
use core::str::FromStr;

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use zeroize::Zeroize;

use crate::error::KeyringError;

/// Most keys a ring holds: a frame that no key opens costs one AEAD attempt per key.
pub const MAX_KEYS: usize = 8;

/// A 256-bit XChaCha20-Poly1305 cluster key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// Wraps 32 secret bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ClusterKey(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A 64-digit lowercase hex form, accepted back by `FromStr`.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl FromStr for ClusterKey {
    type Err = KeyringError;

    /// Accepts 64 hex digits or standard base64 of 32 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .or_else(|_| data_encoding::BASE64.decode(s.as_bytes()))
            .map_err(|_| KeyringError::Parse)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyringError::Parse)?;
        Ok(ClusterKey(bytes))
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The keys a node encrypts and decrypts with. An empty ring means plain-text (development) mode:
/// frames are still signed by their origin but anyone on the path can read them.
#[derive(Clone, Default)]
pub struct Keyring {
    /// `keys[0]` is the primary.
    keys: Vec<(ClusterKey, XChaCha20Poly1305)>,
}

impl Keyring {
    /// A ring that encrypts with `primary`.
    pub fn new(primary: ClusterKey) -> Self {
        let cipher = XChaCha20Poly1305::new(primary.as_bytes().into());
        Keyring {
            keys: vec![(primary, cipher)],
        }
    }

    /// Plain-text mode, for local development only.
    pub fn unencrypted() -> Self {
        Keyring::default()
    }

    /// Whether frames are encrypted (the ring has a primary key).
    pub fn is_encrypted(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty (plain-text mode).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a key accepted for decryption. Adding a key already present is a no-op.
    pub fn add(&mut self, key: ClusterKey) -> Result<(), KeyringError> {
        if self.position(&key).is_some() {
            return Ok(());
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::Full(MAX_KEYS));
        }
        let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
        self.keys.push((key, cipher));
        Ok(())
    }

    /// Makes `key` the primary, adding it if needed; the old primary stays accepted.
    pub fn use_primary(&mut self, key: ClusterKey) -> Result<(), KeyringError> {
        self.add(key.clone())?;
        let at = self.position(&key).ok_or(KeyringError::UnknownKey)?;
        self.keys[..=at].rotate_right(1);
        Ok(())
    }

    /// Removes an accepted key. The primary cannot be removed.
    pub fn remove(&mut self, key: &ClusterKey) -> Result<(), KeyringError> {
        match self.position(key) {
            Some(0) => Err(KeyringError::RemovePrimary),
            Some(at) => {
                self.keys.remove(at);
                Ok(())
            }
            None => Err(KeyringError::UnknownKey),
        }
    }

    fn position(&self, key: &ClusterKey) -> Option<usize> {
        self.keys.iter().position(|(k, _)| k == key)
    }

    pub(crate) fn primary(&self) -> Option<&XChaCha20Poly1305> {
        self.keys.first().map(|(_, c)| c)
    }

    pub(crate) fn ciphers(&self) -> impl Iterator<Item = &XChaCha20Poly1305> {
        self.keys.iter().map(|(_, c)| c)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes([b; 32])
    }

    #[test]
    fn rotation_keeps_old_key_until_removed() {
        let mut ring = Keyring::new(key(1));
        ring.use_primary(key(2)).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.remove(&key(2)), Err(KeyringError::RemovePrimary));
        ring.remove(&key(1)).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.remove(&key(1)), Err(KeyringError::UnknownKey));
    }

    #[test]
    fn ring_is_bounded() {
        let mut ring = Keyring::new(key(0));
        for b in 1..MAX_KEYS as u8 {
            ring.add(key(b)).unwrap();
        }
        assert_eq!(ring.add(key(200)), Err(KeyringError::Full(MAX_KEYS)));
        ring.add(key(1)).unwrap();
    }

    #[test]
    fn text_forms_parse() {
        let k = key(0xab);
        assert_eq!(k.to_hex().parse::<ClusterKey>().unwrap(), k);
        assert_eq!(
            data_encoding::BASE64
                .encode(&[0xab; 32])
                .parse::<ClusterKey>()
                .unwrap(),
            k
        );
        assert_eq!("abcd".parse::<ClusterKey>(), Err(KeyringError::Parse));
        assert!(!format!("{k:?}").contains("ab"));
    }
}
