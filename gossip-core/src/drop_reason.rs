//! Why an inbound frame, or an item inside one, was dropped.
//!
//! One enum for every engine and driver, so no code learns why a frame was refused by comparing
//! strings. [`DropReason::as_str`] is only for metric labels and status JSON.

use crate::error::{Replayed, WireError};

/// Why an inbound frame (or an item it carried) was dropped. Nothing a dropped input carried
/// changed the node's state, except where [`WireError`] says so for its variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    // ----- the frame itself (see `WireError`) -----
    /// The bytes do not form a valid frame.
    Malformed,
    /// No cluster key opens it, or its origin's signature does not verify.
    Unauthenticated,
    /// The same message was accepted before (normal with gossip: not an attack).
    Duplicate,
    /// Older than the replay window, below the replay floor, or too far in the future.
    Replayed,
    /// A gossip frame that carried only records accepted before, dropped before its signature
    /// was checked (normal in a join storm: most gossip repeats what a member already has).
    Copies,
    /// A size limit was exceeded.
    TooLarge,
    /// An unknown protocol version or message kind.
    Incompatible,
    /// Its timestamp is too far ahead for the hybrid logical clock to merge.
    ClockDrift,
    // ----- addressed to someone else -----
    /// A ping that names another member as its target, or arrived after this node left.
    PingNotForUs,
    /// A direct message for another member.
    DirectNotForUs,
    /// A request or response for another member.
    RequestNotForUs,
    /// A response to no request this node has outstanding.
    UnexpectedResponse,
    // ----- refused by the protocol -----
    /// A message kind that is not a state update arrived where only updates are allowed.
    NotAnUpdate,
    /// A member's metadata exceeds `Config::max_metadata_bytes`.
    MetadataTooLarge,
    /// A stream message for no stream, or one that breaks the stream's rules.
    StreamIgnored,
    /// Too many indirect probes are outstanding (`Config::max_queue`).
    IndirectProbeOverflow,
    /// A relay request from or for a member this node does not relay for.
    RelayRefused,
    /// No address or connection reaches the member.
    NoRoute,
    // ----- refused from members that hold the key -----
    /// A suspicion or death names an incarnation the accused never signed.
    AccusationAhead,
    /// An alive record claims a name a live member holds under another key.
    NameTaken,
    /// A relayed frame whose inner origin is not the member that asked to relay it.
    RelayForged,
    /// A member would be added beyond `Config::max_members`, or beyond the new members one frame
    /// or one sender may introduce.
    TooManyMembers,
    /// An admitted member (one without the cluster key) tried what its grant does not allow: an
    /// accusation, an indirect probe, another's words, a name or topic outside its grant.
    Forbidden,
    /// An admitted member sent faster than its grant's rate.
    RateLimited,
    /// A record or frame of an admitted member whose admission has expired, was revoked, or
    /// was issued by a member that is not live here.
    #[cfg(feature = "admission")]
    NotAdmitted,
    /// An admission its signer may not issue: for itself, by an admitted member or one that is
    /// not live here, or lasting longer than `admission::MAX_ADMISSION_MS`.
    #[cfg(feature = "admission")]
    AdmissionRefused,
    /// A renewal sooner than `admission::MIN_RENEWAL_MS` after the admission it replaces.
    #[cfg(feature = "admission")]
    AdmissionTooSoon,
    /// An indirect probe of a member this node does not know: it dials only members.
    UnknownProbeTarget,
    /// A message kind of the other engine (the overlay's at a `Node`, or the reverse).
    WrongEngine,
    /// A message the protocol's state does not expect: from this node itself, for a link or
    /// request that does not exist, or after leaving.
    Unexpected,
    /// A bounded protocol queue was full.
    QueueFull,
    // ----- replicated state -----
    /// A state entry of a member that is not known or not live here.
    #[cfg(feature = "state")]
    StateUnknownOwner,
    /// A state entry beyond a size limit (`StateConfig`).
    #[cfg(feature = "state")]
    StateLimit,
    /// A state batch whose entries are not its owner's or lie outside the range it claims.
    #[cfg(feature = "state")]
    StateForged,
}

impl DropReason {
    /// A short, stable label for metrics (`drops{reason=...}`) and status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Duplicate => "duplicate",
            DropReason::Replayed => "replayed",
            DropReason::Copies => "copies",
            DropReason::TooLarge => "too_large",
            DropReason::Incompatible => "incompatible",
            DropReason::ClockDrift => "clock_drift",
            DropReason::PingNotForUs => "ping_not_for_us",
            DropReason::DirectNotForUs => "direct_not_for_us",
            DropReason::RequestNotForUs => "request_not_for_us",
            DropReason::UnexpectedResponse => "unexpected_response",
            DropReason::NotAnUpdate => "not_an_update",
            DropReason::MetadataTooLarge => "metadata_too_large",
            DropReason::StreamIgnored => "stream_ignored",
            DropReason::IndirectProbeOverflow => "indirect_probe_overflow",
            DropReason::RelayRefused => "relay_refused",
            DropReason::NoRoute => "no_route",
            DropReason::AccusationAhead => "accusation_ahead",
            DropReason::NameTaken => "name_taken",
            DropReason::RelayForged => "relay_forged",
            DropReason::TooManyMembers => "too_many_members",
            DropReason::UnknownProbeTarget => "unknown_probe_target",
            DropReason::WrongEngine => "wrong_engine",
            DropReason::Unexpected => "unexpected",
            DropReason::QueueFull => "queue_full",
            DropReason::Forbidden => "forbidden",
            DropReason::RateLimited => "rate_limited",
            #[cfg(feature = "admission")]
            DropReason::NotAdmitted => "not_admitted",
            #[cfg(feature = "admission")]
            DropReason::AdmissionRefused => "admission_refused",
            #[cfg(feature = "admission")]
            DropReason::AdmissionTooSoon => "admission_too_soon",
            #[cfg(feature = "state")]
            DropReason::StateUnknownOwner => "state_unknown_owner",
            #[cfg(feature = "state")]
            DropReason::StateLimit => "state_limit",
            #[cfg(feature = "state")]
            DropReason::StateForged => "state_forged",
        }
    }

    /// The frame cannot come from a member of this cluster (wrong key, garbage, another
    /// protocol): a connection whose first frame is refused like this is not one to keep.
    pub fn is_foreign(self) -> bool {
        matches!(
            self,
            DropReason::Malformed | DropReason::Unauthenticated | DropReason::Incompatible
        )
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&WireError> for DropReason {
    fn from(e: &WireError) -> Self {
        match e {
            WireError::Malformed(_) => DropReason::Malformed,
            WireError::Unauthenticated(_) => DropReason::Unauthenticated,
            WireError::Replayed(Replayed::Duplicate) => DropReason::Duplicate,
            WireError::Replayed(Replayed::Copies) => DropReason::Copies,
            WireError::Replayed(_) => DropReason::Replayed,
            WireError::TooLarge(_) => DropReason::TooLarge,
            WireError::Incompatible(_) => DropReason::Incompatible,
        }
    }
}

/// Why [`Node::handle_packet`](crate::Node::handle_packet) refused a frame before it knew who
/// sent it. Nothing in the frame changed the node's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame refused: {reason}")]
pub struct Refused {
    /// Why, as counted in `Stats::drops`.
    pub reason: DropReason,
}

impl Refused {
    /// See [`DropReason::is_foreign`].
    pub fn is_foreign(&self) -> bool {
        self.reason.is_foreign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Incompatible, Malformed, Unauthenticated};

    #[test]
    fn wire_errors_map_to_the_labels_they_had() {
        let cases = [
            (WireError::from(Malformed::Flags(1)), "malformed"),
            (Unauthenticated::Decrypt.into(), "unauthenticated"),
            (Replayed::Duplicate.into(), "duplicate"),
            (Replayed::BelowFloor.into(), "replayed"),
            (Replayed::Copies.into(), "copies"),
            (Incompatible::Kind(99).into(), "incompatible"),
        ];
        for (e, label) in cases {
            assert_eq!(DropReason::from(&e).as_str(), label);
            assert_eq!(e.reason(), label);
        }
        assert!(DropReason::Unauthenticated.is_foreign());
        assert!(!DropReason::Duplicate.is_foreign());
        assert!(!DropReason::ClockDrift.is_foreign());
    }
}
