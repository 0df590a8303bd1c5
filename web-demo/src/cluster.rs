//! The native members of the demo, run in this process: started, killed (a crash: no leave) and
//! restarted (same identity, name and addresses, a new incarnation) on request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gossip_core::{ClusterKey, Config, Event, Identity};
use gossip_server::gossip_core::Grant;
use gossip_server::{Admission, Gossip, GossipConfig};

/// Browser tabs join as admitted members named with this prefix (the natives' grant); they never
/// see the cluster key.
pub const TAB_PREFIX: &str = "tab-";
use serde::Serialize;
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::DemoError;
use crate::observed::{BroadcastView, Observed, ProbeView, SAMPLE_EVERY};

/// Metadata of the native members, cycled: two roles and four zones, so that filters such as
/// `role=worker` or `zone~eu` select interesting subsets.
const PROFILES: [(&str, &str); 6] = [
    ("api", "eu-west"),
    ("worker", "eu-west"),
    ("worker", "us-east"),
    ("api", "us-east"),
    ("worker", "eu-central"),
    ("worker", "ap-south"),
];

/// How long a graceful stop of one member may take before it is killed instead.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one member may take to report its status before the view goes on without it.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What the cluster is started with.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of native members.
    pub members: usize,
    /// Address every listener binds (port 0: the OS picks).
    pub bind: IpAddr,
    /// The engine settings every native member runs with (its name is set per member).
    pub core: Config,
    /// The name of the preset `core` follows (`lan`, `wan` or `local`), for browser members.
    pub preset: &'static str,
}

/// The secrets of this demo run, handed to the page so it can join.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Encrypts every frame of this cluster.
    pub key: ClusterKey,
    /// Required on every WebSocket upgrade.
    pub token: String,
}

/// The native members and the secrets they share.
#[derive(Debug)]
pub struct Cluster {
    secrets: Secrets,
    options: ClusterOptions,
    natives: Mutex<Vec<Native>>,
}

/// One native member, running or not.
struct Native {
    name: String,
    metadata: Vec<(String, String)>,
    identity: Identity,
    /// UDP and TCP share this address; kept across restarts.
    net: SocketAddr,
    /// The WebSocket (HTTP) listener; kept across restarts.
    ws: SocketAddr,
    running: Option<Running>,
    observed: Arc<Observed>,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("name", &self.name)
            .field("id", &self.identity.id())
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

struct Running {
    gossip: Gossip,
    responder: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

/// A native member as `GET /api/cluster` shows it.
#[derive(Debug, Serialize)]
pub struct NativeView {
    /// Its name (`native-N`).
    pub name: String,
    /// Its id (stable across restarts).
    pub id: String,
    /// Whether it runs now (false after a kill, until a restart).
    pub running: bool,
    /// Its WebSocket URL, a seed for browsers.
    pub ws: String,
    /// The metadata it starts with.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Its own status (the JSON of `GET /gossip/status`) while it runs.
    pub status: Option<serde_json::Value>,
    /// Members it probed lately (see `observed`), newest first; none while it is stopped.
    pub probes: Vec<ProbeView>,
    /// Broadcasts it received lately, oldest first.
    pub broadcasts: Vec<BroadcastView>,
}

/// What a native member answers to any request: who it is, its clock, and the request's text.
#[derive(Debug, Serialize)]
struct Reply<'a> {
    name: &'a str,
    time_unix_ms: u64,
    topic: &'a str,
    echo: String,
}

impl Cluster {
    /// Prepares `options.members` members (identities, secrets) without starting them.
    pub fn new(options: ClusterOptions) -> Result<Cluster, DemoError> {
        let key = ClusterKey::from_bytes(random_bytes()?);
        let token = hex(&random_bytes()?[..16]);
        let mut natives = Vec::with_capacity(options.members);
        for i in 0..options.members {
            let (role, zone) = PROFILES[i % PROFILES.len()];
            natives.push(Native {
                name: format!("native-{}", i + 1),
                metadata: vec![
                    ("role".into(), role.into()),
                    ("zone".into(), zone.into()),
                    ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ],
                identity: Identity::from_secret_bytes(random_bytes()?),
                net: SocketAddr::new(options.bind, 0),
                ws: SocketAddr::new(options.bind, 0),
                running: None,
                observed: Arc::default(),
            });
        }
        Ok(Cluster {
            secrets: Secrets { key, token },
            options,
            natives: Mutex::new(natives),
        })
    }

    /// The secrets the page needs to join.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The engine settings of the native members.
    pub fn core(&self) -> &Config {
        &self.options.core
    }

    /// The name of the timing preset of the native members.
    pub fn preset(&self) -> &'static str {
        self.options.preset
    }

    /// Starts every member, each joining the ones started before it.
    pub async fn start_all(&self) -> Result<(), DemoError> {
        let mut natives = self.natives.lock().await;
        for i in 0..natives.len() {
            self.start_one(&mut natives, i).await?;
        }
        Ok(())
    }

    /// Stops `name` at once, without a leave: the others have to detect it.
    pub async fn kill(&self, name: &str) -> Result<(), DemoError> {
        let mut natives = self.natives.lock().await;
        let native = find(&mut natives, name)?;
        let running = native
            .running
            .take()
            .ok_or_else(|| DemoError::NotRunning(name.into()))?;
        running.responder.abort();
        running.sampler.abort();
        running.gossip.kill().await;
        info!(member = %name, "killed (no leave)");
        Ok(())
    }

    /// Starts `name` again with its identity, name and addresses; it rejoins through the others.
    pub async fn restart(&self, name: &str) -> Result<(), DemoError> {
        let mut natives = self.natives.lock().await;
        let index = natives
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| DemoError::UnknownMember(name.into()))?;
        if natives[index].running.is_some() {
            return Err(DemoError::AlreadyRunning(name.into()));
        }
        self.start_one(&mut natives, index).await?;
        info!(member = %name, "restarted");
        Ok(())
    }

    /// Every member leaves gracefully (in parallel, each bounded by a timeout).
    pub async fn shutdown(&self) {
        let mut natives = self.natives.lock().await;
        let mut stops = Vec::new();
        for native in natives.iter_mut() {
            if let Some(running) = native.running.take() {
                let name = native.name.clone();
                stops.push(tokio::spawn(async move {
                    running.responder.abort();
                    running.sampler.abort();
                    let gossip = running.gossip;
                    if tokio::time::timeout(STOP_TIMEOUT, gossip.shutdown())
                        .await
                        .is_err()
                    {
                        warn!(member = %name, "graceful stop timed out; killing it");
                        gossip.kill().await;
                    }
                }));
            }
        }
        for stop in stops {
            if let Err(e) = stop.await {
                warn!("a member's stop task failed: {e}");
            }
        }
    }

    /// The WebSocket URLs of the running members, in member order.
    pub async fn seeds(&self) -> Vec<String> {
        let natives = self.natives.lock().await;
        natives
            .iter()
            .filter(|n| n.running.is_some())
            .map(|n| ws_url(n.ws))
            .collect()
    }

    /// Every member with its status.
    pub async fn view(&self) -> Vec<NativeView> {
        let natives = self.natives.lock().await;
        let mut views = Vec::with_capacity(natives.len());
        let now = Instant::now();
        for n in natives.iter() {
            let status = match &n.running {
                Some(r) => match tokio::time::timeout(STATUS_TIMEOUT, r.gossip.status()).await {
                    Ok(Ok(status)) => serde_json::to_value(status)
                        .map_err(|e| warn!(member = %n.name, "status does not serialize: {e}"))
                        .ok(),
                    Ok(Err(e)) => {
                        debug!(member = %n.name, "no status: {e}");
                        None
                    }
                    Err(_) => {
                        warn!(member = %n.name, "no status within {STATUS_TIMEOUT:?}");
                        None
                    }
                },
                None => None,
            };
            views.push(NativeView {
                name: n.name.clone(),
                id: n.identity.id().to_string(),
                running: n.running.is_some(),
                ws: ws_url(n.ws),
                metadata: n.metadata.iter().cloned().collect(),
                status,
                // A stopped member probes no one, whatever it did before.
                probes: if n.running.is_some() {
                    n.observed.probes(now)
                } else {
                    Vec::new()
                },
                broadcasts: n.observed.broadcasts(now),
            });
        }
        views
    }

    async fn start_one(&self, natives: &mut [Native], index: usize) -> Result<(), DemoError> {
        let seeds: Vec<String> = natives
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != index && n.running.is_some())
            .map(|(_, n)| ws_url(n.ws))
            .collect();
        let native = &mut natives[index];
        let mut cfg = GossipConfig::new(self.options.core.clone().with_name(native.name.clone()))
            .with_key(self.secrets.key.clone())
            .with_token(self.secrets.token.clone())
            // Any tab may join, as a `tab-*` member that speaks only for itself. A real service
            // would look the visitor's session up here.
            .with_admission(Admission::open(
                Grant::new()
                    .with_name_prefix(TAB_PREFIX)
                    .with_rate(1_000, 2_000),
            ))
            .with_bind(native.net);
        cfg.identity = Some(native.identity.clone());
        cfg.seeds = seeds;
        cfg.metadata = native
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        // A restart reuses the member's ports; should one have been taken meanwhile, any will do.
        let gossip = match Gossip::start(cfg.clone()).await {
            Ok(g) => g,
            Err(e) if native.net.port() != 0 => {
                warn!(member = %native.name, "cannot reuse {}: {e}; taking a new port", native.net);
                Gossip::start(cfg.with_bind(SocketAddr::new(native.net.ip(), 0))).await?
            }
            Err(e) => return Err(e.into()),
        };
        let ws = match gossip.serve(native.ws).await {
            Ok(addr) => addr,
            Err(e) if native.ws.port() != 0 => {
                warn!(member = %native.name, "cannot reuse {}: {e}; taking a new port", native.ws);
                match gossip.serve(SocketAddr::new(native.ws.ip(), 0)).await {
                    Ok(addr) => addr,
                    Err(e) => {
                        gossip.kill().await;
                        return Err(e.into());
                    }
                }
            }
            Err(e) => {
                gossip.kill().await;
                return Err(e.into());
            }
        };
        native.ws = ws;
        if let Some(net) = gossip.udp_addr() {
            native.net = net;
        }
        let responder = tokio::spawn(answer_requests(
            gossip.clone(),
            native.name.clone(),
            gossip.subscribe(),
            native.observed.clone(),
        ));
        native.observed.restart();
        let sampler = tokio::spawn(sample_probes(gossip.clone(), native.observed.clone()));
        debug!(member = %native.name, ws = %ws_url(ws), "started");
        native.running = Some(Running {
            gossip,
            responder,
            sampler,
        });
        Ok(())
    }
}

fn find<'a>(natives: &'a mut [Native], name: &str) -> Result<&'a mut Native, DemoError> {
    natives
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| DemoError::UnknownMember(name.into()))
}

/// Answers every request addressed to this member with a [`Reply`].
async fn answer_requests(
    gossip: Gossip,
    name: String,
    mut events: broadcast::Receiver<Event>,
    observed: Arc<Observed>,
) {
    loop {
        match events.recv().await {
            Ok(Event::Request {
                from,
                id,
                topic,
                data,
            }) => {
                let reply = Reply {
                    name: &name,
                    time_unix_ms: unix_ms(),
                    topic: &topic,
                    echo: String::from_utf8_lossy(&data).into_owned(),
                };
                let bytes = match serde_json::to_vec(&reply) {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(member = %name, "reply does not serialize: {e}");
                        continue;
                    }
                };
                if let Err(e) = gossip.respond(from, id, bytes).await {
                    debug!(member = %name, "cannot answer {from}: {e}");
                }
            }
            Ok(Event::Broadcast { from, topic, data }) => {
                observed.received(Instant::now(), from, &topic, &data);
                debug!(member = %name, %from, %topic, bytes = data.len(), "broadcast");
            }
            Ok(Event::Direct { from, topic, data }) => {
                let text = String::from_utf8_lossy(&data);
                info!(member = %name, %from, %topic, "message: {text}");
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(member = %name, "missed {n} events");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Reads the member's probe round trips every [`SAMPLE_EVERY`] until it stops.
async fn sample_probes(gossip: Gossip, observed: Arc<Observed>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rtts = gossip
            .with_node(|node, _| {
                node.members()
                    .map(|m| (m.id, m.rtt_micros))
                    .collect::<Vec<_>>()
            })
            .await;
        let Ok(rtts) = rtts else { break };
        observed.sample(Instant::now(), rtts);
    }
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/gossip/ws")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random_bytes() -> Result<[u8; 32], DemoError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DemoError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Local timings, faster still, so the crash test takes seconds.
    fn fast() -> Config {
        let mut core = Config::local();
        core.probe_interval_ms = 200;
        core.probe_timeout_ms = 100;
        core.gossip_interval_ms = 50;
        core
    }

    async fn cluster(members: usize) -> Cluster {
        let cluster = Cluster::new(ClusterOptions {
            members,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            core: fast(),
            preset: "local",
        })
        .unwrap();
        cluster.start_all().await.unwrap();
        cluster
    }

    /// The state of `name` in the status of `observer`, once `accept` holds for it.
    async fn wait_state(
        cluster: &Cluster,
        observer: &str,
        name: &str,
        accept: &[&str],
        within: Duration,
    ) -> (String, u64) {
        let deadline = Instant::now() + within;
        loop {
            let view = cluster.view().await;
            let status = view
                .iter()
                .find(|n| n.name == observer)
                .and_then(|n| n.status.clone());
            let member = status
                .as_ref()
                .and_then(|s| s["members"].as_array())
                .and_then(|ms| ms.iter().find(|m| m["name"] == name));
            if let Some(m) = member {
                let state = m["state"].as_str().unwrap_or_default().to_string();
                if accept.contains(&state.as_str()) {
                    return (state, m["incarnation"].as_u64().unwrap_or_default());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{observer} never saw {name} in {accept:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_join_answer_requests_and_survive_a_kill_and_restart() {
        let cluster = cluster(3).await;
        let core = fast();
        let (_, max) = core.suspicion_timeout_ms(3);
        let converge = Duration::from_secs(10);
        for observer in ["native-1", "native-2", "native-3"] {
            for name in ["native-1", "native-2", "native-3"] {
                if observer != name {
                    wait_state(&cluster, observer, name, &["alive"], converge).await;
                }
            }
        }
        assert_eq!(cluster.seeds().await.len(), 3);

        // A request to a member is answered with its name and the request's text.
        let (asker, target) = {
            let natives = cluster.natives.lock().await;
            (
                natives[0].running.as_ref().unwrap().gossip.clone(),
                natives[2].identity.id(),
            )
        };
        let reply = asker
            .request(target, "time", b"hi".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["name"], "native-3");
        assert_eq!(reply["topic"], "time");
        assert_eq!(reply["echo"], "hi");
        assert!(reply["time_unix_ms"].as_u64().unwrap() > 0);

        let (_, incarnation) =
            wait_state(&cluster, "native-1", "native-2", &["alive"], converge).await;
        let id_before = cluster.view().await[1].id.clone();
        cluster.kill("native-2").await.unwrap();
        assert!(matches!(
            cluster.kill("native-2").await,
            Err(DemoError::NotRunning(_))
        ));
        assert_eq!(cluster.seeds().await.len(), 2);
        let killed = Instant::now();
        // Suspect first (or already dead, should a poll have missed the suspicion), then dead.
        let (first, _) = wait_state(
            &cluster,
            "native-1",
            "native-2",
            &["suspect", "dead"],
            converge,
        )
        .await;
        let bound = Duration::from_millis(3 * core.probe_interval_ms + max) + converge;
        wait_state(&cluster, "native-1", "native-2", &["dead"], bound).await;
        assert_eq!(first, "suspect", "native-2 went dead without being suspect");
        assert!(killed.elapsed() < bound);

        assert!(matches!(
            cluster.restart("native-3").await,
            Err(DemoError::AlreadyRunning(_))
        ));
        assert!(matches!(
            cluster.restart("native-9").await,
            Err(DemoError::UnknownMember(_))
        ));
        cluster.restart("native-2").await.unwrap();
        let (_, incarnation_after) =
            wait_state(&cluster, "native-1", "native-2", &["alive"], converge).await;
        wait_state(&cluster, "native-3", "native-2", &["alive"], converge).await;
        assert!(
            incarnation_after > incarnation,
            "{incarnation_after} <= {incarnation}"
        );
        assert_eq!(
            cluster.view().await[1].id,
            id_before,
            "a restart keeps the identity"
        );
        cluster.shutdown().await;
        assert!(cluster.view().await.iter().all(|n| !n.running));
    }

    /// What the graph draws: each member's probes of the others, as they happen, and each
    /// broadcast where it arrived; a killed member reports nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn view_reports_recent_probes_and_received_broadcasts() {
        let cluster = cluster(3).await;
        let ids: Vec<String> = cluster.view().await.into_iter().map(|n| n.id).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Every member probes both others within a few probe rounds (200 ms each).
        loop {
            let view = cluster.view().await;
            let done = view.iter().all(|n| {
                ids.iter()
                    .filter(|id| **id != n.id)
                    .all(|id| n.probes.iter().any(|p| p.to == *id))
            });
            if done {
                for n in &view {
                    assert!(n.probes.iter().all(|p| p.to != n.id && p.rtt_ms > 0.0));
                    assert!(n.probes.windows(2).all(|w| w[0].ago_ms <= w[1].ago_ms));
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not every member probed the others: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let sender = {
            let natives = cluster.natives.lock().await;
            natives[0].running.as_ref().unwrap().gossip.clone()
        };
        sender.broadcast("chat", b"hello".to_vec()).await.unwrap();
        let digest = format!("{:08x}", crate::observed::fnv1a(b"hello"));
        loop {
            let view = cluster.view().await;
            let got = |n: &NativeView| {
                n.broadcasts
                    .iter()
                    .any(|b| b.from == ids[0] && b.topic == "chat" && b.digest == digest)
            };
            if view[1..].iter().all(got) {
                assert!(
                    !got(&view[0]),
                    "the sender does not receive its own broadcast"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the broadcast did not reach every member"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        cluster.kill("native-3").await.unwrap();
        let view = cluster.view().await;
        assert!(!view[2].running && view[2].probes.is_empty());
        assert!(!view[1].probes.is_empty());
        cluster.shutdown().await;
    }
}
