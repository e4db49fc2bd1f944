//! Costs of a BINFM call: what an EN pays per session set-up or rekey (DH agreement plus key
//! derivation; the modexp dominates) and per 20 ms audio frame (SRTP protect on one side,
//! unprotect on the other; target below 2 µs together, so 50 frames/s are free).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use binfm_roles::dh::DhSecret;
use binfm_roles::session::audio::{FRAME_SAMPLES, PT_PCMU, tone_frame};
use binfm_roles::session::keys::{derive, mac};
use binfm_roles::session::srtp::{SrtpReceiver, SrtpSender};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mine = DhSecret::generate(&mut rng);
    let peer = DhSecret::generate(&mut rng).public();
    let (caller, callee) = ([1u8; 32], [2u8; 32]);
    let (n1, n2) = ([3u8; 16], [4u8; 16]);

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("session_keys", |b| {
        b.iter(|| {
            let k = mine.agree(black_box(&peer)).unwrap();
            derive(&k, &caller, &callee, &n1, &n2, 0, true)
        })
    });
    let k = mine.agree(&peer).unwrap();
    g.bench_function("derive_only", |b| {
        b.iter(|| derive(black_box(&k), &caller, &callee, &n1, &n2, 0, true))
    });
    let keys = derive(&k, &caller, &callee, &n1, &n2, 0, true);
    let msg = [0x42u8; 72]; // a HandoverRequest's size
    g.bench_function("control_mac", |b| {
        b.iter(|| mac(&keys.control, black_box(&msg)))
    });

    let frame = tone_frame(440.0, 0);
    let mut tx = SrtpSender::new(keys.send.clone(), 0x1234_5678, 1);
    let mut rx = SrtpReceiver::new(keys.send.clone(), 0x1234_5678);
    let mut ts = 0u32;
    g.throughput(Throughput::Bytes(FRAME_SAMPLES as u64));
    g.bench_function("protect+unprotect", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(FRAME_SAMPLES as u32);
            let p = tx.protect(PT_PCMU, ts, black_box(&frame));
            rx.unprotect(black_box(&p)).unwrap()
        })
    });
    g.bench_function("protect", |b| {
        b.iter(|| tx.protect(PT_PCMU, 0, black_box(&frame)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
