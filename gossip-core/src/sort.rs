//! Sorting with one sort routine in the browser build instead of one per element type.
//!
//! The standard library's sorts are generic: every element type and comparator gets its own
//! copy of quicksort, run merging and small-sort networks, a few kilobytes each, which made
//! sorting about 25 KB of the browser package (docs/DESIGN.md, "Wasm size"). On wasm32 these
//! functions sort a list of indices with one shared, non-generic routine and then move the
//! elements into place; elsewhere they are the standard sorts, unchanged.

use core::cmp::Ordering;

/// Sorts `v` by `cmp`, keeping equal elements in their order: the order of `v.sort_by(cmp)`.
pub fn stable_by<T>(v: &mut [T], cmp: impl FnMut(&T, &T) -> Ordering) {
    #[cfg(not(target_arch = "wasm32"))]
    v.sort_by(cmp);
    #[cfg(target_arch = "wasm32")]
    by_indices(v, cmp);
}

/// Sorts `v` by `key`, keeping equal elements in their order: the order of `v.sort_by_key(key)`.
pub fn stable_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    stable_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `v` by `key` where no two elements have equal keys (or equal-keyed elements are
/// interchangeable), so the order is the same on every target: `v.sort_unstable_by_key(key)`
/// natively.
pub fn unstable_by_key<T, K: Ord>(v: &mut [T], key: impl FnMut(&T) -> K) {
    #[cfg(not(target_arch = "wasm32"))]
    v.sort_unstable_by_key(key);
    #[cfg(target_arch = "wasm32")]
    stable_by_key(v, key);
}

/// Sorts `v` ascending where equal elements are interchangeable (ids, numbers), so the order
/// is the same on every target: `v.sort_unstable()` natively.
pub fn unstable<T: Ord>(v: &mut [T]) {
    #[cfg(not(target_arch = "wasm32"))]
    v.sort_unstable();
    #[cfg(target_arch = "wasm32")]
    stable_by(v, T::cmp);
}

/// The browser build's sort: the indices of `v`, then the elements after them. Natively only the
/// tests use it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn by_indices<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    sort_indices(&mut order, &mut |a, b| cmp(&v[a], &v[b]));
    permute(v, order);
}

/// The one sort the browser build links: indices, by a comparator of what they index. Stable,
/// so elements that compare equal keep their order.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[inline(never)]
fn sort_indices(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| cmp(a, b));
}

/// Rearranges `v` so that its element `i` is the one that was at `order[i]` (`order` is a
/// permutation of `0..v.len()`), following each cycle of the permutation with swaps.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn permute<T>(v: &mut [T], mut order: Vec<usize>) {
    for start in 0..order.len() {
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn index_sort_orders_as_the_standard_stable_sort(
            v in proptest::collection::vec((0u8..6, any::<u16>()), 0..200)
        ) {
            // Keyed on the first field only: many ties, whose order must be kept.
            let mut std_sorted = v.clone();
            std_sorted.sort_by_key(|e| e.0);
            let mut ours = v.clone();
            by_indices(&mut ours, |a, b| a.0.cmp(&b.0));
            prop_assert_eq!(&ours, &std_sorted);
            let mut api = v;
            stable_by_key(&mut api, |e| e.0);
            prop_assert_eq!(api, std_sorted);
        }
    }
}
