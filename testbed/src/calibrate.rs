//! `binfm calibrate`: times the operations roles count ([`binfm_roles::Op`]) on this machine
//! and gives a `[compute]` table of their medians (docs/topology.md, "Compute time").
//!
//! Each operation is the real code a role runs: group-14 key generation and agreement
//! (`binfm_roles::dh`), an ed25519 signature over a Session Request's size, a ToALL Tx's full
//! check (`verify_tx`), a super node answering a Query from a search table of
//! [`CALIBRATE_ENS`] registered ENs (parse, lookup, Merkle proof, Reply), and a super node
//! taking a received block whose Txs it does not check again here (their signatures are
//! charged as `verify`). Wall clock: run it on a quiet machine, in a release build.

use crate::topology::compute::ComputeCosts;
use binfm_roles::Op;
use binfm_roles::Time;
use binfm_roles::chain::{Block, BlockHeader, ChainConfig, pow};
use binfm_roles::dh::DhSecret;
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::{Wallet, verify_tx};
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::ToallTx;
use rand::SeedableRng;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// ENs registered at the super node whose Query handling is timed.
pub const CALIBRATE_ENS: u32 = 100;

/// Samples per operation (the median is kept).
#[derive(Debug, Clone, Copy)]
pub struct Samples {
    /// Modexps (key generation, agreement).
    pub modexp: usize,
    /// Signatures and verifications.
    pub ed25519: usize,
    /// Queries answered.
    pub query: usize,
    /// Blocks taken.
    pub block: usize,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            modexp: 41,
            ed25519: 201,
            query: 2001,
            block: 101,
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn time<T>(n: usize, mut f: impl FnMut(usize) -> T) -> Duration {
    let mut v = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let t = Instant::now();
        black_box(f(i));
        v.push(t.elapsed());
    }
    median(v)
}

/// A wallet registered at `i`'s endpoint, and its signed Tx.
fn registered(i: u32, rng: &mut rand_chacha::ChaCha8Rng) -> (Wallet, ToallTx) {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    let mut w = Wallet::from_seed(seed, rng);
    let ep = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 7401);
    w.set_addresses(ep, ep);
    let tx = w.next_tx(0);
    (w, tx)
}

/// A super node that does not mine, on a chain with a trivially easy target.
fn super_node() -> SuperNode {
    let chain = ChainConfig {
        network_hash_rate: 1.0,
        ..ChainConfig::default()
    };
    let mut cfg = SnConfig::new(1, vec![], 1.0, chain);
    cfg.mine = false;
    cfg.query_limit = None;
    cfg.tx_limit = None;
    SuperNode::new(cfg, 1).unwrap_or_else(|e| panic!("calibration chain config: {e}"))
}

/// A block on `sn`'s tip carrying `txs`, mined against its (easy) target.
fn block_on(sn: &SuperNode, txs: Vec<ToallTx>, time_ms: u64) -> Option<Block<ToallTx>> {
    let (tip, _) = sn.chain().tip();
    let target = sn.chain().store().expected_target(&tip)?;
    let header = BlockHeader {
        version: binfm_roles::chain::BLOCK_VERSION,
        prev: tip,
        merkle_root: [0; 32],
        time_ms,
        target,
        miner: 2,
        nonce: 0,
    };
    let mut block = Block::new(header, txs);
    block.header.nonce = pow::mine(&block.header, 0, u64::MAX)?.0;
    Some(block)
}

/// Times every operation and returns their medians.
pub fn calibrate(samples: Samples) -> ComputeCosts {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut c = ComputeCosts::ZERO;

    let secrets: Vec<DhSecret> = (0..2).map(|_| DhSecret::generate(&mut rng)).collect();
    c.set(
        Op::DhKeygen,
        time(samples.modexp, |_| DhSecret::generate(&mut rng)),
    );
    let peer = secrets[1].public();
    c.set(
        Op::DhAgree,
        time(samples.modexp, |_| secrets[0].agree(&peer)),
    );

    let (wallet, tx) = registered(1, &mut rng);
    // A Session Request's signing input is about this long.
    let msg = vec![0x5au8; 700];
    c.set(Op::Sign, time(samples.ed25519, |_| wallet.sign(&msg)));
    c.set(Op::Verify, time(samples.ed25519, |_| verify_tx(&tx)));

    // Query: an SN holding CALIBRATE_ENS confirmed registrations.
    let mut sn = super_node();
    let mut addrs = Vec::new();
    let mut txs = Vec::new();
    for i in 0..CALIBRATE_ENS {
        let (w, tx) = registered(i, &mut rng);
        addrs.push(w.hash_addr());
        txs.push(tx);
    }
    let mut now = Time::from_millis(10);
    for chunk in txs.chunks(25) {
        if let Some(b) = block_on(&sn, chunk.to_vec(), now.as_millis() as u64) {
            sn.add_block_for_bench(now, b);
        }
        now += Time::from_secs(1);
    }
    let sn_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 7400);
    let asker = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), 7401);
    let queries: Vec<Vec<u8>> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Message::Query {
                request_id: i as u32,
                hash_addr: *a,
                want_unconfirmed: false,
            }
            .to_bytes()
        })
        .collect();
    c.set(
        Op::Query,
        time(samples.query, |i| {
            sn.handle_datagram(now, asker, sn_addr, &queries[i % queries.len()]);
            let reply = sn.poll_transmit().map(|t| t.payload.len());
            while sn.poll_event().is_some() {}
            reply
        }),
    );

    // Block: a fresh SN takes an empty block on its genesis (header, proof of work, Merkle
    // root, context, tip switch); Tx signatures are `verify` each.
    let template = super_node();
    let block = block_on(&template, Vec::new(), 1000);
    let mut fresh: Vec<(SuperNode, Option<Block<ToallTx>>)> = (0..samples.block)
        .map(|_| (super_node(), block.clone()))
        .collect();
    c.set(
        Op::Block,
        time(samples.block, |i| {
            if let Some((sn, b)) = fresh.get_mut(i)
                && let Some(b) = b.take()
            {
                sn.add_block_for_bench(Time::from_secs(1), b);
            }
        }),
    );
    c
}

/// What `binfm calibrate` prints: a comment naming the machine, then the table.
pub fn report(c: &ComputeCosts) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let build = if cfg!(debug_assertions) {
        "debug build (use --release for real figures)"
    } else {
        "release build"
    };
    format!(
        "# binfm calibrate: medians on {cpu}, {build}, {} logical CPUs\n{}",
        std::thread::available_parallelism().map_or(1, usize::from),
        c.to_toml()
    )
}
