//! Seeds: where to join. Resolved again on every (re)join, so DNS changes are followed.

use std::net::SocketAddr;

use gossip_core::Address;

/// What a seed string names, before DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seed {
    /// A `ws://` or `wss://` URL: dialed as is.
    Url(String),
    /// `tcp://host:port` or `host:port`: every A/AAAA record, over TCP.
    Tcp(String),
    /// `udp://host:port`.
    Udp(String),
    /// `srv+name`: the targets of an SRV record, over TCP.
    Srv(String),
}

/// Parses a seed string.
pub(crate) fn parse(seed: &str) -> Result<Seed, String> {
    let seed = seed.trim();
    if seed.starts_with("ws://") || seed.starts_with("wss://") {
        return Ok(Seed::Url(seed.to_owned()));
    }
    if let Some(name) = seed.strip_prefix("srv+") {
        if name.is_empty() {
            return Err("empty SRV name".into());
        }
        return Ok(Seed::Srv(name.to_owned()));
    }
    let (kind, rest): (fn(String) -> Seed, &str) = if let Some(r) = seed.strip_prefix("tcp://") {
        (Seed::Tcp, r)
    } else if let Some(r) = seed.strip_prefix("udp://") {
        (Seed::Udp, r)
    } else if seed.contains("://") {
        return Err("unknown scheme (use host:port, tcp://, udp://, ws://, wss:// or srv+)".into());
    } else {
        (Seed::Tcp, seed)
    };
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(kind(rest.to_owned()))
        }
        _ => Err("expected host:port".into()),
    }
}

/// Resolves a seed to the addresses to join through.
pub(crate) async fn resolve(seed: &str) -> Result<Vec<Address>, String> {
    match parse(seed)? {
        Seed::Url(url) => Ok(vec![Address::WebSocket(url)]),
        Seed::Tcp(hostport) => Ok(lookup(&hostport)
            .await?
            .into_iter()
            .map(Address::Tcp)
            .collect()),
        Seed::Udp(hostport) => Ok(lookup(&hostport)
            .await?
            .into_iter()
            .map(Address::Udp)
            .collect()),
        Seed::Srv(name) => {
            let resolver = hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| format!("system resolver: {e}"))?
                .build()
                .map_err(|e| format!("resolver: {e}"))?;
            resolve_srv(&resolver, &name).await
        }
    }
}

/// The SRV record's targets (each resolved to all its A/AAAA records), over TCP.
pub(crate) async fn resolve_srv(
    resolver: &hickory_resolver::TokioResolver,
    name: &str,
) -> Result<Vec<Address>, String> {
    let srv = resolver
        .srv_lookup(name)
        .await
        .map_err(|e| format!("SRV {name}: {e}"))?;
    let mut out = Vec::new();
    let targets = srv.answers().iter().filter_map(|r| match &r.data {
        hickory_resolver::proto::rr::RData::SRV(srv) => Some(srv),
        _ => None,
    });
    for record in targets {
        let target = record.target.to_utf8();
        let ips = resolver
            .lookup_ip(target.as_str())
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        out.extend(
            ips.iter()
                .map(|ip| Address::Tcp(SocketAddr::new(ip, record.port))),
        );
    }
    if out.is_empty() {
        return Err(format!("SRV {name}: no targets"));
    }
    Ok(out)
}

async fn lookup(hostport: &str) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host(hostport)
        .await
        .map_err(|e| format!("{hostport}: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("{hostport}: no address"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_refuses_the_rest() {
        assert_eq!(
            parse("ws://a:1/gossip/ws"),
            Ok(Seed::Url("ws://a:1/gossip/ws".into()))
        );
        assert_eq!(parse("wss://a/x"), Ok(Seed::Url("wss://a/x".into())));
        assert_eq!(
            parse("10.0.0.1:7946"),
            Ok(Seed::Tcp("10.0.0.1:7946".into()))
        );
        assert_eq!(
            parse("tcp://node-1:7946"),
            Ok(Seed::Tcp("node-1:7946".into()))
        );
        assert_eq!(
            parse("udp://[::1]:7946"),
            Ok(Seed::Udp("[::1]:7946".into()))
        );
        assert_eq!(
            parse("srv+_gossip._tcp.example"),
            Ok(Seed::Srv("_gossip._tcp.example".into()))
        );
        assert!(parse("node-1").is_err());
        assert!(parse("http://x:1").is_err());
        assert!(parse("srv+").is_err());
        assert!(parse("host:99999").is_err());
    }

    #[tokio::test]
    async fn resolves_localhost_to_every_address() {
        let addrs = resolve("localhost:7946").await.unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| matches!(a, Address::Tcp(s) if s.port() == 7946 && s.ip().is_loopback()))
        );
    }

    /// A DNS server on 127.0.0.1 answering one SRV name with two targets, each with an A record.
    async fn dns_server() -> std::net::SocketAddr {
        use hickory_resolver::proto::op::{Message, OpCode};
        use hickory_resolver::proto::rr::rdata::{A, SRV};
        use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            // Bounded: a handful of queries is all one resolution needs.
            for _ in 0..32 {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut resp = Message::response(query.metadata.id, OpCode::Query);
                resp.metadata.authoritative = true;
                for q in &query.queries {
                    resp.add_query(q.clone());
                    let name = q.name().clone();
                    let target = |t: &str| Name::from_ascii(t).unwrap();
                    match (q.query_type(), name.to_ascii().trim_end_matches('.')) {
                        (RecordType::SRV, "_gossip._tcp.cluster.test") => {
                            for (t, port) in [("a.cluster.test.", 7001), ("b.cluster.test.", 7002)]
                            {
                                let srv = SRV::new(0, 0, port, target(t));
                                resp.add_answer(Record::from_rdata(
                                    name.clone(),
                                    60,
                                    RData::SRV(srv),
                                ));
                            }
                        }
                        (RecordType::A, "a.cluster.test") => {
                            resp.add_answer(Record::from_rdata(
                                name.clone(),
                                60,
                                RData::A(A([127, 0, 0, 11].into())),
                            ));
                        }
                        (RecordType::A, "b.cluster.test") => {
                            resp.add_answer(Record::from_rdata(
                                name.clone(),
                                60,
                                RData::A(A([127, 0, 0, 12].into())),
                            ));
                        }
                        _ => {}
                    }
                }
                let _ = socket.send_to(&resp.to_vec().unwrap(), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn srv_seed_resolves_every_target_through_dns() {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let dns = dns_server().await;
        let mut ns = NameServerConfig::udp(dns.ip());
        ns.connections[0].port = dns.port();
        let resolver = hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()
        .unwrap();
        let mut addrs = resolve_srv(&resolver, "_gossip._tcp.cluster.test.")
            .await
            .unwrap();
        addrs.sort();
        assert_eq!(
            addrs,
            vec![
                Address::Tcp("127.0.0.11:7001".parse().unwrap()),
                Address::Tcp("127.0.0.12:7002".parse().unwrap()),
            ]
        );
        assert!(
            resolve_srv(&resolver, "_nothing._tcp.cluster.test.")
                .await
                .is_err()
        );
    }
}
