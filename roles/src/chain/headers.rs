//! The end node's light client: block headers only, checked as a super node checks them
//! (version, proof of work against the target, the target the retarget rule expects, time
//! above the median of the last 11), the best chain chosen by cumulative work
//! (`docs/chain.md`, "Light client").
//!
//! An end node gets headers from its super node (pushed as blocks join the SN's best chain,
//! or asked for with a locator) and accepts a Tx only with a Merkle proof into a block of
//! this best header chain. A super node can therefore not invent a Tx or a block, but it can
//! keep back headers and Txs (see `docs/security.md`).
//!
//! Bounded: at most [`MAX_HEADER_ENTRIES`] headers, and a header forking more than
//! [`MAX_FORK_DEPTH`] blocks below the tip is refused, so a peer cannot fill memory with
//! side branches (each still needs valid proof of work).

use std::collections::HashMap;

use super::block::{BLOCK_VERSION, BlockHeader};
use super::pow::{beats, meets_target, retarget, work};
use super::store::MEDIAN_TIME_SPAN;
use super::{ChainConfig, Hash};

/// Most headers kept (120 bytes each plus the map: about 20 MB at the bound).
pub const MAX_HEADER_ENTRIES: usize = 100_000;
/// Deepest fork accepted below the best tip.
pub const MAX_FORK_DEPTH: u64 = 100;

#[derive(Debug, Clone)]
struct Entry {
    header: BlockHeader,
    height: u64,
    work: u128,
}

/// What adding a header did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderAdd {
    /// It extends the best chain (or makes a branch with more work the best).
    NewTip,
    /// Stored on a side branch.
    SideChain,
    /// Already known.
    Duplicate,
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Its parent is not known: ask for the headers before it.
    #[error("unknown parent")]
    UnknownParent,
    /// Header version not [`BLOCK_VERSION`].
    #[error("bad header version")]
    BadVersion,
    /// The hash does not meet the target.
    #[error("proof of work below the target")]
    BadPow,
    /// The target is not the one the retarget rule gives.
    #[error("target not the expected one")]
    WrongTarget,
    /// Time not above the median of the previous blocks, or too far in the future.
    #[error("block time out of bounds")]
    BadTime,
    /// A fork deeper than [`MAX_FORK_DEPTH`], or the store is full.
    #[error("header store full or fork too deep")]
    Full,
}

/// A header-only chain with the most-work rule.
#[derive(Debug, Clone)]
pub struct HeaderChain {
    config: ChainConfig,
    entries: HashMap<Hash, Entry>,
    /// Best chain, by height.
    best: Vec<Hash>,
}

impl HeaderChain {
    /// A chain holding the genesis header of `config` (the same one every SN starts from).
    pub fn new(config: ChainConfig) -> Self {
        let genesis = config.genesis::<NoTx>().header;
        let hash = genesis.hash();
        let mut entries = HashMap::new();
        entries.insert(
            hash,
            Entry {
                header: genesis,
                height: 0,
                work: 0,
            },
        );
        HeaderChain {
            config,
            entries,
            best: vec![hash],
        }
    }

    /// The parameters.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Best tip hash and height.
    pub fn tip(&self) -> (Hash, u64) {
        let h = self.best.len().saturating_sub(1);
        (self.best.last().copied().unwrap_or([0; 32]), h as u64)
    }

    /// Headers stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Only genesis.
    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Height of `hash` if it is on the best chain.
    pub fn best_height(&self, hash: &Hash) -> Option<u64> {
        let e = self.entries.get(hash)?;
        let i = usize::try_from(e.height).ok()?;
        (self.best.get(i) == Some(hash)).then_some(e.height)
    }

    /// A header of the store.
    pub fn header(&self, hash: &Hash) -> Option<&BlockHeader> {
        self.entries.get(hash).map(|e| &e.header)
    }

    /// Block locator of the best chain, newest first, ending with genesis, at most `max`
    /// hashes (the last always genesis): the tip and the 9 below it, then doubling steps.
    pub fn locator(&self, max: usize) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut height = self.best.len().saturating_sub(1);
        let mut step = 1usize;
        while out.len() + 1 < max.max(2) {
            if let Some(h) = self.best.get(height) {
                out.push(*h);
            }
            if height == 0 {
                return out;
            }
            if out.len() >= 10 {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        if let Some(g) = self.best.first()
            && out.last() != Some(g)
        {
            out.push(*g);
        }
        out
    }

    fn median_time_past(&self, hash: &Hash) -> u64 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = *hash;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(e) = self.entries.get(&cur) else {
                break;
            };
            times.push(e.header.time_ms);
            if e.height == 0 {
                break;
            }
            cur = e.header.prev;
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    fn ancestor(&self, hash: &Hash, height: u64) -> Option<&Entry> {
        let mut e = self.entries.get(hash)?;
        while e.height > height {
            e = self.entries.get(&e.header.prev)?;
        }
        (e.height == height).then_some(e)
    }

    /// The target a child of `parent` must carry: the rule of
    /// [`super::ChainStore::expected_target`], on headers.
    fn expected_target(&self, parent: &Entry) -> Option<Hash> {
        let height = parent.height + 1;
        let interval = self.config.retarget_interval;
        if interval == 0 || !height.is_multiple_of(interval) {
            return Some(parent.header.target);
        }
        let first = self.ancestor(&parent.header.hash(), height.checked_sub(interval)?)?;
        let (t_last, t_first) = (parent.header.time_ms, first.header.time_ms);
        let span = i64::try_from(t_last.abs_diff(t_first)).unwrap_or(i64::MAX);
        let actual = if t_last >= t_first { span } else { -span };
        let expected = interval
            .saturating_sub(2)
            .saturating_mul(self.config.block_interval_ms);
        Some(retarget(&parent.header.target, actual, expected))
    }

    /// Checks and stores `header`; `now_ms` bounds its time as an SN's clock does.
    pub fn add(&mut self, header: BlockHeader, now_ms: u64) -> Result<HeaderAdd, HeaderError> {
        let hash = header.hash();
        if self.entries.contains_key(&hash) {
            return Ok(HeaderAdd::Duplicate);
        }
        if header.version != BLOCK_VERSION {
            return Err(HeaderError::BadVersion);
        }
        if !meets_target(&hash, &header.target) {
            return Err(HeaderError::BadPow);
        }
        let parent = self
            .entries
            .get(&header.prev)
            .ok_or(HeaderError::UnknownParent)?;
        let height = parent.height + 1;
        let (_, tip_height) = self.tip();
        if height + MAX_FORK_DEPTH < tip_height || self.entries.len() >= MAX_HEADER_ENTRIES {
            return Err(HeaderError::Full);
        }
        if self.expected_target(parent) != Some(header.target) {
            return Err(HeaderError::WrongTarget);
        }
        if header.time_ms <= self.median_time_past(&header.prev)
            || header.time_ms > now_ms.saturating_add(self.config.max_future_ms)
        {
            return Err(HeaderError::BadTime);
        }
        let entry = Entry {
            header,
            height,
            work: parent.work.saturating_add(work(&header.target)),
        };
        let new_work = entry.work;
        self.entries.insert(hash, entry);
        let (tip_hash, _) = self.tip();
        let tip_work = self.entries.get(&tip_hash).map_or(0, |e| e.work);
        if !beats(new_work, &hash, tip_work, &tip_hash) {
            return Ok(HeaderAdd::SideChain);
        }
        // Rebuild the best chain down to where the new branch meets it.
        let mut branch = Vec::new();
        let mut cur = hash;
        while let Some(e) = self.entries.get(&cur) {
            let i = usize::try_from(e.height).unwrap_or(usize::MAX);
            if self.best.get(i) == Some(&cur) {
                self.best.truncate(i + 1);
                break;
            }
            branch.push(cur);
            cur = e.header.prev;
        }
        self.best.extend(branch.into_iter().rev());
        Ok(HeaderAdd::NewTip)
    }
}

/// The genesis block has no txs; a tx type is needed only to name it.
#[derive(Debug, Clone)]
struct NoTx;

impl super::ChainTx for NoTx {
    fn id(&self) -> Hash {
        [0; 32]
    }
    fn owner(&self) -> Hash {
        [0; 32]
    }
    fn seq(&self) -> u64 {
        0
    }
    fn encode(&self) -> Vec<u8> {
        Vec::new()
    }
    fn decode(_: &[u8]) -> Result<Self, String> {
        Err("no tx".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{Chain, MempoolConfig};
    use super::*;

    fn chain_of(n: u64) -> Chain<DummyTx> {
        let mut chain: Chain<DummyTx> =
            Chain::new(easy_config(), MempoolConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        for i in 1..=n {
            let b = child(chain.store(), &chain.tip().0, i * 1000, 1, vec![]);
            chain
                .add_block(b, i * 1000, &ok)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        chain
    }

    fn best_headers(chain: &Chain<DummyTx>) -> Vec<BlockHeader> {
        let (_, h) = chain.tip();
        (1..=h)
            .filter_map(|i| chain.store().best_hash_at(i))
            .filter_map(|hash| chain.block(&hash).map(|b| b.header))
            .collect()
    }

    #[test]
    fn follows_the_sn_chain_through_retargets() {
        let chain = chain_of(25);
        let mut hc = HeaderChain::new(easy_config());
        assert_eq!(hc.tip().0, chain.store().genesis());
        for h in best_headers(&chain) {
            assert_eq!(hc.add(h, 30_000), Ok(HeaderAdd::NewTip));
        }
        assert_eq!(hc.tip(), chain.tip());
        assert_eq!(hc.best_height(&chain.tip().0), Some(25));
        let loc = hc.locator(32);
        assert_eq!(loc.first(), Some(&chain.tip().0));
        assert_eq!(loc.last(), Some(&chain.store().genesis()));
        assert!(hc.locator(3).len() <= 3);
    }

    #[test]
    fn invalid_headers_are_refused() {
        let chain = chain_of(3);
        let hs = best_headers(&chain);
        let mut hc = HeaderChain::new(easy_config());
        // Out of order: the parent is unknown.
        assert_eq!(hc.add(hs[1], 10_000), Err(HeaderError::UnknownParent));
        // Proof of work broken (a changed Merkle root changes the hash).
        let mut bad = hs[0];
        bad.merkle_root[0] ^= 1;
        bad.nonce = (0..u64::MAX)
            .find(|n| {
                let mut t = bad;
                t.nonce = *n;
                !meets_target(&t.hash(), &t.target)
            })
            .unwrap_or(0);
        assert_eq!(hc.add(bad, 10_000), Err(HeaderError::BadPow));
        // An easier target than the rule gives, mined honestly.
        let mut easy = hs[0];
        easy.target = [0xff; 32];
        assert_eq!(hc.add(easy, 10_000), Err(HeaderError::WrongTarget));
        assert_eq!(hc.add(hs[0], 10_000), Ok(HeaderAdd::NewTip));
        assert_eq!(hc.add(hs[0], 10_000), Ok(HeaderAdd::Duplicate));
        assert_eq!(hc.add(hs[1], 10_000), Ok(HeaderAdd::NewTip));
        // Block 3 (time 3 s) is too far ahead of a clock at 0 (2 s allowed).
        assert_eq!(hc.add(hs[2], 0), Err(HeaderError::BadTime));
        assert_eq!(hc.add(hs[2], 10_000), Ok(HeaderAdd::NewTip));
        assert_eq!(hc.tip().1, 3);
    }

    #[test]
    fn a_branch_with_more_work_becomes_best() {
        let mut chain = chain_of(2);
        let hs = best_headers(&chain);
        let mut hc = HeaderChain::new(easy_config());
        for h in &hs {
            hc.add(*h, 10_000).unwrap_or_else(|e| panic!("{e}"));
        }
        let old_tip = hc.tip().0;
        // A competing branch from height 1, two blocks long.
        let fork = hs[0].hash();
        let b2 = child(chain.store(), &fork, 2500, 2, vec![]);
        let b2h = b2.hash();
        chain
            .add_block(b2.clone(), 3000, &ok)
            .unwrap_or_else(|e| panic!("{e}"));
        let b3 = child(chain.store(), &b2h, 3500, 2, vec![]);
        // Equal work: the lower hash is best (the SNs' fork choice, `pow::beats`).
        if b2h < old_tip {
            assert_eq!(hc.add(b2.header, 10_000), Ok(HeaderAdd::NewTip));
            assert_eq!(hc.best_height(&b2h), Some(2));
        } else {
            assert_eq!(hc.add(b2.header, 10_000), Ok(HeaderAdd::SideChain));
            assert_eq!(hc.best_height(&b2h), None);
        }
        assert_eq!(hc.add(b3.header, 10_000), Ok(HeaderAdd::NewTip));
        assert_eq!(hc.tip(), (b3.hash(), 3));
        assert_eq!(hc.best_height(&b2h), Some(2));
        assert_eq!(hc.best_height(&old_tip), None);
    }
}
