//! One connection's handshake rules, the same for every driver.
//!
//! A [`Session`] follows one connection (TCP or WebSocket, dialed or accepted) from its first
//! message until a frame from a member verifies on it, and tells the driver what to do with
//! each step as a [`Decision`]. The driver only executes it: it never decides on its own
//! whether a hello, a refused frame or a silent peer ends the connection.
//!
//! # The rules
//!
//! - **Hello.** Only the accepting side of a WebSocket sends one, first ([`super::encode_hello`]).
//!   On the dialing side of a link that carries a hello, a frame before it, a second hello, an
//!   undecodable hello, or a hello naming this very node closes the link. A hello arriving at the
//!   accepting side (or over TCP) closes it too: a client claiming another member's id must not
//!   capture the route to that member.
//! - **First verified frame.** The first frame whose signature verifies
//!   ([`Node::handle_packet`](crate::Node::handle_packet) returns its origin) binds the link to
//!   that origin ([`Decision::Bind`]). When a hello named a server, the origin must be that
//!   server or a member relayed by it (a server forwards the frames of the browsers it relays over
//!   the same connection); anything else closes the link.
//! - **Refused frames before that.** A frame refused as *foreign* ([`Refused::is_foreign`]:
//!   undecodable, unauthenticated, another protocol version) closes the link at once. A
//!   member never sends one: stream transports deliver its bytes intact, and every member holds
//!   the cluster key, so one foreign frame means the peer is not a member (or its key differs,
//!   which no amount of waiting fixes). Other refusals (a duplicate, a replay, clock drift) can
//!   come from an honest member (a relay forwarding a frame this node already has, a clock a
//!   little off), so up to [`SessionConfig::max_refusals`] are tolerated; one more closes the
//!   link, because a peer that only ever replays captured frames must not hold a connection.
//! - **Deadline.** A link that must prove membership (every accepted one; a browser's uplink)
//!   is closed when no frame verified within [`SessionConfig::verify_within_ms`]: an idle
//!   connection holds a slot of the connection limit without being a member. A native node's
//!   dialed link has no deadline: its peer may answer over another route it already holds.
//! - **After verification** nothing the session sees closes the link: the engine counts what it
//!   refuses, and a verified member's connection is not dropped for one bad frame.

use core::fmt;

use crate::drop_reason::{DropReason, Refused};
use crate::identity::NodeId;
use crate::time::Instant;

use super::HelloError;
use super::close::CloseCode;

/// How long a link that must prove membership waits for its first verified frame, by default.
/// Short: a member sends its first frame as soon as it connects, and until then the link holds a
/// slot of the pending budget that a silent peer must not keep.
pub const DEFAULT_VERIFY_WITHIN_MS: u64 = 3_000;

/// Refused (non-foreign) frames tolerated before the first verified one, by default.
pub const DEFAULT_MAX_REFUSALS: u32 = 8;

/// The handshake's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// A link with a deadline is closed ([`CloseCode::NotVerified`]) when no frame verified
    /// within this many milliseconds of its start.
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
    /// A hello arrived at the accepting side, or over a link that carries none.
    UnexpectedHello,
    /// The hello does not decode.
    BadHello(HelloError),
    /// A frame arrived before the hello.
    HelloMissing,
    /// A second hello.
    SecondHello,
    /// The hello names this very node (it dialed itself).
    OwnHello,
    /// The first verified frame is from neither the server the hello named nor a member it relays.
    OriginMismatch,
    /// A frame before the first verified one was refused as foreign.
    Foreign(DropReason),
    /// More than [`SessionConfig::max_refusals`] frames were refused before one verified.
    TooManyRefusals,
    /// No frame verified before the deadline.
    Unverified,
}

impl Fault {
    /// The close code the link is closed with.
    pub fn code(self) -> CloseCode {
        match self {
            Fault::Unverified => CloseCode::NotVerified,
            _ => CloseCode::BadFrame,
        }
    }

    /// A short, stable label for drop counters.
    pub fn label(self) -> &'static str {
        match self {
            Fault::UnexpectedHello => "unexpected_hello",
            Fault::BadHello(_) => "bad_hello",
            Fault::HelloMissing => "hello_missing",
            Fault::SecondHello => "second_hello",
            Fault::OwnHello => "own_hello",
            Fault::OriginMismatch => "hello_mismatch",
            Fault::Foreign(_) => "foreign_frame",
            Fault::TooManyRefusals => "unverified_refusals",
            Fault::Unverified => "unverified_timeout",
        }
    }
}

/// The close reason sent to the peer (at most 123 bytes, the WebSocket limit).
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::UnexpectedHello => f.write_str("only the accepting side sends a hello"),
            Fault::BadHello(e) => write!(f, "bad hello: {e}"),
            Fault::HelloMissing => f.write_str("expected a hello first"),
            Fault::SecondHello => f.write_str("a second hello"),
            Fault::OwnHello => f.write_str("the hello claims our own id"),
            Fault::OriginMismatch => {
                f.write_str("first frame is not from the node the hello named")
            }
            Fault::Foreign(reason) => write!(
                f,
                "frame failed to decode or authenticate ({reason}): wrong cluster key?"
            ),
            Fault::TooManyRefusals => {
                f.write_str("too many frames refused before one verified (replays or clock drift)")
            }
            Fault::Unverified => f.write_str("no verified frame in time"),
        }
    }
}

/// What the driver does after a step of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: keep the link as it is.
    Keep,
    /// The accepting side greeted with its id (a claim until a frame verifies). A node that
    /// cannot listen may adopt it as its relay ([`super::relay::adopt`]).
    Greeted(NodeId),
    /// The first frame verified: the link carries frames of this member. Route to it over the
    /// link unless another live link is already bound to it.
    Bind(NodeId),
    /// Close the link with this code; the fault says why (and is the reason text).
    Close(CloseCode, Fault),
}

impl Decision {
    fn close(fault: Fault) -> Decision {
        Decision::Close(fault.code(), fault)
    }
}

/// The handshake state of one connection. See the [module documentation](self) for the rules.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    dialed: bool,
    /// The dialing side of a link whose acceptor sends a hello (WebSocket).
    greeted: bool,
    claimed: Option<NodeId>,
    verified: Option<NodeId>,
    refusals: u32,
    deadline: Option<Instant>,
}

impl Session {
    /// A connection this node accepted: the peer must prove membership by the deadline.
    pub fn accepted(now: Instant, config: SessionConfig) -> Session {
        Session {
            config,
            dialed: false,
            greeted: false,
            claimed: None,
            verified: None,
            refusals: 0,
            deadline: None,
        }
        .with_deadline(now)
    }

    /// A connection this node dialed; `greeted` when its acceptor sends a hello first
    /// (WebSocket). No deadline unless [`Session::with_deadline`] sets one.
    pub fn dialed(greeted: bool, config: SessionConfig) -> Session {
        Session {
            config,
            dialed: true,
            greeted,
            claimed: None,
            verified: None,
            refusals: 0,
            deadline: None,
        }
    }

    /// Requires a verified frame within [`SessionConfig::verify_within_ms`] of `now`.
    pub fn with_deadline(mut self, now: Instant) -> Session {
        self.deadline = Some(now.plus_millis(self.config.verify_within_ms));
        self
    }

    /// This node dialed the link.
    pub fn is_dialed(&self) -> bool {
        self.dialed
    }

    /// The id the peer's hello claimed.
    pub fn claimed(&self) -> Option<NodeId> {
        self.claimed
    }

    /// The origin of the first verified frame.
    pub fn verified(&self) -> Option<NodeId> {
        self.verified
    }

    /// Refused frames seen before the first verified one.
    pub fn refusals(&self) -> u32 {
        self.refusals
    }

    /// When [`Session::on_timeout`] will close the link, while no frame verified.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.verified.is_none())
    }

    /// A hello arrived (`hello` is [`super::decode_hello`]'s result); `local` is this node's id.
    pub fn on_hello(&mut self, local: NodeId, hello: Result<NodeId, HelloError>) -> Decision {
        if !self.dialed || !self.greeted {
            return Decision::close(Fault::UnexpectedHello);
        }
        if self.claimed.is_some() {
            return Decision::close(Fault::SecondHello);
        }
        match hello {
            Err(e) => Decision::close(Fault::BadHello(e)),
            Ok(id) if id == local => Decision::close(Fault::OwnHello),
            Ok(id) => {
                self.claimed = Some(id);
                Decision::Greeted(id)
            }
        }
    }

    /// Whether a frame that just arrived may reach the engine: [`Decision::Keep`], or a close
    /// when the hello that must come first did not.
    pub fn admit_frame(&self) -> Decision {
        if self.greeted && self.claimed.is_none() {
            Decision::close(Fault::HelloMissing)
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
            Ok(origin) => {
                if let Some(claimed) = self.claimed
                    && claimed != *origin
                    && relay_of(origin) != Some(claimed)
                {
                    return Decision::close(Fault::OriginMismatch);
                }
                self.verified = Some(*origin);
                Decision::Bind(*origin)
            }
            Err(refused) if refused.is_foreign() => Decision::close(Fault::Foreign(refused.reason)),
            Err(_) => {
                self.refusals = self.refusals.saturating_add(1);
                if self.refusals > self.config.max_refusals {
                    Decision::close(Fault::TooManyRefusals)
                } else {
                    Decision::Keep
                }
            }
        }
    }

    /// Time passed: closes the link when its deadline passed without a verified frame.
    pub fn on_timeout(&self, now: Instant) -> Decision {
        match self.deadline() {
            Some(deadline) if now >= deadline => Decision::close(Fault::Unverified),
            _ => Decision::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NODE_ID_LEN;
    use crate::link::{decode_hello, encode_hello};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; NODE_ID_LEN])
    }

    fn refused(reason: DropReason) -> Result<NodeId, Refused> {
        Err(Refused { reason })
    }

    const ME: u8 = 1;
    const SERVER: u8 = 2;
    const BROWSER: u8 = 3;
    const STRANGER: u8 = 4;

    fn no_relay(_: &NodeId) -> Option<NodeId> {
        None
    }

    fn greeted_session() -> Session {
        let mut s = Session::dialed(true, SessionConfig::default());
        let hello = decode_hello(&encode_hello(&id(SERVER)));
        assert_eq!(s.on_hello(id(ME), hello), Decision::Greeted(id(SERVER)));
        s
    }

    #[test]
    fn an_accepted_link_binds_to_its_first_verified_origin() {
        let mut s = Session::accepted(Instant::from_micros(0), SessionConfig::default());
        assert!(!s.is_dialed());
        assert_eq!(s.admit_frame(), Decision::Keep);
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), no_relay),
            Decision::Bind(id(BROWSER))
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
    fn a_foreign_first_frame_closes_at_once() {
        for reason in [
            DropReason::Malformed,
            DropReason::Unauthenticated,
            DropReason::Incompatible,
        ] {
            let mut s = Session::accepted(Instant::from_micros(0), SessionConfig::default());
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
        let mut s = Session::accepted(Instant::from_micros(0), config);
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

        // Within the bound, a verified frame still binds.
        let mut s = Session::accepted(Instant::from_micros(0), config);
        for _ in 0..3 {
            assert_eq!(
                s.on_frame(&refused(DropReason::Replayed), no_relay),
                Decision::Keep
            );
        }
        assert_eq!(
            s.on_frame(&Ok(id(SERVER)), no_relay),
            Decision::Bind(id(SERVER))
        );
    }

    #[test]
    fn a_hello_only_counts_on_the_dialing_side_of_a_greeted_link() {
        let hello = Ok(id(SERVER));
        let unexpected = Decision::Close(CloseCode::BadFrame, Fault::UnexpectedHello);
        let mut accepted = Session::accepted(Instant::from_micros(0), SessionConfig::default());
        assert_eq!(accepted.on_hello(id(ME), hello), unexpected);
        assert_eq!(accepted.claimed(), None);
        let mut tcp = Session::dialed(false, SessionConfig::default());
        assert_eq!(tcp.on_hello(id(ME), hello), unexpected);

        let mut s = greeted_session();
        assert_eq!(s.claimed(), Some(id(SERVER)));
        assert_eq!(
            s.on_hello(id(ME), Ok(id(STRANGER))),
            Decision::Close(CloseCode::BadFrame, Fault::SecondHello)
        );
        assert_eq!(
            s.claimed(),
            Some(id(SERVER)),
            "a second hello changes nothing"
        );

        let mut s = Session::dialed(true, SessionConfig::default());
        assert_eq!(
            s.on_hello(id(ME), Ok(id(ME))),
            Decision::Close(CloseCode::BadFrame, Fault::OwnHello)
        );
        let short = decode_hello(&encode_hello(&id(SERVER))[..5]);
        assert_eq!(
            s.on_hello(id(ME), short),
            Decision::Close(CloseCode::BadFrame, Fault::BadHello(HelloError::Length(5)))
        );
    }

    #[test]
    fn a_greeted_link_wants_its_hello_before_any_frame() {
        let s = Session::dialed(true, SessionConfig::default());
        assert_eq!(
            s.admit_frame(),
            Decision::Close(CloseCode::BadFrame, Fault::HelloMissing)
        );
        assert_eq!(greeted_session().admit_frame(), Decision::Keep);
        assert_eq!(
            Session::dialed(false, SessionConfig::default()).admit_frame(),
            Decision::Keep
        );
    }

    #[test]
    fn the_first_verified_origin_must_be_the_greeter_or_one_it_relays() {
        let mut s = greeted_session();
        assert_eq!(
            s.on_frame(&Ok(id(STRANGER)), no_relay),
            Decision::Close(CloseCode::BadFrame, Fault::OriginMismatch)
        );
        assert_eq!(s.verified(), None);
        // A stranger relayed by someone else is no better.
        let mut s = greeted_session();
        assert_eq!(
            s.on_frame(&Ok(id(STRANGER)), |_| Some(id(STRANGER))),
            Decision::Close(CloseCode::BadFrame, Fault::OriginMismatch)
        );

        let mut s = greeted_session();
        let relayed_by_server = |o: &NodeId| (*o == id(BROWSER)).then_some(id(SERVER));
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), relayed_by_server),
            Decision::Bind(id(BROWSER))
        );

        let mut s = greeted_session();
        assert_eq!(
            s.on_frame(&Ok(id(SERVER)), no_relay),
            Decision::Bind(id(SERVER))
        );
    }

    #[test]
    fn a_replayed_or_duplicate_first_frame_does_not_verify_the_greeter() {
        let mut s = greeted_session().clone();
        assert_eq!(
            s.on_frame(&refused(DropReason::Duplicate), no_relay),
            Decision::Keep
        );
        assert_eq!(
            s.on_frame(&refused(DropReason::Replayed), no_relay),
            Decision::Keep
        );
        assert_eq!(s.verified(), None);
        assert_eq!(s.refusals(), 2);
    }

    #[test]
    fn the_deadline_closes_only_unverified_links() {
        let config = SessionConfig::default().with_verify_within_ms(500);
        let start = Instant::from_micros(1_000);
        let s = Session::accepted(start, config);
        assert_eq!(s.deadline(), Some(start.plus_millis(500)));
        assert_eq!(s.on_timeout(start.plus_millis(499)), Decision::Keep);
        assert_eq!(
            s.on_timeout(start.plus_millis(500)),
            Decision::Close(CloseCode::NotVerified, Fault::Unverified)
        );

        let mut s = Session::accepted(start, config);
        assert_eq!(
            s.on_frame(&Ok(id(BROWSER)), no_relay),
            Decision::Bind(id(BROWSER))
        );
        assert_eq!(s.deadline(), None);
        assert_eq!(s.on_timeout(start.plus_millis(10_000)), Decision::Keep);

        // A native node's dial has none unless asked; a browser's uplink asks.
        let dialed = Session::dialed(false, config);
        assert_eq!(dialed.deadline(), None);
        assert_eq!(
            dialed.on_timeout(start.plus_millis(u64::MAX / 2_000)),
            Decision::Keep
        );
        let uplink = Session::dialed(true, config).with_deadline(start);
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
            Fault::UnexpectedHello,
            Fault::BadHello(HelloError::Length(usize::MAX)),
            Fault::BadHello(HelloError::Magic),
            Fault::HelloMissing,
            Fault::SecondHello,
            Fault::OwnHello,
            Fault::OriginMismatch,
            Fault::Foreign(DropReason::Unauthenticated),
            Fault::TooManyRefusals,
            Fault::Unverified,
        ];
        for f in faults {
            assert!(f.to_string().len() <= 123, "{f}");
            assert!(f.code().browser_may_send(), "{f}");
        }
    }
}
