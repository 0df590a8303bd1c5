//! `wss://`: a member whose WebSocket route sits behind TLS (a self-signed certificate on the
//! user's own listener) is joined by a node that trusts that certificate, and refused by one that
//! trusts only the public web roots.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gossip_server::{Gossip, GossipConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const T: Duration = Duration::from_secs(20);

/// The user's TLS listener, handed to `axum::serve`.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate fails its handshake: keep serving others.
            if let Ok(Ok(tls)) = tokio::time::timeout(T, self.acceptor.accept(tcp)).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A node serving its router over TLS with a fresh self-signed certificate for 127.0.0.1; its
/// `wss://` URL and the certificate's PEM.
async fn tls_hub() -> (Gossip, String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], private)
        .unwrap();
    let tcp = TcpListener::bind(localhost()).await.unwrap();
    let url = format!("wss://{}/gossip/ws", tcp.local_addr().unwrap());
    let hub = Gossip::start(GossipConfig::new(fast("tls-hub")).with_key(key()))
        .await
        .unwrap();
    hub.advertise_ws(url.clone()).await.unwrap();
    let app = axum::Router::new().nest("/gossip", hub.router());
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(server)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hub, url, certified.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_over_wss_only_when_they_trust_the_certificate() {
    watch_task_panics();
    let (hub, url, pem) = tls_hub().await;

    // Trusting the certificate: it joins (client-only, so relayed through the hub) and talks.
    let config = GossipConfig::new(fast("trusting"))
        .with_key(key())
        .with_seed(url.clone())
        .with_tls_roots_pem(pem.as_bytes())
        .unwrap();
    let trusting = Gossip::start(config).await.unwrap();
    let ids = [hub.id(), trusting.id()];
    for g in [&hub, &trusting] {
        eventually(T, "joined over wss", || sees_alive(g, &ids)).await;
    }
    hub.set_metadata("tls", b"yes".to_vec()).await.unwrap();
    eventually(T, "metadata over wss", || async {
        status(&trusting)
            .await
            .members
            .iter()
            .any(|m| m.id == hub.id().to_string() && m.metadata.contains_key("tls"))
    })
    .await;

    // Trusting only the public roots: the handshake fails, the dial is counted, nobody joins.
    let config = GossipConfig::new(fast("untrusting"))
        .with_key(key())
        .with_seed(url);
    let untrusting = Gossip::start(config).await.unwrap();
    eventually(T, "a refused wss dial is counted", || async {
        status(&untrusting)
            .await
            .counters
            .drops
            .get("dial_failed")
            .is_some_and(|n| *n > 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        state_of(&hub, &untrusting.id()).await.is_none(),
        "a node that refused the certificate still reached the hub"
    );
    assert!(sees_alive(&hub, &ids).await);

    untrusting.shutdown().await;
    trusting.shutdown().await;
    hub.shutdown().await;
    assert_no_task_panicked();
}

#[test]
fn tls_roots_must_be_pem_certificates() {
    let config = GossipConfig::new(fast("x"));
    assert!(config.clone().with_tls_roots_pem(b"not a pem").is_err());
    let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(config.with_tls_roots_pem(key_only.as_bytes()).is_err());
}
