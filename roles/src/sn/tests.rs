//! Unit tests of the super node.

use super::*;
use crate::chain::BlockHeader;
use crate::wallet::Wallet;
use std::net::Ipv4Addr;

const EN_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), 7401);
const SN_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 7400);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), 7400);

fn sn() -> SuperNode {
    let chain = ChainConfig {
        network_hash_rate: 2000.0,
        ..ChainConfig::default()
    };
    let mut s = SuperNode::new(SnConfig::new(1, vec![PEER], 2000.0, chain), 7).unwrap();
    s.start(Time::ZERO);
    s
}

fn wallet() -> Wallet {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut w = Wallet::from_seed([7; 32], &mut rng);
    // An EN on the public segment: its own address is its public endpoint.
    w.set_addresses(EN_ADDR, EN_ADDR);
    w
}

/// Feeds a message from `from`, returns the TxAck status sent back (if any) and the events.
fn submit(
    s: &mut SuperNode,
    now: Time,
    from: SocketAddrV4,
    msg: Message,
) -> (Option<TxStatus>, Vec<SnEvent>) {
    s.handle_datagram(now, from, SN_ADDR, &msg.to_bytes());
    let mut status = None;
    while let Some(t) = s.poll_transmit() {
        if let (true, Ok(Message::TxAck { status: st, .. })) =
            (t.dst == from, Message::parse(&t.payload))
        {
            status = Some(st);
        }
    }
    (status, std::iter::from_fn(|| s.poll_event()).collect())
}

fn run_until_confirmed(s: &mut SuperNode, owner: [u8; 32], seq: u64) -> Time {
    for _ in 0..200 {
        let Some(now) = s.poll_timeout() else { break };
        s.handle_timeout(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
        if s.chain()
            .lookup(&owner)
            .is_some_and(|(tx, _)| tx.out.seq == seq)
        {
            return now;
        }
    }
    panic!("seq {seq} never confirmed");
}

#[test]
fn registration_is_accepted_relayed_mined_and_queried() {
    let mut s = sn();
    let mut w = wallet();
    let tx = w.next_tx(0);
    s.handle_datagram(
        Time::ZERO,
        EN_ADDR,
        SN_ADDR,
        &Message::TxSubmit { tx: tx.clone() }.to_bytes(),
    );
    let sent: Vec<Transmit> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(
        sent.iter()
            .any(|t| t.dst == PEER
                && matches!(Message::parse(&t.payload), Ok(Message::TxRelay { .. }))),
        "relayed to the peer"
    );
    assert!(sent.iter().any(|t| t.dst == EN_ADDR
        && matches!(
            Message::parse(&t.payload),
            Ok(Message::TxAck {
                status: TxStatus::Accepted,
                ..
            })
        )));
    run_until_confirmed(&mut s, w.hash_addr(), 1);
    s.handle_datagram(
        Time::from_secs(60),
        EN_ADDR,
        SN_ADDR,
        &Message::Query {
            request_id: 5,
            hash_addr: w.hash_addr(),
            want_unconfirmed: false,
        }
        .to_bytes(),
    );
    let reply = s.poll_transmit().map(|t| Message::parse(&t.payload));
    match reply {
        Some(Ok(Message::Reply {
            request_id: 5,
            found: true,
            tx: Some(got),
            ..
        })) => assert_eq!(got, tx),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn replayed_forged_and_misplaced_txs_are_refused_with_reasons() {
    let mut s = sn();
    let mut w = wallet();
    let tx1 = w.next_tx(0);
    let tx2 = w.next_tx(1);
    assert_eq!(
        submit(
            &mut s,
            Time::ZERO,
            EN_ADDR,
            Message::TxSubmit { tx: tx2.clone() }
        )
        .0,
        Some(TxStatus::Accepted)
    );
    run_until_confirmed(&mut s, w.hash_addr(), 2);
    let now = Time::from_secs(60);
    // The same Tx again: a retransmission, answered as a duplicate.
    assert_eq!(
        submit(&mut s, now, EN_ADDR, Message::TxSubmit { tx: tx2.clone() }).0,
        Some(TxStatus::Duplicate)
    );
    // An older, genuinely signed Tx replayed: refused as stale, with a reason.
    let (st, ev) = submit(&mut s, now, EN_ADDR, Message::TxSubmit { tx: tx1 });
    assert_eq!(st, Some(TxStatus::Rejected(reject::STALE_SEQ)));
    assert!(
        ev.iter().any(|e| matches!(e, SnEvent::Drop {
            reason: "tx_refused",
            sample: DropSample::TxRefused { error, .. },
            ..
        } if error.contains("seq"))),
        "{ev:?}"
    );
    // A forged signature.
    let mut forged = w.next_tx(2);
    forged.signature[0] ^= 1;
    assert_eq!(
        submit(&mut s, now, EN_ADDR, Message::TxSubmit { tx: forged }).0,
        Some(TxStatus::Rejected(reject::BAD_SIGNATURE))
    );
    // A Tx claiming an endpoint it was not sent from: the SN reports what it saw.
    let honest = w.next_tx(3);
    let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 60), 999);
    assert_eq!(
        submit(&mut s, now, other, Message::TxSubmit { tx: honest }).0,
        Some(TxStatus::EndpointMismatch)
    );
    // A relayed Tx from a host that is not a peer SN is not taken.
    let (_, ev) = submit(&mut s, now, other, Message::TxRelay { tx: tx2 });
    assert!(ev.iter().any(|e| matches!(
        e,
        SnEvent::Drop {
            reason: "unexpected",
            ..
        }
    )));
    assert_eq!(
        s.refused,
        BTreeMap::from([
            ("tx_bad_signature", 1),
            ("tx_refused", 1),
            ("unexpected", 1)
        ])
    );
}

#[test]
fn a_flood_is_counted_limited_and_reported_once_per_second_per_reason() {
    let mut s = sn();
    let mut w = wallet();
    let mut bad = w.next_tx(0);
    bad.signature[5] ^= 0x40;
    let bad = Message::TxSubmit { tx: bad }.to_bytes();
    let unknown = |i: u32| {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_be_bytes());
        Message::Query {
            request_id: i,
            hash_addr: h,
            want_unconfirmed: false,
        }
        .to_bytes()
    };
    let src = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 + (i % 250) + 1), 5000);
    let mut sent = 0u64;
    let mut answers = 0u64;
    let mut drops = Vec::new();
    // 3 s of flood, 3000 datagrams per second, from 250 sources.
    for i in 0..9000u32 {
        let now = Time::from_micros(u64::from(i) * 333);
        let from = src(i);
        let data = match i % 3 {
            0 => vec![0x42, 0x46, 1, 99, 1, 2, 3],
            1 => bad.clone(),
            _ => unknown(i),
        };
        s.handle_datagram(now, from, SN_ADDR, &data);
        sent += 1;
        answers += std::iter::from_fn(|| s.poll_transmit())
            .filter(|t| t.dst == from)
            .count() as u64;
        drops.extend(std::iter::from_fn(|| s.poll_event()).filter(|e| e.kind() == "sn.drop"));
    }
    // One source far above its limits.
    let hog = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 99), 1);
    let now = Time::from_secs(3);
    for i in 0..300u32 {
        s.handle_datagram(now, hog, SN_ADDR, &bad);
        s.handle_datagram(now, hog, SN_ADDR, &unknown(i));
        sent += 2;
    }
    drops.extend(std::iter::from_fn(|| s.poll_event()).filter(|e| e.kind() == "sn.drop"));
    let hog_answers = std::iter::from_fn(|| s.poll_transmit())
        .filter(|t| t.dst == hog)
        .count() as u64;

    let total: u64 = s.refused.values().sum();
    assert_eq!(total, sent, "every datagram counted: {:?}", s.refused);
    assert_eq!(s.refused["malformed"], 3000);
    let r = |k: &str| s.refused.get(k).copied().unwrap_or(0);
    assert_eq!(r("tx_bad_signature") + r("tx_rate_limited"), 3300);
    assert_eq!(r("query_unknown_address") + r("query_rate_limited"), 3300);
    assert_eq!(
        r("tx_rate_limited"),
        300 - 20,
        "the hog gets its Tx burst only"
    );
    assert_eq!(r("query_rate_limited"), 300 - 100, "and its Query burst");
    // Verified and answered: a rejection TxAck or a NotFound Reply, never more.
    assert_eq!(answers, 6000);
    assert_eq!(hog_answers, 120);
    // Reported at most once per reason per second (4 seconds: 0, 1, 2, 3), and the
    // reported counts add up to what was counted.
    let reasons: BTreeMap<String, (usize, u64)> = drops.iter().fold(BTreeMap::new(), |mut m, e| {
        let SnEvent::Drop { reason, count, .. } = e else {
            return m;
        };
        let (k, c) = (reason.to_string(), *count);
        let v = m.entry(k).or_insert((0, 0));
        v.0 += 1;
        v.1 += c;
        m
    });
    assert!(reasons.values().all(|&(n, _)| n <= 4), "{reasons:?}");
    assert!(
        reasons["malformed"].1 <= 3000 && reasons["malformed"].1 >= 2000,
        "{reasons:?}"
    );
    // Nothing the flood sent was kept, except rate state within its bound.
    let m = s.memory();
    assert!(m.within_limits(), "{m:?}");
    assert_eq!((m.mempool_txs, m.orphans, m.reassembly_blocks), (0, 0, 0));
    assert_eq!(m.tx_limit_sources, 251);
    assert!(m.bytes() <= m.bytes_bound());
}

#[test]
fn a_block_with_bad_pow_is_rejected_with_a_reason() {
    let mut s = sn();
    let (tip, _) = s.chain().tip();
    let header = BlockHeader {
        version: crate::chain::BLOCK_VERSION,
        prev: tip,
        merkle_root: [0; 32],
        time_ms: 10,
        target: s.chain().store().expected_target(&tip).unwrap(),
        miner: 9,
        nonce: 0,
    };
    let mut block: Block<ToallTx> = Block::new(header, vec![]);
    // Find a nonce that does NOT meet the target.
    while pow::meets_target(&block.hash(), &block.header.target) {
        block.header.nonce += 1;
    }
    let bytes = block.encode();
    for part in split_block(block.hash(), &bytes).unwrap() {
        s.handle_datagram(Time::from_millis(20), PEER, SN_ADDR, &part.to_bytes());
    }
    let ev: Vec<SnEvent> = std::iter::from_fn(|| s.poll_event()).collect();
    let rej = ev
        .iter()
        .find_map(|e| match e {
            SnEvent::BlockRejected { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("rejected");
    assert!(rej.to_lowercase().contains("work"), "{rej:?}");
    assert_eq!(s.chain().tip().0, tip);
}

mod unconfirmed_tests {
    use super::*;
    use crate::wallet::Wallet;
    use std::net::Ipv4Addr;

    #[test]
    fn reply_carries_the_pending_tx_only_when_enabled_and_asked() {
        let en = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), 7401);
        let me = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 7400);
        for (enabled, asked, expect) in [
            (false, true, false),
            (true, false, false),
            (true, true, true),
        ] {
            let chain = ChainConfig {
                network_hash_rate: 2000.0,
                ..ChainConfig::default()
            };
            let mut cfg = SnConfig::new(1, vec![], 2000.0, chain);
            cfg.reply_unconfirmed = enabled;
            cfg.mine = false;
            let mut s = SuperNode::new(cfg, 1).unwrap();
            s.start(Time::ZERO);
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut w = Wallet::from_seed([5; 32], &mut rng);
            w.set_addresses(en, en);
            let tx = w.next_tx(0);
            s.handle_datagram(
                Time::ZERO,
                en,
                me,
                &Message::TxSubmit { tx: tx.clone() }.to_bytes(),
            );
            while s.poll_transmit().is_some() {}
            let q = Message::Query {
                request_id: 1,
                hash_addr: w.hash_addr(),
                want_unconfirmed: asked,
            };
            s.handle_datagram(Time::from_millis(10), en, me, &q.to_bytes());
            match s.poll_transmit().map(|t| Message::parse(&t.payload)) {
                Some(Ok(Message::Reply {
                    found,
                    tx: None,
                    unconfirmed,
                    ..
                })) => {
                    assert_eq!(
                        unconfirmed.is_some(),
                        expect,
                        "enabled {enabled}, asked {asked}"
                    );
                    assert_eq!(
                        found, expect,
                        "only a pending Tx: found only if it is returned"
                    );
                    if let Some(u) = unconfirmed {
                        assert_eq!(u, tx);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn a_reply_with_a_deep_proof_leaves_the_unconfirmed_tx_out_and_fits_1280_bytes() {
    let mut w = wallet();
    let (confirmed, pending) = (w.next_tx(0), w.next_tx(0));
    let reply = |depth: usize| Message::Reply {
        request_id: 1,
        hash_addr: w.hash_addr(),
        found: true,
        height: 3,
        confirmations: 1,
        tx: Some(confirmed.clone()),
        unconfirmed: Some(pending.clone()),
        proof: Some(TxProof {
            header: [0; binfm_stack::wire::binfm::BLOCK_HEADER_LEN],
            index: 0,
            siblings: vec![[1; 32]; depth],
        }),
    };
    for depth in [0, 8, 9, MAX_PROOF_DEPTH] {
        let mut r = reply(depth);
        fit_reply(&mut r);
        assert!(r.buffer_len() <= MAX_REPLY_LEN, "depth {depth}");
        let Message::Reply {
            unconfirmed, proof, ..
        } = &r
        else {
            unreachable!()
        };
        assert_eq!(unconfirmed.is_some(), depth <= 8, "depth {depth}");
        assert_eq!(proof.as_ref().map(|p| p.siblings.len()), Some(depth));
    }
}

#[test]
fn a_burst_handled_at_once_gives_what_handling_each_datagram_gives() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let crowd = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 7401);
    let mut burst: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
    let mut owners = Vec::new();
    for i in 0..40u32 {
        let mut seed = [3u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let mut w = Wallet::from_seed(seed, &mut rng);
        // The first 30 from distinct addresses; the last 10 share one with 20 more below.
        let ep = if i < 30 {
            SocketAddrV4::new(Ipv4Addr::from(0x0a00_0100 + i), 7401)
        } else {
            crowd
        };
        w.set_addresses(ep, ep);
        let mut tx = w.next_tx(0);
        if i == 7 {
            tx.signature[3] ^= 1; // a bad signature inside the batch
        }
        owners.push(w.hash_addr());
        burst.push((ep, Message::TxSubmit { tx }.to_bytes()));
        if i == 12 {
            burst.push((EN_ADDR, vec![0xde, 0xad]));
            let q = Message::Query {
                request_id: 5,
                hash_addr: owners[3],
                want_unconfirmed: true,
            };
            burst.push((EN_ADDR, q.to_bytes()));
        }
        if i == 20 {
            // A relayed Tx from the peer SN.
            let mut r = Wallet::from_seed([0x44; 32], &mut rng);
            r.set_addresses(EN_ADDR, EN_ADDR);
            burst.push((PEER, Message::TxRelay { tx: r.next_tx(0) }.to_bytes()));
        }
    }
    // 20 more from the shared address: past its burst of 20, the limit refuses some.
    for i in 0..20u32 {
        let mut seed = [5u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let mut w = Wallet::from_seed(seed, &mut rng);
        w.set_addresses(crowd, crowd);
        burst.push((crowd, Message::TxSubmit { tx: w.next_tx(0) }.to_bytes()));
    }
    let outputs = |s: &mut SuperNode| {
        let tx: Vec<_> = std::iter::from_fn(|| s.poll_transmit())
            .map(|t| (t.dst, t.payload))
            .collect();
        let ev: Vec<_> = std::iter::from_fn(|| s.poll_event())
            .map(|e| format!("{e:?}"))
            .collect();
        (tx, ev, s.refused.clone())
    };
    let now = Time::from_millis(50);
    let mut one = sn();
    for (from, data) in &burst {
        one.handle_datagram(now, *from, SN_ADDR, data);
    }
    let mut all = sn();
    let refs: Vec<(SocketAddrV4, &[u8])> = burst.iter().map(|(f, d)| (*f, &d[..])).collect();
    all.handle_datagrams(now, &refs);
    let (a, b) = (outputs(&mut one), outputs(&mut all));
    assert_eq!(a, b);
    assert_eq!(a.2.get("tx_rate_limited"), Some(&10), "{:?}", a.2);
    assert_eq!(a.2.get("tx_bad_signature"), Some(&1), "{:?}", a.2);
    assert_eq!(a.2.get("malformed"), Some(&1), "{:?}", a.2);
    // 60 submitted, 1 bad signature, 10 over the limit; plus the relayed one.
    assert_eq!(one.chain().mempool().len(), 60 - 1 - 10 + 1);
}

#[test]
fn per_source_limits_set_the_rate_and_a_burst_of_twice_it_and_leave_a_disabled_limit_off() {
    let mut cfg = SnConfig::new(1, vec![], 1.0, ChainConfig::default());
    cfg.set_per_source_limits(Some(200), None);
    let tx = cfg.tx_limit.expect("on by default");
    assert_eq!((tx.rate_per_s, tx.burst), (200, 400));
    assert_eq!(
        cfg.query_limit,
        Some(DEFAULT_QUERY_LIMIT),
        "None keeps the default"
    );
    cfg.query_limit = None;
    cfg.set_per_source_limits(None, Some(500));
    assert_eq!(cfg.query_limit, None);
}
