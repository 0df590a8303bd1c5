//! Deterministic simulator for gossip clusters: many real `gossip-core` nodes under a virtual clock, a seeded RNG and a lossy, partitionable network model. Its implementation arrives with the protocol-engine milestone (issue 3); until then this crate has no items.

#![deny(missing_docs)]
