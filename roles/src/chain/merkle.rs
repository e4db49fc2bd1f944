//! Merkle root over the tx ids of a block.
//!
//! Bitcoin's shape with single SHA-256: a parent is `SHA-256(left ‖ right)`, an odd level
//! pairs its last node with itself, a single tx's root is its id, and an empty block's root
//! is the zero hash. Duplicating the last node lets `[a, b, c]` and `[a, b, c, c]` share a
//! root (CVE-2012-2459); blocks with a repeated tx id are refused, which closes that hole.

use sha2::{Digest, Sha256};

use super::Hash;

/// The Merkle root of `ids` (in block order).
pub fn merkle_root(ids: &[Hash]) -> Hash {
    if ids.is_empty() {
        return [0; 32];
    }
    let mut level: Vec<Hash> = ids.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level.first().copied().unwrap_or([0; 32])
}

/// The level above `level`: each pair's parent, the last node paired with itself when the
/// count is odd.
fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .filter_map(|pair| match pair {
            [l, r] => Some(parent(l, r)),
            [l] => Some(parent(l, l)),
            _ => None,
        })
        .collect()
}

pub(super) fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Every level of the tree over `leaves`, leaves first, root last (one empty level for no
/// leaves): what [`path_in`] reads a path from without hashing, and what a block template
/// updates in place.
pub fn merkle_levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves];
    while let Some(last) = levels.last().filter(|l| l.len() > 1) {
        let next = next_level(last);
        levels.push(next);
    }
    levels
}

/// The Merkle path of the leaf at `index` from the tree's `levels` ([`merkle_levels`]):
/// the sibling at each level, leaf level first. `None` if `index` is out of range.
pub fn path_in(levels: &[Vec<Hash>], index: usize) -> Option<Vec<Hash>> {
    if index >= levels.first()?.len() {
        return None;
    }
    let mut path = Vec::with_capacity(levels.len().saturating_sub(1));
    let mut i = index;
    for level in levels.iter().take(levels.len().saturating_sub(1)) {
        let sibling = if i.is_multiple_of(2) {
            level.get(i + 1).or(level.get(i))
        } else {
            level.get(i - 1)
        };
        path.push(*sibling?);
        i /= 2;
    }
    Some(path)
}

/// The Merkle path of the id at `index` in `ids`: the sibling at each level, leaf level
/// first (a node paired with itself has itself as sibling). `None` if `index` is out of range.
pub fn merkle_path(ids: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= ids.len() {
        return None;
    }
    path_in(&merkle_levels(ids.to_vec()), index)
}

/// The root a Merkle path leads to from `leaf` at `index`: at level `i` the sibling is on the
/// left when bit `i` of `index` is 1. A proof is valid when this equals the header's root.
/// (A leaf is the SHA-256 of a whole encoded Tx, hundreds of bytes, so it cannot pass for an
/// inner node, whose preimage is 64 bytes.)
pub fn root_from_path(leaf: &Hash, index: u64, path: &[Hash]) -> Hash {
    let mut node = *leaf;
    for (level, sibling) in path.iter().enumerate() {
        node = if (index >> level) & 1 == 1 {
            parent(sibling, &node)
        } else {
            parent(&node, sibling)
        };
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &Hash, b: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update(a);
        h.update(b);
        h.finalize().into()
    }

    #[test]
    fn empty_single_and_odd_levels() {
        assert_eq!(merkle_root(&[]), [0; 32]);
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        assert_eq!(merkle_root(&[a]), a);
        assert_eq!(merkle_root(&[a, b]), pair(&a, &b));
        let want = pair(&pair(&a, &b), &pair(&c, &c));
        assert_eq!(merkle_root(&[a, b, c]), want);
        // The known duplicate-last ambiguity: the store refuses repeated ids instead.
        assert_eq!(merkle_root(&[a, b, c, c]), want);
        assert_ne!(merkle_root(&[b, a]), merkle_root(&[a, b]));
    }

    #[test]
    fn every_path_leads_to_the_root_and_a_changed_one_does_not() {
        for n in 1..=20u8 {
            let ids: Vec<Hash> = (0..n).map(|i| [i + 1; 32]).collect();
            let root = merkle_root(&ids);
            for (i, id) in ids.iter().enumerate() {
                let path = merkle_path(&ids, i).unwrap_or_else(|| panic!("in range"));
                assert_eq!(root_from_path(id, i as u64, &path), root, "n {n} i {i}");
                // Another leaf, another position or a changed sibling: another root.
                assert_ne!(root_from_path(&[0xee; 32], i as u64, &path), root);
                if n > 1 && path[0] != *id {
                    assert_ne!(root_from_path(id, (i as u64) ^ 1, &path), root);
                    let mut bad = path.clone();
                    bad[0][0] ^= 1;
                    assert_ne!(root_from_path(id, i as u64, &bad), root);
                }
            }
            assert_eq!(merkle_path(&ids, ids.len()), None);
            // The levels end in the root.
            let levels = merkle_levels(ids.clone());
            assert_eq!(levels.last().and_then(|l| l.first()), Some(&root));
        }
        assert_eq!(merkle_levels(vec![]), vec![Vec::<Hash>::new()]);
        assert_eq!(path_in(&merkle_levels(vec![]), 0), None);
        assert_eq!(path_in(&[], 0), None);
    }

    /// The path read from the levels is the path computed level by level before (kept
    /// here as the reference), for every leaf of trees of 1 to 70 leaves.
    #[test]
    fn paths_from_levels_are_the_level_by_level_paths() {
        fn reference(ids: &[Hash], index: usize) -> Vec<Hash> {
            let mut path = Vec::new();
            let mut level = ids.to_vec();
            let mut i = index;
            while level.len() > 1 {
                let s = if i.is_multiple_of(2) { i + 1 } else { i - 1 };
                path.push(*level.get(s).unwrap_or(&level[i]));
                level = level
                    .chunks(2)
                    .map(|p| parent(&p[0], p.get(1).unwrap_or(&p[0])))
                    .collect();
                i /= 2;
            }
            path
        }
        for n in 1..=70u8 {
            let ids: Vec<Hash> = (0..n).map(|i| [i.wrapping_mul(37); 32]).collect();
            let levels = merkle_levels(ids.clone());
            for i in 0..ids.len() {
                assert_eq!(path_in(&levels, i), Some(reference(&ids, i)), "n {n} i {i}");
            }
        }
    }
}
