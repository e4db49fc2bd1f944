//! Crypto costs of BINFM: what an SN pays to check a ToALL Tx (target ≥ 20,000 `verify_tx`/s
//! on one core, so verification never limits a 1 s block interval), and what an EN pays for
//! DH (key generation on registration and renewal; agreement per session).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use binfm_roles::dh::DhSecret;
use binfm_roles::wallet::{Wallet, verify_tx};
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

criterion_group!(benches, bench);
criterion_main!(benches);
