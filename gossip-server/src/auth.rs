//! The door: bearer token and `Origin` checks on the WebSocket upgrade.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use subtle::ConstantTimeEq;

/// Subprotocol prefix a browser uses to present a token (`bearer.<token>`).
pub(crate) const BEARER_PROTOCOL: &str = "bearer.";

/// Why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Token,
    Origin,
}

/// Checks the token (from the header, the query, or a subprotocol) and the origin. On success,
/// returns the subprotocol to echo back, if the token came that way.
pub(crate) fn check(
    headers: &HeaderMap,
    query_token: Option<&str>,
    token: Option<&str>,
    allowed_origins: &[String],
) -> Result<Option<String>, Refusal> {
    if !allowed_origins.is_empty()
        && let Some(origin) = headers.get(ORIGIN)
        && !allowed_origins
            .iter()
            .any(|o| o.as_bytes() == origin.as_bytes())
    {
        return Err(Refusal::Origin);
    }
    let Some(expected) = token else {
        return Ok(None);
    };
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let protocol = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.starts_with(BEARER_PROTOCOL));
    let from_protocol = protocol.map(|p| &p[BEARER_PROTOCOL.len()..]);
    let presented = from_header.or(query_token).or(from_protocol);
    match presented {
        Some(p) if equal(p, expected) => Ok(if from_header.is_none() && query_token.is_none() {
            protocol.map(str::to_owned)
        } else {
            None
        }),
        _ => Err(Refusal::Token),
    }
}

/// Whether a plain HTTP request (no subprotocol) presents the token, as `Authorization: Bearer`
/// or `?token=`; always true when the node has none.
pub(crate) fn token_presented(
    headers: &HeaderMap,
    query_token: Option<&str>,
    token: Option<&str>,
) -> bool {
    let Some(expected) = token else {
        return true;
    };
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    from_header
        .or(query_token)
        .is_some_and(|p| equal(p, expected))
}

/// Compares in time independent of where the first difference is.
fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn status_token_from_the_header_or_the_query_only() {
        let none = HeaderMap::new();
        assert!(token_presented(&none, None, None));
        assert!(!token_presented(&none, None, Some("s3")));
        assert!(token_presented(&none, Some("s3"), Some("s3")));
        assert!(!token_presented(&none, Some("s"), Some("s3")));
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3"));
        assert!(token_presented(&h, None, Some("s3")));
        assert!(!token_presented(&h, None, Some("s4")));
        let mut p = HeaderMap::new();
        p.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer.s3"),
        );
        assert!(!token_presented(&p, None, Some("s3")));
    }

    #[test]
    fn token_from_each_place_and_origin_list() {
        let none = HeaderMap::new();
        assert_eq!(check(&none, None, None, &[]), Ok(None));
        assert_eq!(check(&none, None, Some("s3"), &[]), Err(Refusal::Token));
        assert_eq!(check(&none, Some("s3"), Some("s3"), &[]), Ok(None));
        assert_eq!(
            check(&none, Some("s4"), Some("s3"), &[]),
            Err(Refusal::Token)
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3"));
        assert_eq!(check(&h, None, Some("s3"), &[]), Ok(None));
        assert_eq!(check(&h, None, Some("s33"), &[]), Err(Refusal::Token));
        let mut p = HeaderMap::new();
        p.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("gossip, bearer.s3"),
        );
        assert_eq!(
            check(&p, None, Some("s3"), &[]),
            Ok(Some("bearer.s3".to_owned()))
        );
        let mut o = HeaderMap::new();
        o.insert(ORIGIN, HeaderValue::from_static("http://evil.test"));
        let allowed = vec!["http://app.test".to_owned()];
        assert_eq!(check(&o, None, None, &allowed), Err(Refusal::Origin));
        o.insert(ORIGIN, HeaderValue::from_static("http://app.test"));
        assert_eq!(check(&o, None, None, &allowed), Ok(None));
    }
}
