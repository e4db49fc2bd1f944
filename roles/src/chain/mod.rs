//! The blockchain core of the super nodes: blocks, Merkle roots, proof of work and
//! retargeting, fork choice by cumulative work, the Tx Search Table, the mempool and an
//! append-only block log (paper sections 2.1 and 3.2; `docs/chain.md`).
//!
//! Everything is generic over [`ChainTx`] so the ToALL Tx (written elsewhere) plugs in; the
//! chain itself only knows a tx's id, owner and sequence number. Stateless validity
//! (signature, hash address = SHA-256(pubkey)) is the caller's [`ValidateTx`] (a closure,
//! or a type that checks a whole block's txs at once).
//!
//! Sans-IO except [`persist`]: time is an argument (`now_ms`), nothing reads a clock or uses
//! an RNG, and block/tx order never depends on hash-map iteration, so a run is reproducible.

pub mod block;
pub mod headers;
pub mod mempool;
pub mod merkle;
pub mod persist;
pub mod pow;
pub mod search_table;
pub mod store;
pub mod template;

pub use block::{
    BLOCK_BYTES_CEILING, BLOCK_VERSION, Block, BlockHeader, DecodeError, HEADER_LEN,
    MAX_BLOCK_BYTES, MAX_BLOCK_TXS,
};
pub use headers::{HeaderAdd, HeaderChain, HeaderError};
pub use mempool::{Mempool, MempoolAdd, MempoolConfig, MempoolError};
pub use search_table::SearchTable;
pub use store::{AddOutcome, BlockError, ChainConfig, ChainStore, ConfigError};
pub use template::{Template, TemplateUpdate};

use std::cell::RefCell;
use std::collections::VecDeque;

/// A SHA-256 output: block hashes, tx ids, hash addresses, targets.
pub type Hash = [u8; 32];

/// Stateless tx check supplied by the caller (signature, address = SHA-256(pubkey), ...).
/// The chain adds the sequence rule itself. Any `Fn(&T) -> Result<(), String>` is one and
/// checks a block's txs one by one; a type can check them all at once instead (the SN's
/// `sn::BatchValidator`: one ed25519 batch per block).
pub trait ValidateTx<T> {
    /// Checks one tx (one offered for the mempool).
    fn validate(&self, tx: &T) -> Result<(), String>;

    /// Checks all txs of a block: the first invalid one (its index and the reason
    /// [`ValidateTx::validate`] gives for it), or `None`. Must agree with `validate` on every
    /// tx; the default calls it on each tx in order and stops at the first refusal.
    fn first_invalid(&self, txs: &[T]) -> Option<(usize, String)> {
        txs.iter()
            .enumerate()
            .find_map(|(i, tx)| self.validate(tx).err().map(|reason| (i, reason)))
    }
}

impl<T, F: Fn(&T) -> Result<(), String> + ?Sized> ValidateTx<T> for F {
    fn validate(&self, tx: &T) -> Result<(), String> {
        self(tx)
    }
}

/// How the chain's methods take the caller's [`ValidateTx`].
pub type TxValidator<'a, T> = &'a dyn ValidateTx<T>;

/// What the chain needs from a transaction type.
pub trait ChainTx: Clone + std::fmt::Debug {
    /// Unique id (hash of the encoding).
    fn id(&self) -> Hash;
    /// The hash address the tx registers.
    fn owner(&self) -> Hash;
    /// The owner's sequence number; must increase along a chain.
    fn seq(&self) -> u64;
    /// Wire encoding.
    fn encode(&self) -> Vec<u8>;
    /// Total decoder: returns an error, never panics, on any input.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

/// Why a tx was not taken into the mempool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The caller's validator refused it.
    #[error("invalid tx: {0}")]
    Invalid(String),
    /// The encoding is larger than a block can carry.
    #[error("tx of {bytes} bytes cannot fit in a block")]
    TooLarge {
        /// Encoded size.
        bytes: usize,
    },
    /// Refused by the mempool rules.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
}

/// The facade an SN uses: a [`ChainStore`] (blocks, fork choice, search table) plus a
/// [`Mempool`] kept consistent with the best chain.
#[derive(Debug)]
pub struct Chain<T> {
    store: ChainStore<T>,
    mempool: Mempool<T>,
    /// Merkle trees of the blocks Queries asked about last ([`PROOF_TREES`]), so a Query
    /// about a Tx in a recent block of 4,096 Txs reads its path instead of hashing the
    /// block's every Tx and tree again.
    proof_trees: RefCell<VecDeque<(Hash, Vec<Vec<Hash>>)>>,
}

/// Block trees [`Chain::lookup_with_proof`] keeps (up to 256 kB each for 4,096 Txs: 16 MB
/// at most); Queries ask mostly about Txs of the last minute or so of blocks.
pub const PROOF_TREES: usize = 64;

impl<T: ChainTx> Chain<T> {
    /// A chain holding only the genesis block built from `config`.
    pub fn new(config: ChainConfig, mempool: MempoolConfig) -> Result<Self, ConfigError> {
        Ok(Chain {
            store: ChainStore::new(config)?,
            mempool: Mempool::new(mempool),
            proof_trees: RefCell::default(),
        })
    }

    /// Validates and stores a block, switches the best chain if it now has the most work,
    /// and keeps the mempool consistent: confirmed txs leave it, txs of blocks a reorg
    /// removed come back unless the new best chain already has them (or a later seq).
    pub fn add_block(
        &mut self,
        block: Block<T>,
        now_ms: u64,
        validate: TxValidator<'_, T>,
    ) -> Result<AddOutcome, BlockError> {
        let outcome = self.store.add_block(block, now_ms, validate)?;
        match &outcome {
            AddOutcome::Extended { added } => self.confirm(added),
            AddOutcome::Reorg { removed, added } => {
                for hash in removed.iter().rev() {
                    let Some(block) = self.store.block(hash) else {
                        continue;
                    };
                    for tx in &block.txs {
                        let confirmed = self.store.search_table().latest_seq(&tx.owner());
                        self.mempool.readd(tx.clone(), confirmed);
                    }
                }
                self.confirm(added);
            }
            AddOutcome::SideChain | AddOutcome::Orphan { .. } | AddOutcome::Duplicate => {}
        }
        Ok(outcome)
    }

    fn confirm(&mut self, added: &[Hash]) {
        for hash in added {
            if let Some(block) = self.store.block(hash) {
                self.mempool.remove_confirmed(&block.txs);
            }
        }
    }

    /// Offers a tx for the next block: the validator, the size limit, then the sequence and
    /// mempool rules (its seq must be above the owner's latest confirmed one).
    pub fn add_tx(
        &mut self,
        tx: T,
        now_ms: u64,
        validate: TxValidator<'_, T>,
    ) -> Result<MempoolAdd, TxError> {
        let bytes = tx.encode().len();
        let max = self.store.config().max_block_bytes;
        if bytes + 4 > max.saturating_sub(HEADER_LEN + 4) {
            return Err(TxError::TooLarge { bytes });
        }
        validate.validate(&tx).map_err(TxError::Invalid)?;
        let confirmed = self.store.search_table().latest_seq(&tx.owner());
        Ok(self.mempool.add(tx, confirmed, now_ms)?)
    }

    /// An unmined block on the best tip: up to `max_txs` mempool txs (arrival order) that fit
    /// in [`ChainConfig::max_block_bytes`], the target the retarget rule expects, and time
    /// `max(now_ms, median time past + 1)`. Mine it with [`pow::mine`].
    pub fn block_template(&self, now_ms: u64, miner_id: u32, max_txs: usize) -> Block<T> {
        let (txs, _) = self.template_txs(max_txs);
        self.store.template_on_tip(now_ms, miner_id, txs)
    }

    /// The longest prefix of the mempool order that fits the block limits, and whether the
    /// mempool holds more.
    fn template_txs(&self, max_txs: usize) -> (Vec<T>, bool) {
        let max_txs = max_txs.min(MAX_BLOCK_TXS);
        let max = self.store.config().max_block_bytes;
        let mut size = HEADER_LEN + 4;
        let mut txs = Vec::new();
        for tx in self.mempool.template(max_txs) {
            let len = 4 + tx.encode().len();
            if size + len > max {
                break;
            }
            size += len;
            txs.push(tx);
        }
        let full = txs.len() < self.mempool.len();
        (txs, full)
    }

    /// [`Chain::block_template`] as a [`Template`] that follows later mempool additions
    /// incrementally ([`Template::offer`]); rebuild it on a new tip.
    pub fn template(&self, now_ms: u64, miner_id: u32, max_txs: usize) -> Template<T> {
        let (txs, full) = self.template_txs(max_txs);
        let floor = self
            .store
            .template_on_tip(0, miner_id, Vec::new())
            .header
            .time_ms;
        let mut header = self
            .store
            .template_on_tip(now_ms, miner_id, Vec::new())
            .header;
        header.time_ms = now_ms.max(floor);
        Template::new(
            header,
            floor,
            txs,
            full,
            self.store.config().max_block_bytes,
            max_txs.min(MAX_BLOCK_TXS),
        )
    }

    /// Follows a tx the mempool just took (`added`, from [`Chain::add_tx`]) in `template`,
    /// a template of this chain made by [`Chain::template`] and offered every mempool change
    /// since. [`Template::offer`], except for a tx that evicted the oldest pending one: the
    /// template drops that tx (its first) and takes the mempool txs after its last that fit,
    /// which is what [`Chain::template`] would make now, without cloning and hashing every tx
    /// again (a full mempool evicts on every new owner's tx).
    pub fn template_offer(
        &self,
        template: &mut Template<T>,
        tx: &T,
        added: &MempoolAdd,
    ) -> TemplateUpdate {
        let MempoolAdd::InsertedEvicting { evicted } = added else {
            return template.offer(tx, added);
        };
        if !template.drop_first(evicted) {
            return TemplateUpdate::Rebuild;
        }
        let last = template.last_owner();
        let Some(next) = self.mempool.after(last.as_ref()) else {
            return TemplateUpdate::Rebuild;
        };
        template.fill(next, self.mempool.len());
        TemplateUpdate::Changed
    }

    /// Best tip hash and height.
    pub fn tip(&self) -> (Hash, u64) {
        self.store.tip()
    }

    /// Latest confirmed tx of a hash address on the best chain and the block height holding it.
    pub fn lookup(&self, addr: &Hash) -> Option<(&T, u64)> {
        self.store.search_table().lookup(addr)
    }

    /// The latest confirmed tx of `addr` with its inclusion proof: the tx, the header of the
    /// best-chain block holding it, its index in the block and its Merkle path.
    pub fn lookup_with_proof(
        &self,
        addr: &Hash,
    ) -> Option<(&T, u64, BlockHeader, usize, Vec<Hash>)> {
        let (tx, height) = self.lookup(addr)?;
        let hash = self.store.best_hash_at(height)?;
        let block = self.block(&hash)?;
        let id = tx.id();
        let mut trees = self.proof_trees.borrow_mut();
        let at = match trees.iter().position(|(h, _)| *h == hash) {
            Some(at) => at,
            None => {
                let ids: Vec<Hash> = block.txs.iter().map(ChainTx::id).collect();
                if trees.len() >= PROOF_TREES {
                    trees.pop_front();
                }
                trees.push_back((hash, merkle::merkle_levels(ids)));
                trees.len() - 1
            }
        };
        let levels = &trees.get(at)?.1;
        let index = levels.first()?.iter().position(|i| *i == id)?;
        let path = merkle::path_in(levels, index)?;
        Some((tx, height, block.header, index, path))
    }

    /// Confirmations of a block at `height` on the best chain (the tip has one).
    pub fn confirmations(&self, height: u64) -> u64 {
        self.store.search_table().confirmations(height)
    }

    /// Any stored (connected) block by hash.
    pub fn block(&self, hash: &Hash) -> Option<&Block<T>> {
        self.store.block(hash)
    }

    /// Block locator of the best chain (see [`ChainStore::locator`]).
    pub fn locator(&self) -> Vec<Hash> {
        self.store.locator()
    }

    /// Best-chain blocks after the first locator hash we know (see [`ChainStore::blocks_after`]).
    pub fn blocks_after(&self, locator: &[Hash], max: usize) -> Vec<&Block<T>> {
        self.store.blocks_after(locator, max)
    }

    /// Next block stored since the last call, in connection order (for the block log and
    /// for relaying connected orphans).
    pub fn poll_connected(&mut self) -> Option<Hash> {
        self.store.poll_connected()
    }

    /// The block store.
    pub fn store(&self) -> &ChainStore<T> {
        &self.store
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool<T> {
        &self.mempool
    }
}

/// A dummy tx for tests: owner, seq and a tag, 48 bytes.
#[cfg(test)]
pub(crate) mod test_util {
    use sha2::{Digest, Sha256};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct DummyTx {
        pub owner: Hash,
        pub seq: u64,
        pub tag: u64,
    }

    impl DummyTx {
        pub(crate) fn new(owner: u8, seq: u64) -> Self {
            DummyTx {
                owner: [owner; 32],
                seq,
                tag: 0,
            }
        }
    }

    impl ChainTx for DummyTx {
        fn id(&self) -> Hash {
            Sha256::digest(self.encode()).into()
        }
        fn owner(&self) -> Hash {
            self.owner
        }
        fn seq(&self) -> u64 {
            self.seq
        }
        fn encode(&self) -> Vec<u8> {
            let mut v = Vec::with_capacity(48);
            v.extend_from_slice(&self.owner);
            v.extend_from_slice(&self.seq.to_be_bytes());
            v.extend_from_slice(&self.tag.to_be_bytes());
            v
        }
        fn decode(bytes: &[u8]) -> Result<Self, String> {
            let (Some(owner), Some(seq), Some(tag), 48) = (
                bytes.get(..32).and_then(|b| <Hash>::try_from(b).ok()),
                bytes.get(32..40).and_then(|b| <[u8; 8]>::try_from(b).ok()),
                bytes.get(40..48).and_then(|b| <[u8; 8]>::try_from(b).ok()),
                bytes.len(),
            ) else {
                return Err(format!("dummy tx must be 48 bytes, got {}", bytes.len()));
            };
            Ok(DummyTx {
                owner,
                seq: u64::from_be_bytes(seq),
                tag: u64::from_be_bytes(tag),
            })
        }
    }

    /// Accepts everything.
    pub(crate) fn ok(_: &DummyTx) -> Result<(), String> {
        Ok(())
    }

    /// A config where a block takes about 4 hashes: fast in debug builds.
    pub(crate) fn easy_config() -> ChainConfig {
        ChainConfig {
            network_hash_rate: 4.0,
            ..ChainConfig::default()
        }
    }

    /// Mines `block` in place (real hashing; the target is easy).
    pub(crate) fn mine_block(block: &mut Block<DummyTx>) {
        match pow::mine(&block.header, 0, 1 << 24) {
            Some((nonce, _)) => block.header.nonce = nonce,
            None => panic!("easy target not met in 2^24 tries"),
        }
    }

    /// A mined child of `parent` at time `time_ms` with `txs`, target from the store's rule.
    pub(crate) fn child(
        store: &ChainStore<DummyTx>,
        parent: &Hash,
        time_ms: u64,
        miner: u32,
        txs: Vec<DummyTx>,
    ) -> Block<DummyTx> {
        let mut b = store
            .template_on(parent, time_ms, miner, txs)
            .unwrap_or_else(|| panic!("parent unknown"));
        mine_block(&mut b);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn facade_mempool_follows_reorg_none_lost() {
        let mut chain: Chain<DummyTx> =
            Chain::new(easy_config(), MempoolConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let genesis = chain.tip().0;
        for owner in 1..=3u8 {
            chain
                .add_tx(DummyTx::new(owner, 1), 10, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(matches!(
            chain.add_tx(DummyTx::new(1, 1), 10, &ok),
            Err(TxError::Mempool(MempoolError::NotAbovePending { .. }))
        ));
        let mut a1 = chain.block_template(1000, 1, 100);
        assert_eq!(a1.txs.len(), 3);
        mine_block(&mut a1);
        let a1_hash = a1.hash();
        let out = chain
            .add_block(a1, 1000, &ok)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            AddOutcome::Extended {
                added: vec![a1_hash]
            }
        );
        assert!(chain.mempool().is_empty());
        assert_eq!(
            chain.lookup(&[2; 32]).map(|(t, h)| (t.seq, h)),
            Some((1, 1))
        );
        assert_eq!(chain.confirmations(1), 1);
        // Stale seq refused by the mempool now that seq 1 is confirmed.
        assert!(matches!(
            chain.add_tx(DummyTx::new(2, 1), 1100, &ok),
            Err(TxError::Mempool(MempoolError::StaleSeq { .. }))
        ));

        // Competing branch from genesis: b1 confirms owner 3 at seq 1 and owner 9, b2 on top.
        let b1 = child(
            chain.store(),
            &genesis,
            900,
            2,
            vec![DummyTx::new(3, 1), DummyTx::new(9, 4)],
        );
        let b1_hash = b1.hash();
        assert_eq!(chain.add_block(b1, 1000, &ok), Ok(AddOutcome::SideChain));
        let b2 = child(chain.store(), &b1_hash, 1500, 2, vec![]);
        let b2_hash = b2.hash();
        let out = chain
            .add_block(b2, 1500, &ok)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            AddOutcome::Reorg {
                removed: vec![a1_hash],
                added: vec![b1_hash, b2_hash]
            }
        );
        // Owners 1 and 2 went back to the mempool; owner 3 is confirmed on the new branch.
        let pending: Vec<u8> = chain
            .mempool()
            .template(10)
            .iter()
            .map(|t| t.owner[0])
            .collect();
        assert_eq!(pending, vec![1, 2]);
        assert_eq!(chain.lookup(&[1; 32]).map(|(t, _)| t.seq), None);
        assert_eq!(
            chain.lookup(&[9; 32]).map(|(t, h)| (t.seq, h)),
            Some((4, 1))
        );
        assert_eq!(chain.confirmations(1), 2);
        let mut n = 0;
        while chain.poll_connected().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    /// Proofs served from the kept trees (asked twice, and after more blocks than are kept
    /// pushed the first trees out) are the paths computed from the block's Txs.
    #[test]
    fn proofs_from_kept_trees_are_the_computed_paths() {
        let mut chain: Chain<DummyTx> =
            Chain::new(easy_config(), MempoolConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let blocks = PROOF_TREES as u8 + 6;
        for b in 0..blocks {
            let txs = (0..3u8).map(|i| DummyTx::new(b * 3 + i + 1, 1)).collect();
            let block = child(
                chain.store(),
                &chain.tip().0,
                u64::from(b + 1) * 1000,
                1,
                txs,
            );
            chain
                .add_block(block, u64::from(b + 1) * 1000, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for _round in 0..2 {
            for owner in 1..=blocks * 3 {
                let (tx, height, header, index, path) = chain
                    .lookup_with_proof(&[owner; 32])
                    .unwrap_or_else(|| panic!("owner {owner}"));
                let hash = chain.store().best_hash_at(height).unwrap_or_default();
                let block = chain.block(&hash).unwrap_or_else(|| panic!("block"));
                let ids: Vec<Hash> = block.txs.iter().map(ChainTx::id).collect();
                assert_eq!(ids[index], tx.id());
                assert_eq!(Some(path.clone()), merkle::merkle_path(&ids, index));
                assert_eq!(
                    merkle::root_from_path(&tx.id(), index as u64, &path),
                    header.merkle_root
                );
            }
            assert_eq!(chain.proof_trees.borrow().len(), PROOF_TREES);
        }
    }

    #[test]
    fn locator_and_blocks_after() {
        let mut chain: Chain<DummyTx> =
            Chain::new(easy_config(), MempoolConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let genesis = chain.tip().0;
        let mut hashes = vec![genesis];
        for i in 1..=30u64 {
            let b = child(chain.store(), &chain.tip().0, i * 1000, 1, vec![]);
            hashes.push(b.hash());
            chain
                .add_block(b, i * 1000, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let loc = chain.locator();
        assert_eq!(loc.first(), Some(&hashes[30]));
        assert_eq!(loc.last(), Some(&genesis));
        assert!(loc.len() < 20);
        // A peer that knows up to height 12 (and an unknown hash first) gets 13.. onward.
        let after = chain.blocks_after(&[[7; 32], hashes[12]], 5);
        let got: Vec<Hash> = after.iter().map(|b| b.hash()).collect();
        assert_eq!(got, hashes[13..18].to_vec());
        assert!(chain.blocks_after(&[hashes[30]], 5).is_empty());
    }
}
