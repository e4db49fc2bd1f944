//! A block template kept up to date as txs arrive, without rebuilding it.
//!
//! The template holds the longest prefix of the mempool's order that fits the block limits
//! (the same txs [`Chain::block_template`] would pick) and its Merkle tree level by level. A
//! new owner's tx is appended (O(log n) hashes for the right edge of the tree); a tx that
//! replaces its owner's pending one takes its place (O(log n) hashes for its path). A tx
//! that evicts the oldest pending one (a full mempool) drops the template's first tx and
//! takes the mempool txs after its last that now fit ([`Chain::template_offer`]): every leaf
//! moves, so the tree is hashed again from the ids it keeps (n - 1 hashes), but no tx is
//! cloned, encoded or hashed again. Only a new tip or a replacement that no longer fits
//! rebuilds it.
//!
//! [`Chain::block_template`]: super::Chain::block_template
//! [`Chain::template_offer`]: super::Chain::template_offer

use std::collections::{HashMap, VecDeque};

use super::block::{Block, BlockHeader, HEADER_LEN};
use super::merkle::{merkle_levels, parent};
use super::{ChainTx, Hash, MempoolAdd};

/// An unmined block on a parent, updated in place.
#[derive(Debug, Clone)]
pub struct Template<T> {
    header: BlockHeader,
    /// Lowest block time the median-time-past rule allows on this parent.
    time_floor: u64,
    txs: VecDeque<T>,
    /// Merkle tree levels, leaf ids first; the last level has one node (the root).
    levels: Vec<Vec<Hash>>,
    /// Owner -> position of its tx counted from the template's first tx ever: its index in
    /// `txs` is the position minus `dropped`.
    by_owner: HashMap<Hash, usize>,
    /// Txs dropped from the front ([`Template::drop_first`]).
    dropped: usize,
    bytes: usize,
    max_bytes: usize,
    max_txs: usize,
    /// A mempool tx did not fit: later arrivals must not be appended (the template stays a
    /// prefix of the mempool order).
    full: bool,
}

/// What [`Template::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateUpdate {
    /// The header (Merkle root, time) changed.
    Changed,
    /// The tx is not in the template (it is full); the header is unchanged.
    Unchanged,
    /// The template can no longer follow the mempool incrementally: rebuild it.
    Rebuild,
}

impl<T: ChainTx> Template<T> {
    /// A template on `header.prev` with `txs` (already a fitting prefix of the mempool
    /// order); `full` when the mempool had more.
    pub(super) fn new(
        header: BlockHeader,
        time_floor: u64,
        txs: Vec<T>,
        full: bool,
        max_bytes: usize,
        max_txs: usize,
    ) -> Self {
        let mut t = Template {
            header,
            time_floor,
            txs: VecDeque::with_capacity(txs.len()),
            levels: vec![Vec::with_capacity(txs.len())],
            by_owner: HashMap::with_capacity(txs.len()),
            dropped: 0,
            bytes: HEADER_LEN + 4,
            max_bytes,
            max_txs,
            full,
        };
        for tx in txs {
            let len = 4 + tx.encode().len();
            t.push(tx, len);
        }
        t.levels = merkle_levels(t.levels.swap_remove(0));
        t.header.merkle_root = t.root();
        t
    }

    /// The header as it stands (nonce 0 until mined).
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The txs, in block order.
    pub fn txs(&self) -> impl ExactSizeIterator<Item = &T> {
        self.txs.iter()
    }

    /// Encoded size of the block.
    pub fn encoded_len(&self) -> usize {
        self.bytes
    }

    /// The block with `nonce` (clones the txs).
    pub fn block(&self, nonce: u64) -> Block<T> {
        Block {
            header: BlockHeader {
                nonce,
                ..self.header
            },
            txs: self.txs.iter().cloned().collect(),
        }
    }

    /// Moves the block time to `max(now_ms, floor)`; whether the header changed.
    pub fn set_time(&mut self, now_ms: u64) -> bool {
        let t = now_ms.max(self.time_floor);
        let changed = t != self.header.time_ms;
        self.header.time_ms = t;
        changed
    }

    /// Follows a tx the mempool just took (`added` is what the mempool did with it).
    pub fn offer(&mut self, tx: &T, added: &MempoolAdd) -> TemplateUpdate {
        match added {
            MempoolAdd::Inserted => {
                if self.full {
                    return TemplateUpdate::Unchanged;
                }
                let len = 4 + tx.encode().len();
                if !self.fits(len) {
                    self.full = true;
                    return TemplateUpdate::Unchanged;
                }
                let index = self.txs.len();
                self.push(tx.clone(), len);
                self.update_path(index);
                TemplateUpdate::Changed
            }
            MempoolAdd::Replaced { old } => {
                let Some(index) = self
                    .by_owner
                    .get(&tx.owner())
                    .and_then(|p| p.checked_sub(self.dropped))
                else {
                    return TemplateUpdate::Unchanged;
                };
                let Some(slot) = self.txs.get_mut(index) else {
                    return TemplateUpdate::Rebuild;
                };
                if slot.id() != *old {
                    return TemplateUpdate::Rebuild;
                }
                let old_len = 4 + slot.encode().len();
                let new_len = 4 + tx.encode().len();
                let bytes = self.bytes - old_len + new_len;
                if bytes > self.max_bytes || (new_len > old_len && self.full) {
                    // It no longer fits, or a tx left out might not fit any more either way.
                    return TemplateUpdate::Rebuild;
                }
                self.bytes = bytes;
                *slot = tx.clone();
                if let Some(leaf) = self.levels.first_mut().and_then(|l| l.get_mut(index)) {
                    *leaf = tx.id();
                }
                self.update_path(index);
                TemplateUpdate::Changed
            }
            MempoolAdd::InsertedEvicting { .. } => TemplateUpdate::Rebuild,
        }
    }

    /// Drops the first tx if its id is `id` (the tx a full mempool evicted: its oldest);
    /// `false` (and nothing changes) if it is not. Leaves the Merkle tree to [`Template::fill`].
    pub(super) fn drop_first(&mut self, id: &Hash) -> bool {
        if self.levels.first().and_then(|l| l.first()) != Some(id) {
            return false;
        }
        let Some(tx) = self.txs.pop_front() else {
            return false;
        };
        if let Some(leaves) = self.levels.first_mut() {
            leaves.remove(0);
        }
        self.bytes -= 4 + tx.encode().len();
        if self.by_owner.get(&tx.owner()) == Some(&self.dropped) {
            self.by_owner.remove(&tx.owner());
        }
        self.dropped += 1;
        true
    }

    /// The owner of the last tx (the mempool txs after its pending tx come next).
    pub(super) fn last_owner(&self) -> Option<Hash> {
        self.txs.back().map(ChainTx::owner)
    }

    /// After [`Template::drop_first`]: appends `next` (the mempool txs after the template's
    /// last, in order) while they fit, notes whether the mempool (`mempool_len` txs) holds
    /// more and hashes the tree again from its leaves.
    pub(super) fn fill<'a>(&mut self, next: impl Iterator<Item = &'a T>, mempool_len: usize)
    where
        T: 'a,
    {
        for tx in next {
            let len = 4 + tx.encode().len();
            if !self.fits(len) {
                break;
            }
            self.push(tx.clone(), len);
        }
        self.full = self.txs.len() < mempool_len;
        let leaves = self
            .levels
            .first_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        self.levels = merkle_levels(leaves);
        self.header.merkle_root = self.root();
    }

    /// Whether one more tx of `len` bytes (its 4-byte length included) fits the limits.
    fn fits(&self, len: usize) -> bool {
        self.txs.len() < self.max_txs && self.bytes + len <= self.max_bytes
    }

    /// Appends `tx` (`len` bytes with its length) as the last tx and leaf; the levels above
    /// the leaves are left to the caller.
    fn push(&mut self, tx: T, len: usize) {
        self.bytes += len;
        self.by_owner
            .insert(tx.owner(), self.dropped + self.txs.len());
        if let Some(leaves) = self.levels.first_mut() {
            leaves.push(tx.id());
        }
        self.txs.push_back(tx);
    }

    fn root(&self) -> Hash {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top.first().copied().unwrap_or([0; 32]),
            _ => [0; 32],
        }
    }

    /// Recomputes the parents of leaf `index` up to the root.
    fn update_path(&mut self, index: usize) {
        let mut level = 0;
        let mut i = index;
        while let Some(nodes) = self.levels.get(level) {
            if nodes.len() <= 1 {
                self.levels.truncate(level + 1);
                break;
            }
            let p = i / 2;
            let (Some(left), right) = (nodes.get(2 * p), nodes.get(2 * p + 1)) else {
                break;
            };
            let h = parent(left, right.unwrap_or(left));
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            if let Some(up) = self.levels.get_mut(level + 1) {
                match up.get_mut(p) {
                    Some(slot) => *slot = h,
                    None => up.push(h),
                }
            }
            level += 1;
            i = p;
        }
        self.header.merkle_root = self.root();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{Chain, MempoolConfig};
    use super::*;
    use crate::chain::merkle::merkle_root;

    /// Random inserts, replacements and (with a small mempool) evictions: the incremental
    /// template always equals a template built from scratch (same txs, same Merkle root),
    /// also when it fills up.
    #[test]
    fn incremental_template_matches_rebuild() {
        for (max_txs, max_bytes, pool) in [
            (500, 60_000, 10_000),
            (7, 60_000, 10_000),
            (500, 600, 10_000),
            (500, 60_000, 25),
            (7, 60_000, 25),
            (500, 600, 25),
            (25, 60_000, 25),
            (7, 60_000, 1),
        ] {
            let cfg = crate::chain::ChainConfig {
                max_block_bytes: max_bytes,
                ..easy_config()
            };
            let mempool = MempoolConfig {
                max_txs: pool,
                ..MempoolConfig::default()
            };
            let mut chain: Chain<DummyTx> =
                Chain::new(cfg, mempool).unwrap_or_else(|e| panic!("{e}"));
            let mut t = chain.template(100, 1, max_txs);
            let mut x = 12345u64;
            let mut seqs = [0u64; 40];
            let mut evictions = 0;
            let mut rebuilds = 0;
            for step in 0..300u64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let owner = ((x >> 33) % 40) as u8;
                seqs[owner as usize] += 1;
                let mut tx = DummyTx::new(owner, seqs[owner as usize]);
                tx.tag = step;
                let added = chain
                    .add_tx(tx.clone(), 100, &ok)
                    .unwrap_or_else(|e| panic!("{e}"));
                if matches!(added, MempoolAdd::InsertedEvicting { .. }) {
                    evictions += 1;
                }
                match chain.template_offer(&mut t, &tx, &added) {
                    TemplateUpdate::Rebuild => {
                        rebuilds += 1;
                        t = chain.template(100, 1, max_txs);
                    }
                    TemplateUpdate::Changed => {
                        t.set_time(100);
                    }
                    TemplateUpdate::Unchanged => {}
                }
                let fresh = chain.block_template(100, 1, max_txs);
                assert!(t.txs().eq(fresh.txs.iter()), "step {step}");
                let ids: Vec<Hash> = fresh.txs.iter().map(ChainTx::id).collect();
                assert_eq!(t.header().merkle_root, merkle_root(&ids), "step {step}");
                assert_eq!(t.encoded_len(), fresh.encoded_len());
            }
            if pool < 40 {
                assert!(evictions > 50, "{max_txs} {max_bytes} {pool}: {evictions}");
                assert!(
                    rebuilds < evictions / 4,
                    "evictions follow incrementally: {rebuilds} rebuilds"
                );
            }
        }
    }
}
