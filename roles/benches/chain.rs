//! Chain costs: full validation of a 10-tx block (PoW, Merkle root, target, median time and
//! seq rule with a trivial tx validator), Tx Search Table lookups at 1,000,000 addresses
//! (target < 200 ns), and mining throughput (header hashes per second).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use binfm_roles::chain::pow::mine;
use binfm_roles::chain::{Chain, ChainConfig, ChainTx, Hash, MempoolConfig, SearchTable};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

/// Owner, seq and a 150-byte body: roughly the size of a ToALL Tx.
#[derive(Debug, Clone)]
struct BenchTx {
    owner: Hash,
    seq: u64,
}

impl ChainTx for BenchTx {
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
        let mut v = Vec::with_capacity(190);
        v.extend_from_slice(&self.owner);
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&[0x5a; 150]);
        v
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 190 {
            return Err("length".into());
        }
        let mut owner = [0u8; 32];
        owner.copy_from_slice(&bytes[..32]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[32..40]);
        Ok(BenchTx {
            owner,
            seq: u64::from_be_bytes(seq),
        })
    }
}

fn addr(i: u64) -> Hash {
    Sha256::digest(i.to_be_bytes()).into()
}

fn ok(_: &BenchTx) -> Result<(), String> {
    Ok(())
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chain");

    // A chain of 20 blocks with 10 txs each; then a candidate block of 10 txs on the tip.
    {
        let config = ChainConfig {
            network_hash_rate: 16.0,
            ..ChainConfig::default()
        };
        let mut chain: Chain<BenchTx> = Chain::new(config, MempoolConfig::default()).unwrap();
        let mut next = 0u64;
        for h in 1..=21u64 {
            let txs: Vec<BenchTx> = (0..10)
                .map(|_| {
                    next += 1;
                    BenchTx {
                        owner: addr(next % 150),
                        seq: next,
                    }
                })
                .collect();
            let mut b = chain.store().template_on_tip(h * 1000, 1, txs);
            b.header.nonce = mine(&b.header, 0, u64::MAX).unwrap().0;
            if h == 21 {
                g.throughput(Throughput::Elements(1));
                chain.store().check_block(&b, 21_000, &ok).unwrap();
                g.bench_function("validate_block_10tx", |bn| {
                    bn.iter(|| chain.store().check_block(black_box(&b), 21_000, &ok))
                });
            } else {
                chain.add_block(b, h * 1000, &ok).unwrap();
            }
        }
    }

    // Search table with 1,000,000 addresses.
    {
        let n = 1_000_000u64;
        let mut tst = SearchTable::new();
        let txs: Vec<BenchTx> = (0..n)
            .map(|i| BenchTx {
                owner: addr(i),
                seq: 1,
            })
            .collect();
        for (h, chunk) in txs.chunks(250).enumerate() {
            tst.apply_block(h as u64 + 1, chunk);
        }
        drop(txs);
        assert_eq!(tst.len(), n as usize);
        // 4,096 hot addresses (cache-resident) and 65,536 scattered ones (well beyond L2).
        for (name, set) in [
            ("tst_lookup_1m_hot", 4096u64),
            ("tst_lookup_1m_scattered", 65_536),
        ] {
            let probes: Vec<Hash> = (0..set).map(|i| addr((i * 7919) % n)).collect();
            let mask = set as usize - 1;
            let mut i = 0usize;
            g.throughput(Throughput::Elements(1));
            g.bench_function(name, |bn| {
                bn.iter(|| {
                    i = (i + 1) & mask;
                    black_box(tst.lookup(black_box(&probes[i])).map(|(_, h)| h))
                })
            });
        }
    }

    // Mining: 10,000 tries against an impossible target.
    {
        let chain: Chain<BenchTx> =
            Chain::new(ChainConfig::default(), MempoolConfig::default()).unwrap();
        let mut b = chain.block_template(1000, 1, 0);
        b.header.target = [0; 32];
        g.throughput(Throughput::Elements(10_000));
        g.bench_function("mine_10k_hashes", |bn| {
            bn.iter(|| black_box(mine(black_box(&b.header), 0, 10_000)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
