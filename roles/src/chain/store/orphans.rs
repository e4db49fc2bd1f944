//! The bounded pool of blocks whose parent is unknown.

use std::collections::{HashMap, VecDeque};

use crate::chain::block::Block;
use crate::chain::{ChainTx, Hash};

/// Blocks waiting for their parent: bounded, oldest evicted first.
#[derive(Debug)]
pub(super) struct OrphanPool<T> {
    pub(super) blocks: HashMap<Hash, Block<T>>,
    by_parent: HashMap<Hash, Vec<Hash>>,
    /// Arrival order; may hold hashes already connected (compacted when it grows).
    order: VecDeque<Hash>,
    limit: usize,
}

impl<T: ChainTx> OrphanPool<T> {
    pub(super) fn new(limit: usize) -> Self {
        OrphanPool {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// Inserts, evicting the oldest orphans first if full; returns how many were evicted.
    pub(super) fn insert(&mut self, hash: Hash, block: Block<T>) -> u64 {
        let mut evicted = 0;
        while self.blocks.len() >= self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.remove(&old).is_some() {
                evicted += 1;
            }
        }
        self.by_parent
            .entry(block.header.prev)
            .or_default()
            .push(hash);
        self.blocks.insert(hash, block);
        self.order.push_back(hash);
        if self.order.len() > 2 * self.limit {
            let blocks = &self.blocks;
            self.order.retain(|h| blocks.contains_key(h));
        }
        evicted
    }

    fn remove(&mut self, hash: &Hash) -> Option<Block<T>> {
        let b = self.blocks.remove(hash)?;
        if let Some(v) = self.by_parent.get_mut(&b.header.prev) {
            v.retain(|x| x != hash);
            if v.is_empty() {
                self.by_parent.remove(&b.header.prev);
            }
        }
        Some(b)
    }

    /// Removes and returns the orphans whose parent is `parent`, in arrival order.
    pub(super) fn take_children(&mut self, parent: &Hash) -> Vec<Block<T>> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes
            .iter()
            .filter_map(|h| self.blocks.remove(h))
            .collect()
    }

    /// Drops every orphan descending from `hash`; returns how many.
    pub(super) fn drop_descendants(&mut self, hash: &Hash) -> u64 {
        let mut n = 0;
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            for child in self.take_children(&h) {
                n += 1;
                stack.push(child.hash());
            }
        }
        n
    }

    /// The first ancestor of `parent` (itself included) that is not in the pool.
    pub(super) fn root_missing(&self, parent: Hash) -> Hash {
        let mut p = parent;
        for _ in 0..=self.limit {
            match self.blocks.get(&p) {
                Some(b) => p = b.header.prev,
                None => break,
            }
        }
        p
    }
}
