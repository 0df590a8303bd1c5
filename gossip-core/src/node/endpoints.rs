//! Named endpoints inside the node: registrations are keys of this member's replicated state,
//! resolution reads every member's map (see `crate::endpoints`).
//!
//! No message of its own: what a malicious member can do with endpoints is what it can do with
//! its own replicated state. It can register any name (there is no ownership of names) and so
//! receive requests and streams meant for it; it can register names this node would refuse
//! (too long, bad characters), which this node never resolves; and it can register as many as
//! every receiver's state limits allow (`StateConfig::max_keys_per_member` and
//! `max_bytes_per_member` per member, `max_cluster_bytes` in all), beyond which its writes are
//! dropped and counted as `DropReason::StateLimit`.

use std::collections::BTreeMap;

use super::Node;
use crate::endpoints::{EndpointError, Holder, KEY_PREFIX, Policy, check_name, key_of, pick};
use crate::identity::NodeId;
use crate::requests::RequestId;
use crate::streams::StreamKey;
use crate::time::Instant;
use rand_core::Rng;

impl Node {
    /// Registers `name` as held by this member; `Ok(false)` if it already was (nothing is sent).
    /// The registration reaches every member like a state write, and disappears everywhere when
    /// this member unregisters it, dies or leaves.
    pub fn endpoint_register(&mut self, now: Instant, name: &str) -> Result<bool, EndpointError> {
        let config = self.config.endpoints;
        check_name(name, &config)?;
        let key = key_of(name);
        if self.state_get(&self.id, &key).is_some() {
            return Ok(false);
        }
        if self.endpoints_held().len() >= config.max_names_per_member {
            return Err(EndpointError::TooManyNames {
                max: config.max_names_per_member,
            });
        }
        self.state_set(now, &key, Vec::new())?;
        Ok(true)
    }

    /// Stops holding `name`; `Ok(false)` if this member did not hold it.
    pub fn endpoint_unregister(&mut self, now: Instant, name: &str) -> Result<bool, EndpointError> {
        check_name(name, &self.config.endpoints)?;
        Ok(self.state_delete(now, &key_of(name))?.is_some())
    }

    /// The names this member holds, in order.
    pub fn endpoints_held(&self) -> Vec<String> {
        self.state_entries(&self.id)
            .into_iter()
            .filter_map(|v| v.key.strip_prefix(KEY_PREFIX).map(str::to_owned))
            .collect()
    }

    /// The live members holding `name` (this one included if it does), in id order.
    pub fn endpoint_holders(&self, name: &str) -> Result<Vec<Holder>, EndpointError> {
        check_name(name, &self.config.endpoints)?;
        let key = key_of(name);
        let mut holders: Vec<Holder> = self
            .state
            .replicas
            .keys()
            .filter(|owner| self.state_get(owner, &key).is_some())
            .filter_map(|owner| self.members.get(owner))
            .filter(|m| !m.state.is_down())
            .map(|m| Holder {
                id: m.id,
                state: m.state,
                rtt_micros: m.rtt_micros,
            })
            .collect();
        // Ids are unique, so the order is the same on every target; the shared sort keeps a
        // sort of its own out of the browser build (gossip-wasm's full flavour has endpoints).
        crate::sort::unstable_by_key(&mut holders, |h| h.id);
        Ok(holders)
    }

    /// Every name some live member holds, with its number of holders. Names this node's limits
    /// refuse are left out.
    pub fn endpoint_names(&self) -> BTreeMap<String, usize> {
        let mut names = BTreeMap::new();
        for (owner, replica) in &self.state.replicas {
            if self.members.get(owner).is_none_or(|m| m.state.is_down()) {
                continue;
            }
            let under = replica
                .entries
                .range::<str, _>((
                    std::ops::Bound::Included(KEY_PREFIX),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.starts_with(KEY_PREFIX));
            for (key, entry) in under {
                let name = &key[KEY_PREFIX.len()..];
                if entry.value.is_some() && check_name(name, &self.config.endpoints).is_ok() {
                    *names.entry(name.to_owned()).or_insert(0) += 1;
                }
            }
        }
        names
    }

    /// The holders of `name` to address by `policy`, this node excluded (it would call its own
    /// handler): one for `Any` and `Nearest`, every one for `All`.
    pub fn endpoint_pick(
        &mut self,
        name: &str,
        policy: Policy,
    ) -> Result<Vec<NodeId>, EndpointError> {
        let mut holders = self.endpoint_holders(name)?;
        holders.retain(|h| h.id != self.id);
        let rng = &mut self.rng;
        let picked = pick(&holders, policy, || rng.next_u64());
        if picked.is_empty() {
            return Err(EndpointError::NoHolder(name.to_owned()));
        }
        Ok(picked)
    }

    /// Sends a request to the holder(s) of `name` picked by `policy`, with the name as its topic;
    /// each answers (or fails) as a request to it would ([`crate::Event::Response`],
    /// [`crate::Event::RequestFailed`]). With `All`, a refusal part-way (too many outstanding
    /// requests) returns the error, and the requests already sent stay outstanding.
    pub fn endpoint_request(
        &mut self,
        now: Instant,
        name: &str,
        policy: Policy,
        data: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Vec<(NodeId, RequestId)>, EndpointError> {
        let targets = self.endpoint_pick(name, policy)?;
        let mut sent = Vec::with_capacity(targets.len());
        for to in targets {
            let id = self.request(now, to, name, data.clone(), timeout_ms)?;
            sent.push((to, id));
        }
        Ok(sent)
    }

    /// Opens a stream to the holder of `name` picked by `policy` (`Any` or `Nearest`).
    pub fn endpoint_open_stream(
        &mut self,
        now: Instant,
        name: &str,
        policy: Policy,
    ) -> Result<(NodeId, StreamKey), EndpointError> {
        if policy == Policy::All {
            return Err(EndpointError::NotOne);
        }
        let to = self.endpoint_pick(name, policy)?[0];
        let key = self.streams().open(now, to)?;
        Ok((to, key))
    }
}
