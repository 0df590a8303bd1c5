//! The MessagePack reader for message payloads: one small serde `Deserializer` over a byte slice.
//!
//! rmp-serde's deserializer inlines its whole MessagePack parser into every visitor it is used
//! with (one per field type of every message), which made it over a quarter of the browser
//! package's code. Here a single non-generic function ([`Deserializer::next`]) reads each value's
//! header, so what is generated per visitor is one small `match`.
//!
//! It reads what rmp-serde 1.3's `from_slice` reads with its default configuration (the one
//! [`crate::message`] encodes with), for the protocol's types: not human-readable; structs as
//! arrays of their fields; enums as a one-entry map `{variant: value}` or a bare unit variant;
//! integers of any width that fit the field; `str` and `bin` interchangeable where a string or
//! bytes are wanted (a string must be UTF-8), an array of integers too where bytes are wanted;
//! an array or map with elements left over refused; bytes after the value ignored. Two forms
//! rmp-serde also reads, which no encoder of the protocol writes, are refused: a struct as a map
//! of field names, and a `bin` where an array is expected. Errors are typed
//! ([`crate::error::Malformed::Payload`]) and nothing panics.
//!
//! Hostile input is bounded before anything is allocated or recursed into:
//!
//! - every declared length (`str`, `bin`, `ext`, array, map) is checked against the bytes left,
//!   counting at least one byte per array element and two per map entry;
//! - arrays and maps nest at most [`MAX_DEPTH`] deep;
//! - skipped values are walked in a loop, not recursively.

use core::fmt;

use serde::de::{self, DeserializeSeed, Unexpected, Visitor};

/// Deepest nesting of arrays and maps (message fields nest at most 6 deep).
pub(crate) const MAX_DEPTH: u16 = 64;

/// Why a payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error(pub(crate) String);

impl Error {
    fn new(msg: &str) -> Self {
        Error(msg.to_owned())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }

    // The two below spell `Unexpected` themselves: serde's `Display` for it formats floats,
    // which would pull Rust's float printing (some 20 KB) into the browser build for a message
    // no wire field can produce (none is a float).
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error(format!("invalid type: {}, expected {exp}", describe(unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error(format!(
            "invalid value: {}, expected {exp}",
            describe(unexp)
        ))
    }
}

/// What serde's `Display` for `Unexpected` says, without formatting floats.
fn describe(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("boolean `{b}`"),
        Unexpected::Unsigned(n) => format!("integer `{n}`"),
        Unexpected::Signed(n) => format!("integer `{n}`"),
        Unexpected::Float(_) => "a floating point number".to_owned(),
        Unexpected::Char(c) => format!("character `{c}`"),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Bytes(_) => "byte array".to_owned(),
        Unexpected::Unit => "unit value".to_owned(),
        Unexpected::Option => "Option value".to_owned(),
        Unexpected::NewtypeStruct => "newtype struct".to_owned(),
        Unexpected::Seq => "sequence".to_owned(),
        Unexpected::Map => "map".to_owned(),
        Unexpected::Enum => "enum".to_owned(),
        Unexpected::UnitVariant => "unit variant".to_owned(),
        Unexpected::NewtypeVariant => "newtype variant".to_owned(),
        Unexpected::TupleVariant => "tuple variant".to_owned(),
        Unexpected::StructVariant => "struct variant".to_owned(),
        Unexpected::Other(other) => other.to_owned(),
    }
}

/// Decodes one `T` from the start of `input` (trailing bytes are ignored, as rmp-serde does).
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T, Error> {
    T::deserialize(&mut Deserializer {
        input,
        depth: MAX_DEPTH,
    })
}

/// One MessagePack value header, with the bytes of a `str`, `bin` or `ext` already taken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'de> {
    Nil,
    Bool(bool),
    /// An unsigned marker (positive fixint, uint 8 to 64).
    Uint(u64),
    /// A signed marker (negative fixint, int 8 to 64), whatever the sign of the value.
    Int(i64),
    F32(f32),
    F64(f64),
    /// The raw bytes of a `str` (UTF-8 is checked where a string is wanted).
    Str(&'de [u8]),
    Bin(&'de [u8]),
    /// An `ext` value (tag and data skipped): no message field is one.
    Ext,
    /// An array of this many elements follows.
    Array(u32),
    /// A map of this many entries follows.
    Map(u32),
}

/// The deserializer: the bytes not read yet and the nesting still allowed.
#[derive(Debug)]
pub(crate) struct Deserializer<'de> {
    input: &'de [u8],
    depth: u16,
}

impl<'de> Deserializer<'de> {
    fn take(&mut self, len: u64) -> Result<&'de [u8], Error> {
        match usize::try_from(len) {
            Ok(len) if len <= self.input.len() => {
                let (head, rest) = self.input.split_at(len);
                self.input = rest;
                Ok(head)
            }
            _ => Err(Error(format!(
                "truncated: {len} bytes declared, {} left",
                self.input.len()
            ))),
        }
    }

    /// A big-endian unsigned integer of `len` (1, 2, 4 or 8) bytes.
    fn uint(&mut self, len: u64) -> Result<u64, Error> {
        Ok(self
            .take(len)?
            .iter()
            .fold(0, |n, &b| (n << 8) | u64::from(b)))
    }

    /// A collection of `len` items of at least `min_bytes` each.
    fn items(&self, len: u64, min_bytes: u64) -> Result<u32, Error> {
        if len.saturating_mul(min_bytes) > self.input.len() as u64 {
            return Err(Error(format!(
                "{len} items declared, {} bytes left",
                self.input.len()
            )));
        }
        // `len` came from at most 32 bits.
        Ok(len as u32)
    }

    /// Reads the next value's header (and the bytes of a `str`, `bin` or `ext`).
    #[inline(never)]
    fn next(&mut self) -> Result<Token<'de>, Error> {
        let marker = self.uint(1)? as u8;
        // Markers with a length field: 1 << (marker - first) bytes of it.
        let width = |first: u8| 1u64 << (marker - first);
        Ok(match marker {
            0x00..=0x7f => Token::Uint(u64::from(marker)),
            0x80..=0x8f => Token::Map(self.items(u64::from(marker & 0x0f), 2)?),
            0x90..=0x9f => Token::Array(self.items(u64::from(marker & 0x0f), 1)?),
            0xa0..=0xbf => Token::Str(self.take(u64::from(marker & 0x1f))?),
            0xc0 => Token::Nil,
            0xc1 => return Err(Error::new("reserved marker 0xc1")),
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4..=0xc6 => {
                let len = self.uint(width(0xc4))?;
                Token::Bin(self.take(len)?)
            }
            0xc7..=0xc9 => {
                let len = self.uint(width(0xc7))?;
                self.take(len.saturating_add(1))?;
                Token::Ext
            }
            0xca => Token::F32(f32::from_bits(self.uint(4)? as u32)),
            0xcb => Token::F64(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Token::Uint(self.uint(width(0xcc))?),
            0xd0..=0xd3 => {
                let shift = 64 - 8 * width(0xd0);
                // Sign-extend from the value's width.
                Token::Int(((self.uint(width(0xd0))? << shift) as i64) >> shift)
            }
            0xd4..=0xd8 => {
                self.take(1 + width(0xd4))?;
                Token::Ext
            }
            0xd9..=0xdb => {
                let len = self.uint(width(0xd9))?;
                Token::Str(self.take(len)?)
            }
            0xdc | 0xdd => {
                let len = self.uint(2 * width(0xdc))?;
                Token::Array(self.items(len, 1)?)
            }
            0xde | 0xdf => {
                let len = self.uint(2 * width(0xde))?;
                Token::Map(self.items(len, 2)?)
            }
            0xe0..=0xff => Token::Int(i64::from(marker as i8)),
        })
    }

    /// The next marker byte, not consumed.
    fn peek(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Skips one value, however nested, without recursion.
    fn skip(&mut self) -> Result<(), Error> {
        // Bounded by the input: `next` checked each count against the bytes left.
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.next()? {
                Token::Array(len) => pending += u64::from(len),
                Token::Map(len) => pending += 2 * u64::from(len),
                _ => {}
            }
        }
        Ok(())
    }

    fn nest(&mut self) -> Result<(), Error> {
        self.depth = self
            .depth
            .checked_sub(1)
            .filter(|&d| d > 0)
            .ok_or_else(|| Error::new("nested too deep"))?;
        Ok(())
    }

    /// Visits the next value.
    fn any<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Token::Nil => visitor.visit_unit(),
            Token::Bool(b) => visitor.visit_bool(b),
            Token::Uint(n) => visitor.visit_u64(n),
            Token::Int(n) => visitor.visit_i64(n),
            Token::F32(f) => visitor.visit_f32(f),
            Token::F64(f) => visitor.visit_f64(f),
            Token::Str(bytes) => match core::str::from_utf8(bytes) {
                Ok(s) => visitor.visit_borrowed_str(s),
                // As rmp-serde: invalid UTF-8 is still fine where bytes are wanted.
                Err(_) => visitor
                    .visit_borrowed_bytes(bytes)
                    .map_err(|_: Error| Error::new("string is not UTF-8")),
            },
            Token::Bin(bytes) => visitor.visit_borrowed_bytes(bytes),
            Token::Ext => Err(Error::new("MessagePack extension types are not supported")),
            Token::Array(len) => self.seq(visitor, len),
            Token::Map(len) => {
                self.nest()?;
                let mut map = MapAccess {
                    de: self,
                    left: len,
                };
                let value = visitor.visit_map(&mut map)?;
                let left = map.left;
                self.unnest(left)?;
                Ok(value)
            }
        }
    }

    /// Visits an array of `len` elements whose header was read.
    fn seq<V: Visitor<'de>>(&mut self, visitor: V, len: u32) -> Result<V::Value, Error> {
        self.nest()?;
        let mut seq = SeqAccess {
            de: self,
            left: len,
        };
        let value = visitor.visit_seq(&mut seq)?;
        let left = seq.left;
        self.unnest(left)?;
        Ok(value)
    }

    /// The next value as an integer: `Ok` for an unsigned marker, `Err` for a signed one.
    fn integer(&mut self) -> Result<Result<u64, i64>, Error> {
        match self.next()? {
            Token::Uint(n) => Ok(Ok(n)),
            Token::Int(n) => Ok(Err(n)),
            other => Err(unexpected(other, "an integer")),
        }
    }

    /// Leaves a collection, refusing it if it has `left` items unread (as rmp-serde does).
    fn unnest(&mut self, left: u32) -> Result<(), Error> {
        if left != 0 {
            return Err(Error(format!("{left} items left over")));
        }
        self.depth += 1;
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.any(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Token::Bool(b) => visitor.visit_bool(b),
            other => Err(unexpected(other, "a boolean")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Integers of every width go through here: the visitor checks the range.
        match self.integer()? {
            Ok(n) => visitor.visit_u64(n),
            Err(n) => visitor.visit_i64(n),
        }
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // rmp-serde hands a `bin` to a string visitor too, which takes it if it is UTF-8.
        let bytes = match self.next()? {
            Token::Str(bytes) | Token::Bin(bytes) => bytes,
            other => return Err(unexpected(other, "a string")),
        };
        visitor.visit_borrowed_str(utf8(bytes)?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Token::Str(bytes) | Token::Bin(bytes) => visitor.visit_borrowed_bytes(bytes),
            Token::Array(len) => self.seq(visitor, len),
            other => Err(unexpected(other, "bytes")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(0xc0) {
            self.input = &self.input[1..];
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        // rmp-serde writes unit structs as `[]`, and reads `nil` too.
        if matches!(self.peek(), Some(0xc0 | 0x90)) {
            self.input = &self.input[1..];
            visitor.visit_unit()
        } else {
            self.any(visitor)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Token::Array(len) => self.seq(visitor, len),
            other => Err(unexpected(other, "an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Structs are arrays of their fields (docs/PROTOCOL.md); no encoder of the protocol
        // writes them as maps, so the code to read maps of field names is not generated.
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // `{variant: value}`, or a bare variant (name or index) for a unit variant.
        if matches!(self.peek(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            match self.next()? {
                Token::Map(1) => visitor.visit_enum(Enum { de: self }),
                _ => Err(Error::new("an enum must be a map of one entry")),
            }
        } else {
            visitor.visit_enum(UnitEnum { de: self })
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char unit map identifier
    }
}

/// The error for a value of the wrong type.
#[inline(never)]
fn unexpected(token: Token<'_>, expected: &str) -> Error {
    let found = match token {
        Token::Nil => "nil",
        Token::Bool(_) => "a boolean",
        Token::Uint(_) | Token::Int(_) => "an integer",
        Token::F32(_) | Token::F64(_) => "a float",
        Token::Str(_) => "a string",
        Token::Bin(_) => "bytes",
        Token::Ext => "an extension type",
        Token::Array(_) => "an array",
        Token::Map(_) => "a map",
    };
    Error(format!("invalid type: {found}, expected {expected}"))
}

fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    core::str::from_utf8(bytes).map_err(|_| Error::new("string is not UTF-8"))
}

struct SeqAccess<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: u32,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left as usize)
    }
}

struct MapAccess<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: u32,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left as usize)
    }
}

/// An enum as `{variant: value}`.
struct Enum<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for Enum<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        Ok((seed.deserialize(&mut *self.de)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.de.next()? {
            Token::Nil => Ok(()),
            _ => Err(Error::new("a unit variant's value must be nil")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self.de, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self.de, fields.len(), visitor)
    }
}

/// An enum as its bare variant: only a unit variant can be written so.
struct UnitEnum<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitEnum<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        Ok((seed.deserialize(&mut *self.de)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitEnum<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"struct variant",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::identity::NodeId;
    use crate::message::*;
    use crate::streams::StreamClose;
    use crate::wire::SignedPacket;
    use proptest::prelude::*;
    use serde::de::{DeserializeOwned, IgnoredAny};
    use serde_bytes::ByteBuf;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    fn packet(b: u8) -> SignedPacket {
        SignedPacket::from_bytes(vec![b; crate::wire::SIGNED_HEADER_LEN + 3]).unwrap()
    }

    /// Messages exercising every field type of the protocol.
    fn samples() -> Vec<Message> {
        vec![
            Ping {
                seq: u32::MAX,
                target: id(1),
                piggyback: vec![packet(2), packet(3)],
            }
            .into(),
            PingReq {
                seq: 0,
                target: id(4),
                addrs: vec![
                    Address::Udp("10.1.2.3:7946".parse().unwrap()),
                    Address::Tcp("[2001:db8::1]:443".parse().unwrap()),
                    Address::WebSocket("wss://example.test/gossip".into()),
                    Address::Relayed(id(5)),
                ],
            }
            .into(),
            Alive {
                incarnation: u64::MAX,
                addrs: vec![],
                name: "nœud-ä".into(),
            }
            .into(),
            Sync {
                phase: sync_phase::ANSWER,
                digest: vec![DigestEntry {
                    node: id(6),
                    incarnation: 300,
                    state: 2,
                    meta_version: 70_000,
                }],
                states: vec![packet(7)],
            }
            .into(),
            Metadata {
                version: 1 << 40,
                entries: vec![("role".into(), ByteBuf::from(vec![0, 255]))],
            }
            .into(),
            Request {
                req: 127,
                to: id(8),
                topic: String::new(),
                data: ByteBuf::from(vec![9; 300]),
            }
            .into(),
            StreamClose {
                stream: 1 << 63,
                code: 65_536,
                reason: "x".repeat(40),
            }
            .into(),
        ]
    }

    fn encode(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        m.write_payload(&mut out).unwrap();
        out
    }

    fn ours<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        from_slice(bytes)
    }

    fn reference<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        rmp_serde::from_slice(bytes).ok()
    }

    #[test]
    fn reads_what_rmp_serde_writes() {
        for m in samples() {
            let bytes = encode(&m);
            assert_eq!(Message::read_payload(m.kind(), &bytes).unwrap(), m);
        }
    }

    #[test]
    fn integers_of_any_width_that_fit() {
        // 7 as positive fixint, uint 8/16/32/64, int 8/16/32/64.
        let sevens: [&[u8]; 9] = [
            &[0x07],
            &[0xcc, 7],
            &[0xcd, 0, 7],
            &[0xce, 0, 0, 0, 7],
            &[0xcf, 0, 0, 0, 0, 0, 0, 0, 7],
            &[0xd0, 7],
            &[0xd1, 0, 7],
            &[0xd2, 0, 0, 0, 7],
            &[0xd3, 0, 0, 0, 0, 0, 0, 0, 7],
        ];
        for seven in sevens {
            let mut nack = vec![0x91];
            nack.extend_from_slice(seven);
            assert_eq!(ours::<Nack>(&nack), Ok(Nack { seq: 7 }));
            assert_eq!(reference::<Nack>(&nack), Some(Nack { seq: 7 }));
        }
        // Too big for a u32, negative (fixint and int 8/64), not an integer.
        let refused: [&[u8]; 7] = [
            &[0x91, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0],
            &[0x91, 0xff],
            &[0x91, 0xd0, 0x80],
            &[0x91, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x91, 0xc0],
            &[0x91, 0xc3],
            &[0x91, 0xcb, 0x40, 0x1c, 0, 0, 0, 0, 0, 0],
        ];
        for bytes in refused {
            assert!(ours::<Nack>(bytes).is_err(), "{bytes:x?}");
            assert_eq!(reference::<Nack>(bytes), None);
        }
        // Sign extension of the signed markers.
        assert_eq!(ours::<i64>(&[0xd1, 0xff, 0x38]), Ok(-200));
        assert_eq!(ours::<i64>(&[0xd2, 0x80, 0, 0, 0]), Ok(i64::from(i32::MIN)));
        assert_eq!(ours::<i8>(&[0xe0]), Ok(-32));
    }

    #[test]
    fn strings_and_bytes_in_either_form() {
        // Broadcast { topic, data } with the topic as bin and the data as str, or as an array.
        let forms: [&[u8]; 3] = [
            &[0x92, 0xc4, 1, b't', 0xa2, b'h', b'i'],
            &[0x92, 0xd9, 1, b't', 0xc4, 2, b'h', b'i'],
            &[0x92, 0xa1, b't', 0x92, b'h', b'i'],
        ];
        let want = Broadcast {
            topic: "t".into(),
            data: ByteBuf::from(b"hi".to_vec()),
        };
        for bytes in forms {
            assert_eq!(ours::<Broadcast>(bytes).as_ref(), Ok(&want));
            assert_eq!(reference::<Broadcast>(bytes).as_ref(), Some(&want));
        }
        // Invalid UTF-8 is refused as a string but fine as bytes.
        assert!(ours::<Broadcast>(&[0x92, 0xa1, 0xff, 0xc4, 0]).is_err());
        assert_eq!(
            ours::<Broadcast>(&[0x92, 0xa0, 0xa1, 0xff]).map(|b| b.data.into_vec()),
            Ok(vec![0xff])
        );
        // A node id must be exactly 32 bytes.
        assert!(ours::<NodeId>(&[0xc4, 31]).is_err());
        let mut long = vec![0xc4, 33];
        long.extend([1; 33]);
        assert!(ours::<NodeId>(&long).is_err());
        assert_eq!(reference::<NodeId>(&long), None);
    }

    /// `address::socket_addr`, the looped reader and writer of a `SocketAddr`, through serde.
    #[derive(Debug, PartialEq)]
    struct Looped(core::net::SocketAddr);

    impl serde::Serialize for Looped {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            crate::address::socket_addr::serialize(&self.0, s)
        }
    }

    impl<'de> serde::Deserialize<'de> for Looped {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            crate::address::socket_addr::deserialize(d).map(Looped)
        }
    }

    #[test]
    fn socket_addresses_read_as_serde_reads_them() {
        use core::net::SocketAddr;
        let addrs: Vec<SocketAddr> = [
            "10.1.2.3:7946",
            "0.0.0.0:0",
            "[2001:db8::1]:443",
            "[::]:65535",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut encodings = Vec::new();
        for a in &addrs {
            let named = rmp_serde::to_vec(a).unwrap();
            // Written byte for byte as serde's impl writes it.
            assert_eq!(rmp_serde::to_vec(&Looped(*a)).unwrap(), named);
            assert_eq!(
                rmp_serde::to_vec_named(&Looped(*a)).unwrap(),
                rmp_serde::to_vec_named(a).unwrap()
            );
            // The same value with the variant's index for its name.
            let mut by_index = vec![0x81, u8::from(a.is_ipv6())];
            by_index.extend_from_slice(&named[4..]);
            assert_eq!(ours::<Looped>(&named), Ok(Looped(*a)));
            assert_eq!(ours::<Looped>(&by_index), Ok(Looped(*a)));
            assert_eq!(reference::<SocketAddr>(&by_index), Some(*a));
            encodings.push(named);
            encodings.push(by_index);
        }
        // Every truncation and every byte changed to a few telling values: the looped reader
        // accepts exactly what serde's impl accepts, with the same result.
        let mut variants = Vec::new();
        for e in &encodings {
            variants.extend((0..e.len()).map(|n| e[..n].to_vec()));
            for i in 0..e.len() {
                for b in [
                    0x00, 0x01, 0x03, 0x04, 0x10, 0x7f, 0x92, 0x93, 0x94, 0xa2, 0xc0, 0xcc, 0xcd,
                    0xdc, 0xff,
                ] {
                    let mut m = e.clone();
                    m[i] = b;
                    variants.push(m);
                }
            }
        }
        for bytes in variants {
            assert_eq!(
                ours::<Looped>(&bytes).ok().map(|l| l.0),
                ours::<SocketAddr>(&bytes).ok(),
                "{bytes:x?}"
            );
        }
        // Human-readable formats keep serde's text form.
        let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("[::1]:80");
        assert_eq!(
            <Looped as serde::Deserialize>::deserialize(text),
            Ok(Looped("[::1]:80".parse().unwrap()))
        );
    }

    #[test]
    fn enums_are_one_entry_maps() {
        let relayed = [&[0x81, 0xa1, b'r', 0xc4, 32][..], &[7; 32]].concat();
        assert_eq!(ours::<Address>(&relayed), Ok(Address::Relayed(id(7))));
        // By variant index too, as serde allows.
        let by_index = [&[0x81, 0x03, 0xc4, 32][..], &[7; 32]].concat();
        assert_eq!(ours::<Address>(&by_index), Ok(Address::Relayed(id(7))));
        assert_eq!(
            reference::<Address>(&by_index),
            Some(Address::Relayed(id(7)))
        );
        // Two entries, an unknown variant, a bare variant name for a newtype variant.
        let two = [&relayed[..], &[0xa1, b'w', 0xa0]].concat();
        let mut two = two;
        two[0] = 0x82;
        for bytes in [&two[..], &[0x81, 0xa1, b'x', 0xa0], &[0xa1, b'w']] {
            assert!(ours::<Address>(bytes).is_err(), "{bytes:x?}");
            assert_eq!(reference::<Address>(bytes), None);
        }
    }

    #[test]
    fn options_unit_structs_and_skipped_values() {
        assert_eq!(ours::<Option<u8>>(&[0xc0]), Ok(None));
        assert_eq!(ours::<Option<u8>>(&[0x05]), Ok(Some(5)));
        assert_eq!(ours::<()>(&[0xc0]), Ok(()));
        // A skipped value may be anything, however nested, ext types included.
        let nested = [
            &[0x92, 0x01, 0x93, 0x81, 0xa1, b'k', 0x91, 0x91, 0x90][..],
            &[0xd4, 1, 2, 0xc7, 2, 1, 9, 9],
        ]
        .concat();
        assert_eq!(ours::<(u8, IgnoredAny)>(&nested).map(|t| t.0), Ok(1));
        assert!(reference::<(u8, IgnoredAny)>(&nested).is_some());
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        let huge: [&[u8]; 8] = [
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdc, 0xff, 0xff, 1, 2, 3],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 1],
            // Two entries need at least four bytes.
            &[0x82, 1, 2, 3],
            &[0x93, 1, 2],
        ];
        for bytes in huge {
            assert!(ours::<Vec<u8>>(bytes).is_err(), "{bytes:x?}");
            assert!(ours::<IgnoredAny>(bytes).is_err(), "{bytes:x?}");
        }
        // Truncated everywhere, and the reserved marker.
        let ping = encode(&samples()[0]);
        for end in 0..ping.len() {
            assert!(ours::<Ping>(&ping[..end]).is_err());
        }
        assert!(ours::<IgnoredAny>(&[0xc1]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| [vec![0x91; n], vec![0x90]].concat();
        assert!(ours::<IgnoredAny>(&deep(100_000)).is_ok());
        type Nested = Vec<Vec<Vec<Vec<()>>>>;
        assert!(ours::<Nested>(&deep(3)).is_ok());
        // A recursive type cannot overflow the stack: the depth counter stops it.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Tree(Vec<Tree>);
        assert!(ours::<Tree>(&deep(usize::from(MAX_DEPTH) - 2)).is_ok());
        assert!(ours::<Tree>(&deep(usize::from(MAX_DEPTH) + 1)).is_err());
    }

    #[test]
    fn leftovers_maps_and_trailing_bytes() {
        // Items left over in a struct, and a struct written as a map of field names (which
        // rmp-serde reads but no encoder of the protocol writes).
        let extra = [0x92, 0x07, 0x07];
        assert!(ours::<Nack>(&extra).is_err());
        assert_eq!(reference::<Nack>(&extra), None);
        let as_map = [0x81, 0xa3, b's', b'e', b'q', 0x07];
        assert!(ours::<Nack>(&as_map).is_err());
        // Bytes after the value are ignored, as rmp-serde does.
        assert_eq!(ours::<Nack>(&[0x91, 0x07, 0xc1]), Ok(Nack { seq: 7 }));
    }

    #[test]
    fn errors_read_as_serde_writes_them() {
        let all = [
            Unexpected::Bool(true),
            Unexpected::Unsigned(7),
            Unexpected::Signed(-7),
            Unexpected::Char('x'),
            Unexpected::Str("a\"b"),
            Unexpected::Bytes(b"ab"),
            Unexpected::Unit,
            Unexpected::Option,
            Unexpected::NewtypeStruct,
            Unexpected::Seq,
            Unexpected::Map,
            Unexpected::Enum,
            Unexpected::UnitVariant,
            Unexpected::NewtypeVariant,
            Unexpected::TupleVariant,
            Unexpected::StructVariant,
            Unexpected::Other("something"),
        ];
        for unexp in all {
            assert_eq!(describe(unexp), unexp.to_string());
        }
        assert_eq!(describe(Unexpected::Float(1.5)), "a floating point number");
        assert_eq!(
            ours::<Nack>(&[0x91, 0xa1, b'x']).unwrap_err().0,
            "invalid type: a string, expected an integer"
        );
        assert_eq!(
            ours::<Nack>(&[0x91, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0])
                .unwrap_err()
                .0,
            "invalid value: integer `4294967296`, expected u32"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

        // Whatever this decoder accepts, rmp-serde reads as the same message.
        #[test]
        fn agrees_with_rmp_serde_on_mutations(
            case in 0usize..7,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let message = &samples()[case];
            let mut bytes = encode(message);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let kind = message.kind();
            let mine = Message::read_payload(kind, &bytes);
            let theirs = rmp_reference(kind, &bytes);
            if let Ok(mine) = mine {
                prop_assert_eq!(Some(mine), theirs);
            }
        }

        #[test]
        fn random_bytes_never_panic(kind in 1u8..=21, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = Message::read_payload(kind, &bytes) {
                prop_assert_eq!(Some(m), rmp_reference(kind, &bytes));
            }
        }
    }

    /// rmp-serde's reading of the payload of message `kind`.
    fn rmp_reference(kind: u8, bytes: &[u8]) -> Option<Message> {
        use crate::streams::*;
        Some(match kind {
            1 => reference::<Ping>(bytes)?.into(),
            2 => reference::<Ack>(bytes)?.into(),
            3 => reference::<PingReq>(bytes)?.into(),
            4 => reference::<Nack>(bytes)?.into(),
            5 => reference::<Gossip>(bytes)?.into(),
            6 => reference::<Alive>(bytes)?.into(),
            7 => reference::<Suspect>(bytes)?.into(),
            8 => reference::<Dead>(bytes)?.into(),
            9 => reference::<Leave>(bytes)?.into(),
            10 => reference::<Broadcast>(bytes)?.into(),
            11 => reference::<Direct>(bytes)?.into(),
            12 => reference::<Sync>(bytes)?.into(),
            13 => reference::<Metadata>(bytes)?.into(),
            14 => reference::<Relay>(bytes)?.into(),
            15 => reference::<Request>(bytes)?.into(),
            16 => reference::<Response>(bytes)?.into(),
            17 => reference::<StreamOpen>(bytes)?.into(),
            18 => reference::<StreamAccept>(bytes)?.into(),
            19 => reference::<StreamData>(bytes)?.into(),
            20 => reference::<StreamCredit>(bytes)?.into(),
            21 => reference::<StreamClose>(bytes)?.into(),
            _ => return None,
        })
    }
}
