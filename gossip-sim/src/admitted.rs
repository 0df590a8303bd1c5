//! Admitted members (browser tabs without the cluster key) behind a few full members, by view
//! scope: what a join costs and what a tab's steady state costs, and whether every tab sees
//! exactly what its scope says.
//!
//! `servers` full members join and converge; then `tabs` admitted members are added at once,
//! spread round-robin over the servers, each admitted with the same scope. Under
//! [`Scope::Groups`] the tabs are in rooms of `room_size` consecutive tabs (a room spans the
//! servers), each admitted to see its own room (`room=r<k>`). The join is done when every tab's
//! live members are exactly its view (every full member, itself, and the tabs its scope lets
//! it see, all alive) and every server sees every tab alive. Then the steady state is measured
//! for `measure_ms`: bytes each tab receives and sends, and each server sends and receives, per
//! virtual second.

use std::collections::{BTreeMap, HashSet};

use gossip_core::groups::GroupSpec;
use gossip_core::{Config, Grant, NodeId, State, ViewScope};

use crate::{NetConfig, Sim, VirtualTime};

/// The scope every tab is admitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every member.
    All,
    /// Full members and the tabs of its room.
    Groups,
    /// Full members and itself.
    None,
}

impl Scope {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Groups => "groups",
            Scope::None => "none",
        }
    }
}

/// One run's setup.
#[derive(Debug, Clone)]
pub struct Params {
    /// Full members.
    pub servers: usize,
    /// Admitted members.
    pub tabs: usize,
    /// Their scope.
    pub scope: Scope,
    /// Tabs per room (`Scope::Groups`).
    pub room_size: usize,
    /// Virtual ms of steady state measured after the join.
    pub measure_ms: u64,
    /// Longest wait for the join, virtual ms.
    pub join_max_ms: u64,
    /// Seed.
    pub seed: u64,
    /// Config of every member.
    pub config: Config,
    /// Config of the tabs, when it differs from `config`.
    pub tab_config: Option<Config>,
    /// Network.
    pub net: NetConfig,
    /// Worker threads of the simulator (the run is the same on any number).
    pub threads: usize,
}

/// What one run measured. Rates are bytes per virtual second, as they crossed the network
/// (sealed frames).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Virtual ms from adding the tabs until every view was exact (None: not within the wait).
    pub join_ms: Option<u64>,
    /// Bytes a tab received during the join, mean over tabs.
    pub join_bytes_per_tab: f64,
    /// Bytes a server sent during the join, mean over servers.
    pub join_bytes_per_server: f64,
    /// Steady state: bytes a tab receives per second, mean over tabs.
    pub tab_recv_bytes_per_s: f64,
    /// Steady state: bytes a tab sends per second, mean over tabs.
    pub tab_sent_bytes_per_s: f64,
    /// Steady state: bytes a server sends per second, mean over servers.
    pub server_sent_bytes_per_s: f64,
    /// Steady state: bytes a server receives per second, mean over servers.
    pub server_recv_bytes_per_s: f64,
    /// Whether every view was exact at the end of the measurement too.
    pub views_exact: bool,
    /// Members a tab holds, mean over tabs (itself included).
    pub mean_view: f64,
    /// Inputs the tabs dropped by the end, summed over tabs, by reason (`DropReason::as_str`):
    /// why a view falls short.
    pub tab_drops: BTreeMap<&'static str, u64>,
    /// Inputs the servers dropped by the end, summed over servers, by reason.
    pub server_drops: BTreeMap<&'static str, u64>,
    /// Alive records the servers kept to themselves as likely minted
    /// (`Stats::news_withheld`), summed: an honest join should keep back none.
    pub server_news_withheld: u64,
}

/// The room of tab number `k` (0-based among the tabs).
fn room(k: usize, room_size: usize) -> usize {
    k / room_size.max(1)
}

/// The grant every tab of `scope` gets, for a tab in `room`.
pub fn grant(scope: Scope, room: usize) -> Grant {
    let scope = match scope {
        Scope::All => ViewScope::All,
        Scope::None => ViewScope::None,
        Scope::Groups => {
            let spec: GroupSpec = format!("room=r{room}").parse().expect("a valid group spec");
            ViewScope::Groups(vec![spec])
        }
    };
    Grant::new().with_scope(scope)
}

/// A cluster of `p.servers` converged full members with `p.tabs` admitted members added (not
/// yet run); the tabs' indices.
pub fn build(p: &Params) -> (Sim, Vec<usize>) {
    let mut sim = Sim::joined_on(p.servers, p.seed, p.config.clone(), p.net, p.threads);
    if let Some(c) = &p.tab_config {
        sim.set_config(c.clone());
    }
    let tabs = (0..p.tabs)
        .map(|k| {
            let r = room(k, p.room_size);
            let value = format!("r{r}");
            let meta: &[(&str, &[u8])] = &[("room", value.as_bytes())];
            sim.add_admitted(k % p.servers, grant(p.scope, r), meta)
        })
        .collect();
    (sim, tabs)
}

/// The members tab number `k` should see, by index.
pub fn expected_view(p: &Params, tabs: &[usize], k: usize) -> HashSet<usize> {
    let mut v: HashSet<usize> = (0..p.servers).collect();
    v.insert(tabs[k]);
    match p.scope {
        Scope::All => v.extend(tabs.iter().copied()),
        Scope::Groups => v.extend(
            tabs.iter()
                .enumerate()
                .filter(|(j, _)| room(*j, p.room_size) == room(k, p.room_size))
                .map(|(_, &t)| t),
        ),
        Scope::None => {}
    }
    v
}

/// Whether every tab holds exactly its view, all alive, and every server sees every tab alive.
pub fn views_exact(sim: &Sim, p: &Params, tabs: &[usize]) -> bool {
    let ids: Vec<NodeId> = (0..sim.nodes.len()).map(|i| sim.id(i)).collect();
    let servers_see_all = (0..p.servers).all(|s| {
        tabs.iter().all(|&t| {
            sim.nodes[s]
                .node
                .member(&ids[t])
                .is_some_and(|m| m.state == State::Alive)
        })
    });
    servers_see_all
        && tabs.iter().enumerate().all(|(k, &t)| {
            let node = &sim.nodes[t].node;
            let view = expected_view(p, tabs, k);
            node.members().count() == view.len()
                && view.iter().all(|&j| {
                    node.member(&ids[j])
                        .is_some_and(|m| m.state == State::Alive)
                })
        })
}

/// The tabs whose view is not exact: (tab index, members it holds but should not, members it
/// should see but does not hold alive), for failure messages.
pub fn mismatches(sim: &Sim, p: &Params, tabs: &[usize]) -> Vec<(usize, Vec<usize>, Vec<usize>)> {
    let ids: Vec<NodeId> = (0..sim.nodes.len()).map(|i| sim.id(i)).collect();
    let mut out = Vec::new();
    for (k, &t) in tabs.iter().enumerate() {
        let node = &sim.nodes[t].node;
        let view = expected_view(p, tabs, k);
        let mut extra: Vec<usize> = node
            .members()
            .filter_map(|m| sim.index(&m.id))
            .filter(|j| !view.contains(j))
            .collect();
        let mut missing: Vec<usize> = view
            .iter()
            .copied()
            .filter(|&j| node.member(&ids[j]).is_none_or(|m| m.state != State::Alive))
            .collect();
        extra.sort_unstable();
        missing.sort_unstable();
        if !extra.is_empty() || !missing.is_empty() {
            out.push((t, extra, missing));
        }
    }
    out
}

/// What keeps the views from being exact, counted: tabs a server does not hold alive and
/// (tab, member) pairs a tab holds but should not or should hold alive but does not, by the
/// state it holds them in ("absent" when it does not hold them). For a run's notes.
pub fn shortfall(sim: &Sim, p: &Params, tabs: &[usize]) -> String {
    let ids: Vec<NodeId> = (0..sim.nodes.len()).map(|i| sim.id(i)).collect();
    let state = |node: &gossip_core::Node, j: usize| match node.member(&ids[j]) {
        None => "absent",
        Some(m) => match m.state {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        },
    };
    let mut at_servers: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in 0..p.servers {
        for &t in tabs {
            let st = state(&sim.nodes[s].node, t);
            if st != "alive" {
                *at_servers.entry(st).or_default() += 1;
            }
        }
    }
    let wrong = mismatches(sim, p, tabs);
    let mut missing: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut missing_servers = 0u64;
    let mut extra = 0u64;
    for (t, x, m) in &wrong {
        extra += x.len() as u64;
        for &j in m {
            *missing.entry(state(&sim.nodes[*t].node, j)).or_default() += 1;
            if j < p.servers {
                missing_servers += 1;
            }
        }
    }
    // The first few missing pairs in detail: who serves each side, and how many servers hold
    // the missing member alive (news every server holds but a tab lacks was kept from it).
    let server_of = |i: usize| i.checked_sub(p.servers).map(|k| k % p.servers);
    let pairs: Vec<String> = wrong
        .iter()
        .flat_map(|(t, _, m)| m.iter().map(move |&j| (*t, j)))
        .take(8)
        .map(|(t, j)| {
            let holders = (0..p.servers)
                .filter(|&s| state(&sim.nodes[s].node, j) == "alive")
                .count();
            format!(
                "tab {t} {:?} (server {:?}) lacks {j} {:?} (server {:?}, alive at {holders} servers)",
                ids[t],
                server_of(t),
                ids[j],
                server_of(j)
            )
        })
        .collect();
    let withheld: Vec<u64> = (0..p.servers)
        .map(|s| sim.nodes[s].node.stats().news_withheld)
        .collect();
    format!(
        "shortfall: tabs not alive at servers {at_servers:?}; {} tabs off their view: {extra} extra members, missing by state {missing:?} ({missing_servers} of them servers); news withheld by server {withheld:?}; {}",
        wrong.len(),
        pairs.join("; ")
    )
}

/// Drops at `nodes`, summed by reason.
fn drops(sim: &Sim, nodes: impl Iterator<Item = usize>) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for i in nodes {
        for (reason, n) in &sim.nodes[i].node.stats().drops {
            *out.entry(reason.as_str()).or_insert(0) += n;
        }
    }
    out
}

fn sums(sim: &Sim, nodes: impl Iterator<Item = usize> + Clone) -> (u64, u64) {
    let sent = nodes.clone().map(|i| sim.nodes[i].sent_bytes).sum();
    let recv = nodes.map(|i| sim.nodes[i].recv_bytes).sum();
    (sent, recv)
}

/// Runs in `check_ms` slices until `done` or `max_ms` pass (the virtual ms it took), dropping
/// the nodes' events as it goes: with every tab seeing every tab they would grow by one per
/// pair, and the harness, not the engine, would dominate the memory of the run.
fn run_until(
    sim: &mut Sim,
    max_ms: u64,
    check_ms: u64,
    done: impl Fn(&Sim) -> bool,
) -> Option<u64> {
    let start = sim.now;
    let end = start.plus_millis(max_ms);
    loop {
        for n in &mut sim.nodes {
            n.events.clear();
        }
        if done(sim) {
            return Some(sim.now.micros_since(start) / 1_000);
        }
        if sim.now >= end {
            return None;
        }
        let next = sim.now.plus_millis(check_ms).min(end);
        sim.run_until(next);
    }
}

/// Runs the whole scenario.
pub fn run(p: &Params) -> (Sim, Vec<usize>, Figures) {
    let (mut sim, tabs) = build(p);
    let servers = 0..p.servers;
    let t = || tabs.iter().copied();
    let (_, tab_recv0) = sums(&sim, t());
    let (server_sent0, _) = sums(&sim, servers.clone());
    let join_ms = run_until(&mut sim, p.join_max_ms, 100, |s| views_exact(s, p, &tabs));
    let (_, tab_recv1) = sums(&sim, t());
    let (server_sent1, server_recv1) = sums(&sim, servers.clone());
    let (tab_sent1, _) = sums(&sim, t());
    run_until(&mut sim, p.measure_ms, 1_000, |_| false);
    let (tab_sent2, tab_recv2) = sums(&sim, t());
    let (server_sent2, server_recv2) = sums(&sim, servers.clone());
    let secs = p.measure_ms as f64 / 1_000.0;
    let per = |bytes: u64, n: usize| bytes as f64 / n.max(1) as f64;
    let mean_view = t()
        .map(|i| sim.nodes[i].node.members().count())
        .sum::<usize>() as f64
        / p.tabs.max(1) as f64;
    let figures = Figures {
        join_ms,
        join_bytes_per_tab: per(tab_recv1 - tab_recv0, p.tabs),
        join_bytes_per_server: per(server_sent1 - server_sent0, p.servers),
        tab_recv_bytes_per_s: per(tab_recv2 - tab_recv1, p.tabs) / secs,
        tab_sent_bytes_per_s: per(tab_sent2 - tab_sent1, p.tabs) / secs,
        server_sent_bytes_per_s: per(server_sent2 - server_sent1, p.servers) / secs,
        server_recv_bytes_per_s: per(server_recv2 - server_recv1, p.servers) / secs,
        views_exact: views_exact(&sim, p, &tabs),
        mean_view,
        tab_drops: drops(&sim, t()),
        server_drops: drops(&sim, servers.clone()),
        server_news_withheld: servers
            .map(|i| sim.nodes[i].node.stats().news_withheld)
            .sum(),
    };
    (sim, tabs, figures)
}
