//! UDP: one datagram is one frame.

use std::sync::Arc;

use gossip_core::link::LinkDrop;
use tokio::net::UdpSocket;

use crate::conn::Input;
use crate::shared::Shared;

/// Receives datagrams until the node stops. A full engine queue drops the datagram (UDP is best
/// effort; SWIM tolerates loss) instead of buffering without bound.
pub(crate) async fn recv_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, from)) => {
                if len > shared.limits.max_frame {
                    shared.count_drop(LinkDrop::TooLarge);
                    continue;
                }
                let input = Input::Datagram {
                    from,
                    bytes: buf[..len].to_vec(),
                };
                if shared.inbound.try_send(input).is_err() {
                    shared.count_drop(LinkDrop::InboundQueueFull);
                }
            }
            // ICMP port unreachable surfaces as an error on some systems: not fatal.
            Err(e) => tracing::trace!(error = %e, "udp recv"),
        }
    }
}
