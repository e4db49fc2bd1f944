//! Super node settings, the Tx type the chain is generic over, and the memory report.

use super::*;
use crate::chain::ValidateTx;
use crate::ed25519::KeyCache;
use crate::wallet::{verify_tx, verify_tx_cached, verify_txs_cached};
use std::cell::RefCell;

/// Default per-source limit on `TxSubmit`: 10 per second, bursts of 20, 4096 sources.
/// Honest ENs register on a new address or a new key, a few times per minute at most; many
/// ENs behind one NAT share its address, hence the room. Checked before the signature.
pub const DEFAULT_TX_LIMIT: RateLimitConfig = RateLimitConfig {
    rate_per_s: 10,
    burst: 20,
    max_sources: 4096,
};

/// Default per-source limit on `Query`: 50 per second, bursts of 100, 4096 sources. A
/// spoofed Query makes the SN answer the spoofed address (a reflector, attack 12 in
/// `docs/security.md`): this caps what one victim address can receive from this SN.
pub const DEFAULT_QUERY_LIMIT: RateLimitConfig = RateLimitConfig {
    rate_per_s: 50,
    burst: 100,
    max_sources: 4096,
};

/// At most one `sn.drop` event per reason per this interval (the counters count everything).
pub const DROP_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Largest encoded ToALL Tx (a 512-byte Y), for memory bounds.
pub const MAX_TX_BYTES: usize = binfm_stack::wire::toall::TXOUT_FIXED_LEN
    + binfm_stack::wire::toall::MAX_Y_LEN
    + binfm_stack::wire::toall::TXIN_LEN;

impl ChainTx for ToallTx {
    fn id(&self) -> Hash {
        ToallTx::id(self)
    }
    fn owner(&self) -> Hash {
        self.out.hash_addr
    }
    fn seq(&self) -> u64 {
        self.out.seq
    }
    fn encode(&self) -> Vec<u8> {
        self.to_bytes()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        ToallTx::parse(bytes).map_err(|e| e.to_string())
    }
}

/// The stateless validity check of a ToALL Tx, as the chain wants it.
pub fn validate_tx(tx: &ToallTx) -> Result<(), String> {
    verify_tx(tx).map_err(|e| e.to_string())
}

/// [`validate_tx`] that checks a block's Txs all at once: their signatures in one ed25519
/// batch ([`crate::wallet::verify_txs_cached`]; the same rule and the same reasons as
/// `validate_tx`, at about half the cost per signature). Optionally counts the Txs it
/// checks (each is an ed25519 verification, batched or not), and takes known keys from a
/// super node's [`KeyCache`] (keeping there those of the Txs that verify).
#[derive(Debug, Default)]
pub struct BatchValidator<'a> {
    counter: Option<&'a Cell<u32>>,
    keys: Option<RefCell<&'a mut KeyCache>>,
}

impl<'a> BatchValidator<'a> {
    /// A validator that counts nothing and decodes every key.
    pub fn new() -> Self {
        BatchValidator::default()
    }

    /// A validator that adds the number of Txs it checks to `counter` and uses `keys`.
    pub fn counting(counter: &'a Cell<u32>, keys: &'a mut KeyCache) -> Self {
        BatchValidator {
            counter: Some(counter),
            keys: Some(RefCell::new(keys)),
        }
    }

    fn count(&self, n: usize) {
        if let Some(c) = self.counter {
            c.set(c.get().saturating_add(u32::try_from(n).unwrap_or(u32::MAX)));
        }
    }

    /// `f` with the known keys (none: an empty cache that keeps nothing).
    fn with_keys<R>(&self, f: impl FnOnce(&mut KeyCache) -> R) -> R {
        match &self.keys {
            Some(k) => f(&mut k.borrow_mut()),
            None => f(&mut KeyCache::new(0)),
        }
    }
}

impl ValidateTx<ToallTx> for BatchValidator<'_> {
    fn validate(&self, tx: &ToallTx) -> Result<(), String> {
        self.count(1);
        self.with_keys(|keys| verify_tx_cached(tx, keys))
            .map_err(|e| e.to_string())
    }

    fn first_invalid(&self, txs: &[ToallTx]) -> Option<(usize, String)> {
        self.count(txs.len());
        let refs: Vec<&ToallTx> = txs.iter().collect();
        self.with_keys(|keys| verify_txs_cached(&refs, keys))
            .into_iter()
            .enumerate()
            .find_map(|(i, r)| r.err().map(|e| (i, e.to_string())))
    }
}

/// Super node settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SnConfig {
    /// Miner id written into the blocks this SN mines.
    pub miner_id: u32,
    /// Peer SNs (flooding of Txs and blocks).
    pub peers: Vec<SocketAddrV4>,
    /// Hashes per second of run time.
    pub hash_rate: f64,
    /// Chain parameters (the same on every SN of a run).
    pub chain: ChainConfig,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Answer `want_unconfirmed` Queries with the newest pending Tx too.
    pub reply_unconfirmed: bool,
    /// Whether this SN mines at all.
    pub mine: bool,
    /// Most Txs in one block.
    pub max_block_txs: usize,
    /// How often the tip is announced to peers (catch-up after partitions and restarts).
    pub tip_announce: Duration,
    /// Per-source limit on `TxSubmit` (checked before the signature); `None` disables it.
    pub tx_limit: Option<RateLimitConfig>,
    /// Per-source limit on `Query`; `None` disables it.
    pub query_limit: Option<RateLimitConfig>,
}

impl SnConfig {
    /// Defaults around a chain config: mining on, 500 Txs per block, tip announced every 2 s.
    pub fn new(
        miner_id: u32,
        peers: Vec<SocketAddrV4>,
        hash_rate: f64,
        chain: ChainConfig,
    ) -> Self {
        SnConfig {
            miner_id,
            peers,
            hash_rate,
            chain,
            mempool: MempoolConfig::default(),
            reply_unconfirmed: false,
            mine: true,
            max_block_txs: 500,
            tip_announce: Duration::from_secs(2),
            tx_limit: Some(DEFAULT_TX_LIMIT),
            query_limit: Some(DEFAULT_QUERY_LIMIT),
        }
    }

    /// Per-source limits of `rate` TxSubmits and Queries a second (`None`: the default),
    /// each in bursts of twice its rate; a disabled limit stays disabled.
    pub fn set_per_source_limits(&mut self, tx: Option<u32>, queries: Option<u32>) {
        for (limit, rate) in [(&mut self.tx_limit, tx), (&mut self.query_limit, queries)] {
            if let (Some(l), Some(rate)) = (limit.as_mut(), rate) {
                l.rate_per_s = rate;
                l.burst = rate.saturating_mul(2);
            }
        }
    }
}

/// Sizes of everything in a super node that packets from the network can make grow, with
/// the limit of each (`SuperNode::memory`). Blocks on the chain and the search table are
/// not in it: they grow only with proof of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnMemory {
    /// Pending Txs in the mempool, and its limit.
    pub mempool_txs: usize,
    /// `MempoolConfig::max_txs`.
    pub mempool_max: usize,
    /// Owners remembered by the mempool's per-owner rate limit, and its limit.
    pub mempool_rate_owners: usize,
    /// `Mempool::rate_state_cap`.
    pub mempool_rate_owners_max: usize,
    /// Blocks in the orphan pool, and its limit.
    pub orphans: usize,
    /// `ChainConfig::max_orphans`.
    pub orphans_max: usize,
    /// Blocks being reassembled, and their limit.
    pub reassembly_blocks: usize,
    /// Most blocks being reassembled.
    pub reassembly_blocks_max: usize,
    /// Bytes held by blocks being reassembled.
    pub reassembly_bytes: usize,
    /// Sources tracked by the `TxSubmit` limiter, and its limit.
    pub tx_limit_sources: usize,
    /// `tx_limit.max_sources` (0 when disabled).
    pub tx_limit_sources_max: usize,
    /// Sources tracked by the `Query` limiter, and its limit.
    pub query_limit_sources: usize,
    /// `query_limit.max_sources` (0 when disabled).
    pub query_limit_sources_max: usize,
    /// End-node endpoints subscribed to header pushes, and their limit.
    pub subscribers: usize,
    /// [`super::MAX_SUBSCRIBERS`].
    pub subscribers_max: usize,
    /// Public keys of verified Txs kept decoded ([`crate::ed25519::KeyCache`]), and their
    /// limit ([`super::KNOWN_KEYS`]).
    pub known_keys: usize,
    /// [`super::KNOWN_KEYS`].
    pub known_keys_max: usize,
    /// Datagrams, events and blocks queued for the driver (drained after every input).
    pub queued: usize,
    /// `ChainConfig::max_block_bytes`: the size an orphan or a reassembly may reach.
    pub max_block_bytes: usize,
}

impl SnMemory {
    /// Upper estimate of the bytes held now: every pending Tx and orphan counted at its
    /// largest size ([`MAX_TX_BYTES`], `max_block_bytes`), reassembly at its real size.
    pub fn bytes(&self) -> usize {
        self.mempool_txs * MAX_TX_BYTES
            + self.mempool_rate_owners * 40
            + self.orphans * self.max_block_bytes
            + self.reassembly_bytes
            + (self.tx_limit_sources + self.query_limit_sources) * SOURCE_ENTRY_BYTES
            + self.subscribers * super::subscribers::SUBSCRIBER_BYTES
            + self.known_keys * KeyCache::ENTRY_BYTES
    }

    /// The same estimate with every structure at its limit: what packets can make the SN
    /// hold at most (queues excluded: the driver drains them after every input).
    pub fn bytes_bound(&self) -> usize {
        self.mempool_max * MAX_TX_BYTES
            + self.mempool_rate_owners_max * 40
            + self.orphans_max * self.max_block_bytes
            + self.reassembly_blocks_max * self.max_block_bytes
            + (self.tx_limit_sources_max + self.query_limit_sources_max) * SOURCE_ENTRY_BYTES
            + self.subscribers_max * super::subscribers::SUBSCRIBER_BYTES
            + self.known_keys_max * KeyCache::ENTRY_BYTES
    }

    /// Whether every structure is within its limit.
    pub fn within_limits(&self) -> bool {
        self.mempool_txs <= self.mempool_max
            && self.mempool_rate_owners <= self.mempool_rate_owners_max
            && self.orphans <= self.orphans_max
            && self.reassembly_blocks <= self.reassembly_blocks_max
            && self.tx_limit_sources <= self.tx_limit_sources_max
            && self.query_limit_sources <= self.query_limit_sources_max
            && self.subscribers <= self.subscribers_max
            && self.known_keys <= self.known_keys_max
    }
}
