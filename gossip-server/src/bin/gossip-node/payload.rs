//! Payloads as a person can read them: browsers send MessagePack values, the CLI sends text, and a
//! peer may send anything.

use std::borrow::Cow;

/// How [`show`] rendered a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A MessagePack value, shown as JSON.
    MsgPack,
    /// UTF-8 text.
    Text,
    /// Anything else, as lowercase hex.
    Hex,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::MsgPack => "msgpack",
            Encoding::Text => "utf8",
            Encoding::Hex => "hex",
        }
    }
}

/// Deepest MessagePack nesting decoded for display (the core's own payload reader allows 64).
const MAX_DEPTH: usize = 64;

/// Renders a payload: a MessagePack value as JSON, else UTF-8 text, else hex.
///
/// Short ASCII text is also valid MessagePack ("a" is the integer 97), so a value that decodes to
/// a bare number, boolean or nil only wins when the bytes are not UTF-8. Maps, arrays and strings
/// start with bytes that cannot begin UTF-8, so they are never mistaken for text.
pub fn show(data: &[u8]) -> (Encoding, String) {
    let text = std::str::from_utf8(data).ok();
    match (msgpack(data), text) {
        (Some(v), Some(_)) if v.is_object() || v.is_array() || v.is_string() => {
            (Encoding::MsgPack, v.to_string())
        }
        (_, Some(t)) => (Encoding::Text, t.to_owned()),
        (Some(v), None) => (Encoding::MsgPack, v.to_string()),
        (None, None) => (Encoding::Hex, hex(data)),
    }
}

/// One whole MessagePack value; `None` if it does not decode, has bytes left over, or holds
/// something JSON cannot (binary, non-string map keys).
fn msgpack(data: &[u8]) -> Option<serde_json::Value> {
    use serde::Deserialize;
    let mut de = rmp_serde::Deserializer::new(data);
    de.set_max_depth(MAX_DEPTH);
    let value = serde_json::Value::deserialize(&mut de).ok()?;
    de.into_inner().is_empty().then_some(value)
}

fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for &b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Text from a peer (names, topics, payloads) made safe for a terminal: a string with control
/// characters is quoted and escaped, so a peer cannot move the cursor or recolour the screen.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(format!("{s:?}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messagepack_maps_show_as_json() {
        // {"text": "hi", "n": [1, true, null]}
        let data = [
            0x82, 0xa4, b't', b'e', b'x', b't', 0xa2, b'h', b'i', 0xa1, b'n', 0x93, 0x01, 0xc3,
            0xc0,
        ];
        assert_eq!(
            show(&data),
            (
                Encoding::MsgPack,
                r#"{"n":[1,true,null],"text":"hi"}"#.into()
            )
        );
    }

    #[test]
    fn messagepack_strings_and_non_utf8_scalars_show_as_json() {
        assert_eq!(
            show(&[0xa2, b'o', b'k']),
            (Encoding::MsgPack, "\"ok\"".into())
        );
        // float64 1.5: its first byte (0xcb) cannot start UTF-8.
        let mut f = vec![0xcb];
        f.extend(1.5f64.to_be_bytes());
        assert_eq!(show(&f), (Encoding::MsgPack, "1.5".into()));
    }

    #[test]
    fn text_that_is_also_a_messagepack_number_stays_text() {
        assert_eq!(show(b"a"), (Encoding::Text, "a".into()));
        assert_eq!(show(b"hello"), (Encoding::Text, "hello".into()));
        assert_eq!(show(b""), (Encoding::Text, String::new()));
    }

    #[test]
    fn other_bytes_show_as_hex() {
        // A map with a binary value, a truncated string and leftover bytes: none is a JSON value.
        assert_eq!(
            show(&[0x81, 0xa1, b'k', 0xc4, 0x01, 0xff]),
            (Encoding::Hex, "81a16bc401ff".into())
        );
        assert_eq!(show(&[0xa5, b'x']), (Encoding::Hex, "a578".into()));
        assert_eq!(show(&[0xc3, 0xff]), (Encoding::Hex, "c3ff".into()));
    }

    #[test]
    fn deep_or_oversized_messagepack_is_refused_without_allocating() {
        // 10,000 nested one-element arrays, then a claimed 4 GiB string with nothing behind it.
        let mut deep = vec![0x91; 10_000];
        deep.push(0xc0);
        assert_eq!(show(&deep).0, Encoding::Hex);
        assert_eq!(show(&[0xdb, 0xff, 0xff, 0xff, 0xff]).0, Encoding::Hex);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain name"), "plain name");
        assert_eq!(clean("red\x1b[31m"), "\"red\\u{1b}[31m\"");
        assert_eq!(clean("two\nlines"), "\"two\\nlines\"");
    }
}
