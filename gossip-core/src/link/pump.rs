//! Bytes a driver holds for a stream until the engine's window takes them.
//!
//! [`Node::stream_write`](crate::Node::stream_write) takes what the peer's credit allows and
//! returns how much; the rest waits here. The driver calls [`Outbox::flush`] when the
//! application wrote and again on every [`StreamOutput::Writable`](crate::streams::StreamOutput),
//! which the engine emits when credit arrives. Both drivers pump this way: the server with one
//! bounded outbox per stream that `AsyncWrite` fills, the browser with the bytes of the
//! `WritableStream` write it has not finished.

use std::collections::VecDeque;

/// Bytes waiting for stream credit, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    bytes: VecDeque<u8>,
}

impl From<Vec<u8>> for Outbox {
    fn from(bytes: Vec<u8>) -> Self {
        Outbox {
            bytes: bytes.into(),
        }
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many more bytes fit under `cap`.
    pub fn room(&self, cap: usize) -> usize {
        cap.saturating_sub(self.bytes.len())
    }

    /// Queues `data` after what waits.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
    }

    /// Hands the waiting bytes to `write`, in order, until it takes none (the window is full:
    /// call again on `Writable`) or none are left. Returns how many it took. An error stops the
    /// pumping and leaves what was not taken in the outbox.
    pub fn flush<E>(
        &mut self,
        mut write: impl FnMut(&[u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let mut taken = 0usize;
        while !self.bytes.is_empty() {
            let (front, _) = self.bytes.as_slices();
            // A writer claiming more than it was offered took what it was offered.
            let n = write(front)?.min(front.len());
            if n == 0 {
                break;
            }
            self.bytes.drain(..n);
            taken = taken.saturating_add(n);
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window that takes `credit` bytes in total, at most `chunk` per call.
    struct Window {
        credit: usize,
        chunk: usize,
        got: Vec<u8>,
    }

    impl Window {
        fn write(&mut self, data: &[u8]) -> Result<usize, &'static str> {
            let n = data.len().min(self.credit).min(self.chunk);
            self.credit -= n;
            self.got.extend_from_slice(&data[..n]);
            Ok(n)
        }
    }

    #[test]
    fn pumps_what_the_window_takes_and_resumes_in_order() {
        let mut out = Outbox::new();
        out.push(b"hello ");
        out.push(b"world");
        assert_eq!(out.room(16), 5);
        let mut w = Window {
            credit: 4,
            chunk: 3,
            got: Vec::new(),
        };
        assert_eq!(out.flush(|d| w.write(d)), Ok(4));
        assert_eq!(w.got, b"hell");
        assert_eq!(out.len(), 7);
        // Nothing more until credit arrives.
        assert_eq!(out.flush(|d| w.write(d)), Ok(0));
        w.credit = 100;
        assert_eq!(out.flush(|d| w.write(d)), Ok(7));
        assert_eq!(w.got, b"hello world");
        assert!(out.is_empty());
    }

    #[test]
    fn bytes_wrapping_around_the_ring_keep_their_order() {
        let mut out = Outbox::from(vec![1, 2, 3, 4]);
        let mut w = Window {
            credit: 3,
            chunk: 8,
            got: Vec::new(),
        };
        assert_eq!(out.flush(|d| w.write(d)), Ok(3));
        // The ring's free space is now at its front: new bytes wrap.
        out.push(&[5, 6, 7]);
        w.credit = 100;
        assert_eq!(out.flush(|d| w.write(d)), Ok(4));
        assert_eq!(w.got, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn an_error_keeps_the_rest_and_an_overclaim_is_clamped() {
        let mut out = Outbox::from(b"abcdef".to_vec());
        let mut calls = 0;
        let r = out.flush(|d| {
            calls += 1;
            if calls == 1 { Ok(2) } else { Err(d.len()) }
        });
        assert_eq!(r, Err(4));
        assert_eq!(out.len(), 4);
        let r: Result<usize, ()> = out.flush(|_| Ok(usize::MAX));
        assert_eq!(r, Ok(4));
        assert!(out.is_empty());
    }
}
