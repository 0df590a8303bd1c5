//! Size limits applied to every frame a node encodes or decodes.

/// Bounds on frames and their contents. Every field is checked before memory is committed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted or produced, in bytes.
    pub max_frame_bytes: usize,
    /// Largest payload after decompression, in bytes (the bound on a decompression bomb).
    pub max_payload_bytes: usize,
    /// Payloads larger than this are lz4-compressed, and sent compressed only if that shrinks them.
    pub compress_threshold: usize,
    /// Most entries in any list of a message (piggybacked updates, digests, members...).
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 256 * 1024,
            max_payload_bytes: 1024 * 1024,
            compress_threshold: 256,
            max_items: 4096,
        }
    }
}
