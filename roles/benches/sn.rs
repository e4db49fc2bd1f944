//! Query -> Reply handling in the super node: parse the Query, look the hash address up in
//! the Tx Search Table, encode the Reply (with the 417-byte Tx), for an SN holding 1,000
//! registered ENs; and the ingest path: TxSubmit datagrams in, TxAcks out, in Tx/s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cpu_time.rs"]
mod cpu_time;

use binfm_roles::Time;
use binfm_roles::chain::{ChainConfig, pow};
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::binfm::Message;
use cpu_time::thread_cpu;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use std::net::{Ipv4Addr, SocketAddrV4};

const ENS: u32 = 1000;

fn sn_query(c: &mut Criterion) {
    // A trivially easy target: the benchmark measures Query handling, not mining.
    let chain = ChainConfig {
        network_hash_rate: 1.0,
        ..ChainConfig::default()
    };
    let mut cfg = SnConfig::new(1, vec![], 1.0, chain);
    cfg.mine = false;
    // One asker sends every Query: measure the handling, not the per-source limit.
    cfg.query_limit = None;
    let mut sn = SuperNode::new(cfg, 1).unwrap();
    let sn_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 7400);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut addrs = Vec::new();
    let mut txs = Vec::new();
    for i in 0..ENS {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let mut w = Wallet::from_seed(seed, &mut rng);
        let ep = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 7401);
        w.set_addresses(ep, ep);
        addrs.push(w.hash_addr());
        txs.push(w.next_tx(0));
    }
    // Blocks of 100 Txs, mined against the easy target and fed in as a peer would.
    let mut now = Time::from_millis(10);
    for chunk in txs.chunks(100) {
        let (tip, _) = sn.chain().tip();
        let target = sn.chain().store().expected_target(&tip).unwrap();
        let header = binfm_roles::chain::BlockHeader {
            version: binfm_roles::chain::BLOCK_VERSION,
            prev: tip,
            merkle_root: [0; 32],
            time_ms: now.as_millis() as u64,
            target,
            miner: 2,
            nonce: 0,
        };
        let mut block = binfm_roles::chain::Block::new(header, chunk.to_vec());
        block.header.nonce = pow::mine(&block.header, 0, u64::MAX).unwrap().0;
        sn.add_block_for_bench(now, block);
        now += Time::from_secs(1);
    }
    assert!(sn.chain().lookup(&addrs[ENS as usize - 1]).is_some());

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
    let mut i = 0usize;
    let mut group = c.benchmark_group("sn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("query_to_reply_1000_ens", |b| {
        b.iter(|| {
            sn.handle_datagram(now, asker, sn_addr, &queries[i % queries.len()]);
            i += 1;
            let reply = sn.poll_transmit().unwrap();
            while sn.poll_event().is_some() {}
            reply.payload.len()
        })
    });
    group.finish();
}

/// An SN's ingest path: batches of `TxSubmit` datagrams from distinct ENs (valid, signed,
/// NAT endpoint = source) into `handle_datagram`, then everything drained (TxAcks, events),
/// with mining on at the paper's rate (2,000 H/s, 1 s blocks): the SN's work per accepted
/// Tx. Each EN re-registers (a higher seq) every 2,048 Txs, so the pool stays at 2,048 owners
/// and blocks get mined as the virtual clock advances 1 ms per batch. Signing happens outside
/// the timed part, which is timed in the bench thread's CPU time (the target is per core).
fn sn_ingest_with(c: &mut Criterion, name: &str, burst: bool) {
    const CROWD: u32 = 2048;
    const BATCH: usize = 256;
    let chain = ChainConfig {
        network_hash_rate: 2000.0,
        ..ChainConfig::default()
    };
    let mut cfg = SnConfig::new(1, vec![], 2000.0, chain);
    cfg.tx_limit = None;
    let mut sn = SuperNode::new(cfg, 1).unwrap();
    let sn_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 7400);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let mut wallets: Vec<(Wallet, SocketAddrV4)> = (0..CROWD)
        .map(|i| {
            let mut seed = [1u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            let mut w = Wallet::from_seed(seed, &mut rng);
            let ep = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 7401);
            w.set_addresses(ep, ep);
            (w, ep)
        })
        .collect();
    let mut now = Time::from_millis(10);
    sn.start(now);
    let mut next = 0usize;
    let mut accepted = 0u64;
    let mut group = c.benchmark_group("sn");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<(SocketAddrV4, Vec<u8>)> = (0..BATCH)
                    .map(|_| {
                        let (w, ep) = &mut wallets[next % CROWD as usize];
                        next += 1;
                        let tx = w.next_tx(now.as_millis() as u64);
                        (*ep, Message::TxSubmit { tx }.to_bytes())
                    })
                    .collect();
                now += Time::from_millis(1);
                let t0 = thread_cpu();
                if sn.poll_timeout().is_some_and(|t| t <= now) {
                    sn.handle_timeout(now);
                }
                if burst {
                    let refs: Vec<(SocketAddrV4, &[u8])> =
                        batch.iter().map(|(f, d)| (*f, &d[..])).collect();
                    sn.handle_datagrams(now, &refs);
                } else {
                    for (from, bytes) in &batch {
                        sn.handle_datagram(now, *from, sn_addr, bytes);
                    }
                }
                while sn.poll_transmit().is_some() {}
                while let Some(ev) = sn.poll_event() {
                    if matches!(ev, binfm_roles::sn::events::SnEvent::TxAccepted { .. }) {
                        accepted += 1;
                    }
                }
                total += thread_cpu().saturating_sub(t0);
            }
            total
        })
    });
    group.finish();
    assert!(accepted > 0 && sn.refused.is_empty(), "{:?}", sn.refused);
}

/// The ingest path, one datagram at a time (`handle_datagram`).
fn sn_ingest(c: &mut Criterion) {
    sn_ingest_with(c, "ingest_tx_submit_256", false);
}

/// The ingest path, the 256 datagrams as one burst (`handle_datagrams`: one batch
/// verification), as the daemon hands over what it read from its socket at once.
fn sn_ingest_burst(c: &mut Criterion) {
    sn_ingest_with(c, "ingest_tx_submit_256_burst", true);
}

criterion_group!(benches, sn_query, sn_ingest, sn_ingest_burst);
criterion_main!(benches);
