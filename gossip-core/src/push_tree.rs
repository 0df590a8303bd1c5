//! The push tree: an f-ary tree laid over the sorted ring of push targets, rooted at the member
//! that originated an update.
//!
//! Every member that agrees on the ring computes the same tree, so when each pushes an update to
//! its own children on first receipt the wave reaches all `n` members in `ceil(log_f n)`-ish hops
//! with `n - 1` frames, where random push targets would need `n * f` frames and still miss about
//! `n * e^-f` members. Positions are counted from the root along the ring: the root is position 0
//! and position `p` has children `p*f + 1 ..= p*f + f`, a heap layout, so every position but the
//! root has exactly one parent and the deepest position is at the smallest depth that fits `n`.

use std::ops::Range;

/// Position of ring index `me` in the tree rooted at ring index `root` over a ring of `n`.
pub(crate) fn position(n: usize, root: usize, me: usize) -> usize {
    debug_assert!(root < n && me < n);
    (me + n - root) % n
}

/// Positions of the children of position `p` in an `f`-ary tree of `n` positions.
pub(crate) fn child_positions(n: usize, f: usize, p: usize) -> Range<usize> {
    // Saturating: a huge `f` must give "every position after `p`", not an overflow.
    let first = p.saturating_mul(f).saturating_add(1).min(n);
    let end = p
        .saturating_mul(f)
        .saturating_add(f)
        .saturating_add(1)
        .min(n);
    first..end.max(first)
}

/// Ring indices of the children of ring index `me` in the `f`-ary tree rooted at ring index
/// `root` over a ring of `n`.
pub(crate) fn children(
    n: usize,
    f: usize,
    root: usize,
    me: usize,
) -> impl Iterator<Item = usize> + Clone {
    let p = position(n, root, me);
    child_positions(n, f, p).map(move |c| (root + c) % n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Smallest `d` with `1 + f + ... + f^d >= n`: the depth of a full f-ary heap of `n`.
    fn heap_depth(n: usize, f: usize) -> usize {
        let (mut covered, mut level, mut d) = (1usize, 1usize, 0);
        while covered < n {
            level = level.saturating_mul(f);
            covered = covered.saturating_add(level);
            d += 1;
        }
        d
    }

    /// Hops from the root until every ring index has it, following `children` (None if some
    /// index is never reached).
    fn hops_to_all(n: usize, f: usize, root: usize) -> Option<usize> {
        let mut has = vec![false; n];
        has[root] = true;
        let mut frontier = vec![root];
        let mut hops = 0;
        while has.iter().any(|h| !h) {
            let mut next = Vec::new();
            for &i in &frontier {
                for c in children(n, f, root, i) {
                    if !has[c] {
                        has[c] = true;
                        next.push(c);
                    }
                }
            }
            if next.is_empty() {
                return None;
            }
            frontier = next;
            hops += 1;
        }
        Some(hops)
    }

    fn parents_per_index(n: usize, f: usize, root: usize) -> Vec<usize> {
        let mut parents = vec![0; n];
        for me in 0..n {
            for c in children(n, f, root, me) {
                parents[c] += 1;
            }
        }
        parents
    }

    #[test]
    fn depth_matches_the_bound_at_the_sizes_we_care_about() {
        assert_eq!(hops_to_all(1_000, 7, 0), Some(4));
        assert_eq!(hops_to_all(1_000, 7, 999), Some(4));
        assert_eq!(hops_to_all(100, 5, 42), Some(3));
        assert_eq!(hops_to_all(200, 6, 17), Some(3));
        assert_eq!(hops_to_all(1, 7, 0), Some(0));
        assert_eq!(hops_to_all(2, 7, 1), Some(1));
        assert_eq!(hops_to_all(2, 1, 0), Some(1));
        assert_eq!(hops_to_all(5, 1, 3), Some(4));
        assert_eq!(heap_depth(1_000, 7), 4);
        assert_eq!(heap_depth(100, 5), 3);
    }

    #[test]
    fn single_member_has_no_children_and_pair_has_one() {
        assert_eq!(children(1, 7, 0, 0).count(), 0);
        assert_eq!(children(2, 7, 0, 0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(children(2, 7, 0, 1).count(), 0);
        assert_eq!(children(2, 7, 1, 1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(children(2, 7, 1, 0).count(), 0);
    }

    #[test]
    fn zero_fanout_pushes_to_nobody() {
        assert_eq!(children(10, 0, 3, 3).count(), 0);
        assert_eq!(hops_to_all(10, 0, 3), None);
    }

    proptest! {
        #[test]
        fn every_member_but_the_root_has_exactly_one_parent(
            n in 1usize..400,
            f in 1usize..12,
            root_seed in any::<usize>(),
        ) {
            let root = root_seed % n;
            let parents = parents_per_index(n, f, root);
            for (i, &p) in parents.iter().enumerate() {
                let want = usize::from(i != root);
                prop_assert_eq!(p, want, "index {} of {} (f {}, root {})", i, n, f, root);
            }
        }

        #[test]
        fn the_wave_takes_the_heap_depth(
            n in 1usize..2_000,
            f in 1usize..12,
            root_seed in any::<usize>(),
        ) {
            let root = root_seed % n;
            prop_assert_eq!(hops_to_all(n, f, root), Some(heap_depth(n, f)));
        }

        #[test]
        fn children_are_never_self_or_root(
            n in 1usize..400,
            f in 1usize..12,
            root_seed in any::<usize>(),
            me_seed in any::<usize>(),
        ) {
            let (root, me) = (root_seed % n, me_seed % n);
            for c in children(n, f, root, me) {
                prop_assert!(c < n);
                prop_assert_ne!(c, me);
                prop_assert_ne!(c, root);
            }
        }

        #[test]
        fn huge_fanouts_do_not_overflow(n in 1usize..50, p in 0usize..50) {
            let p = p % n;
            let r = child_positions(n, usize::MAX, p);
            prop_assert!(r.start <= r.end && r.end <= n);
        }
    }
}
