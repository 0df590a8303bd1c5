//! What a member without the cluster key may do: its [`Grant`].
//!
//! A full member (a native node) holds the cluster key and may say anything a member may say. An
//! *admitted* member (a browser tab, any client the web app lets in) never sees the cluster key:
//! it reaches the cluster through one full member's WebSocket, over a link sealed with the key
//! that link's handshake agreed, and that server enforces its grant on everything it says
//! ([`Node::admit_link`](crate::Node::admit_link)). Every word of an admitted member enters the cluster
//! through the server it is connected to, because no other member can open its frames; that
//! server checks it first, and every other full member checks it again against the admission
//! the server signed (below), so the rules hold without trusting any one door for ever.
//!
//! An admitted member may speak only for itself: its alive record (under a name its grant allows,
//! reachable only through its server), its metadata, its leave, its pings and acks, its
//! broadcasts, messages and requests on topics its grant allows, responses, and streams. It may
//! not accuse anyone (suspect, dead), ask for indirect probes, carry anyone else's frames, or
//! send faster than its rate. What it is refused is dropped and counted
//! ([`DropReason::Forbidden`](crate::DropReason::Forbidden),
//! [`DropReason::RateLimited`](crate::DropReason::RateLimited)); the link stays up.
//!
//! # Admissions every member checks
//!
//! With the `admission` feature a node also checks what admitted members say when they are not
//! its own, so a member's admission holds after its server and does not depend on one door. The
//! admitting server signs an [`Admission`](crate::message::Admission) (kind 36): the member's
//! key, its name prefix, its topics and an expiry [`ADMISSION_TTL_MS`] ahead, renewed at half of
//! that while the member stays connected (and never past its grant's lifetime). Every such node
//! then takes the member's records (alive, metadata, leave, broadcasts) and frames (messages,
//! requests) only while it holds an admission of it that
//!
//! - is signed by a live full member (alive or suspect in its own view, holding no admission
//!   itself), which is the relay its alive record names;
//! - has not expired by its own wall clock, and is not revoked (`expires` 0);
//! - allows its name and the topic.
//!
//! When one of these stops holding (the admission expires, the server revokes it, the server is
//! dead or left in this node's view) the member is *left* here, and every member that holds the
//! admission reaches the same verdict on its own: no message has to spread for it. A node with
//! members relayed through it (tabs, which do not decode admissions) tells them with a `Dead` of
//! its own at the member's incarnation. A member whose records arrived before any admission of it
//! is taken as a full member until one arrives (a browser given the cluster key has none); its
//! current alive record is then held to the admission like any later one.
//!
//! What a hostile sender can do with an admission, and why it fails:
//!
//! - *forge one*: it is signed by its issuer, whose key only the issuer holds; one issued by an
//!   admitted member, by a member for itself, or by a member that is not live here is refused
//!   ([`DropReason::AdmissionRefused`](crate::DropReason::AdmissionRefused));
//! - *extend its expiry*: the expiry is signed; one claiming more than [`MAX_ADMISSION_MS`] ahead
//!   is refused, so a key holder cannot mint admissions that outlive it for long;
//! - *replay an old one after a revocation*: a member's admissions are ordered by their signed id,
//!   so an older one is ignored; a node that never held the revocation accepts the old admission
//!   at most until its own expiry (one TTL);
//! - *claim another prefix or topic*: checked against the admission by every member;
//! - *admit with a dead server's key*: refused while the server is down here, and every
//!   admission it issued lapses with it;
//! - *flood renewals*: a renewal less than [`MIN_RENEWAL_MS`] after the one it replaces is
//!   refused and not passed on ([`DropReason::AdmissionTooSoon`](crate::DropReason::AdmissionTooSoon)),
//!   a member has one admission held per receiver, and a tab cannot ask for one (renewals are
//!   its server's timer).

use crate::groups::GroupSpec;
#[cfg(feature = "admission")]
use crate::time::Instant;

/// How long an admission is valid from its signing; its server renews it at half that while the
/// member stays connected. A member whose server stops renewing (its tab went away, the server
/// died) is left everywhere within this.
pub const ADMISSION_TTL_MS: u64 = 60_000;
/// The furthest ahead of a receiver's clock an admission may expire: longer ones are refused.
pub const MAX_ADMISSION_MS: u64 = 10 * 60_000;
/// A renewal this soon (by its signed id) after the admission it replaces is refused.
pub const MIN_RENEWAL_MS: u64 = 1_000;

/// Frames per second an admitted member may send by default.
pub const DEFAULT_FRAMES_PER_SEC: u32 = 100;
/// Frames an admitted member may send in a burst by default.
pub const DEFAULT_BURST: u32 = 200;

/// What one admitted member may do. Built by the web app's admission hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// Its name must start with this (empty: any name).
    pub name_prefix: String,
    /// Topics it may broadcast, send and request on; an entry ending in `*` allows every topic
    /// that starts with what precedes it. `None`: every topic.
    pub topics: Option<Vec<String>>,
    /// Frames per second it may send, sustained.
    pub frames_per_sec: u32,
    /// Frames it may send at once after a quiet spell.
    pub burst: u32,
    /// How long the admission lasts before the server closes the link (the client may come
    /// back and be asked again: how a session that ends stops being a member). `None`: for as
    /// long as the link lives.
    pub lifetime_ms: Option<u64>,
    /// It may write its own replicated state (`StateEntry`, the `state` feature); checked by its
    /// server and, through its admission, by every member.
    pub state: bool,
    /// Which other relayed members it is told about (see [`ViewScope`]).
    pub scope: ViewScope,
    /// The most bytes of metadata (keys and values) it may publish; its server refuses and
    /// counts a larger record ([`DropReason::MetadataTooLarge`](crate::DropReason::MetadataTooLarge)).
    /// `None`: only the cluster's [`Limits`](crate::Limits) apply.
    pub max_metadata_bytes: Option<usize>,
}

/// Which members an admitted member is told about by its server: its *view*.
///
/// A page with thousands of tabs must not send every tab every other tab's join. Whatever the
/// scope, an admitted member is told about every *full member* (a member with an address of its
/// own: a native node) and about itself (an accusation it must refute). Other *relayed* members
/// (admitted tabs, or browsers given the cluster key) are told about as the scope says. Its
/// server withholds everything about a member it may not see: alive, suspect, dead and left
/// records, metadata, broadcasts from that member, and the member's entry in push-pull digests;
/// this holds on every path (the hub's deliveries, push-pull and join answers, probe and ack
/// piggyback). A scope filters what is *volunteered*, not who may talk: a frame addressed to the
/// member (a message, a request, a stream) is carried whoever sent it, and the member may write
/// to any member it learned of (its server routes it), so it can answer whoever wrote first.
/// Topics ([`Grant::topics`]) are the access control; the scope is for scale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewScope {
    /// Every member (the default).
    #[default]
    All,
    /// Full members, and the relayed members that share a group with it: another relayed
    /// member is visible when one of these specs matches both its metadata and this member's
    /// own (by [`GroupSpec::matches`], each member's current metadata on its server). A member
    /// once told about stays visible until it is down (the server then tells its death or
    /// leave), so a view never goes stale; a member that comes to match is sent with its alive
    /// record and metadata, and when this member's own metadata changes its server opens a
    /// push-pull with it to fill its new view. An empty list sees no other relayed member; an
    /// empty spec matches everyone.
    Groups(Vec<GroupSpec>),
    /// Full members and itself only: its traffic does not grow with the number of tabs.
    None,
}

impl Default for Grant {
    fn default() -> Self {
        Grant {
            name_prefix: String::new(),
            topics: None,
            frames_per_sec: DEFAULT_FRAMES_PER_SEC,
            burst: DEFAULT_BURST,
            lifetime_ms: None,
            state: false,
            scope: ViewScope::All,
            max_metadata_bytes: None,
        }
    }
}

impl Grant {
    /// Any name, every topic, the default rate.
    pub fn new() -> Self {
        Grant::default()
    }

    /// Names must start with `prefix`.
    pub fn with_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Only these topics (`*` at the end of one: every topic with that prefix).
    pub fn with_topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }

    /// At most `frames_per_sec` frames per second, `burst` at once.
    pub fn with_rate(mut self, frames_per_sec: u32, burst: u32) -> Self {
        self.frames_per_sec = frames_per_sec;
        self.burst = burst;
        self
    }

    /// The admission ends after `lifetime` (the server then closes the link).
    pub fn with_lifetime(mut self, lifetime: core::time::Duration) -> Self {
        self.lifetime_ms = Some(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Whether it may write its own replicated state (default: no; it may always read it).
    pub fn with_state(mut self, allowed: bool) -> Self {
        self.state = allowed;
        self
    }

    /// Which relayed members it is told about.
    pub fn with_scope(mut self, scope: ViewScope) -> Self {
        self.scope = scope;
        self
    }

    /// At most `bytes` of metadata (the sum of its keys' and values' lengths).
    pub fn with_max_metadata_bytes(mut self, bytes: usize) -> Self {
        self.max_metadata_bytes = Some(bytes);
        self
    }

    /// Whether the grant allows metadata whose keys and values add up to `bytes`.
    pub fn allows_metadata(&self, bytes: usize) -> bool {
        self.max_metadata_bytes.is_none_or(|max| bytes <= max)
    }

    /// Whether the grant allows `name`.
    pub fn allows_name(&self, name: &str) -> bool {
        name.starts_with(&self.name_prefix)
    }

    /// Whether the grant allows `topic`.
    pub fn allows_topic(&self, topic: &str) -> bool {
        topic_allowed(self.topics.as_deref(), topic)
    }
}

/// Whether `topics` (a grant's, or an admission's) allow `topic`.
pub(crate) fn topic_allowed(topics: Option<&[String]>, topic: &str) -> bool {
    match topics {
        None => true,
        Some(topics) => topics.iter().any(|t| match t.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => t == topic,
        }),
    }
}

/// A token bucket: `burst` frames, refilled at `frames_per_sec`.
#[cfg(feature = "admission")]
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Micro-frames left (a frame costs 1,000,000), so refills need no fractions.
    tokens: u64,
    last: Instant,
}

#[cfg(feature = "admission")]
const FRAME: u64 = 1_000_000;

#[cfg(feature = "admission")]
impl Bucket {
    pub(crate) fn full(now: Instant, grant: &Grant) -> Bucket {
        Bucket {
            tokens: u64::from(grant.burst).saturating_mul(FRAME),
            last: now,
        }
    }

    /// Takes one frame's worth; `false` when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant, grant: &Grant) -> bool {
        let elapsed_us = now.micros_since(self.last);
        self.last = self.last.max(now);
        let refill = elapsed_us.saturating_mul(u64::from(grant.frames_per_sec));
        let cap = u64::from(grant.burst).saturating_mul(FRAME);
        self.tokens = self.tokens.saturating_add(refill).min(cap);
        if self.tokens >= FRAME {
            self.tokens -= FRAME;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_names() {
        let g = Grant::new()
            .with_name_prefix("tab-")
            .with_topics(["chat", "game/*"]);
        assert!(g.allows_name("tab-7") && !g.allows_name("server-1"));
        assert!(g.allows_topic("chat") && !g.allows_topic("chat2"));
        assert!(g.allows_topic("game/") && g.allows_topic("game/move"));
        assert!(!g.allows_topic("admin"));
        assert!(Grant::new().allows_topic("anything") && Grant::new().allows_name("any"));
        assert!(
            !Grant::new()
                .with_topics(Vec::<String>::new())
                .allows_topic("chat")
        );
    }

    #[cfg(feature = "admission")]
    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let g = Grant::new().with_rate(10, 3);
        let t0 = Instant::from_micros(1_000_000);
        let mut b = Bucket::full(t0, &g);
        assert!((0..3).all(|_| b.take(t0, &g)));
        assert!(!b.take(t0, &g), "the burst is spent");
        // 10 per second: one more every 100 ms.
        assert!(!b.take(t0.plus_millis(99), &g));
        assert!(b.take(t0.plus_millis(100), &g));
        assert!(!b.take(t0.plus_millis(100), &g));
        // A long quiet spell refills only up to the burst.
        let later = t0.plus_millis(3_600_000);
        assert!((0..3).all(|_| b.take(later, &g)));
        assert!(!b.take(later, &g));
        // A clock that goes backwards refills nothing.
        assert!(!b.take(t0, &g));
        // Extreme grants do not overflow.
        let max = Grant::new().with_rate(u32::MAX, u32::MAX);
        let mut b = Bucket::full(t0, &max);
        assert!(b.take(Instant::from_micros(u64::MAX), &max));
    }
}
