//! One connection's rules from its first byte to its first verified frame, the same for every
//! driver.
//!
//! A [`Session`] follows one connection (TCP or WebSocket, dialed or accepted) and tells the
//! driver what to do at each step as a [`Decision`]. The driver only executes it: it never
//! decides on its own whether a handshake, a refused frame or a silent peer ends the connection.
//!
//! # The rules
//!
//! - **Handshake first.** Before any frame, the two sides run the [`handshake`](super::handshake)
//!   (each signs the other's fresh nonce). The driver feeds its messages to a
//!   [`Handshake`](super::handshake::Handshake) and, once the peer is proven, calls
//!   [`Session::on_linked`]: the connection is bound to that member ([`Decision::Linked`]).
//!   Only a handshake binds a connection: a frame, whoever signed it, never moves a route, so a
//!   frame captured on the wire and replayed on a new connection captures nothing. A frame
//!   before the handshake finished, or a handshake message after it, closes the link. A dialed
//!   link whose acceptor proves to be another member than the one dialed for is closed.
//! - **First verified frame.** The handshake proves an identity key, not the cluster key: a
//!   stranger can mint an identity. The first frame that verifies
//!   ([`Node::handle_packet`](crate::Node::handle_packet) returns its origin) and comes from the
//!   linked peer, or from a member that peer relays (a server forwards the frames of the
//!   browsers it relays over the same connection), proves membership ([`Decision::Verified`]);
//!   an accepted connection then moves from the pending budget to the established one. A
//!   verified frame of another origin does not count (it may be a replay of someone else's
//!   frame) and is tolerated like a refusal.
//! - **Refused frames before that.** A frame refused as *foreign* ([`Refused::is_foreign`]:
//!   undecodable, unauthenticated, another protocol version) closes the link at once. A
//!   member never sends one: stream transports deliver its bytes intact, and every member holds
//!   the cluster key, so one foreign frame means the peer is not a member (or its key differs,
//!   which no amount of waiting fixes). Other refusals (a duplicate, a replay, clock drift) can
//!   come from an honest member (a relay forwarding a frame this node already has, a clock a
//!   little off), so up to [`SessionConfig::max_refusals`] are tolerated; one more closes the
//!   link, because a peer that only ever replays captured frames must not hold a connection.
//! - **Deadline.** Every link must finish its handshake within
//!   [`SessionConfig::verify_within_ms`]. A link that must prove membership (every accepted one;
//!   a browser's uplink) must also carry a verified frame by then: an idle connection holds a
//!   slot of the connection limit without being a member. A native node's dialed link needs
//!   no verified frame: its peer may answer over another route it already holds.
//! - **After verification** nothing the session sees closes the link: the engine counts what it
//!   refuses, and a verified member's connection is not dropped for one bad frame.

use core::fmt;

use crate::drop_reason::{DropReason, Refused};
use crate::identity::NodeId;
use crate::time::Instant;

use super::close::CloseCode;
use super::handshake::HandshakeError;

/// How long a link has for its handshake and, when it must prove membership, its first verified
/// frame, by default. Short: a member answers the handshake and sends its first frame as soon as
/// it connects, and until then the link holds a slot of the pending budget that a silent peer
/// must not keep.
pub const DEFAULT_VERIFY_WITHIN_MS: u64 = 3_000;

/// Refused (non-foreign) frames tolerated before the first verified one, by default.
pub const DEFAULT_MAX_REFUSALS: u32 = 8;

/// The handshake's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// A link is closed ([`CloseCode::NotVerified`]) when its handshake (and, if it must prove
    /// membership, its first verified frame) did not happen within this many milliseconds of
    /// its start.
    pub verify_within_ms: u64,
    /// Refused frames that are not foreign tolerated before the first verified frame; one more
    /// closes the link.
    pub max_refusals: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            verify_within_ms: DEFAULT_VERIFY_WITHIN_MS,
            max_refusals: DEFAULT_MAX_REFUSALS,
        }
    }
}

impl SessionConfig {
    /// The default bounds with another deadline.
    pub fn with_verify_within_ms(mut self, ms: u64) -> Self {
        self.verify_within_ms = ms;
        self
    }

    /// The default bounds with another refusal budget.
    pub fn with_max_refusals(mut self, n: u32) -> Self {
        self.max_refusals = n;
        self
    }
}

/// Why a session closes its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The handshake failed: a frame before it, a message out of order, a proof that does not
    /// verify, the wrong peer.
    Handshake(HandshakeError),
    /// A frame before the first verified one was refused as foreign.
    Foreign(DropReason),
    /// More than [`SessionConfig::max_refusals`] frames were refused before one verified.
    TooManyRefusals,
    /// The handshake did not finish in time.
    Unlinked,
    /// No frame verified before the deadline.
    Unverified,
}

impl Fault {
    /// The close code the link is closed with.
    pub fn code(self) -> CloseCode {
        match self {
            Fault::Unverified | Fault::Unlinked => CloseCode::NotVerified,
            Fault::Handshake(HandshakeError::Version { .. }) => CloseCode::Version,
            _ => CloseCode::BadFrame,
        }
    }

    /// A short, stable label for drop counters.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Handshake(HandshakeError::FrameFirst) => "frame_before_handshake",
            Fault::Handshake(HandshakeError::WrongPeer) => "handshake_wrong_peer",
            Fault::Handshake(HandshakeError::Signature) => "handshake_signature",
            Fault::Handshake(HandshakeError::Version { .. }) => "handshake_version",
            Fault::Handshake(_) => "bad_handshake",
            Fault::Foreign(_) => "foreign_frame",
            Fault::TooManyRefusals => "unverified_refusals",
            Fault::Unlinked => "handshake_timeout",
            Fault::Unverified => "unverified_timeout",
        }
    }
}

/// The close reason sent to the peer (at most 123 bytes, the WebSocket limit).
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Handshake(e) => write!(f, "handshake failed: {e}"),
            Fault::Foreign(reason) => write!(
                f,
                "frame failed to decode or authenticate ({reason}): wrong cluster key?"
            ),
            Fault::TooManyRefusals => {
                f.write_str("too many frames refused before one verified (replays or clock drift)")
            }
            Fault::Unlinked => f.write_str("no handshake in time"),
            Fault::Unverified => f.write_str("no verified frame in time"),
        }
    }
}

/// What the driver does after a step of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: keep the link as it is.
    Keep,
    /// The handshake proved the peer: route to it over the link unless another live link is
    /// already bound to it. A node that cannot listen may adopt it as its relay
    /// ([`super::relay::adopt`]).
    Linked(NodeId),
    /// The first frame from the peer (or a member it relays) verified: it holds the cluster key.
    /// An accepted link moves to the established budget.
    Verified(NodeId),
    /// Close the link with this code; the fault says why (and is the reason text).
    Close(CloseCode, Fault),
}

impl Decision {
    fn close(fault: Fault) -> Decision {
        Decision::Close(fault.code(), fault)
    }
}

/// The state of one connection. See the [module documentation](self) for the rules.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    dialed: bool,
    /// The member a dialed link was opened for.
    expected: Option<NodeId>,
    linked: Option<NodeId>,
    verified: Option<NodeId>,
    refusals: u32,
    deadline: Instant,
    /// The deadline also requires a verified frame, not only the handshake.
    must_verify: bool,
}

impl Session {
    /// A connection this node accepted: the peer must finish the handshake and prove membership
    /// by the deadline.
    pub fn accepted(now: Instant, config: SessionConfig) -> Session {
        Session::new(now, config, false, None).with_deadline(now)
    }

    /// A connection this node dialed, for `expected` when it was dialed for a known member. It
    /// must finish its handshake by the deadline; a verified frame only when
    /// [`Session::with_deadline`] asks for one.
    pub fn dialed(now: Instant, config: SessionConfig, expected: Option<NodeId>) -> Session {
        Session::new(now, config, true, expected)
    }

    fn new(now: Instant, config: SessionConfig, dialed: bool, expected: Option<NodeId>) -> Session {
        Session {
            config,
            dialed,
            expected,
            linked: None,
            verified: None,
            refusals: 0,
            deadline: now.plus_millis(config.verify_within_ms),
            must_verify: false,
        }
    }

    /// Requires a verified frame within [`SessionConfig::verify_within_ms`] of `now`.
    pub fn with_deadline(mut self, now: Instant) -> Session {
        self.deadline = now.plus_millis(self.config.verify_within_ms);
        self.must_verify = true;
        self
    }

    /// This node dialed the link.
    pub fn is_dialed(&self) -> bool {
        self.dialed
    }

    /// The peer the handshake proved.
    pub fn linked(&self) -> Option<NodeId> {
        self.linked
    }

    /// The origin of the first verified frame.
    pub fn verified(&self) -> Option<NodeId> {
        self.verified
    }

    /// Refused frames seen before the first verified one.
    pub fn refusals(&self) -> u32 {
        self.refusals
    }

    /// When [`Session::on_timeout`] will close the link, while it still has something to prove.
    pub fn deadline(&self) -> Option<Instant> {
        let pending = self.linked.is_none() || (self.must_verify && self.verified.is_none());
        pending.then_some(self.deadline)
    }

    /// The handshake failed ([`Handshake::on_message`](super::handshake::Handshake::on_message)
    /// returned `error`).
    pub fn on_handshake_error(&self, error: HandshakeError) -> Decision {
        Decision::close(Fault::Handshake(error))
    }

    /// The handshake proved `peer`.
    pub fn on_linked(&mut self, peer: NodeId) -> Decision {
        if self.linked.is_some() {
            return Decision::close(Fault::Handshake(HandshakeError::OutOfOrder));
        }
        if self.expected.is_some_and(|e| e != peer) {
            return Decision::close(Fault::Handshake(HandshakeError::WrongPeer));
        }
        self.linked = Some(peer);
        Decision::Linked(peer)
    }

    /// Whether a frame that just arrived may reach the engine: [`Decision::Keep`], or a close
    /// when the handshake has not finished.
    pub fn admit_frame(&self) -> Decision {
        if self.linked.is_none() {
            Decision::close(Fault::Handshake(HandshakeError::FrameFirst))
        } else {
            Decision::Keep
        }
    }

    /// The engine handled a frame of this link and returned `result`; `relay_of` gives the
    /// relay of a member as the engine now knows it.
    pub fn on_frame(
        &mut self,
        result: &Result<NodeId, Refused>,
        relay_of: impl FnOnce(&NodeId) -> Option<NodeId>,
    ) -> Decision {
        if self.verified.is_some() {
            return Decision::Keep;
        }
        match result {
            Ok(origin)
                if self
                    .linked
                    .is_some_and(|peer| peer == *origin || relay_of(origin) == Some(peer)) =>
            {
                self.verified = Some(*origin);
                Decision::Verified(*origin)
            }
            Err(refused) if refused.is_foreign() => Decision::close(Fault::Foreign(refused.reason)),
            // A refusal, or a frame of someone the peer does not relay (a replay proves nothing
            // about the peer).
            _ => {
                self.refusals = self.refusals.saturating_add(1);
                if self.refusals > self.config.max_refusals {
                    Decision::close(Fault::TooManyRefusals)
                } else {
                    Decision::Keep
                }
            }
        }
    }

    /// Time passed: closes the link when its deadline passed with something still unproven.
    pub fn on_timeout(&self, now: Instant) -> Decision {
        match self.deadline() {
            Some(deadline) if now >= deadline => Decision::close(if self.linked.is_none() {
                Fault::Unlinked
            } else {
                Fault::Unverified
            }),
            _ => Decision::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NODE_ID_LEN;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; NODE_ID_LEN])
    }

    fn refused(reason: DropReason) -> Result<NodeId, Refused> {
        Err(Refused { reason })
    }

    const SERVER: u8 = 2;
    const BROWSER: u8 = 3;
    const STRANGER: u8 = 4;

    fn no_relay(_: &NodeId) -> Option<NodeId> {
        None
    }

    fn t0() -> Instant {
        Instant::from_micros(0)
    }

    fn linked(mut s: Session, peer: u8) -> Session {
        assert_eq!(s.on_linked(id(peer)), Decision::Linked(id(peer)));
        s
    }

    fn accepted_from(peer: u8) -> Session {
        linked(Session::accepted(t0(), SessionConfig::default()), peer)
    }

    #[test]
    fn no_frame_passes_before_the_handshake() {
        let s = Session::accepted(t0(), SessionConfig::default());
        let early = Decision::Close(
            CloseCode::BadFrame,
            Fault::Handshake(HandshakeError::FrameFirst),
        );
        assert_eq!(s.admit_frame(), early);
        let d = Session::dialed(t0(), SessionConfig::default(), None);
        assert_eq!(d.admit_frame(), early);
        assert_eq!(accepted_from(BROWSER).admit_frame(), Decision::Keep);
    }

    #[test]
    fn a_link_is_bound_once_and_only_to_the_member_dialed() {
        let mut s = accepted_from(BROWSER);
        assert_eq!(s.linked(), Some(id(BROWSER)));
        assert_eq!(
            s.on_linked(id(STRANGER)),
            Decision::Close(
                CloseCode::BadFrame,
                Fault::Handshake(HandshakeError::OutOfOrder)
            )
        );
        assert_eq!(
            s.linked(),
            Some(id(BROWSER)),
            "a second link changes nothing"
        );

        let mut d = Session::dialed(t0(), SessionConfig::default(), Some(id(SERVER)));
        assert_eq!(
            d.on_linked(id(STRANGER)),
            Decision::Close(
                CloseCode::BadFrame,
                Fault::Handshake(HandshakeError::WrongPeer)
            )
        );
        assert_eq!(d.linked(), None);
        assert!(d.is_dialed());
        assert_eq!(linked(d, SERVER).linked(), Some(id(SERVER)));
    }

    #[test]
    fn the_first_verified_frame_of_the_peer_proves_membership() {
        let mut s = accepted_from(BROWSER);
        assert!(!s.is_dialed());
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), no_relay),
            Decision::Verified(id(BROWSER))
        );
        assert_eq!(s.verified(), Some(id(BROWSER)));
        // Later frames, even foreign ones, never close a verified link.
        assert_eq!(
            s.on_frame(&refused(DropReason::Unauthenticated), no_relay),
            Decision::Keep
        );
        assert_eq!(s.on_frame(&Ok(id(STRANGER)), no_relay), Decision::Keep);
        assert_eq!(s.verified(), Some(id(BROWSER)));
    }

    #[test]
    fn a_verified_frame_of_someone_else_proves_nothing() {
        // A stranger that minted an identity for the handshake replays a member's frame.
        let config = SessionConfig::default().with_max_refusals(2);
        let mut s = linked(Session::accepted(t0(), config), STRANGER);
        assert_eq!(s.on_frame(&Ok(id(SERVER)), no_relay), Decision::Keep);
        assert_eq!(s.verified(), None);
        // Relayed by someone else is no better.
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), |_| Some(id(SERVER))),
            Decision::Keep
        );
        assert_eq!(
            s.on_frame(&Ok(id(SERVER)), no_relay),
            Decision::Close(CloseCode::BadFrame, Fault::TooManyRefusals)
        );

        // A member the peer relays does prove it (a server forwards its browsers' frames).
        let mut s = linked(Session::dialed(t0(), config, None), SERVER);
        let relayed_by_server = |o: &NodeId| (*o == id(BROWSER)).then_some(id(SERVER));
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), relayed_by_server),
            Decision::Verified(id(BROWSER))
        );
    }

    #[test]
    fn a_foreign_first_frame_closes_at_once() {
        for reason in [
            DropReason::Malformed,
            DropReason::Unauthenticated,
            DropReason::Incompatible,
        ] {
            let mut s = accepted_from(BROWSER);
            let d = s.on_frame(&refused(reason), no_relay);
            assert_eq!(
                d,
                Decision::Close(CloseCode::BadFrame, Fault::Foreign(reason))
            );
            assert!(Fault::Foreign(reason).to_string().contains("cluster key"));
        }
    }

    #[test]
    fn duplicates_and_replays_are_tolerated_up_to_the_bound() {
        let config = SessionConfig::default().with_max_refusals(3);
        let mut s = linked(Session::accepted(t0(), config), SERVER);
        let kinds = [
            DropReason::Duplicate,
            DropReason::Replayed,
            DropReason::ClockDrift,
        ];
        for reason in kinds {
            assert_eq!(s.on_frame(&refused(reason), no_relay), Decision::Keep);
        }
        assert_eq!(s.refusals(), 3);
        assert_eq!(
            s.on_frame(&refused(DropReason::Duplicate), no_relay),
            Decision::Close(CloseCode::BadFrame, Fault::TooManyRefusals)
        );

        // Within the bound, a verified frame still counts.
        let mut s = linked(Session::accepted(t0(), config), SERVER);
        for _ in 0..3 {
            assert_eq!(
                s.on_frame(&refused(DropReason::Replayed), no_relay),
                Decision::Keep
            );
        }
        assert_eq!(
            s.on_frame(&Ok(id(SERVER)), no_relay),
            Decision::Verified(id(SERVER))
        );
    }

    #[test]
    fn the_deadline_closes_links_with_something_left_to_prove() {
        let config = SessionConfig::default().with_verify_within_ms(500);
        let start = Instant::from_micros(1_000);
        let s = Session::accepted(start, config);
        assert_eq!(s.deadline(), Some(start.plus_millis(500)));
        assert_eq!(s.on_timeout(start.plus_millis(499)), Decision::Keep);
        assert_eq!(
            s.on_timeout(start.plus_millis(500)),
            Decision::Close(CloseCode::NotVerified, Fault::Unlinked)
        );
        // Linked but not verified: still due.
        let mut s = linked(Session::accepted(start, config), BROWSER);
        assert_eq!(
            s.on_timeout(start.plus_millis(500)),
            Decision::Close(CloseCode::NotVerified, Fault::Unverified)
        );
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), no_relay),
            Decision::Verified(id(BROWSER))
        );
        assert_eq!(s.deadline(), None);
        assert_eq!(s.on_timeout(start.plus_millis(10_000)), Decision::Keep);

        // A native node's dial must finish its handshake, nothing more; a browser's uplink
        // must also verify.
        let dialed = Session::dialed(start, config, None);
        assert_eq!(
            dialed.on_timeout(start.plus_millis(500)),
            Decision::Close(CloseCode::NotVerified, Fault::Unlinked)
        );
        let dialed = linked(dialed, SERVER);
        assert_eq!(dialed.deadline(), None);
        assert_eq!(
            dialed.on_timeout(start.plus_millis(u64::MAX / 2_000)),
            Decision::Keep
        );
        let uplink = linked(
            Session::dialed(start, config, None).with_deadline(start),
            SERVER,
        );
        assert_eq!(
            uplink.on_timeout(start.plus_millis(500)),
            Decision::Close(CloseCode::NotVerified, Fault::Unverified)
        );
        assert_eq!(
            SessionConfig::default().verify_within_ms,
            DEFAULT_VERIFY_WITHIN_MS
        );
    }

    #[test]
    fn every_fault_reason_fits_a_websocket_close_frame() {
        let faults = [
            Fault::Handshake(HandshakeError::Length(usize::MAX)),
            Fault::Handshake(HandshakeError::Magic),
            Fault::Handshake(HandshakeError::OwnId),
            Fault::Handshake(HandshakeError::Signature),
            Fault::Handshake(HandshakeError::WrongPeer),
            Fault::Handshake(HandshakeError::OutOfOrder),
            Fault::Handshake(HandshakeError::FrameFirst),
            Fault::Foreign(DropReason::Unauthenticated),
            Fault::TooManyRefusals,
            Fault::Unlinked,
            Fault::Unverified,
        ];
        for f in faults {
            assert!(f.to_string().len() <= 123, "{f}");
            assert!(f.code().browser_may_send(), "{f}");
            assert!(!f.label().is_empty());
        }
    }
}
