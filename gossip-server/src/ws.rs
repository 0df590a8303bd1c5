//! WebSocket: the axum route (inbound) and the tokio-tungstenite client (outbound).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::admission::AdmissionRequest;
use crate::auth::{self, Refusal};
use gossip_core::link::{CloseCode, LinkDrop};

use crate::conn::{self, ConnHandle, ConnId, Input, LinkIn, LinkOut, Opening, Transport};
use crate::error::StartError;
use crate::handle::Gossip;
use crate::shared::{Shared, Slot};

/// How long the admission hook may take before the client is refused.
const ADMISSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Read and write buffer of each WebSocket (frames larger than this still pass, in pieces).
const IO_BUFFER: usize = 8 * 1024;

/// `GET /ws`: checks the door, upgrades, greets with the node id and pumps frames.
pub(crate) async fn handler(
    State(gossip): State<Gossip>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    // Present when the app serves the router with connect info (`serve` does).
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let shared = gossip.shared().clone();
    let max = shared.limits.max_frame;
    let verdict = auth::check(
        &headers,
        query.get("token").map(String::as_str),
        shared.token.as_deref(),
        &shared.allowed_origins,
    );
    // A client that presents the node's token is a full member; with an admission hook, any
    // other client is the web app's to admit (or refuse) as a member without the cluster key.
    let presented = verdict.is_ok() && (shared.token.is_some() || shared.admission.is_none());
    let admitted = match (&verdict, &shared.admission) {
        (Err(Refusal::Origin), _) => None,
        (_, Some(hook)) if !presented => {
            let request = AdmissionRequest {
                headers: headers.clone(),
                query: query.clone(),
                peer: connect.map(|Extension(ConnectInfo(addr))| addr),
            };
            let decided = tokio::time::timeout(ADMISSION_TIMEOUT, hook.decide(request)).await;
            Some(decided.unwrap_or_else(|_| Err("the admission hook did not answer".into())))
        }
        _ => None,
    };
    // Small I/O buffers: most frames are a few hundred bytes, and a server holds thousands of
    // members' connections (tungstenite's defaults are 128 KiB each way).
    let mut upgrade = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(IO_BUFFER)
        .write_buffer_size(IO_BUFFER);
    if presented && let Ok(Some(protocol)) = &verdict {
        upgrade = upgrade.protocols([protocol.clone()]);
    }
    // Refusals still upgrade, then close with a code: a browser sees the close code and reason,
    // while a plain HTTP error reaches its script only as an anonymous failure.
    upgrade.on_upgrade(move |socket| async move {
        let grant = match (verdict, admitted) {
            (Err(Refusal::Origin), _) => {
                Err((CloseCode::Forbidden, LinkDrop::ForbiddenOrigin, None))
            }
            (_, Some(Ok(grant))) => Ok(Some(grant)),
            (_, Some(Err(reason))) => Err((
                CloseCode::NotAdmitted,
                LinkDrop::NotAdmitted,
                Some(crate::admission::close_reason(&reason)),
            )),
            (Err(Refusal::Token), None) => {
                Err((CloseCode::Unauthorized, LinkDrop::Unauthorized, None))
            }
            (Ok(_), None) => Ok(None),
        };
        let open = grant.and_then(|grant| {
            shared.try_open().map(|slot| (slot, grant)).ok_or((
                CloseCode::TooManyConnections,
                LinkDrop::TooManyConnections,
                None,
            ))
        });
        let (open, grant) = match open {
            Ok(open) => open,
            Err((code, drop, reason)) => {
                shared.count_drop(drop);
                return refuse(socket, code, reason).await;
            }
        };
        let Some(opening) = Opening::accept(&shared.identity, shared.versions) else {
            return refuse(socket, CloseCode::GoingAway, None).await;
        };
        let id = shared.next_conn_id();
        let (tx, rx) = mpsc::channel(shared.limits.conn_queue);
        let handle = ConnHandle {
            tx,
            closer: conn::Closer::new(&shared.cancel),
        };
        let accepted = Input::Accepted {
            id,
            handle: handle.clone(),
            transport: Transport::WebSocket,
            slot: open.clone(),
            grant,
        };
        if shared.inbound.send(accepted).await.is_err() {
            return refuse(socket, CloseCode::GoingAway, None).await;
        }
        serve_socket(shared, open, id, socket, rx, handle, opening).await;
    })
}

async fn refuse(mut socket: WebSocket, code: CloseCode, reason: Option<String>) {
    let frame = CloseFrame {
        code: code.code(),
        reason: reason.unwrap_or_else(|| code.reason().to_owned()).into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn serve_socket(
    shared: Arc<Shared>,
    open: Arc<Slot>,
    id: ConnId,
    socket: WebSocket,
    rx: mpsc::Receiver<Vec<u8>>,
    handle: ConnHandle,
    opening: Opening,
) {
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: LinkOut| async move {
        Ok::<_, axum::Error>(match out {
            LinkOut::Binary(b) => Message::Binary(b.into()),
            LinkOut::Close(code, reason) => Message::Close(Some(CloseFrame {
                code: code.code(),
                reason: reason.as_ref().into(),
            })),
        })
    });
    let stream = stream.filter_map(|m| async move {
        match m {
            Ok(Message::Binary(b)) => Some(LinkIn::Binary(b.to_vec())),
            Ok(Message::Text(_)) => Some(LinkIn::Text),
            Ok(Message::Ping(_) | Message::Pong(_)) => None,
            Ok(Message::Close(_)) => Some(LinkIn::End),
            Err(e) if is_too_big(&e.to_string()) => Some(LinkIn::TooBig),
            Err(_) => Some(LinkIn::End),
        }
    });
    conn::run(&shared, open, id, sink, stream, rx, handle.closer, opening).await;
}

fn is_too_big(error: &str) -> bool {
    error.contains("too long") || error.contains("too big") || error.contains("Capacity")
}

/// TLS settings trusting `extra` besides the public web roots; `None` when there is nothing
/// extra (tungstenite's own settings then apply, with the same public roots).
pub(crate) fn client_tls(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<Option<Arc<rustls::ClientConfig>>, StartError> {
    if extra.is_empty() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| StartError::Config(format!("TLS root: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// Dials a `ws://` or `wss://` URL (presenting the dial token) and pumps it; `expected` is the
/// member it was dialed for, if any.
pub(crate) async fn dial(
    shared: Arc<Shared>,
    id: ConnId,
    url: String,
    rx: mpsc::Receiver<Vec<u8>>,
    handle: ConnHandle,
    expected: Option<gossip_core::NodeId>,
) {
    let connect = async {
        let mut request = url.as_str().into_client_request()?;
        // Only to this node's own seeds: a URL learned from a peer could be anyone's, and the
        // token is what lets a client in.
        if let Some(token) = shared.dial_token_for(&url) {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                tungstenite::Error::Url(tungstenite::error::UrlError::EmptyHostName)
            })?;
            request
                .headers_mut()
                .insert(axum::http::header::AUTHORIZATION, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(shared.limits.max_frame))
            .max_frame_size(Some(shared.limits.max_frame))
            .read_buffer_size(IO_BUFFER)
            .write_buffer_size(IO_BUFFER);
        let connector = shared.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
            .await
    };
    let socket = tokio::select! {
        _ = handle.closer_cancelled() => Err("cancelled".to_string()),
        r = tokio::time::timeout(shared.limits.dial_timeout, connect) => match r {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => {
                tracing::debug!(%url, error = %e, "websocket dial failed");
                Err(e.to_string())
            }
            Err(_) => {
                tracing::debug!(%url, "websocket dial timed out");
                Err("timed out".to_string())
            }
        },
    };
    let opening = Opening::dial(&shared.identity, shared.versions, expected)
        .ok_or_else(|| "no randomness".to_string());
    let (socket, opening) = match socket.and_then(|s| opening.map(|o| (s, o))) {
        Ok(both) => both,
        Err(reason) => {
            shared.count_drop(LinkDrop::DialFailed);
            let _ = shared.inbound.send(Input::DialFailed { id, reason }).await;
            return;
        }
    };
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: LinkOut| async move {
        Ok::<_, tungstenite::Error>(match out {
            LinkOut::Binary(b) => tungstenite::Message::Binary(b.into()),
            LinkOut::Close(code, reason) => {
                tungstenite::Message::Close(Some(tungstenite::protocol::CloseFrame {
                    code: code.code().into(),
                    reason: reason.as_ref().into(),
                }))
            }
        })
    });
    let stream = stream.filter_map(|m| async move {
        match m {
            Ok(tungstenite::Message::Binary(b)) => Some(LinkIn::Binary(b.to_vec())),
            Ok(tungstenite::Message::Text(_)) => Some(LinkIn::Text),
            Ok(tungstenite::Message::Close(Some(f))) => {
                Some(LinkIn::PeerClosed(f.code.into(), f.reason.to_string()))
            }
            Ok(tungstenite::Message::Close(None)) => Some(LinkIn::End),
            Ok(_) => None,
            Err(tungstenite::Error::Capacity(_)) => Some(LinkIn::TooBig),
            Err(_) => Some(LinkIn::End),
        }
    });
    let open = shared.connection_opened();
    conn::run(&shared, open, id, sink, stream, rx, handle.closer, opening).await;
}
