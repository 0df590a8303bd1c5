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
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for &b in &self.0 {
            hex.push(char::from(DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        hex
    }
}

/// 64 hex digits, in either case.
fn decode_hex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Standard padded base64 (RFC 4648 section 4) of 32 bytes: 43 digits and one `=`, the last
/// digit's two unused bits zero (so each key has one text form).
fn decode_base64(text: &[u8]) -> Option<[u8; 32]> {
    let (digits, pad) = text.split_at_checked(43)?;
    if pad != b"=" {
        return None;
    }
    let mut out = [0u8; 32];
    let (mut acc, mut bits, mut at) = (0u32, 0u32, 0);
    for &c in digits {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out[at] = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

impl FromStr for ClusterKey {
    type Err = KeyringError;

    /// Accepts 64 hex digits or standard base64 of 32 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().as_bytes();
        decode_hex(s)
            .or_else(|| decode_base64(s))
            .map(ClusterKey)
            .ok_or(KeyringError::Parse)
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

    #[test]
    fn text_forms_match_data_encoding() {
        use data_encoding::{BASE64, HEXLOWER, HEXUPPER};
        for seed in 0..=255u8 {
            let raw: [u8; 32] = core::array::from_fn(|i| seed.wrapping_mul(31) ^ (i as u8 * 7));
            let k = ClusterKey::from_bytes(raw);
            assert_eq!(k.to_hex(), HEXLOWER.encode(&raw));
            for text in [
                HEXLOWER.encode(&raw),
                HEXUPPER.encode(&raw),
                BASE64.encode(&raw),
            ] {
                assert_eq!(text.parse::<ClusterKey>().unwrap(), k, "{text}");
                assert_eq!(format!("  {text}\n").parse::<ClusterKey>().unwrap(), k);
            }
        }
        let b64 = BASE64.encode(&[0xab; 32]);
        let refused = [
            String::new(),
            "0".repeat(63),
            "0".repeat(65),
            format!("{}g", "0".repeat(63)),
            // Base64 without its padding, with too much, of 31 or 33 bytes.
            b64.trim_end_matches('=').to_owned(),
            format!("{b64}="),
            BASE64.encode(&[0xab; 31]),
            BASE64.encode(&[0xab; 33]),
            // Non-zero unused bits in the last digit ("t" is "s" plus one).
            b64.replace("s=", "t="),
            b64.replace('q', "-"),
        ];
        for text in refused {
            assert!(
                BASE64
                    .decode(text.as_bytes())
                    .map_or(true, |b| b.len() != 32)
            );
            assert_eq!(
                text.parse::<ClusterKey>(),
                Err(KeyringError::Parse),
                "{text:?}"
            );
        }
    }
}
