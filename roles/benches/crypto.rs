//! Crypto costs of BINFM: what an SN pays to check a ToALL Tx (target ≥ 20,000 `verify_tx`/s
//! on one core, so verification never limits a 1 s block interval), and what an EN pays for
//! DH (key generation on registration and renewal; agreement per session). The `verify`
//! group (the chain's ed25519 rule, alone and in batches; target ≥ 50,000 signatures/s per
//! core in batches) is timed in the bench thread's CPU time.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

#[path = "support/cpu_time.rs"]
mod cpu_time;

use binfm_roles::dh::DhSecret;
use cpu_time::iter_cpu;

use binfm_roles::ed25519::{KeyCache, Signed, verify, verify_batch, verify_batch_cached};
use binfm_roles::wallet::{Wallet, verify_tx, verify_txs};
use binfm_stack::wire::toall::ToallTx;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut w = Wallet::from_seed([7; 32], &mut rng);
    w.set_addresses(
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), 7401),
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 27198),
    );
    let tx = w.next_tx(1000);
    let bytes = tx.to_bytes();

    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_tx", |b| {
        b.iter(|| verify_tx(black_box(&tx)).unwrap())
    });
    // For scale: the signature check alone, which dominates verify_tx.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&tx.public_key).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&tx.signature);
    let signed = tx.out.signing_bytes();
    g.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| key.verify_strict(black_box(&signed), &sig).unwrap())
    });
    g.bench_function("parse_and_verify_tx", |b| {
        b.iter(|| verify_tx(&ToallTx::parse(black_box(&bytes)).unwrap()).unwrap())
    });
    g.bench_function("dh_generate_public", |b| {
        b.iter(|| black_box(DhSecret::generate(&mut rng).public()))
    });
    let peer = DhSecret::generate(&mut rng).public();
    let mine = DhSecret::generate(&mut rng);
    g.bench_function("dh_agree", |b| {
        b.iter(|| mine.agree(black_box(&peer)).unwrap())
    });
    g.finish();
}

/// Signature verification under the chain's rule (`binfm_roles::ed25519`): one at a time and
/// in batches of 64 and 256 (target ≥ 50,000 signatures/s per core in batches). Distinct
/// keys, Tx-sized messages (321 bytes, a group-14 TxOut).
fn bench_verify(c: &mut Criterion) {
    use ed25519_dalek::{Signer, SigningKey};
    let sigs: Vec<([u8; 32], Vec<u8>, [u8; 64])> = (0..256u32)
        .map(|i| {
            let mut seed = [0x42u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let key = SigningKey::from_bytes(&seed);
            let msg: Vec<u8> = (0..321u32).map(|j| (j * 7 + i) as u8).collect();
            (
                key.verifying_key().to_bytes(),
                msg.clone(),
                key.sign(&msg).to_bytes(),
            )
        })
        .collect();
    let signed: Vec<Signed<'_>> = sigs
        .iter()
        .map(|(pk, msg, sig)| Signed {
            public_key: pk,
            message: msg,
            signature: sig,
        })
        .collect();

    // Timed in the bench thread's CPU time: the target is per core.
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let one = signed[0];
    g.bench_function("single", |b| {
        iter_cpu(b, || {
            verify(black_box(one.public_key), one.message, one.signature).unwrap()
        })
    });
    for n in [64usize, 256] {
        g.throughput(Throughput::Elements(n as u64));
        let batch = &signed[..n];
        g.bench_function(format!("batch_{n}"), |b| {
            iter_cpu(b, || {
                let r = verify_batch(black_box(batch));
                assert!(r.iter().all(Result::is_ok));
                r
            })
        });
    }
    // The same batches with the keys already decoded: a super node keeps the keys of the
    // Txs that verified (`KeyCache`), and an end node signs all its Txs with one key.
    for n in [64usize, 256] {
        g.throughput(Throughput::Elements(n as u64));
        let batch = &signed[..n];
        let mut keys = KeyCache::new(n);
        assert!(
            verify_batch_cached(batch, &mut keys)
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(keys.len(), n);
        g.bench_function(format!("batch_{n}_known_keys"), |b| {
            iter_cpu(b, || {
                let r = verify_batch_cached(black_box(batch), &mut keys);
                assert!(r.iter().all(Result::is_ok));
                r
            })
        });
    }
    // What an SN pays per Tx of a block or a burst: `verify_txs` (address, group, Y range,
    // then one signature batch) over 64 Txs of 64 owners.
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let txs: Vec<ToallTx> = (0..64u8)
        .map(|i| Wallet::from_seed([i; 32], &mut rng).next_tx(1000))
        .collect();
    let refs: Vec<&ToallTx> = txs.iter().collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_txs_64", |b| {
        iter_cpu(b, || {
            let r = verify_txs(black_box(&refs));
            assert!(r.iter().all(Result::is_ok));
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_verify);
criterion_main!(benches);
