//! The Tx Search Table (TST): hash address → latest confirmed tx on the best chain.
//!
//! Each address keeps its latest confirmed tx inline in the map slot (a lookup is one probe,
//! no further pointer to chase) and the older ones of the best chain in a side stack, usually
//! empty and then unallocated. A reorg undoes the removed
//! blocks (pops, newest first) and applies the added ones, so it costs the reorg's txs, not
//! a rebuild. The stacks also answer "the owner's latest seq at or below height h", which
//! the store needs to check the sequence rule on a side branch.
//!
//! The map uses std's randomly keyed SipHash (addresses are chosen by whoever makes a key
//! pair, so a fixed hash would invite collision flooding); nothing iterates it into an
//! output, so runs stay deterministic.

use std::collections::HashMap;

use super::{ChainTx, Hash};

/// Hash address → confirmed txs on the best chain.
#[derive(Debug, Clone)]
pub struct SearchTable<T> {
    map: HashMap<Hash, Slot<T>>,
    tip_height: u64,
}

/// The latest tx of an address and its older best-chain txs (oldest first).
#[derive(Debug, Clone)]
struct Slot<T> {
    height: u64,
    tx: T,
    older: Vec<(u64, T)>,
}

impl<T: ChainTx> Default for SearchTable<T> {
    fn default() -> Self {
        SearchTable {
            map: HashMap::new(),
            tip_height: 0,
        }
    }
}

impl<T: ChainTx> SearchTable<T> {
    /// An empty table at height 0 (genesis carries no txs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest confirmed tx of `addr` and the height of its block.
    pub fn lookup(&self, addr: &Hash) -> Option<(&T, u64)> {
        self.map.get(addr).map(|s| (&s.tx, s.height))
    }

    /// The latest confirmed seq of `addr` on the best chain.
    pub fn latest_seq(&self, addr: &Hash) -> Option<u64> {
        self.lookup(addr).map(|(tx, _)| tx.seq())
    }

    /// The owner's latest seq in best-chain blocks at or below `height`.
    pub fn latest_seq_at(&self, addr: &Hash, height: u64) -> Option<u64> {
        let slot = self.map.get(addr)?;
        if slot.height <= height {
            return Some(slot.tx.seq());
        }
        slot.older
            .iter()
            .rev()
            .find(|(h, _)| *h <= height)
            .map(|(_, tx)| tx.seq())
    }

    /// `tip_height - height + 1`: the tip has one confirmation; 0 for heights above the tip.
    pub fn confirmations(&self, height: u64) -> u64 {
        if height > self.tip_height {
            0
        } else {
            self.tip_height - height + 1
        }
    }

    /// Height of the best tip the table reflects.
    pub fn tip_height(&self) -> u64 {
        self.tip_height
    }

    /// Number of addresses with a confirmed tx.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no address has a confirmed tx.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Applies the txs of the best-chain block at `height` (the new tip), in block order.
    pub fn apply_block(&mut self, height: u64, txs: &[T]) {
        for tx in txs {
            match self.map.entry(tx.owner()) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let slot = e.get_mut();
                    let prev = std::mem::replace(&mut slot.tx, tx.clone());
                    slot.older.push((slot.height, prev));
                    slot.height = height;
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Slot {
                        height,
                        tx: tx.clone(),
                        older: Vec::new(),
                    });
                }
            }
        }
        self.tip_height = height;
    }

    /// Undoes the tip block at `height` (the reverse of [`SearchTable::apply_block`]).
    pub fn undo_block(&mut self, height: u64, txs: &[T]) {
        for tx in txs.iter().rev() {
            let owner = tx.owner();
            let Some(slot) = self.map.get_mut(&owner) else {
                continue;
            };
            if slot.height != height {
                continue;
            }
            match slot.older.pop() {
                Some((h, prev)) => {
                    slot.height = h;
                    slot.tx = prev;
                }
                None => {
                    self.map.remove(&owner);
                }
            }
        }
        self.tip_height = height.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::DummyTx;
    use super::*;

    #[test]
    fn apply_undo_lookup_confirmations() {
        let mut t = SearchTable::new();
        let b1 = vec![DummyTx::new(1, 1), DummyTx::new(2, 1)];
        let b2 = vec![DummyTx::new(1, 2)];
        t.apply_block(1, &b1);
        t.apply_block(2, &b2);
        assert_eq!(t.lookup(&[1; 32]).map(|(tx, h)| (tx.seq, h)), Some((2, 2)));
        assert_eq!(t.latest_seq_at(&[1; 32], 1), Some(1));
        assert_eq!(t.latest_seq_at(&[1; 32], 0), None);
        assert_eq!(t.confirmations(1), 2);
        assert_eq!(t.confirmations(3), 0);
        t.undo_block(2, &b2);
        assert_eq!(t.lookup(&[1; 32]).map(|(tx, h)| (tx.seq, h)), Some((1, 1)));
        t.undo_block(1, &b1);
        assert!(t.is_empty());
        assert_eq!(t.tip_height(), 0);
    }
}
