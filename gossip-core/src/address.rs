//! Where a member can be reached.

use core::fmt;
use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// A transport endpoint of a member, or the member through which it is relayed.
///
/// Browsers cannot listen, so they are reached over the WebSocket they opened to a server member:
/// their address is `Relayed(server)`. Variant names are one letter on the wire to keep probes small.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// `udp://ip:port`: best-effort datagrams up to the UDP budget.
    #[serde(rename = "u")]
    Udp(#[serde(with = "socket_addr")] SocketAddr),
    /// `tcp://ip:port`: length-prefixed frames over a reliable stream.
    #[serde(rename = "t")]
    Tcp(#[serde(with = "socket_addr")] SocketAddr),
    /// `ws://` or `wss://` URL of a WebSocket endpoint.
    #[serde(rename = "w")]
    WebSocket(String),
    /// Reachable only through the connection it holds to this member.
    #[serde(rename = "r")]
    Relayed(NodeId),
}

impl Address {
    /// Whether the transport delivers every byte in order (anything but UDP).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Address::Udp(_))
    }
}

/// serde's binary form of [`SocketAddr`] with one code path per direction (see [`serialize`],
/// [`deserialize`]); `#[serde(with)]` on [`Address`]'s socket variants.
pub(crate) mod socket_addr {
    use core::fmt;
    use core::net::SocketAddr;

    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, SeqAccess, VariantAccess, Visitor,
    };
    use serde::ser::{SerializeTuple, Serializer};
    use serde::{Deserialize, Serialize};

    /// Writes a [`SocketAddr`] exactly as serde's own impl does (`{"V4" | "V6": [[octets...],
    /// port]}` in binary formats, the text form in human-readable ones), with one code path for
    /// both families.
    pub(crate) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return a.serialize(s);
        }
        let mut octets = [0; 16];
        let (index, variant, len) = match a {
            SocketAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.ip().octets());
                (0, "V4", 4)
            }
            SocketAddr::V6(v6) => {
                octets = v6.ip().octets();
                (1, "V6", 16)
            }
        };
        let value = (OctetsOut(&octets[..len]), a.port());
        s.serialize_newtype_variant("SocketAddr", index, variant, &value)
    }

    /// An IP address's octets, written as serde writes `[u8; N]`: a tuple.
    struct OctetsOut<'a>(&'a [u8]);

    impl Serialize for OctetsOut<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut t = s.serialize_tuple(self.0.len())?;
            for o in self.0 {
                t.serialize_element(o)?;
            }
            t.end()
        }
    }

    /// Reads a [`SocketAddr`] exactly as serde's own impl does (`{"V4" | "V6" | 0 | 1: [octets,
    /// port]}` in binary formats, the text form in human-readable ones), but with the octets read in
    /// a loop: serde's impl unrolls `[u8; 16]` into sixteen inlined element reads, which made
    /// address decoding about 12 KB of the browser build.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        if d.is_human_readable() {
            return SocketAddr::deserialize(d);
        }
        d.deserialize_enum("SocketAddr", FAMILIES, SocketAddrVisitor)
    }

    const FAMILIES: &[&str] = &["V4", "V6"];

    struct SocketAddrVisitor;

    impl<'de> Visitor<'de> for SocketAddrVisitor {
        type Value = SocketAddr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SocketAddr")
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<SocketAddr, A::Error> {
            let (family, v) = data.variant::<Family>()?;
            v.newtype_variant_seed(family)
        }
    }

    /// The variant of a binary [`SocketAddr`]: its octet count.
    #[derive(Clone, Copy)]
    enum Family {
        V4,
        V6,
    }

    impl Family {
        fn octets(self) -> usize {
            match self {
                Family::V4 => 4,
                Family::V6 => 16,
            }
        }
    }

    impl<'de> Deserialize<'de> for Family {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_identifier(FamilyVisitor)
        }
    }

    struct FamilyVisitor;

    impl<'de> Visitor<'de> for FamilyVisitor {
        type Value = Family;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`V4` or `V6`")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Family, E> {
            match v {
                0 => Ok(Family::V4),
                1 => Ok(Family::V6),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Family, E> {
            self.visit_bytes(v.as_bytes())
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Family, E> {
            match v {
                b"V4" => Ok(Family::V4),
                b"V6" => Ok(Family::V6),
                _ => match core::str::from_utf8(v) {
                    Ok(name) => Err(E::unknown_variant(name, FAMILIES)),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(v), &self)),
                },
            }
        }
    }

    /// The variant's value: `[ip, port]`.
    impl<'de> DeserializeSeed<'de> for Family {
        type Value = SocketAddr;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SocketAddr, D::Error> {
            d.deserialize_tuple(2, self)
        }
    }

    impl<'de> Visitor<'de> for Family {
        type Value = SocketAddr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a tuple of size 2")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SocketAddr, A::Error> {
            let octets = seq
                .next_element_seed(Octets(self.octets()))?
                .ok_or_else(|| de::Error::invalid_length(0, &self))?;
            let port: u16 = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(1, &self))?;
            Ok(match self {
                Family::V4 => {
                    let mut ip = [0; 4];
                    ip.copy_from_slice(&octets[..4]);
                    SocketAddr::new(ip.into(), port)
                }
                Family::V6 => SocketAddr::new(octets.into(), port),
            })
        }
    }

    /// An IP address's octets, as a tuple of `.0` integers (the first ones used for IPv4).
    struct Octets(usize);

    impl<'de> DeserializeSeed<'de> for Octets {
        type Value = [u8; 16];

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<[u8; 16], D::Error> {
            d.deserialize_tuple(self.0, self)
        }
    }

    impl<'de> Visitor<'de> for Octets {
        type Value = [u8; 16];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of length {}", self.0)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 16], A::Error> {
            let mut octets = [0; 16];
            for (i, o) in octets.iter_mut().take(self.0).enumerate() {
                *o = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            Ok(octets)
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Udp(a) => write!(f, "udp://{a}"),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::WebSocket(url) => f.write_str(url),
            Address::Relayed(via) => write!(f, "relay://{via}"),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
