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

/// Characters of the full text form: 256 bits in 5-bit digits, no padding.
const TEXT_LEN: usize = (NODE_ID_LEN * 8).div_ceil(5);

/// The RFC 4648 base32 alphabet, lowercase.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32 of the id, lowercase, without padding.
fn encode_base32(bytes: &[u8; NODE_ID_LEN]) -> [u8; TEXT_LEN] {
    let mut out = [0u8; TEXT_LEN];
    let (mut acc, mut bits, mut at) = (0u16, 0u32, 0);
    for &byte in bytes {
        acc = (acc << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out[at] = BASE32[usize::from((acc >> bits) & 31)];
            at += 1;
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // The last digit carries the remaining bits, zero-filled on the right.
        out[at] = BASE32[usize::from((acc << (5 - bits)) & 31)];
    }
    out
}

/// Parses RFC 4648 base32 without padding, in either case. Refuses any other length or
/// character, and a last digit whose unused low bits are not zero (so each id has one text form).
fn decode_base32(text: &[u8]) -> Option<[u8; NODE_ID_LEN]> {
    if text.len() != TEXT_LEN {
        return None;
    }
    let mut out = [0u8; NODE_ID_LEN];
    let (mut acc, mut bits, mut at) = (0u16, 0u32, 0);
    for &c in text {
        let digit = match c {
            b'a'..=b'z' => c - b'a',
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u16::from(digit);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[at] = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // 52 digits carry 260 bits: the last 4 must be zero.
    (acc == 0).then_some(out)
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = encode_base32(&self.0);
        // The alphabet is ASCII.
        f.write_str(core::str::from_utf8(&text).map_err(|_| fmt::Error)?)
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
        decode_base32(s.as_bytes())
            .map(NodeId)
            .ok_or(ParseNodeIdError)
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
        let text = NodeId::from_bytes([0x5a; 32]).to_string();
        assert!(text.parse::<NodeId>().is_ok());
        // One character too few or too many, padding, a character outside the alphabet.
        assert!(text[..51].parse::<NodeId>().is_err());
        assert!(format!("{text}a").parse::<NodeId>().is_err());
        assert!(format!("{}====", &text[..51]).parse::<NodeId>().is_err());
        for bad in ['0', '1', '8', '9', '=', ' ', '-', 'é'] {
            let mut s = text.clone();
            s.replace_range(10..11, &bad.to_string());
            assert!(s.parse::<NodeId>().is_err(), "{s:?}");
        }
        // The last digit's 4 unused bits must be zero: "...a" is canonical, "...b" is not.
        let zero = "a".repeat(52);
        assert_eq!(zero.parse::<NodeId>().unwrap(), NodeId::from_bytes([0; 32]));
        assert!(format!("{}b", &zero[..51]).parse::<NodeId>().is_err());
    }

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 section 10 vectors, lowercase and without padding, through the same digits.
        let vectors: [(&[u8], &str); 3] =
            [(b"f", "my"), (b"fo", "mzxq"), (b"foobar", "mzxw6ytboi")];
        for (raw, text) in vectors {
            let mut id = [0u8; NODE_ID_LEN];
            id[..raw.len()].copy_from_slice(raw);
            let full = NodeId::from_bytes(id).to_string();
            assert!(full.starts_with(text), "{full}");
        }
        // All ones: 51 `7`s then the last digit holding the final bit (0b1_0000 = `q`).
        let ones = NodeId::from_bytes([0xff; 32]);
        assert_eq!(ones.to_string(), format!("{}q", "7".repeat(51)));
        assert_eq!(
            ones.to_string().to_uppercase().parse::<NodeId>().unwrap(),
            ones
        );
        // Every byte value round-trips, in both cases, and matches the reference implementation.
        for b in 0..=255u8 {
            let mut raw = [0u8; NODE_ID_LEN];
            for (i, x) in raw.iter_mut().enumerate() {
                *x = b.wrapping_mul(i as u8 + 1) ^ (i as u8);
            }
            let id = NodeId::from_bytes(raw);
            let text = id.to_string();
            let reference = data_encoding::BASE32_NOPAD.encode(&raw);
            assert_eq!(text, reference.to_ascii_lowercase());
            assert_eq!(reference.parse::<NodeId>().unwrap(), id);
            assert_eq!(text.parse::<NodeId>().unwrap(), id);
            assert_eq!(text.to_uppercase().parse::<NodeId>().unwrap(), id);
        }
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
