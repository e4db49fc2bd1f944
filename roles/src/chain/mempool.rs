//! Pending txs waiting for a block: at most one per owner, bounded, FIFO.
//!
//! A higher seq from the same owner replaces the pending one (an EN that moved twice only
//! needs its newest registration confirmed). When full, the oldest pending tx is evicted:
//! in BINFM a registration that waited longest is the likeliest to be stale, and its EN
//! re-sends on its own timer. An optional per-owner interval limits how often one owner can
//! get a tx accepted (the rate-limit hook; the caller's validator can add any other policy).
//! Order is the arrival order of each owner's first pending tx (a replacement keeps its
//! place), kept in a `BTreeMap`, so templates are deterministic.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{ChainTx, Hash};

/// Mempool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most pending txs (one per owner).
    pub max_txs: usize,
    /// Minimum time between two accepted txs of one owner; 0 disables the limit.
    pub min_owner_interval_ms: u64,
}

impl Default for MempoolConfig {
    /// 10,000 txs, no rate limit.
    fn default() -> Self {
        MempoolConfig {
            max_txs: 10_000,
            min_owner_interval_ms: 0,
        }
    }
}

/// What happened to an accepted tx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MempoolAdd {
    /// First pending tx of its owner.
    Inserted,
    /// Replaced the owner's pending tx with a lower seq (its id).
    Replaced {
        /// Id of the replaced tx.
        old: Hash,
    },
    /// Inserted after evicting the oldest pending tx (its id) because the pool was full.
    InsertedEvicting {
        /// Id of the evicted tx.
        evicted: Hash,
    },
}

/// Why the mempool refused a tx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Its seq is not above the owner's latest confirmed seq.
    #[error("seq {seq} is not above the owner's confirmed seq {latest}")]
    StaleSeq {
        /// The tx's seq.
        seq: u64,
        /// Latest confirmed seq.
        latest: u64,
    },
    /// Its seq is not above the owner's pending tx.
    #[error("seq {seq} is not above the owner's pending seq {pending}")]
    NotAbovePending {
        /// The tx's seq.
        seq: u64,
        /// Pending seq.
        pending: u64,
    },
    /// The owner's previous tx was accepted less than `min_owner_interval_ms` ago.
    #[error("owner rate-limited until {retry_at_ms} ms")]
    RateLimited {
        /// When the owner may try again.
        retry_at_ms: u64,
    },
    /// `max_txs` is 0.
    #[error("mempool has no capacity")]
    NoCapacity,
}

#[derive(Debug, Clone)]
struct Pending<T> {
    tx: T,
    arrival: u64,
}

/// The pending txs.
#[derive(Debug, Clone)]
pub struct Mempool<T> {
    config: MempoolConfig,
    by_owner: HashMap<Hash, Pending<T>>,
    order: BTreeMap<u64, Hash>,
    next_arrival: u64,
    last_accept: HashMap<Hash, u64>,
    evicted: u64,
}

impl<T: ChainTx> Mempool<T> {
    /// An empty mempool.
    pub fn new(config: MempoolConfig) -> Self {
        Mempool {
            config,
            by_owner: HashMap::new(),
            order: BTreeMap::new(),
            next_arrival: 0,
            last_accept: HashMap::new(),
            evicted: 0,
        }
    }

    /// Number of pending txs.
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_owner.is_empty()
    }

    /// Txs evicted because the pool was full, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The limits.
    pub fn config(&self) -> MempoolConfig {
        self.config
    }

    /// Owners remembered for the per-owner rate limit (at most [`Mempool::rate_state_cap`]).
    pub fn rate_state_len(&self) -> usize {
        self.last_accept.len()
    }

    /// Most owners the per-owner rate limit remembers: `max(2 × max_txs, 64)`.
    pub fn rate_state_cap(&self) -> usize {
        self.config.max_txs.saturating_mul(2).max(64)
    }

    /// The owner's pending tx.
    pub fn pending(&self, owner: &Hash) -> Option<&T> {
        self.by_owner.get(owner).map(|p| &p.tx)
    }

    /// Adds `tx` (already checked by the caller's validator). `confirmed_seq` is the owner's
    /// latest seq on the best chain.
    pub fn add(
        &mut self,
        tx: T,
        confirmed_seq: Option<u64>,
        now_ms: u64,
    ) -> Result<MempoolAdd, MempoolError> {
        let owner = tx.owner();
        let seq = tx.seq();
        if let Some(latest) = confirmed_seq.filter(|&l| seq <= l) {
            return Err(MempoolError::StaleSeq { seq, latest });
        }
        if let Some(p) = self.by_owner.get(&owner).filter(|p| seq <= p.tx.seq()) {
            return Err(MempoolError::NotAbovePending {
                seq,
                pending: p.tx.seq(),
            });
        }
        let interval = self.config.min_owner_interval_ms;
        if interval > 0 {
            if let Some(&last) = self.last_accept.get(&owner) {
                let retry_at_ms = last.saturating_add(interval);
                if now_ms < retry_at_ms {
                    return Err(MempoolError::RateLimited { retry_at_ms });
                }
            }
            self.note_accept(owner, now_ms);
        }
        self.insert(tx)
    }

    /// Puts back a tx of a block a reorg removed (no rate limit, no validator: it was valid
    /// when mined). Dropped only if the new chain already confirms its seq or a later one, or
    /// the owner has a higher pending seq; so no registration is lost.
    pub fn readd(&mut self, tx: T, confirmed_seq: Option<u64>) {
        let seq = tx.seq();
        if confirmed_seq.is_some_and(|l| seq <= l) {
            return;
        }
        if self
            .by_owner
            .get(&tx.owner())
            .is_some_and(|p| seq <= p.tx.seq())
        {
            return;
        }
        let _ = self.insert(tx);
    }

    fn note_accept(&mut self, owner: Hash, now_ms: u64) {
        let cap = self.rate_state_cap();
        if self.last_accept.len() >= cap {
            let interval = self.config.min_owner_interval_ms;
            self.last_accept
                .retain(|_, t| now_ms < t.saturating_add(interval));
            if self.last_accept.len() >= cap {
                // Still full of recent owners: forgetting rate state is harmless, growing is not.
                self.last_accept.clear();
            }
        }
        self.last_accept.insert(owner, now_ms);
    }

    fn insert(&mut self, tx: T) -> Result<MempoolAdd, MempoolError> {
        if self.config.max_txs == 0 {
            return Err(MempoolError::NoCapacity);
        }
        let owner = tx.owner();
        // A replacement keeps the place of the owner's first pending tx: an EN that moves
        // again while waiting does not go to the back of the queue.
        if let Some(p) = self.by_owner.get_mut(&owner) {
            let old = std::mem::replace(&mut p.tx, tx);
            return Ok(MempoolAdd::Replaced { old: old.id() });
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.by_owner.insert(owner, Pending { tx, arrival });
        self.order.insert(arrival, owner);
        if self.by_owner.len() > self.config.max_txs
            && let Some((_, oldest)) = self.order.pop_first()
            && let Some(p) = self.by_owner.remove(&oldest)
        {
            self.evicted += 1;
            return Ok(MempoolAdd::InsertedEvicting { evicted: p.tx.id() });
        }
        Ok(MempoolAdd::Inserted)
    }

    /// Up to `max_txs` pending txs, oldest first, for the next block.
    pub fn template(&self, max_txs: usize) -> Vec<T> {
        self.order
            .values()
            .filter_map(|o| self.by_owner.get(o))
            .take(max_txs)
            .map(|p| p.tx.clone())
            .collect()
    }

    /// The pending txs after `owner`'s (all of them if `None`), oldest first; `None` if
    /// `owner` has no pending tx.
    pub fn after(&self, owner: Option<&Hash>) -> Option<impl Iterator<Item = &T>> {
        let from = match owner {
            Some(o) => Bound::Excluded(self.by_owner.get(o)?.arrival),
            None => Bound::Unbounded,
        };
        Some(
            self.order
                .range((from, Bound::Unbounded))
                .filter_map(|(_, o)| self.by_owner.get(o))
                .map(|p| &p.tx),
        )
    }

    /// Drops pending txs that `confirmed` (txs of a block now on the best chain) make stale:
    /// same owner, pending seq ≤ confirmed seq.
    pub fn remove_confirmed(&mut self, confirmed: &[T]) {
        for tx in confirmed {
            let owner = tx.owner();
            if let Some(p) = self.by_owner.get(&owner)
                && p.tx.seq() <= tx.seq()
            {
                let arrival = p.arrival;
                self.order.remove(&arrival);
                self.by_owner.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::DummyTx;
    use super::*;

    fn add(m: &mut Mempool<DummyTx>, o: u8, s: u64, now: u64) -> Result<MempoolAdd, MempoolError> {
        m.add(DummyTx::new(o, s), None, now)
    }

    #[test]
    fn one_per_owner_higher_seq_replaces() {
        let mut m = Mempool::new(MempoolConfig::default());
        assert_eq!(add(&mut m, 1, 1, 0), Ok(MempoolAdd::Inserted));
        assert_eq!(add(&mut m, 2, 1, 0), Ok(MempoolAdd::Inserted));
        assert_eq!(
            add(&mut m, 1, 1, 0),
            Err(MempoolError::NotAbovePending { seq: 1, pending: 1 })
        );
        assert_eq!(
            add(&mut m, 1, 3, 0),
            Ok(MempoolAdd::Replaced {
                old: DummyTx::new(1, 1).id()
            })
        );
        assert_eq!(m.len(), 2);
        // Replacement keeps the owner's place (first arrival).
        let order: Vec<(u8, u64)> = m.template(10).iter().map(|t| (t.owner[0], t.seq)).collect();
        assert_eq!(order, vec![(1, 3), (2, 1)]);
        assert_eq!(
            m.add(DummyTx::new(3, 4), Some(4), 0),
            Err(MempoolError::StaleSeq { seq: 4, latest: 4 })
        );
        m.remove_confirmed(&[DummyTx::new(1, 2)]);
        assert_eq!(m.len(), 2, "pending seq 3 survives a confirmed seq 2");
        m.remove_confirmed(&[DummyTx::new(1, 3), DummyTx::new(2, 7)]);
        assert!(m.is_empty());
    }

    #[test]
    fn bounded_with_eviction_and_rate_limit() {
        let mut m = Mempool::new(MempoolConfig {
            max_txs: 2,
            min_owner_interval_ms: 1000,
        });
        assert_eq!(add(&mut m, 1, 1, 0), Ok(MempoolAdd::Inserted));
        assert_eq!(add(&mut m, 2, 1, 0), Ok(MempoolAdd::Inserted));
        assert_eq!(
            add(&mut m, 3, 1, 0),
            Ok(MempoolAdd::InsertedEvicting {
                evicted: DummyTx::new(1, 1).id()
            })
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m.evicted(), 1);
        assert_eq!(
            add(&mut m, 3, 2, 999),
            Err(MempoolError::RateLimited { retry_at_ms: 1000 })
        );
        assert!(matches!(
            add(&mut m, 3, 2, 1000),
            Ok(MempoolAdd::Replaced { .. })
        ));
        // Many distinct owners: the rate-limit memory stays bounded.
        for o in 0..=255u8 {
            let _ = add(&mut m, o, 100, 5000);
        }
        assert!(m.last_accept.len() <= 64);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn readd_keeps_higher_pending_and_skips_confirmed() {
        let mut m = Mempool::new(MempoolConfig::default());
        assert_eq!(add(&mut m, 1, 5, 0), Ok(MempoolAdd::Inserted));
        m.readd(DummyTx::new(1, 4), None);
        assert_eq!(m.pending(&[1; 32]).map(|t| t.seq), Some(5));
        m.readd(DummyTx::new(2, 4), Some(4));
        assert!(m.pending(&[2; 32]).is_none());
        m.readd(DummyTx::new(2, 5), Some(4));
        assert_eq!(m.pending(&[2; 32]).map(|t| t.seq), Some(5));
    }
}
