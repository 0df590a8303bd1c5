//! The replicated KV store of `examples/kv`: the commands, and a cluster of nodes on loopback
//! that runs them. `tests/kv_example.rs` drives this same code with a script on real sockets.
//!
//! The store is built on the replicated per-member state: a `put` on node N writes the key into
//! N's own map, stamped; a `get` on any node reads every member's copy of the key and takes the
//! newest stamp (ties to the larger member id); a `delete` writes a stamped deletion marker the
//! same way, so it hides older values written by other members. A stamp is the writer's wall
//! clock in ms, raised above every stamp of that key the writer can see: a write made after
//! reading a value always supersedes it. Values live as long as the member that wrote them
//! (a member's map is dropped when it dies or leaves).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gossip_core::{ClusterKey, Config, NodeId};
use gossip_server::{Gossip, GossipConfig};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Keys of the store live under this prefix in each member's map.
const PREFIX: &str = "kv/";
/// How long `sync` waits for every node to agree.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// One stamped value or deletion marker, as stored: stamp (8 bytes LE), 1 for a value or 0 for
/// a deletion, then the value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamped {
    stamp: u64,
    value: Option<Vec<u8>>,
}

impl Stamped {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.stamp.to_le_bytes().to_vec();
        match &self.value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
        out
    }

    /// Anything else another member wrote under `kv/` is ignored.
    fn decode(bytes: &[u8]) -> Option<Stamped> {
        let (stamp, rest) = bytes.split_first_chunk::<8>()?;
        let (flag, value) = rest.split_first()?;
        let value = match flag {
            1 => Some(value.to_vec()),
            0 if value.is_empty() => None,
            _ => return None,
        };
        Some(Stamped {
            stamp: u64::from_le_bytes(*stamp),
            value,
        })
    }
}

/// The store as one node sees it: for each key, the newest stamped write of any member.
async fn view(
    g: &Gossip,
) -> Result<
    std::collections::BTreeMap<String, (u64, NodeId, Option<Vec<u8>>)>,
    Box<dyn std::error::Error>,
> {
    let mut owners: Vec<NodeId> = g.members().await?.iter().map(|m| m.id).collect();
    owners.push(g.id());
    owners.sort_unstable();
    owners.dedup();
    let mut newest = std::collections::BTreeMap::new();
    for owner in owners {
        for entry in g.state_entries(owner).await? {
            let Some(key) = entry.key.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(s) = Stamped::decode(&entry.value) else {
                continue;
            };
            let candidate = (s.stamp, owner, s.value);
            newest
                .entry(key.to_owned())
                .and_modify(|old: &mut (u64, NodeId, Option<Vec<u8>>)| {
                    if (candidate.0, candidate.1) > (old.0, old.1) {
                        *old = candidate.clone();
                    }
                })
                .or_insert_with(|| candidate.clone());
        }
    }
    Ok(newest)
}

/// The live keys and values as `g` sees them, in key order.
pub async fn live(g: &Gossip) -> Result<Vec<(String, Vec<u8>)>, Box<dyn std::error::Error>> {
    Ok(view(g)
        .await?
        .into_iter()
        .filter_map(|(k, (_, _, v))| v.map(|v| (k, v)))
        .collect())
}

async fn write(
    g: &Gossip,
    key: &str,
    value: Option<Vec<u8>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let seen = view(g).await?.get(key).map_or(0, |(s, _, _)| *s);
    let stamp = wall.max(seen.saturating_add(1));
    g.state_set(format!("{PREFIX}{key}"), Stamped { stamp, value }.encode())
        .await?;
    Ok(())
}

/// Whether `bytes` decode as a stored value or marker (for the test of foreign values).
#[cfg(test)]
pub fn decode_for_test(bytes: &[u8]) -> Option<()> {
    Stamped::decode(bytes).map(|_| ())
}

/// Starts `n` nodes on 127.0.0.1 (UDP and TCP on port 0), all joined.
pub async fn cluster(n: usize) -> Result<Vec<Gossip>, Box<dyn std::error::Error>> {
    cluster_with(n, None).await
}

/// As [`cluster`], node 0 admitting WebSocket clients without the cluster key by `admission`
/// (the page's tabs).
pub async fn cluster_with(
    n: usize,
    admission: Option<gossip_server::Admission>,
) -> Result<Vec<Gossip>, Box<dyn std::error::Error>> {
    let key = ClusterKey::from_bytes([42; 32]);
    let mut nodes: Vec<Gossip> = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = GossipConfig::new(Config::local().with_name(format!("kv-{i}")))
            .with_key(key.clone())
            .with_bind("127.0.0.1:0".parse()?);
        if let (0, Some(a)) = (i, admission.clone()) {
            config = config.with_admission(a);
        }
        if let Some(first) = nodes.first() {
            config.seeds = vec![
                first
                    .tcp_addr()
                    .ok_or("node 0 has no TCP port")?
                    .to_string(),
            ];
        }
        nodes.push(Gossip::start(config).await?);
    }
    for g in nodes.iter().skip(1) {
        g.joined(Duration::from_secs(10)).await?;
    }
    Ok(nodes)
}

fn node<'a>(nodes: &'a [Gossip], arg: Option<&str>) -> Result<&'a Gossip, String> {
    let i: usize = arg
        .ok_or("which node?")?
        .parse()
        .map_err(|_| "a node is a number")?;
    nodes
        .get(i)
        .ok_or_else(|| format!("no node {i} (0-{})", nodes.len() - 1))
}

/// Runs one command line; returns what to print, or `None` to stop.
async fn command(
    nodes: &[Gossip],
    line: &str,
) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(Some(String::new()));
    };
    let out = match verb {
        "put" => {
            let g = node(nodes, words.next())?;
            let key = words.next().ok_or("put N KEY VALUE")?;
            let value: Vec<&str> = words.collect();
            write(g, key, Some(value.join(" ").into_bytes())).await?;
            "ok".to_owned()
        }
        "get" => {
            let g = node(nodes, words.next())?;
            let key = words.next().ok_or("get N KEY")?;
            match view(g).await?.remove(key).and_then(|(_, _, v)| v) {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => "(none)".to_owned(),
            }
        }
        "delete" => {
            let g = node(nodes, words.next())?;
            let key = words.next().ok_or("delete N KEY")?;
            write(g, key, None).await?;
            "ok".to_owned()
        }
        "list" => {
            let g = node(nodes, words.next())?;
            let pairs: Vec<String> = live(g)
                .await?
                .into_iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
                .collect();
            format!("[{}]", pairs.join(" "))
        }
        "sync" => {
            // Every node sees the same live keys and values: what a user waits for before
            // reading on another node.
            let start = tokio::time::Instant::now();
            loop {
                let mut views = Vec::with_capacity(nodes.len());
                for g in nodes {
                    views.push(live(g).await?);
                }
                if views.windows(2).all(|w| w[0] == w[1]) {
                    break format!("synced in {} ms", start.elapsed().as_millis());
                }
                if start.elapsed() > SYNC_TIMEOUT {
                    return Err("the nodes did not agree within 30 s".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        "quit" | "exit" => return Ok(None),
        "help" => "put N KEY VALUE | get N KEY | delete N KEY | list N | sync | quit".to_owned(),
        other => format!("unknown command {other:?} (try help)"),
    };
    Ok(Some(out))
}

/// Runs commands from `input`, one per line, printing one answer line per command to
/// `output`, until `quit` or the end of the input; then shuts the nodes down. Lines starting
/// with `#` are echoed, not run. An error in one command is printed and the next runs.
pub async fn run(
    nodes: Vec<Gossip>,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.starts_with('#') {
            output.write_all(format!("{line}\n").as_bytes()).await?;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let answer = match command(&nodes, line).await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => format!("error: {e}"),
        };
        output.write_all(format!("{answer}\n").as_bytes()).await?;
        output.flush().await?;
    }
    for g in &nodes {
        g.shutdown().await;
    }
    Ok(())
}
