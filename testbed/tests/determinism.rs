//! Same topology + same seed => byte-identical capture, events and results; another seed
//! changes jitter and loss outcomes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::*;

fn outputs(seed: Option<u64>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (dir, _) = run("lan-nat.toml", seed, None);
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    (
        read("capture.pcapng"),
        read("events.jsonl"),
        read("results.json"),
    )
}

#[test]
fn same_seed_gives_identical_files() {
    let a = outputs(Some(7));
    let b = outputs(Some(7));
    assert!(a.0 == b.0, "captures differ");
    assert!(a.1 == b.1, "events differ");
    assert!(a.2 == b.2, "results differ");
}

#[test]
fn another_seed_changes_jitter_and_loss() {
    let (dir1, _) = run("lan-nat.toml", Some(1), None);
    let (dir2, _) = run("lan-nat.toml", Some(2), None);
    let c1 = read_capture(&dir1.path().join("capture.pcapng"));
    let c2 = read_capture(&dir2.path().join("capture.pcapng"));
    let times = |c: &[Captured]| {
        c.iter()
            .filter(|p| p.segment == "public")
            .map(|p| p.t)
            .collect::<Vec<_>>()
    };
    assert_ne!(
        times(&c1),
        times(&c2),
        "jitter on the public segment did not depend on the seed"
    );
    let losses = |d: &std::path::Path| {
        read_events(&d.join("events.jsonl"))
            .iter()
            .filter(|e| e.kind == "fabric.drop")
            .map(|e| e.t)
            .collect::<Vec<_>>()
    };
    let (l1, l2) = (losses(dir1.path()), losses(dir2.path()));
    assert!(
        !l1.is_empty() && !l2.is_empty(),
        "1% loss on ~350 public packets should lose some"
    );
    assert_ne!(l1, l2, "loss did not depend on the seed");
}
