//! Tests of the block store: validation, orphans, fork choice, reorgs and retargeting.

use super::super::block::{BlockHeader, MAX_BLOCK_TXS};
use super::super::pow::{MAX_TARGET, meets_target, mine};
use super::super::test_util::*;
use super::*;

fn store() -> ChainStore<DummyTx> {
    ChainStore::new(easy_config()).unwrap_or_else(|e| panic!("{e}"))
}

fn add(s: &mut ChainStore<DummyTx>, b: Block<DummyTx>, now: u64) -> Result<AddOutcome, BlockError> {
    s.add_block(b, now, &ok)
}

/// Mines a chain of `n` blocks on `from`, `spacing` ms apart starting at `t0`.
fn branch(
    s: &mut ChainStore<DummyTx>,
    from: Hash,
    (t0, spacing): (u64, u64),
    n: usize,
    miner: u32,
) -> Vec<Hash> {
    let mut out = Vec::new();
    let mut parent = from;
    for i in 0..n {
        let b = child(s, &parent, t0 + spacing * i as u64, miner, vec![]);
        parent = b.hash();
        out.push(parent);
        add(s, b, 1_000_000).unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

/// A nonce for which the header does NOT meet its target.
fn unmine(b: &mut Block<DummyTx>) {
    while meets_target(&b.hash(), &b.header.target) {
        b.header.nonce += 1;
    }
}

#[test]
fn genesis_is_deterministic_and_config_checked() {
    let a = store();
    let b = store();
    assert_eq!(a.genesis(), b.genesis());
    assert_eq!(a.tip(), (a.genesis(), 0));
    let other =
        ChainStore::<DummyTx>::new(ChainConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(other.genesis(), a.genesis());
    let bad = ChainConfig {
        retarget_interval: 1,
        ..ChainConfig::default()
    };
    assert_eq!(
        ChainStore::<DummyTx>::new(bad).err(),
        Some(ConfigError::RetargetInterval(1))
    );
    let bad = ChainConfig {
        network_hash_rate: f64::NAN,
        ..ChainConfig::default()
    };
    assert!(ChainStore::<DummyTx>::new(bad).is_err());
}

#[test]
fn extend_and_duplicate() {
    let mut s = store();
    let g = s.genesis();
    let b1 = child(
        &s,
        &g,
        1000,
        1,
        vec![DummyTx::new(1, 1), DummyTx::new(2, 1)],
    );
    let h1 = b1.hash();
    assert_eq!(
        add(&mut s, b1.clone(), 1000),
        Ok(AddOutcome::Extended { added: vec![h1] })
    );
    assert_eq!(add(&mut s, b1, 1000), Ok(AddOutcome::Duplicate));
    assert_eq!(s.tip(), (h1, 1));
    assert_eq!(
        s.height_and_work(&h1),
        Some((1, 2 * work(&s.config().genesis::<DummyTx>().header.target)))
    );
    assert_eq!(
        s.search_table().lookup(&[2; 32]).map(|(t, h)| (t.seq, h)),
        Some((1, 1))
    );
    assert_eq!(s.poll_connected(), Some(h1));
    assert_eq!(s.poll_connected(), None);
}

#[test]
fn bad_pow_refused() {
    let mut s = store();
    let g = s.genesis();
    let mut b = child(&s, &g, 1000, 1, vec![]);
    unmine(&mut b);
    assert_eq!(add(&mut s, b, 1000), Err(BlockError::BadPow));
    // An easier target than the rule's is refused even with valid PoW for it.
    let mut b = child(&s, &g, 1000, 1, vec![]);
    b.header.target = MAX_TARGET;
    assert_eq!(add(&mut s, b, 1000), Err(BlockError::WrongTarget));
    assert_eq!(s.tip().1, 0);
}

#[test]
fn bad_merkle_root_and_duplicate_tx_refused() {
    let mut s = store();
    let g = s.genesis();
    let mut b = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 1)]);
    b.header.merkle_root = [9; 32];
    mine_block(&mut b);
    assert_eq!(add(&mut s, b, 1000), Err(BlockError::BadMerkleRoot));
    // [a, b, c, c] has the same root as [a, b, c]: refused as a repeat.
    let txs = vec![DummyTx::new(1, 1), DummyTx::new(2, 1), DummyTx::new(3, 1)];
    let mut b = child(&s, &g, 1000, 1, txs);
    b.txs.push(DummyTx::new(3, 1));
    assert_eq!(
        add(&mut s, b, 1000),
        Err(BlockError::DuplicateTx { index: 3 })
    );
}

#[test]
fn invalid_tx_and_stale_seq_refused() {
    let mut s = store();
    let g = s.genesis();
    let reject_owner_7 = |t: &DummyTx| {
        if t.owner == [7; 32] {
            Err("bad signature".to_string())
        } else {
            Ok(())
        }
    };
    let b = child(
        &s,
        &g,
        1000,
        1,
        vec![DummyTx::new(1, 1), DummyTx::new(7, 1)],
    );
    assert_eq!(
        s.add_block(b, 1000, &reject_owner_7),
        Err(BlockError::InvalidTx {
            index: 1,
            reason: "bad signature".into()
        })
    );
    let b1 = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
    let h1 = b1.hash();
    add(&mut s, b1, 1000).unwrap_or_else(|e| panic!("{e}"));
    // Replay of seq 5 and an older seq 4: refused with the latest seq.
    for seq in [5, 4] {
        let mut tx = DummyTx::new(1, seq);
        tx.tag = 1;
        let b = child(&s, &h1, 2000, 1, vec![tx]);
        assert_eq!(
            add(&mut s, b, 2000),
            Err(BlockError::StaleSeq {
                index: 0,
                seq,
                latest: 5
            })
        );
    }
    // Within one block: seq must increase too.
    let mut second = DummyTx::new(2, 3);
    second.tag = 1;
    let b = child(&s, &h1, 2000, 1, vec![DummyTx::new(2, 3), second]);
    assert_eq!(
        add(&mut s, b, 2000),
        Err(BlockError::StaleSeq {
            index: 1,
            seq: 3,
            latest: 3
        })
    );
    let b = child(
        &s,
        &h1,
        2000,
        1,
        vec![DummyTx::new(2, 3), DummyTx::new(2, 4), DummyTx::new(1, 6)],
    );
    assert!(matches!(
        add(&mut s, b, 2000),
        Ok(AddOutcome::Extended { .. })
    ));
}

#[test]
fn seq_rule_follows_the_branch() {
    let mut s = store();
    let g = s.genesis();
    let a1 = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
    let h_a1 = a1.hash();
    add(&mut s, a1, 1000).unwrap_or_else(|e| panic!("{e}"));
    let a2 = child(&s, &h_a1, 2000, 1, vec![DummyTx::new(1, 9)]);
    add(&mut s, a2, 2000).unwrap_or_else(|e| panic!("{e}"));
    // From genesis, owner 1 has no tx: seq 1 is fine on that branch.
    let b1 = child(&s, &g, 1500, 2, vec![DummyTx::new(1, 1)]);
    let h_b1 = b1.hash();
    assert_eq!(add(&mut s, b1, 2000), Ok(AddOutcome::SideChain));
    // On b1, seq 1 is taken now.
    let b2 = child(&s, &h_b1, 2500, 2, vec![DummyTx::new(1, 1)]);
    assert!(matches!(
        add(&mut s, b2, 3000),
        Err(BlockError::StaleSeq { latest: 1, .. })
    ));
    // Forking off a1 (below the tip a2 with seq 9): seq 6 is above a1's 5.
    let c2 = child(&s, &h_a1, 2100, 3, vec![DummyTx::new(1, 6)]);
    let h_c2 = c2.hash();
    assert_eq!(add(&mut s, c2, 3000), Ok(AddOutcome::SideChain));
    let c3 = child(&s, &h_c2, 3100, 3, vec![DummyTx::new(1, 6)]);
    assert!(matches!(
        add(&mut s, c3, 4000),
        Err(BlockError::StaleSeq { latest: 6, .. })
    ));
}

#[test]
fn time_rules() {
    let mut s = store();
    let g = s.genesis();
    let b = child(&s, &g, 5001, 1, vec![]);
    assert_eq!(
        add(&mut s, b, 3000),
        Err(BlockError::TimeInFuture {
            time_ms: 5001,
            now_ms: 3000
        })
    );
    let b = child(&s, &g, 5000, 1, vec![]);
    assert!(add(&mut s, b, 3000).is_ok());
    // Not above the median time past: a block at the genesis time (0).
    let tip = s.tip().0;
    let mut b = s
        .template_on(&tip, 0, 1, vec![])
        .unwrap_or_else(|| panic!("tip"));
    b.header.time_ms = 0;
    mine_block(&mut b);
    assert_eq!(
        add(&mut s, b, 3000),
        Err(BlockError::TimeNotAboveMedian {
            time_ms: 0,
            median_ms: 5000
        })
    );
}

#[test]
fn orphans_connect_when_the_parent_arrives() {
    let mut src = store();
    let g = src.genesis();
    let hashes = branch(&mut src, g, (1000, 1000), 3, 1);
    let blocks: Vec<Block<DummyTx>> = hashes
        .iter()
        .filter_map(|h| src.block(h).cloned())
        .collect();
    let mut s = store();
    assert_eq!(
        add(&mut s, blocks[2].clone(), 10_000),
        Ok(AddOutcome::Orphan { missing: hashes[1] })
    );
    assert_eq!(
        add(&mut s, blocks[1].clone(), 10_000),
        Ok(AddOutcome::Orphan { missing: hashes[0] })
    );
    assert_eq!(
        add(&mut s, blocks[2].clone(), 10_000),
        Ok(AddOutcome::Duplicate)
    );
    assert_eq!(s.orphan_count(), 2);
    assert_eq!(
        add(&mut s, blocks[0].clone(), 10_000),
        Ok(AddOutcome::Extended {
            added: hashes.clone()
        })
    );
    assert_eq!(s.orphan_count(), 0);
    assert_eq!(s.tip(), (hashes[2], 3));
    let polled: Vec<Hash> = std::iter::from_fn(|| s.poll_connected()).collect();
    assert_eq!(polled, hashes);
}

#[test]
fn invalid_orphan_and_its_descendants_are_dropped() {
    let mut src = store();
    let g = src.genesis();
    let b1 = child(&src, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
    let h1 = b1.hash();
    add(&mut src, b1.clone(), 1000).unwrap_or_else(|e| panic!("{e}"));
    let b2 = child(&src, &h1, 2000, 1, vec![DummyTx::new(2, 1)]);
    let h2 = b2.hash();
    add(&mut src, b2.clone(), 2000).unwrap_or_else(|e| panic!("{e}"));
    let b3 = child(&src, &h2, 3000, 1, vec![]);
    add(&mut src, b3.clone(), 3000).unwrap_or_else(|e| panic!("{e}"));
    let mut s = store();
    add(&mut s, b3, 10_000).unwrap_or_else(|e| panic!("{e}"));
    add(&mut s, b2, 10_000).unwrap_or_else(|e| panic!("{e}"));
    // The receiver's validator refuses owner 2: b2 fails on connect, b3 goes with it.
    let no_owner_2 = |t: &DummyTx| {
        if t.owner == [2; 32] {
            Err("no".to_string())
        } else {
            Ok(())
        }
    };
    assert_eq!(
        s.add_block(b1, 10_000, &no_owner_2),
        Ok(AddOutcome::Extended { added: vec![h1] })
    );
    assert_eq!(s.orphan_count(), 0);
    assert_eq!(s.stats().orphans_rejected, 2);
}

#[test]
fn orphan_pool_is_bounded() {
    let config = ChainConfig {
        max_orphans: 4,
        ..easy_config()
    };
    let mut s: ChainStore<DummyTx> = ChainStore::new(config).unwrap_or_else(|e| panic!("{e}"));
    let g = s.genesis();
    let target = s.expected_target(&g).unwrap_or(MAX_TARGET);
    for i in 0..10u8 {
        let mut b = Block::new(
            BlockHeader {
                version: 1,
                prev: [i + 1; 32],
                merkle_root: [0; 32],
                time_ms: 1,
                target,
                miner: 0,
                nonce: 0,
            },
            vec![],
        );
        mine_block(&mut b);
        assert_eq!(
            add(&mut s, b, 0),
            Ok(AddOutcome::Orphan {
                missing: [i + 1; 32]
            })
        );
        assert!(s.orphan_count() <= 4);
    }
    assert_eq!(s.stats().orphans_evicted, 6);
    // A block claiming another genesis is refused, not pooled.
    let mut b = Block::new(
        BlockHeader {
            version: 1,
            prev: [0; 32],
            merkle_root: [0; 32],
            time_ms: 1,
            target,
            miner: 0,
            nonce: 0,
        },
        vec![],
    );
    mine_block(&mut b);
    assert_eq!(add(&mut s, b, 0), Err(BlockError::ForeignGenesis));
}

#[test]
fn reorg_to_more_work_rebuilds_search_table() {
    let mut s = store();
    let g = s.genesis();
    let a1 = child(
        &s,
        &g,
        1000,
        1,
        vec![DummyTx::new(1, 1), DummyTx::new(2, 1)],
    );
    let h_a1 = a1.hash();
    add(&mut s, a1, 5000).unwrap_or_else(|e| panic!("{e}"));
    let a2 = child(&s, &h_a1, 2000, 1, vec![DummyTx::new(1, 2)]);
    let h_a2 = a2.hash();
    add(&mut s, a2, 5000).unwrap_or_else(|e| panic!("{e}"));
    let b1 = child(&s, &g, 1100, 2, vec![DummyTx::new(3, 1)]);
    let h_b1 = b1.hash();
    assert_eq!(add(&mut s, b1, 5000), Ok(AddOutcome::SideChain));
    let b2 = child(&s, &h_b1, 2100, 2, vec![DummyTx::new(1, 7)]);
    let h_b2 = b2.hash();
    // Equal work: the lower hash is the tip, whichever came first.
    let outcome = add(&mut s, b2, 5000);
    if h_b2 < h_a2 {
        assert_eq!(
            outcome,
            Ok(AddOutcome::Reorg {
                removed: vec![h_a2, h_a1],
                added: vec![h_b1, h_b2]
            })
        );
        assert_eq!(s.tip(), (h_b2, 2));
    } else {
        assert_eq!(outcome, Ok(AddOutcome::SideChain));
        assert_eq!(s.tip(), (h_a2, 2));
    }
    let b3 = child(&s, &h_b2, 3100, 2, vec![]);
    let h_b3 = b3.hash();
    let expected = if h_b2 < h_a2 {
        AddOutcome::Extended { added: vec![h_b3] }
    } else {
        AddOutcome::Reorg {
            removed: vec![h_a2, h_a1],
            added: vec![h_b1, h_b2, h_b3],
        }
    };
    assert_eq!(add(&mut s, b3, 5000), Ok(expected));
    assert_eq!(s.tip(), (h_b3, 3));
    assert!(s.is_on_best_chain(&h_b1) && !s.is_on_best_chain(&h_a1));
    // The incrementally updated table equals one rebuilt from the best chain.
    let mut rebuilt = SearchTable::new();
    for h in 1..=3 {
        let hash = s.best_hash_at(h).unwrap_or_default();
        rebuilt.apply_block(
            h,
            &s.block(&hash).map(|b| b.txs.clone()).unwrap_or_default(),
        );
    }
    let t = s.search_table();
    assert_eq!(t.len(), rebuilt.len());
    for o in 1..=3u8 {
        let a = t.lookup(&[o; 32]).map(|(tx, h)| (tx.clone(), h));
        let b = rebuilt.lookup(&[o; 32]).map(|(tx, h)| (tx.clone(), h));
        assert_eq!(a, b, "owner {o}");
    }
    assert_eq!(t.lookup(&[1; 32]).map(|(tx, h)| (tx.seq, h)), Some((7, 2)));
    assert_eq!(t.lookup(&[2; 32]).map(|(tx, _)| tx.seq), None);
    assert_eq!(t.confirmations(1), 3);
    // Back again: a4 on a3 beats b3's work only with two more blocks.
    let a3 = branch(&mut s, h_a2, (3000, 1000), 2, 1);
    assert_eq!(s.tip(), (a3[1], 4));
    assert_eq!(
        s.search_table().lookup(&[2; 32]).map(|(tx, h)| (tx.seq, h)),
        Some((1, 1))
    );
}

#[test]
fn retarget_moves_toward_the_block_interval() {
    let config = ChainConfig {
        network_hash_rate: 64.0,
        ..ChainConfig::default()
    };
    let g_target = config.genesis::<DummyTx>().header.target;
    for (spacing, harder) in [(100u64, true), (3000, false), (1000, false)] {
        let mut s: ChainStore<DummyTx> = ChainStore::new(config).unwrap_or_else(|e| panic!("{e}"));
        let g = s.genesis();
        let hashes = branch(&mut s, g, (spacing, spacing), 9, 1);
        let tip = hashes[8];
        // Heights 1..9 keep the genesis target; height 10 retargets.
        assert_eq!(s.block(&tip).map(|b| b.header.target), Some(g_target));
        let next = s
            .expected_target(&tip)
            .unwrap_or_else(|| panic!("no target"));
        let (w_old, w_new) = (work(&g_target), work(&next));
        // 9 gaps of `spacing` ms against the unbiased expectation of 8 s.
        let close = |got: u128, num: u128, den: u128| {
            let want = w_old * num / den;
            got.abs_diff(want) <= (want / 1000).max(1)
        };
        match (spacing, harder) {
            (100, _) => assert_eq!(w_new, w_old * 4, "clamped to x4 harder"),
            (3000, _) => assert!(
                close(w_new, 8, 27),
                "27 s for 8 s expected: 27/8 easier, got {w_new} from {w_old}"
            ),
            _ => assert!(
                close(w_new, 8, 9),
                "9 gaps of 1 s: 9/8 easier (unbiased rule)"
            ),
        }
        // A block at height 10 with the old target is refused when the rule moved it.
        let mut b = s
            .template_on(&tip, spacing * 10, 1, vec![])
            .unwrap_or_else(|| panic!("tip"));
        b.header.target = g_target;
        b.header.nonce = mine(&b.header, 0, u64::MAX).map_or(0, |(n, _)| n);
        let r = add(&mut s, b, 1_000_000);
        if next == g_target {
            assert!(r.is_ok());
        } else {
            assert_eq!(r, Err(BlockError::WrongTarget));
        }
    }
}

#[test]
fn check_block_needs_a_known_parent() {
    let s = store();
    let g = s.genesis();
    let mut b = child(&s, &g, 1000, 1, vec![]);
    assert_eq!(s.check_block(&b, 1000, &ok), Ok(()));
    b.header.prev = [5; 32];
    mine_block(&mut b);
    assert_eq!(s.check_block(&b, 1000, &ok), Err(BlockError::UnknownParent));
}

#[test]
fn two_stores_seeing_competing_blocks_in_opposite_order_agree_on_the_lower_hash() {
    let (mut s1, mut s2) = (store(), store());
    let g = s1.genesis();
    let a = child(&s1, &g, 1000, 1, vec![DummyTx::new(1, 1)]);
    let b = child(&s1, &g, 1001, 2, vec![DummyTx::new(2, 1)]);
    let (ha, hb) = (a.hash(), b.hash());
    assert_ne!(ha, hb);
    add(&mut s1, a.clone(), 5000).unwrap_or_else(|e| panic!("{e}"));
    add(&mut s1, b.clone(), 5000).unwrap_or_else(|e| panic!("{e}"));
    add(&mut s2, b, 5000).unwrap_or_else(|e| panic!("{e}"));
    add(&mut s2, a, 5000).unwrap_or_else(|e| panic!("{e}"));
    // With first-seen, s1 would keep `a` and s2 `b`.
    assert_eq!(s1.tip(), s2.tip());
    assert_eq!(s1.tip(), (ha.min(hb), 1));
}

#[test]
fn a_block_above_max_block_txs_is_refused_and_one_at_the_limit_has_provable_txs() {
    let mut s = ChainStore::new(ChainConfig {
        max_block_bytes: 1_000_000,
        ..easy_config()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let g = s.genesis();
    let txs = |n: usize| {
        (0..n)
            .map(|i| DummyTx::new(i as u8, i as u64 + 1))
            .collect()
    };
    let over = child(&s, &g, 1000, 1, txs(MAX_BLOCK_TXS + 1));
    assert!(over.encoded_len() < 1_000_000);
    assert!(matches!(
        add(&mut s, over, 5000),
        Err(BlockError::Oversized { .. })
    ));
    let full = child(&s, &g, 1000, 1, txs(MAX_BLOCK_TXS));
    let ids: Vec<Hash> = full.txs.iter().map(ChainTx::id).collect();
    add(&mut s, full, 5000).unwrap_or_else(|e| panic!("{e}"));
    let path = crate::chain::merkle::merkle_path(&ids, MAX_BLOCK_TXS - 1)
        .unwrap_or_else(|| panic!("no path"));
    assert_eq!(path.len(), binfm_stack::wire::binfm::MAX_PROOF_DEPTH);
}
