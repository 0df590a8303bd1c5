//! The web app's say on who joins without the cluster key.
//!
//! A WebSocket client that presents the node's token is a full member (a native node, or a
//! trusted client given the cluster key). Any other client is handed to the [`Admission`] hook,
//! when one is set: the hook sees the upgrade request (headers with cookies, the query) and
//! returns a [`Grant`] (the client becomes an *admitted* member: it never sees the cluster key,
//! its link is sealed with the key its handshake agreed, and this node holds it to the grant, see
//! [`gossip_core::admission`]) or a reason to refuse it (the connection is closed with
//! [`CloseCode::NotAdmitted`](gossip_core::link::CloseCode::NotAdmitted), 4406, and that
//! reason). Without a hook, a client without the token is refused (4401) when the node has a
//! token, as before.
//!
//! The grant also says what the member is told ([`gossip_core::ViewScope`]: every member, those
//! that share a group with it, or only the full members) and how much metadata it may publish
//! ([`Grant::max_metadata_bytes`]). Serve admitted members over `wss://` in production: the link
//! key keeps frames confidential, but the hook's cookies and tokens travel in the upgrade
//! request, which only TLS protects.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::HeaderMap;
use gossip_core::Grant;

/// What the hook sees of a WebSocket upgrade.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdmissionRequest {
    /// The request's headers (`Cookie`, `Authorization`, `Origin`, ...).
    pub headers: HeaderMap,
    /// The query parameters.
    pub query: HashMap<String, String>,
    /// The peer's socket address: set when the router is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (as [`Gossip::serve`](crate::Gossip::serve)
    /// does), `None` otherwise. Behind a reverse proxy it is the proxy's address: take the
    /// client's from the header the proxy sets (`X-Forwarded-For`, `Forwarded`), and only from
    /// a proxy you trust.
    pub peer: Option<SocketAddr>,
}

type Hook = dyn Fn(AdmissionRequest) -> Pin<Box<dyn Future<Output = Result<Grant, String>> + Send>>
    + Send
    + Sync;

/// The admission hook: `Ok(grant)` admits the client, `Err(reason)` refuses it (the reason is
/// sent in the close frame: at most 100 bytes of it, and nothing secret).
#[derive(Clone)]
pub struct Admission(Arc<Hook>);

impl Admission {
    /// A hook from an async function or closure.
    pub fn new<F, Fut>(hook: F) -> Admission
    where
        F: Fn(AdmissionRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Grant, String>> + Send + 'static,
    {
        Admission(Arc::new(move |req| Box::pin(hook(req))))
    }

    /// Admits every client with `grant` (a demo, or a service whose pages are public).
    pub fn open(grant: Grant) -> Admission {
        Admission::new(move |_| {
            let grant = grant.clone();
            async move { Ok(grant) }
        })
    }

    pub(crate) async fn decide(&self, request: AdmissionRequest) -> Result<Grant, String> {
        (self.0)(request).await
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission(..)")
    }
}

/// `reason` cut to fit a close frame (123 bytes with the prefix), on a character boundary.
pub(crate) fn close_reason(reason: &str) -> String {
    let mut out = String::from("not admitted: ");
    for c in reason.chars() {
        if out.len() + c.len_utf8() > 120 {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame() {
        assert_eq!(close_reason("no session"), "not admitted: no session");
        let long = "é".repeat(200);
        let r = close_reason(&long);
        assert!(r.len() <= 120 && r.starts_with("not admitted: é"));
    }
}
