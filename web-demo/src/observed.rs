//! What the dashboard's graph draws that a node's status does not say: whom each native member
//! probed lately, and when it received each recent broadcast.
//!
//! The engine keeps, per member, the round trip of the last direct probe it answered
//! (`Member::rtt_micros`), not when that probe happened. A sampler reads it every
//! [`SAMPLE_EVERY`]: a round trip that changed means a new probe was answered since the last
//! sample. Two probes measured to the same microsecond in a row would be missed; the next one is
//! seen. Broadcasts are recorded as the member's event stream delivers them, keyed by origin,
//! topic and an FNV-1a digest of the bytes (the page computes the same digest of what it sent or
//! received, so it can match them without the server echoing peer-chosen data back).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gossip_core::NodeId;
use serde::Serialize;

/// How often the sampler reads a member's round trips: well below the probe interval, so each
/// probe is timed to within this.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Probes older than this are not reported (the page draws the last few seconds only).
const PROBE_HORIZON: Duration = Duration::from_secs(30);
/// Broadcasts remembered per member.
const BROADCASTS_KEPT: usize = 32;
/// Longest topic reported back (topics are chosen by whoever broadcasts).
const TOPIC_MAX: usize = 64;

/// One member's observations; kept across restarts of the member.
#[derive(Debug, Default)]
pub struct Observed {
    probes: Mutex<HashMap<NodeId, Probe>>,
    broadcasts: Mutex<VecDeque<Received>>,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    rtt_micros: u64,
    /// When the sampler saw this round trip first; `None` for one present at the first sample
    /// (measured at some unknown earlier time).
    seen: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Received {
    from: NodeId,
    topic: String,
    digest: u32,
    at: Instant,
}

/// A probe as `GET /api/cluster` shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProbeView {
    /// The probed member's id.
    pub to: String,
    /// How long ago its ack came back, in milliseconds (to within [`SAMPLE_EVERY`]).
    pub ago_ms: u64,
    /// That probe's round trip.
    pub rtt_ms: f64,
}

/// A received broadcast as `GET /api/cluster` shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct BroadcastView {
    /// Its origin's id.
    pub from: String,
    /// Its topic (cut to 64 bytes).
    pub topic: String,
    /// FNV-1a (32 bits) of its data, as 8 hex digits.
    pub digest: String,
    /// How long ago this member received it, in milliseconds.
    pub ago_ms: u64,
}

impl Observed {
    /// Records the round trips a member reports now (`rtt_micros` per member id).
    pub fn sample(&self, now: Instant, rtts: impl IntoIterator<Item = (NodeId, Option<u64>)>) {
        let mut probes = lock(&self.probes);
        let first = probes.is_empty();
        let mut present = Vec::new();
        for (id, rtt) in rtts {
            present.push(id);
            let Some(rtt) = rtt else { continue };
            match probes.get_mut(&id) {
                Some(p) if p.rtt_micros == rtt => {}
                Some(p) => {
                    *p = Probe {
                        rtt_micros: rtt,
                        seen: Some(now),
                    }
                }
                None => {
                    let seen = (!first).then_some(now);
                    probes.insert(
                        id,
                        Probe {
                            rtt_micros: rtt,
                            seen,
                        },
                    );
                }
            }
        }
        // Only members the node still knows: the map stays as small as its membership.
        probes.retain(|id, _| present.contains(id));
    }

    /// Forgets the round trips (the member restarts with an empty view).
    pub fn restart(&self) {
        lock(&self.probes).clear();
    }

    /// Records a broadcast this member received.
    pub fn received(&self, now: Instant, from: NodeId, topic: &str, data: &[u8]) {
        let mut cut = topic.len().min(TOPIC_MAX);
        while !topic.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut list = lock(&self.broadcasts);
        if list.len() == BROADCASTS_KEPT {
            list.pop_front();
        }
        list.push_back(Received {
            from,
            topic: topic[..cut].to_owned(),
            digest: fnv1a(data),
            at: now,
        });
    }

    /// Probes answered within the horizon, newest first.
    pub fn probes(&self, now: Instant) -> Vec<ProbeView> {
        let probes = lock(&self.probes);
        let mut out: Vec<ProbeView> = probes
            .iter()
            .filter_map(|(id, p)| {
                let ago = now.saturating_duration_since(p.seen?);
                (ago <= PROBE_HORIZON).then(|| ProbeView {
                    to: id.to_string(),
                    ago_ms: millis(ago),
                    rtt_ms: p.rtt_micros as f64 / 1_000.0,
                })
            })
            .collect();
        out.sort_by_key(|p| p.ago_ms);
        out
    }

    /// The broadcasts remembered, oldest first.
    pub fn broadcasts(&self, now: Instant) -> Vec<BroadcastView> {
        lock(&self.broadcasts)
            .iter()
            .map(|b| BroadcastView {
                from: b.from.to_string(),
                topic: b.topic.clone(),
                digest: format!("{:08x}", b.digest),
                ago_ms: millis(now.saturating_duration_since(b.at)),
            })
            .collect()
    }
}

/// A poisoned lock only means a sampler panicked mid-update; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// FNV-1a, 32 bits: the page's `digest()` in `app.js` is the same function.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::Identity;

    fn id(n: u8) -> NodeId {
        Identity::from_secret_bytes([n; 32]).id()
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn a_changed_round_trip_is_a_new_probe_and_the_first_sample_has_no_time() {
        let o = Observed::default();
        let t0 = Instant::now();
        let (a, b, c) = (id(1), id(2), id(3));
        o.sample(t0, [(a, Some(500)), (b, None)]);
        assert!(
            o.probes(t0).is_empty(),
            "round trips measured before sampling have no time"
        );
        let t1 = t0 + Duration::from_millis(200);
        o.sample(t1, [(a, Some(500)), (b, Some(700)), (c, None)]);
        let t2 = t1 + Duration::from_millis(200);
        o.sample(t2, [(a, Some(650)), (b, Some(700)), (c, None)]);
        let probes = o.probes(t2 + Duration::from_millis(50));
        assert_eq!(
            probes,
            vec![
                ProbeView {
                    to: a.to_string(),
                    ago_ms: 50,
                    rtt_ms: 0.65
                },
                ProbeView {
                    to: b.to_string(),
                    ago_ms: 250,
                    rtt_ms: 0.7
                },
            ]
        );
        assert!(
            o.probes(t2 + PROBE_HORIZON + Duration::from_secs(1))
                .is_empty()
        );
        // A member the node no longer knows is dropped.
        o.sample(t2, [(b, Some(700))]);
        assert_eq!(o.probes(t2).len(), 1);
    }

    #[test]
    fn broadcasts_are_bounded_and_their_topic_cut_on_a_char_boundary() {
        let o = Observed::default();
        let t0 = Instant::now();
        let long = "é".repeat(TOPIC_MAX);
        for i in 0..(BROADCASTS_KEPT + 5) {
            o.received(t0, id(1), &long, &[i as u8]);
        }
        let list = o.broadcasts(t0 + Duration::from_millis(3));
        assert_eq!(list.len(), BROADCASTS_KEPT);
        assert_eq!(list[0].digest, format!("{:08x}", fnv1a(&[5])));
        assert!(list[0].topic.len() <= TOPIC_MAX && list[0].topic.chars().all(|c| c == 'é'));
        assert_eq!(list[0].ago_ms, 3);
    }
}
