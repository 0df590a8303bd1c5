//! UDP: one datagram is one frame.

use std::sync::Arc;

use gossip_core::link::LinkDrop;
use tokio::net::UdpSocket;

use crate::conn::Input;
use crate::shared::Shared;

/// Bytes read per datagram: the largest a UDP datagram can be, so none is cut short before the
/// frame limit (`Limits::max_frame`) judges it.
pub(crate) const DATAGRAM_BUF: usize = 65_536;

/// Receives datagrams until the node stops. A full engine queue drops the datagram (UDP is best
/// effort; SWIM tolerates loss) instead of buffering without bound.
pub(crate) async fn recv_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; DATAGRAM_BUF];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, from)) => {
                if let Some(input) = datagram(&shared, &buf[..len], from)
                    && shared.inbound.try_send(input).is_err()
                {
                    shared.count_drop(LinkDrop::InboundQueueFull);
                }
            }
            // ICMP port unreachable surfaces as an error on some systems: not fatal.
            Err(e) => tracing::trace!(error = %e, "udp recv"),
        }
    }
}

/// A datagram already waiting in the socket, read without waiting (`None`: nothing there, or one
/// that was too large, counted). The driver reads the socket itself before it fires timers: when
/// the process is busy, the receive task may not have run since the answer to a probe arrived,
/// and the probe's timeout must not overtake an answer that is already here.
pub(crate) fn try_read(shared: &Shared, socket: &UdpSocket, buf: &mut [u8]) -> Option<Input> {
    // Bounded: a socket that keeps reporting errors must not hold the driver.
    for _ in 0..64 {
        match socket.try_recv_from(buf) {
            Ok((len, from)) => {
                if let Some(input) = datagram(shared, &buf[..len], from) {
                    return Some(input);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            // ICMP port unreachable surfaces as an error on some systems: not fatal, read on.
            Err(e) => tracing::trace!(error = %e, "udp recv"),
        }
    }
    None
}

/// One received datagram as an input for the engine, unless it exceeds the frame limit.
fn datagram(shared: &Shared, bytes: &[u8], from: std::net::SocketAddr) -> Option<Input> {
    if bytes.len() > shared.limits.max_frame {
        shared.count_drop(LinkDrop::TooLarge);
        return None;
    }
    Some(Input::Datagram {
        from,
        bytes: bytes.to_vec(),
    })
}
