//! Typed user messages: any serde value as a message body.
//!
//! Values are MessagePack with *named* fields (unlike the protocol's own arrays), so an
//! application can add optional fields (`#[serde(default)]`) and mix versions in one cluster.
//! Decoding reads from the bytes the node already bounded (`Limits::max_payload_bytes`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::EncodeError;

/// A message body did not decode as the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message does not decode as the expected type: {0}")]
pub struct DecodeValueError(pub String);

/// Encodes a value for [`crate::Node::broadcast`], [`crate::Node::send`], requests and responses.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(value).map_err(|e| EncodeError::Serialize(e.to_string()))
}

/// Decodes the `data` of a received message (from [`crate::Event`]) as `T`.
pub fn from_bytes<T: DeserializeOwned>(data: &[u8]) -> Result<T, DecodeValueError> {
    rmp_serde::from_slice(data).map_err(|e| DecodeValueError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        job: String,
        size: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        job: String,
        size: u32,
        #[serde(default)]
        priority: u8,
    }

    #[test]
    fn round_trips_and_evolves() {
        let v1 = V1 {
            job: "resize".into(),
            size: 7,
        };
        let bytes = to_bytes(&v1).unwrap();
        assert_eq!(from_bytes::<V1>(&bytes).unwrap(), v1);
        // A newer reader accepts an older writer's message, and the other way round.
        assert_eq!(
            from_bytes::<V2>(&bytes).unwrap(),
            V2 {
                job: "resize".into(),
                size: 7,
                priority: 0
            }
        );
        let v2 = to_bytes(&V2 {
            job: "crop".into(),
            size: 1,
            priority: 9,
        })
        .unwrap();
        assert_eq!(
            from_bytes::<V1>(&v2).unwrap(),
            V1 {
                job: "crop".into(),
                size: 1
            }
        );
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        assert!(from_bytes::<V1>(&[]).is_err());
        assert!(from_bytes::<V1>(&[0xc1]).is_err());
        assert!(from_bytes::<V1>(&to_bytes(&42u8).unwrap()).is_err());
        // A huge declared length does not allocate: the slice reader checks it first.
        assert!(from_bytes::<Vec<u8>>(&[0xc6, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
