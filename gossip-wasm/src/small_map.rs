//! A map as a list of pairs, for the driver's handful of pending requests and open streams.
//!
//! The core caps both (outstanding requests, streams per member), so a linear search is cheap,
//! and the list adds far less code to the `.wasm` than another `HashMap` instantiation (hashing,
//! probing, rehashing per key and value type; docs/DESIGN.md, "Wasm size").

/// Pairs with distinct keys, in insertion order.
#[derive(Debug)]
pub(crate) struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: PartialEq, V> SmallMap<K, V> {
    fn position(&self, key: &K) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    /// Sets `key`'s value, replacing the one it had.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.position(&key) {
            Some(i) => self.0[i].1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.position(key)?;
        Some(self.0.swap_remove(i).1)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Empties the map, yielding its values.
    pub(crate) fn drain_values(&mut self) -> impl Iterator<Item = V> + '_ {
        self.0.drain(..).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_distinct_and_values_follow_their_keys() {
        let mut m = SmallMap::default();
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "c");
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m.get_mut(&1).map(|v| *v), Some("c"));
        assert_eq!(m.remove(&1), Some("c"));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.get_mut(&1), None);
        m.insert(3, "d");
        let mut left: Vec<_> = m.drain_values().collect();
        left.sort_unstable();
        assert_eq!(left, ["b", "d"]);
        assert_eq!(m.keys().count(), 0);
    }
}
