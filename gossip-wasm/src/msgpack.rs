//! MessagePack for message data that is not raw bytes.
//!
//! JSON-able JavaScript values travel as MessagePack with named map keys, the encoding of
//! `gossip_core::typed`, so a native member reads a browser's `{ job: "resize", size: 7 }` with
//! `typed::from_bytes::<Job>()` and the other way round. The decoder reads bytes a peer chose:
//! it bounds nesting, checks every length against the bytes actually left before allocating, and
//! never panics.

/// Deepest nesting encoded or decoded (a cycle in a JavaScript object hits it instead of the stack).
pub const MAX_DEPTH: usize = 64;

/// A MessagePack value, between JavaScript and bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil` (JavaScript `null`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float.
    F64(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes (JavaScript `Uint8Array`).
    Bin(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map with string keys, in order (JavaScript plain object).
    Map(Vec<(String, Value)>),
}

/// Why bytes are not a value this decoder accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end inside a value.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// Bytes remain after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A marker this decoder does not accept (extension types, the reserved 0xc1).
    #[error("unsupported marker 0x{0:02x}")]
    Unsupported(u8),
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    Utf8,
    /// Nesting is deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Appends the MessagePack encoding of `value`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::UInt(n) => encode_uint(*n, out),
        Value::Int(n) if *n >= 0 => encode_uint(*n as u64, out),
        Value::Int(n) => encode_neg(*n, out),
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => {
            header(s.len(), 0xa0, 32, [0xd9, 0xda, 0xdb], out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            // bin has no fix form: 0 stands for "none", so the 8-bit form is used from 0 up.
            header(b.len(), 0, 0, [0xc4, 0xc5, 0xc6], out);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            header(items.len(), 0x90, 16, [0, 0xdc, 0xdd], out);
            items.iter().for_each(|v| encode(v, out));
        }
        Value::Map(entries) => {
            header(entries.len(), 0x80, 16, [0, 0xde, 0xdf], out);
            for (k, v) in entries {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
    }
}

fn encode_uint(n: u64, out: &mut Vec<u8>) {
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn encode_neg(n: i64, out: &mut Vec<u8>) {
    if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A length header: the fix form below `fix_max` (when `fix_max > 0`), else the 8/16/32-bit
/// form (a zero marker means the type has no such form and the next larger one is used).
fn header(len: usize, fix: u8, fix_max: usize, wide: [u8; 3], out: &mut Vec<u8>) {
    if len < fix_max {
        out.push(fix | len as u8);
    } else if len <= 0xff && wide[0] != 0 {
        out.extend_from_slice(&[wide[0], len as u8]);
    } else if len <= 0xffff {
        out.push(wide[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        // Longer than u32 cannot happen: message data is bounded far below 4 GiB.
        out.push(wide[2]);
        out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
    }
}

/// Decodes exactly one value from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let v = r.value(0)?;
    match bytes.len() - r.at {
        0 => Ok(v),
        n => Err(DecodeError::Trailing(n)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A count of items still to read: each takes at least one byte, so a count larger than
    /// what is left is a lie, refused before anything is allocated for it.
    fn count(&mut self, n: usize) -> Result<usize, DecodeError> {
        let n = self.be(n)? as usize;
        self.fits(n)
    }

    fn fits(&self, n: usize) -> Result<usize, DecodeError> {
        if n > self.bytes.len() - self.at {
            Err(DecodeError::Truncated(self.at))
        } else {
            Ok(n)
        }
    }

    fn string(&mut self, len: usize) -> Result<Value, DecodeError> {
        let raw = self.take(len)?;
        core::str::from_utf8(raw)
            .map(|s| Value::Str(s.to_owned()))
            .map_err(|_| DecodeError::Utf8)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut entries = Vec::with_capacity(len.min((self.bytes.len() - self.at) / 2));
        for _ in 0..len {
            // Non-string keys (integers, say, from another language) become their text form,
            // as JavaScript object keys would.
            let key = match self.value(depth + 1)? {
                Value::Str(s) => s,
                Value::UInt(n) => n.to_string(),
                Value::Int(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Nil => "null".into(),
                Value::F64(f) => float_key(f),
                Value::Bin(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::Array(_) | Value::Map(_) => return Err(DecodeError::Unsupported(0x80)),
            };
            entries.push((key, self.value(depth + 1)?));
        }
        Ok(Value::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Value::UInt(u64::from(m)),
            0x80..=0x8f => {
                let n = self.fits(usize::from(m & 0x0f))?;
                return self.map(n, depth);
            }
            0x90..=0x9f => {
                let n = self.fits(usize::from(m & 0x0f))?;
                return self.array(n, depth);
            }
            0xa0..=0xbf => return self.string(usize::from(m & 0x1f)),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.be(1 << (m - 0xc4))? as usize;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xca => Value::F64(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::F64(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Value::UInt(self.be(1 << (m - 0xcc))?),
            0xd0 => Value::Int(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::Int(self.be(8)? as i64),
            0xd9..=0xdb => {
                let n = self.be(1 << (m - 0xd9))? as usize;
                return self.string(n);
            }
            0xdc | 0xdd => {
                let n = self.count(2 << (m - 0xdc))?;
                return self.array(n, depth);
            }
            0xde | 0xdf => {
                let n = self.count(2 << (m - 0xde))?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Int(i64::from(m as i8)),
            // 0xc1 (never used), 0xc7-0xc9 and 0xd4-0xd8 (extension types).
            other => return Err(DecodeError::Unsupported(other)),
        })
    }
}

/// A float map key as JavaScript spells it (`String(f)`: `1e+21`, `Infinity`), which also
/// spares the browser build Rust's float formatting.
#[cfg(target_arch = "wasm32")]
fn float_key(f: f64) -> String {
    js_sys::Number::from(f)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// A float map key in Rust's shortest round-trip form (native builds, for tests).
#[cfg(not(target_arch = "wasm32"))]
fn float_key(f: f64) -> String {
    f.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let mut out = Vec::new();
        encode(&v, &mut out);
        assert_eq!(decode(&out), Ok(v));
    }

    #[test]
    fn every_form_round_trips() {
        for n in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            1 << 32,
            u64::MAX,
        ] {
            round_trip(Value::UInt(n));
        }
        for n in [-1i64, -32, -33, -128, -129, -32_768, -32_769, i64::MIN] {
            round_trip(Value::Int(n));
        }
        for len in [0usize, 31, 32, 255, 256, 70_000] {
            round_trip(Value::Str("é".repeat(len / 2)));
            round_trip(Value::Bin(vec![7; len]));
            round_trip(Value::Array(vec![Value::Nil; len.min(300)]));
        }
        round_trip(Value::F64(-1.5));
        round_trip(Value::Map(vec![
            ("job".into(), Value::Str("resize".into())),
            ("ok".into(), Value::Bool(true)),
            (
                "sizes".into(),
                Value::Array(vec![Value::UInt(7), Value::Int(-7)]),
            ),
        ]));
        round_trip(Value::Map(
            (0..20).map(|i| (i.to_string(), Value::UInt(i))).collect(),
        ));
    }

    #[test]
    fn matches_the_cores_typed_encoding() {
        // `{job: "resize", size: 7}` as gossip_core::typed (rmp-serde, named fields) writes it.
        #[derive(serde::Serialize)]
        struct Job {
            job: &'static str,
            size: u32,
        }
        let core = gossip_core::typed::to_bytes(&Job {
            job: "resize",
            size: 7,
        })
        .unwrap();
        let mut ours = Vec::new();
        encode(
            &Value::Map(vec![
                ("job".into(), Value::Str("resize".into())),
                ("size".into(), Value::UInt(7)),
            ]),
            &mut ours,
        );
        assert_eq!(ours, core);
    }

    #[test]
    fn hostile_bytes_are_refused_without_allocating() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated(0)));
        assert_eq!(decode(&[0xc1]), Err(DecodeError::Unsupported(0xc1)));
        assert_eq!(decode(&[0xd4, 1, 2]), Err(DecodeError::Unsupported(0xd4)));
        assert_eq!(decode(&[0x01, 0x02]), Err(DecodeError::Trailing(1)));
        assert_eq!(decode(&[0xa2, 0xff, 0xfe]), Err(DecodeError::Utf8));
        // Lengths far beyond the bytes present.
        assert!(decode(&[0xc6, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0x9f]).is_err());
        // Nesting beyond the limit is an error, not a stack overflow.
        let deep = vec![0x91; 100_000];
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        let mut ok = vec![0x91; MAX_DEPTH];
        ok.push(0xc0);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn every_one_byte_input_is_judged_right() {
        // A lone byte is a whole value exactly when it is a fix int, nil, a bool, or an empty
        // fix map/array/string; every other byte must fail cleanly (and nothing may panic).
        for a in 0..=255u8 {
            let complete =
                matches!(a, 0x00..=0x80 | 0x90 | 0xa0 | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff);
            assert_eq!(decode(&[a]).is_ok(), complete, "byte 0x{a:02x}");
            for b in 0..=255u8 {
                let _ = decode(&[a, b]);
            }
        }
    }
}
