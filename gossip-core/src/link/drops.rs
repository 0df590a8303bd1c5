//! What a driver drops or refuses around the engine, counted by label.
//!
//! The engine counts what it refuses in [`Stats::drops`](crate::Stats::drops)
//! ([`DropReason`](crate::DropReason)); a driver refuses things the engine never sees (a
//! connection over the limit, a frame no route reaches, a peer that does not read). One enum for
//! both, so no driver keeps a list of label strings; the labels never collide with
//! [`DropReason::as_str`](crate::DropReason::as_str) except `too_large`, which means the same.

use core::fmt;

use super::session::Fault;

/// Why a driver dropped a frame, a connection or a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkDrop {
    /// A [`Session`](super::Session) closed its link.
    Closed(Fault),
    /// No open connection, address or dialable transport reaches the member.
    NoRoute,
    /// The UDP socket refused a datagram (full buffer, unreachable).
    UdpSendFailed,
    /// The peer did not read: its send queue overflowed and the link was closed.
    SlowConsumer,
    /// The connection closed while a frame was on its way to it.
    ConnectionClosed,
    /// A connection (inbound or dial) over the connection limit.
    TooManyConnections,
    /// A dial failed or timed out.
    DialFailed,
    /// A WebSocket client without the right token.
    Unauthorized,
    /// A WebSocket client from an origin not allowed.
    ForbiddenOrigin,
    /// A WebSocket client the admission hook refused.
    NotAdmitted,
    /// An admitted member's link closed at the end of its grant's lifetime, or on revocation.
    AdmissionEnded,
    /// A datagram or message over the frame limit.
    TooLarge,
    /// The engine's inbound queue was full (UDP is best effort).
    InboundQueueFull,
}

impl LinkDrop {
    /// A short, stable label for metrics and status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDrop::Closed(fault) => fault.label(),
            LinkDrop::NoRoute => "no_route",
            LinkDrop::UdpSendFailed => "udp_send_failed",
            LinkDrop::SlowConsumer => "slow_consumer",
            LinkDrop::ConnectionClosed => "connection_closed",
            LinkDrop::TooManyConnections => "too_many_connections",
            LinkDrop::DialFailed => "dial_failed",
            LinkDrop::Unauthorized => "ws_unauthorized",
            LinkDrop::ForbiddenOrigin => "ws_forbidden_origin",
            LinkDrop::NotAdmitted => "ws_not_admitted",
            LinkDrop::AdmissionEnded => "admission_ended",
            LinkDrop::TooLarge => "too_large",
            LinkDrop::InboundQueueFull => "inbound_queue_full",
        }
    }
}

impl fmt::Display for LinkDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DropReason;
    use crate::link::HandshakeError;

    #[test]
    fn labels_are_distinct_and_keep_the_names_dashboards_use() {
        let all = [
            LinkDrop::Closed(Fault::TooManyRefusals),
            LinkDrop::Closed(Fault::Handshake(HandshakeError::FrameFirst)),
            LinkDrop::Closed(Fault::Handshake(HandshakeError::Signature)),
            LinkDrop::Closed(Fault::Handshake(HandshakeError::WrongPeer)),
            LinkDrop::Closed(Fault::Handshake(HandshakeError::Magic)),
            LinkDrop::Closed(Fault::Foreign(DropReason::Unauthenticated)),
            LinkDrop::Closed(Fault::Unlinked),
            LinkDrop::Closed(Fault::Unverified),
            LinkDrop::NoRoute,
            LinkDrop::UdpSendFailed,
            LinkDrop::SlowConsumer,
            LinkDrop::ConnectionClosed,
            LinkDrop::TooManyConnections,
            LinkDrop::DialFailed,
            LinkDrop::Unauthorized,
            LinkDrop::ForbiddenOrigin,
            LinkDrop::NotAdmitted,
            LinkDrop::AdmissionEnded,
            LinkDrop::TooLarge,
            LinkDrop::InboundQueueFull,
        ];
        let mut labels: Vec<&str> = all.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels[0], "unverified_refusals");
        assert_eq!(labels[1], "frame_before_handshake");
        assert_eq!(LinkDrop::SlowConsumer.to_string(), "slow_consumer");
        labels.sort_unstable();
        let n = labels.len();
        labels.dedup();
        assert_eq!(labels.len(), n);
        // `no_route` and `too_large` mean what the engine's labels of the same name mean.
        assert_eq!(LinkDrop::NoRoute.as_str(), DropReason::NoRoute.as_str());
        assert_eq!(LinkDrop::TooLarge.as_str(), DropReason::TooLarge.as_str());
    }
}
