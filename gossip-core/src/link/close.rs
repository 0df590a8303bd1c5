//! The codes a gossip link is closed with.
//!
//! WebSocket carries them in its close frame; TCP has no close message, so there a close is just
//! the end of the stream (the code is still what the driver logs and counts). Application codes
//! follow `4000 + the HTTP status` that means the same, so they read at a glance.
//!
//! | code | variant | meaning |
//! |---|---|---|
//! | 1000 | [`Normal`](CloseCode::Normal) | normal close (leaving, stopped) |
//! | 1001 | [`GoingAway`](CloseCode::GoingAway) | the node is shutting down |
//! | 1006 | [`Abnormal`](CloseCode::Abnormal) | never sent: a browser reports it when the connection dropped without a close frame |
//! | 4400 | [`BadFrame`](CloseCode::BadFrame) | the peer broke the link protocol before it proved membership: a frame that failed to decode or authenticate (wrong cluster key, or not a gossip peer), too many refused frames, a failed handshake (a frame before it, a proof that does not verify, another member than the one dialed) |
//! | 4401 | [`Unauthorized`](CloseCode::Unauthorized) | missing or wrong token |
//! | 4403 | [`Forbidden`](CloseCode::Forbidden) | `Origin` not in the allow-list |
//! | 4406 | [`NotAdmitted`](CloseCode::NotAdmitted) | the web app's admission hook refused the client; the reason is the hook's |
//! | 4408 | [`SlowConsumer`](CloseCode::SlowConsumer) | the peer does not read fast enough: its send queue overflowed |
//! | 4413 | [`TooLarge`](CloseCode::TooLarge) | message larger than the frame limit |
//! | 4415 | [`BinaryOnly`](CloseCode::BinaryOnly) | a text message (binary only) |
//! | 4426 | [`Version`](CloseCode::Version) | the handshake showed no common protocol or application version (HTTP 426 Upgrade Required); the refusing side logs both sides' ranges |
//! | 4428 | [`NotVerified`](CloseCode::NotVerified) | no finished handshake, or no verified frame, within the link's deadline ([`SessionConfig::verify_within_ms`](super::SessionConfig::verify_within_ms)) |
//! | 4429 | [`TooManyConnections`](CloseCode::TooManyConnections) | too many connections |

use core::fmt;

/// Why a link was closed. See the [module documentation](self) for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal close.
    Normal,
    /// 1001: the node is shutting down.
    GoingAway,
    /// 1006: the connection dropped without a close frame. Only ever observed, never sent (the
    /// WebSocket specification reserves it).
    Abnormal,
    /// 4400: the peer broke the link protocol before it proved membership.
    BadFrame,
    /// 4401: missing or wrong token.
    Unauthorized,
    /// 4403: `Origin` not allowed.
    Forbidden,
    /// 4406: the web app's admission hook refused the client (the reason says why).
    NotAdmitted,
    /// 4408: the peer does not read: its send queue overflowed.
    SlowConsumer,
    /// 4413: a message over the frame limit.
    TooLarge,
    /// 4415: a text message (binary only).
    BinaryOnly,
    /// 4426: no common protocol or application version (see
    /// [`Versions`](super::handshake::Versions)).
    Version,
    /// 4428: no verified frame within the deadline (HTTP 428: membership must be proven first).
    NotVerified,
    /// 4429: too many connections.
    TooManyConnections,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::Abnormal,
        CloseCode::BadFrame,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::NotAdmitted,
        CloseCode::SlowConsumer,
        CloseCode::TooLarge,
        CloseCode::BinaryOnly,
        CloseCode::Version,
        CloseCode::NotVerified,
        CloseCode::TooManyConnections,
    ];

    /// The number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Abnormal => 1006,
            CloseCode::BadFrame => 4400,
            CloseCode::Unauthorized => 4401,
            CloseCode::Forbidden => 4403,
            CloseCode::NotAdmitted => 4406,
            CloseCode::SlowConsumer => 4408,
            CloseCode::TooLarge => 4413,
            CloseCode::BinaryOnly => 4415,
            CloseCode::Version => 4426,
            CloseCode::NotVerified => 4428,
            CloseCode::TooManyConnections => 4429,
        }
    }

    /// The code a peer sent, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The reason text sent with the code when the closer has nothing more precise to say
    /// (at most 123 bytes, the WebSocket limit).
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal close",
            CloseCode::GoingAway => "node shutting down",
            CloseCode::Abnormal => "connection dropped without a close frame",
            CloseCode::BadFrame => "protocol violation before membership was proven",
            CloseCode::Unauthorized => "missing or wrong token",
            CloseCode::Forbidden => "origin not allowed",
            CloseCode::NotAdmitted => "not admitted",
            CloseCode::SlowConsumer => "send queue overflowed: the peer does not read",
            CloseCode::TooLarge => "message over the frame limit",
            CloseCode::BinaryOnly => "binary messages only",
            CloseCode::Version => "no common protocol or application version",
            CloseCode::NotVerified => "no verified frame in time",
            CloseCode::TooManyConnections => "too many connections",
        }
    }

    /// Whether a browser's `WebSocket.close(code)` accepts it: only 1000 and 3000-4999 (other
    /// codes throw), so a browser driver must never be asked to send anything else.
    pub const fn browser_may_send(self) -> bool {
        matches!(self.code(), 1000 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c), "{c}");
            assert!(c.reason().len() <= 123, "{c}");
        }
        let mut codes: Vec<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        let sorted = codes.clone();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes, sorted, "ALL is sorted and has no duplicate");
        for unknown in [0, 999, 1002, 1005, 3000, 4000, 4402, 4999, u16::MAX] {
            assert_eq!(CloseCode::from_code(unknown), None, "{unknown}");
        }
        assert_eq!(CloseCode::BadFrame.code(), 4400);
        assert_eq!(CloseCode::TooManyConnections.code(), 4429);
    }

    #[test]
    fn a_browser_can_send_every_code_but_the_reserved_ones() {
        let refused: Vec<CloseCode> = CloseCode::ALL
            .into_iter()
            .filter(|c| !c.browser_may_send())
            .collect();
        assert_eq!(refused, [CloseCode::GoingAway, CloseCode::Abnormal]);
    }

    #[test]
    fn the_doc_table_lists_every_code() {
        let doc = include_str!("close.rs");
        for c in CloseCode::ALL {
            let row = format!("//! | {} | [`{:?}`](CloseCode::{:?}) |", c.code(), c, c);
            assert!(doc.contains(&row), "missing table row for {c}");
        }
    }

    #[test]
    fn the_drivers_document_lists_every_code() {
        let doc = include_str!("../../../docs/DRIVERS.md");
        for c in CloseCode::ALL {
            let row = format!("| {} | `{:?}` |", c.code(), c);
            assert!(doc.contains(&row), "docs/DRIVERS.md misses the row for {c}");
        }
        let rows = doc
            .lines()
            .filter(|l| l.starts_with("| 1") || l.starts_with("| 4"))
            .count();
        assert_eq!(
            rows,
            CloseCode::ALL.len(),
            "docs/DRIVERS.md lists a code CloseCode lacks"
        );
    }
}
