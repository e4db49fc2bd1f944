//! End-node tests: floods, forged Replies and forged Key Renewals.

use super::*;
use crate::call::CallState;
use crate::call_events::CallEvent;
use binfm_stack::wire::binfm::{TxProof, TxStatus, signing_input};
use ed25519_dalek::{Signer, SigningKey};
use rand_chacha::ChaCha8Rng;
use std::net::Ipv4Addr;
use std::time::Duration;

const SN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), ports::SN);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);

/// A super node's chain for tests: Txs go into mined blocks (an easy target), Replies carry
/// real proofs, and the ENs are given the headers as an SN would push them.
pub(super) struct TestChain {
    pub(super) chain: crate::chain::Chain<ToallTx>,
    time_ms: u64,
}

impl TestChain {
    pub(super) fn new() -> Self {
        let chain = crate::chain::Chain::new(
            crate::chain::test_util::easy_config(),
            crate::chain::MempoolConfig::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        TestChain { chain, time_ms: 0 }
    }

    /// An EN following this chain.
    pub(super) fn en(&self, wallet: Wallet, seed: u8, tone: f64) -> EndNode {
        let mut en = EndNode::new(wallet, ports::EN, [seed; 32], tone);
        en.set_chain_config(crate::chain::test_util::easy_config());
        en
    }

    /// Mines a block holding `txs` on the tip; returns its header.
    pub(super) fn mine(&mut self, txs: Vec<ToallTx>) -> crate::chain::BlockHeader {
        self.time_ms += 10;
        for tx in txs {
            let _ = self.chain.add_tx(tx, self.time_ms, &crate::sn::validate_tx);
        }
        let mut block = self.chain.block_template(self.time_ms, 1, 100);
        let (nonce, _) = crate::chain::pow::mine(&block.header, 0, 1 << 24)
            .unwrap_or_else(|| panic!("easy target"));
        block.header.nonce = nonce;
        let header = block.header;
        self.chain
            .add_block(block, self.time_ms, &crate::sn::validate_tx)
            .unwrap_or_else(|e| panic!("{e}"));
        header
    }

    /// The Headers push of the newest block.
    pub(super) fn push(&self) -> Vec<u8> {
        let (tip, _) = self.chain.tip();
        let headers = self
            .chain
            .block(&tip)
            .map(|b| vec![b.header.encode()])
            .unwrap_or_default();
        Message::Headers { headers }.to_bytes()
    }

    /// The SN's Reply, with the proof of the latest confirmed Tx.
    pub(super) fn reply(&self, request_id: u32, hash_addr: HashAddr) -> Message {
        let found = self.chain.lookup_with_proof(&hash_addr);
        Message::Reply {
            request_id,
            hash_addr,
            found: found.is_some(),
            height: found.as_ref().map_or(0, |f| f.1),
            confirmations: 1,
            proof: found
                .as_ref()
                .map(|(_, _, h, i, path)| binfm_stack::wire::binfm::TxProof {
                    header: h.encode(),
                    index: *i as u16,
                    siblings: path.clone(),
                }),
            tx: found.map(|f| f.0.clone()),
            unconfirmed: None,
        }
    }
}

fn wallet(seed: u8, at: SocketAddrV4) -> Wallet {
    let mut w = Wallet::from_seed([seed; 32], &mut ChaCha8Rng::seed_from_u64(seed.into()));
    w.set_addresses(at, at);
    w
}

/// Answers every Query the EN sent from `chain`; returns how many.
fn answer_queries(en: &mut EndNode, now: Time, chain: &TestChain) -> usize {
    let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
    let mut n = 0;
    for t in sent {
        if let Ok(Message::Query {
            request_id,
            hash_addr,
            ..
        }) = Message::parse(&t.payload)
        {
            let reply = chain.reply(request_id, hash_addr);
            en.handle_datagram(now, SN, SocketAddrV4::new(ME, ports::EN), &reply.to_bytes());
            n += 1;
        }
    }
    n
}

#[test]
fn a_session_request_flood_cannot_grow_the_call_list() {
    let me = SocketAddrV4::new(ME, ports::EN);
    let mut chain = TestChain::new();
    let mut en = chain.en(wallet(1, me), 1, 440.0);
    en.on_address(Time::ZERO, ME, None, vec![SN]);
    let target = en.hash_addr();
    let spoofer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 4000);
    let request = |key: &SigningKey, i: u32| signed_request(key, target, i);
    // 1000 signed requests from made-up callers (fresh keys), from as many sources: each is
    // looked up, not found, and ends; the list keeps at most MAX_CALLS, forgetting the
    // oldest ended calls.
    for i in 0..1000u32 {
        let now = Time::from_millis(u64::from(i));
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 4000);
        en.handle_datagram(now, from, me, &request(&SigningKey::from_bytes(&seed), i));
        answer_queries(&mut en, now, &chain);
        assert!(en.calls().len() <= MAX_CALLS);
    }
    assert_eq!(en.calls().len(), MAX_CALLS);
    assert!(en.calls().iter().all(|c| c.state == CallState::Ended));
    assert_eq!(en.calls_refused, 0);
    // Requests naming a real, registered identity become live calls (the callee cannot
    // tell a spoofed request before the key confirmation): past MAX_CALLS live ones, new
    // requests are refused and counted, with events on the 1st, 10th, 100th refusal.
    // (Here the real identity signs each of them: a replayed request is refused, and each
    // needs a new nonce. The per-caller and per-source limits are spaced out.)
    let real_key = SigningKey::from_bytes(&[2; 32]);
    let real = wallet(
        2,
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN),
    );
    let real_tx = {
        let mut w = real;
        (w.hash_addr(), w.next_tx(0))
    };
    let _ = spoofer;
    chain.mine(vec![real_tx.1.clone()]);
    en.handle_datagram(Time::from_secs(10), SN, me, &chain.push());
    while en.poll_event().is_some() {}
    for i in 0..(MAX_CALLS as u32 + 150) {
        let now = Time::from_secs(10) + Time::from_millis(600 * u64::from(i));
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i), 4000);
        en.handle_datagram(now, from, me, &request(&real_key, 10_000 + i));
        answer_queries(&mut en, now, &chain);
        assert!(en.calls().len() <= MAX_CALLS);
    }
    let live = en
        .calls()
        .iter()
        .filter(|c| c.state != CallState::Ended)
        .count();
    assert_eq!(live, MAX_CALLS);
    assert_eq!(en.calls_refused, 150);
    let reports = drain(&mut en, |e| match e.downcast_ref()? {
        CallEvent::Refused { .. } => Some(()),
        _ => None,
    })
    .len();
    assert_eq!(reports, 3, "1st, 10th and 100th refusal");
}

/// A Session Request to `callee` signed by `key` (nonce and SSRC from `i`), with valid
/// group-14 values (in range; no modexp needed to make them).
fn signed_request(key: &SigningKey, callee: HashAddr, i: u32) -> Vec<u8> {
    let pk = key.verifying_key().to_bytes();
    let mut nonce = [0u8; 16];
    nonce[..4].copy_from_slice(&i.to_be_bytes());
    let mut msg = Message::SessionRequest {
        caller: crate::wallet::hash_addr_of(&pk),
        callee,
        nonce,
        ssrc: i,
        ephemeral: vec![3; 256],
        next: vec![4; 256],
        public_key: pk,
        signature: [0; 64],
    };
    let sig = key.sign(&signing_input(&msg)).to_bytes();
    if let Message::SessionRequest { signature, .. } = &mut msg {
        *signature = sig;
    }
    msg.to_bytes()
}

/// Drains the node's events and keeps what `pick` finds in them, in order.
fn drain<T>(en: &mut EndNode, pick: impl Fn(&Event) -> Option<T>) -> Vec<T> {
    std::iter::from_fn(|| en.poll_event())
        .filter_map(|e| pick(&e))
        .collect()
}

/// The reason of an `en.reply_rejected`.
fn reply_rejected(e: &Event) -> Option<String> {
    match e.downcast_ref()? {
        EnEvent::ReplyRejected { reason, .. } => Some(reason.clone()),
        _ => None,
    }
}

/// The sender of an `en.unexpected`.
fn unexpected(e: &Event) -> Option<SocketAddrV4> {
    match e.downcast_ref()? {
        EnEvent::Unexpected { from } => Some(*from),
        _ => None,
    }
}

/// The reason of a `call.rekey_rejected`.
fn rekey_rejected(e: &Event) -> Option<&'static str> {
    match e.downcast_ref()? {
        CallEvent::RekeyRejected { reason, .. } => Some(*reason),
        _ => None,
    }
}

/// Whether `e` is a `call.rekey_accepted`.
fn rekey_accepted(e: &Event) -> bool {
    matches!(e.downcast_ref(), Some(CallEvent::RekeyAccepted { .. }))
}

/// Attack 1, EN side: a Reply (from the SN's address: a lying SN, or a spoofer) whose Tx
/// is forged, or belongs to another hash address than the one asked, is refused; the
/// lookup stays pending, the call does not use the Tx, and the genuine Reply still works.
#[test]
fn a_reply_with_a_forged_or_foreign_tx_is_refused_and_the_call_waits_for_the_real_one() {
    let me = SocketAddrV4::new(ME, ports::EN);
    let mut chain = TestChain::new();
    let mut en = chain.en(wallet(1, me), 1, 440.0);
    en.on_address(Time::ZERO, ME, None, vec![SN]);
    let peer_at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let mut peer = wallet(2, peer_at);
    let (peer_addr, peer_tx) = (peer.hash_addr(), peer.next_tx(0));
    let evil_at = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
    let mut other = wallet(3, evil_at);
    let (other_addr, other_tx) = (other.hash_addr(), other.next_tx(0));
    // Both Txs are in block 1; the EN has its header.
    chain.mine(vec![peer_tx.clone(), other_tx.clone()]);
    en.handle_datagram(Time::ZERO, SN, me, &chain.push());
    while en.poll_transmit().is_some() {}
    en.call(Time::ZERO, peer_addr);
    let rid = std::iter::from_fn(|| en.poll_transmit())
        .find_map(|t| match Message::parse(&t.payload) {
            Ok(Message::Query {
                request_id,
                hash_addr,
                ..
            }) if hash_addr == peer_addr => Some(request_id),
            _ => None,
        })
        .expect("the call queries the peer");
    while en.poll_event().is_some() {}
    let reply = |hash_addr: HashAddr, tx: ToallTx| Message::Reply {
        request_id: rid,
        hash_addr,
        found: true,
        height: 1,
        confirmations: 6,
        tx: Some(tx),
        unconfirmed: None,
        proof: None,
    };
    let genuine_msg = chain.reply(rid, peer_addr);
    let Message::Reply {
        proof: Some(genuine_proof),
        ..
    } = &genuine_msg
    else {
        panic!("the chain proves the peer's Tx");
    };
    let with_proof = |tx: ToallTx, p: TxProof| Message::Reply {
        request_id: rid,
        hash_addr: peer_addr,
        found: true,
        height: 1,
        confirmations: 6,
        tx: Some(tx),
        unconfirmed: None,
        proof: Some(p),
    };
    // The proof of the other Tx of the block (another index) for the peer's Tx.
    let mut other_index = genuine_proof.clone();
    other_index.index ^= 1;
    // A block header of a chain the EN does not follow: same Tx and root, another parent.
    let mut foreign = genuine_proof.clone();
    foreign.header[4] ^= 1; // `prev`
    // The genuine header with an easier target: its proof of work no longer counts.
    let mut easier = genuine_proof.clone();
    easier.header[76..108].fill(0xff);

    // The peer's Tx moved to the attacker's endpoint, signature kept: bad signature.
    let mut moved = peer_tx.clone();
    moved.out.nat_ip = *evil_at.ip();
    moved.out.nat_port = evil_at.port();
    // The peer's Tx with one signature bit flipped.
    let mut bad_sig = peer_tx.clone();
    bad_sig.signature[0] ^= 1;
    // The attacker's own Tx relabelled with the peer's hash address (its own key kept):
    // the key does not hash to the address.
    let mut relabelled = other_tx.clone();
    relabelled.out.hash_addr = peer_addr;
    let forged = [
        (
            reply(peer_addr, moved),
            "Tx signature does not verify".to_owned(),
        ),
        (
            reply(peer_addr, bad_sig),
            "Tx signature does not verify".to_owned(),
        ),
        (
            reply(peer_addr, relabelled),
            "Tx hash address is not SHA-256 of its public key".to_owned(),
        ),
        // A valid Tx of another identity, in a Reply naming the peer.
        (
            reply(peer_addr, other_tx.clone()),
            "Tx belongs to another hash address".to_owned(),
        ),
        // A valid Reply about another identity, with our request id.
        (
            reply(other_addr, other_tx.clone()),
            "reply names another hash address".to_owned(),
        ),
        // The genuine Tx without the proof that it is in a block.
        (
            reply(peer_addr, peer_tx.clone()),
            "confirmed Tx without a proof".to_owned(),
        ),
        (
            with_proof(peer_tx.clone(), other_index),
            "Merkle proof does not lead to the block's root".to_owned(),
        ),
        (
            with_proof(peer_tx.clone(), foreign),
            "any: a header that is not on the EN's chain".to_owned(),
        ),
        (
            with_proof(peer_tx.clone(), easier),
            "proof block header: target not the expected one".to_owned(),
        ),
    ];
    for (msg, why) in &forged {
        en.handle_datagram(Time::from_millis(10), SN, me, &msg.to_bytes());
        let got = drain(&mut en, reply_rejected);
        if why.starts_with("any") {
            assert_eq!(got.len(), 1, "{why}: {got:?}");
        } else {
            assert_eq!(got, vec![why.clone()]);
        }
        // A header sync the forgery started is not a Session Request.
        while let Some(t) = en.poll_transmit() {
            assert!(
                matches!(Message::parse(&t.payload), Ok(Message::GetHeaders { .. })),
                "{why}: only a header request may leave"
            );
        }
        assert!(en.poll_lookup().is_none(), "{why}: no lookup result");
        assert_eq!(
            en.calls()[0].state,
            CallState::LookingUp(rid),
            "{why}: still waiting"
        );
        assert!(en.calls()[0].peer_y().is_none(), "{why}: no key taken");
        assert!(en.poll_transmit().is_none(), "{why}: no Session Request");
    }
    // A forged Reply from anyone but the SN is not even looked at.
    let genuine = genuine_msg.to_bytes();
    en.handle_datagram(Time::from_millis(10), evil_at, me, &genuine);
    assert_eq!(drain(&mut en, unexpected).len(), 1);
    assert_eq!(en.calls()[0].state, CallState::LookingUp(rid));

    // The genuine Reply: the call goes on, to the registered endpoint, with the peer's Y.
    en.handle_datagram(Time::from_millis(20), SN, me, &genuine);
    let (id, addr, info) = en.poll_lookup().expect("lookup done");
    assert_eq!((id, addr), (rid, peer_addr));
    assert_eq!(info.map(|i| i.tx), Some(peer_tx.clone()));
    assert_eq!(en.calls()[0].state, CallState::Requesting);
    assert_eq!(en.calls()[0].peer_y(), Some(&peer_tx.out.y[..]));
    let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
    assert!(sent.iter().any(|t| t.dst == peer_at
        && matches!(
            Message::parse(&t.payload),
            Ok(Message::SessionRequest { callee, .. }) if callee == peer_addr
        )));
    assert!(sent.iter().all(|t| t.dst != evil_at));
    // A late forgery for the finished lookup is ignored.
    en.handle_datagram(Time::from_millis(30), SN, me, &forged[0].0.to_bytes());
    assert!(drain(&mut en, reply_rejected).is_empty());
    assert_eq!(en.calls()[0].peer_addr, Some(peer_at));
}

/// Delivers everything `a` and `b` send, playing the SN (a TxSubmit acknowledged and mined
/// into a block at once, its header pushed to both; Queries and GetHeaders answered from the
/// chain), until nothing is in flight.
fn pump(a: &mut EndNode, b: &mut EndNode, now: Time, chain: &mut TestChain) {
    for _ in 0..100 {
        let mut sent = Vec::new();
        for (i, en) in [&mut *a, &mut *b].into_iter().enumerate() {
            let ip = en.private.map_or(Ipv4Addr::UNSPECIFIED, |p| *p.ip());
            for t in std::iter::from_fn(|| en.poll_transmit()) {
                sent.push((i, SocketAddrV4::new(ip, t.src_port), t));
            }
        }
        if sent.is_empty() {
            return;
        }
        for (i, from, t) in sent {
            if t.dst == SN {
                let answer = match Message::parse(&t.payload) {
                    Ok(Message::TxSubmit { tx }) => {
                        let ack = Message::TxAck {
                            tx_id: tx.id(),
                            status: TxStatus::Accepted,
                            observed: from,
                        };
                        chain.mine(vec![tx]);
                        let push = chain.push();
                        a.handle_datagram(now, SN, from, &push);
                        b.handle_datagram(now, SN, from, &push);
                        ack
                    }
                    Ok(Message::Query {
                        request_id,
                        hash_addr,
                        ..
                    }) => chain.reply(request_id, hash_addr),
                    Ok(Message::GetHeaders { locator }) => Message::Headers {
                        headers: chain
                            .chain
                            .blocks_after(&locator, binfm_stack::wire::binfm::MAX_HEADERS)
                            .iter()
                            .map(|b| b.header.encode())
                            .collect(),
                    },
                    _ => continue,
                };
                let en = if i == 0 { &mut *a } else { &mut *b };
                en.handle_datagram(now, SN, from, &answer.to_bytes());
                continue;
            }
            let to = if Some(t.dst) == a.private {
                &mut *a
            } else if Some(t.dst) == b.private {
                &mut *b
            } else {
                continue;
            };
            to.handle_datagram(now, from, t.dst, &t.payload);
        }
    }
}

/// Runs both ENs' timers (audio frames) every 20 ms from `from` to `to`, delivering.
fn run(a: &mut EndNode, b: &mut EndNode, from: Time, to: Time, txs: &mut TestChain) {
    let mut now = from;
    while now <= to {
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(a, b, now, txs);
        now += Duration::from_millis(20);
    }
}

/// Attack 7 through the ENs: B renews its key during a call with A. A Key Renewal with a
/// forged MAC, or carrying an attacker's Y under B's tag, is refused; the genuine one is
/// accepted; replayed afterwards it changes nothing; audio keeps flowing under the keys
/// both ends agree on.
#[test]
fn forged_and_replayed_key_renewals_are_refused_by_the_end_node() {
    let at_a = SocketAddrV4::new(ME, ports::EN);
    let at_b = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let mut txs = TestChain::new();
    let mut a = txs.en(wallet(1, at_a), 1, 440.0);
    let mut b = txs.en(wallet(2, at_b), 2, 660.0);
    a.on_address(Time::ZERO, *at_a.ip(), None, vec![SN]);
    b.on_address(Time::ZERO, *at_b.ip(), None, vec![SN]);
    pump(&mut a, &mut b, Time::ZERO, &mut txs);
    a.call(Time::ZERO, b.hash_addr());
    pump(&mut a, &mut b, Time::ZERO, &mut txs);
    assert_eq!(a.calls()[0].state, CallState::Active);
    assert_eq!(b.calls()[0].state, CallState::Active);
    run(&mut a, &mut b, Time::ZERO, Time::from_millis(100), &mut txs);
    while a.poll_event().is_some() {}

    // B renews; hold its Key Renewal back.
    let t = Time::from_millis(110);
    b.rekey(t);
    let renewal = std::iter::from_fn(|| b.poll_transmit())
        .find(|x| {
            x.dst == at_a && matches!(Message::parse(&x.payload), Ok(Message::KeyRenewal { .. }))
        })
        .expect("B sends a Key Renewal to A")
        .payload;
    let Ok(Message::KeyRenewal {
        sender,
        counter,
        y,
        mac,
    }) = Message::parse(&renewal)
    else {
        unreachable!("parsed above");
    };
    let mut rng = ChaCha8Rng::seed_from_u64(66);
    let evil = crate::dh::DhSecret::generate(&mut rng).public();
    let flipped = {
        let mut m = mac;
        m[15] ^= 0x80;
        m
    };
    let forgeries = [
        // B's message with one tag bit flipped.
        Message::KeyRenewal {
            sender,
            counter,
            y: y.clone(),
            mac: flipped,
        },
        // The paper's attack: the attacker's Y' under B's genuine tag.
        Message::KeyRenewal {
            sender,
            counter,
            y: evil.clone(),
            mac,
        },
        // The attacker's Y' with a far-ahead counter and a tag under a key it chose.
        Message::KeyRenewal {
            sender,
            counter: counter + 1000,
            y: evil,
            mac: [0x5a; 16],
        },
    ];
    let spoofed_from = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
    for (k, f) in forgeries.iter().enumerate() {
        for from in [at_b, spoofed_from] {
            a.handle_datagram(t, from, at_a, &f.to_bytes());
            assert_eq!(
                drain(&mut a, rekey_rejected),
                vec!["bad_mac"],
                "forgery {k}"
            );
            assert_eq!(a.calls()[0].epoch(), 0, "forgery {k}");
        }
    }
    assert_eq!(a.calls()[0].control_refused, 6);

    // The genuine renewal is still accepted (the forgeries did not burn its counter).
    a.handle_datagram(t, at_b, at_a, &renewal);
    assert_eq!(a.calls()[0].epoch(), 1);
    let accepted: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(accepted.iter().filter(|e| rekey_accepted(e)).count(), 1);
    // Replayed (from B's address or elsewhere): refused as a replay, nothing changes.
    for from in [at_b, spoofed_from] {
        a.handle_datagram(t, from, at_a, &renewal);
        let evs: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(!evs.iter().any(rekey_accepted), "{evs:?}");
        assert_eq!(a.calls()[0].epoch(), 1);
    }
    // Audio goes on under the renewed keys, both ways, nothing refused.
    pump(&mut a, &mut b, t, &mut txs);
    run(
        &mut a,
        &mut b,
        Time::from_millis(120),
        Time::from_millis(400),
        &mut txs,
    );
    assert_eq!(b.calls()[0].epoch(), 1, "B completed the renewal");
    for c in [&a.calls()[0], &b.calls()[0]] {
        assert!(
            c.media.media_refused.is_empty(),
            "{:?}",
            c.media.media_refused
        );
        assert!(c.media.rx_stats.summary().received >= 19);
    }
    // A replay after the switch still changes nothing.
    a.handle_datagram(Time::from_millis(400), at_b, at_a, &renewal);
    assert_eq!(a.calls()[0].epoch(), 1);
    run(
        &mut a,
        &mut b,
        Time::from_millis(420),
        Time::from_millis(500),
        &mut txs,
    );
    assert!(a.calls()[0].media.media_refused.is_empty());
    assert!(b.calls()[0].media.media_refused.is_empty());
}

/// The first Query the EN sent for `addr` since the last drain, with its id.
fn query_for(en: &mut EndNode, addr: HashAddr) -> Option<(u32, SocketAddrV4)> {
    std::iter::from_fn(|| en.poll_transmit()).find_map(|t| match Message::parse(&t.payload) {
        Ok(Message::Query {
            request_id,
            hash_addr,
            ..
        }) if hash_addr == addr => Some((request_id, t.dst)),
        _ => None,
    })
}

/// A lying SN's `EndpointMismatch` naming an address that is not our NAT's (DHCP option
/// 224) is refused: nothing is signed with it. One that only corrects the port is followed.
#[test]
fn an_endpoint_mismatch_to_a_foreign_address_is_refused() {
    let private = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), ports::EN);
    let nat_ip = Ipv4Addr::new(198, 51, 100, 1);
    let chain = TestChain::new();
    let mut en = chain.en(wallet(1, private), 1, 440.0);
    en.on_address(Time::ZERO, *private.ip(), Some(nat_ip), vec![SN]);
    let first = std::iter::from_fn(|| en.poll_transmit())
        .find_map(|t| match Message::parse(&t.payload) {
            Ok(Message::TxSubmit { tx }) => Some(tx),
            _ => None,
        })
        .expect("registers");
    let evil = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
    let ack = |observed| Message::TxAck {
        tx_id: first.id(),
        status: TxStatus::EndpointMismatch,
        observed,
    };
    en.handle_datagram(Time::from_millis(80), SN, private, &ack(evil).to_bytes());
    let refused = drain(&mut en, |e| match e.downcast_ref()? {
        EnEvent::EndpointRefused { observed, .. } => Some(*observed),
        _ => None,
    });
    assert_eq!(refused, vec![evil]);
    let signed: Vec<ToallTx> = std::iter::from_fn(|| en.poll_transmit())
        .filter_map(|t| match Message::parse(&t.payload) {
            Ok(Message::TxSubmit { tx }) => Some(tx),
            _ => None,
        })
        .collect();
    assert!(
        signed.is_empty(),
        "no Tx with the attacker's endpoint: {signed:?}"
    );
    assert_eq!(en.wallet().seq(), 1);
    // The real NAT picked another port: followed.
    let real = SocketAddrV4::new(nat_ip, 40000);
    en.handle_datagram(Time::from_millis(90), SN, private, &ack(real).to_bytes());
    let resent = std::iter::from_fn(|| en.poll_transmit())
        .find_map(|t| match Message::parse(&t.payload) {
            Ok(Message::TxSubmit { tx }) => Some(tx),
            _ => None,
        })
        .expect("re-registers with the corrected port");
    assert_eq!((resent.out.nat_ip, resent.out.nat_port), (nat_ip, 40000));
}

/// Request ids are unpredictable: an off-path attacker who sends "not found" Replies from the
/// SN's address for the first 10,000 ids (what a counter from 1 would use) does not end a
/// callee's pending lookup, which the genuine Reply then completes.
#[test]
fn a_spoofed_not_found_with_guessed_ids_does_not_end_a_pending_call() {
    let me = SocketAddrV4::new(ME, ports::EN);
    let mut chain = TestChain::new();
    let mut en = chain.en(wallet(1, me), 1, 440.0);
    en.on_address(Time::ZERO, ME, None, vec![SN]);
    let caller_at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let mut caller = wallet(2, caller_at);
    let caller_tx = caller.next_tx(0);
    chain.mine(vec![caller_tx]);
    en.handle_datagram(Time::ZERO, SN, me, &chain.push());
    while en.poll_transmit().is_some() {}
    let request = signed_request(&SigningKey::from_bytes(&[2; 32]), en.hash_addr(), 7);
    en.handle_datagram(Time::from_millis(1), caller_at, me, &request);
    let (rid, _) = query_for(&mut en, caller.hash_addr()).expect("the callee looks the caller up");
    for guess in 1..=10_000u32 {
        let fake = Message::Reply {
            request_id: guess,
            hash_addr: caller.hash_addr(),
            found: false,
            height: 0,
            confirmations: 0,
            tx: None,
            unconfirmed: None,
            proof: None,
        };
        en.handle_datagram(Time::from_millis(2), SN, me, &fake.to_bytes());
    }
    assert_eq!(en.calls()[0].state, CallState::LookingUp(rid));
    en.handle_datagram(
        Time::from_millis(3),
        SN,
        me,
        &chain.reply(rid, caller.hash_addr()).to_bytes(),
    );
    assert_eq!(en.calls()[0].state, CallState::Active);
}

/// A stale location: the first SN serves the peer's genuine, proven, but superseded Tx (its
/// block more than FRESH_BLOCKS below the tip). The EN asks a second SN, which proves the
/// newer one, and the call uses the newer endpoint.
#[test]
fn an_old_tx_is_checked_with_a_second_sn_and_the_newer_one_wins() {
    const SN2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 13), ports::SN);
    let me = SocketAddrV4::new(ME, ports::EN);
    let mut chain = TestChain::new();
    let mut en = chain.en(wallet(1, me), 1, 440.0);
    en.on_address(Time::ZERO, ME, None, vec![SN, SN2]);
    let old_at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let new_at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 42), ports::EN);
    let mut peer = wallet(2, old_at);
    let old_tx = peer.next_tx(0);
    chain.mine(vec![old_tx.clone()]);
    en.handle_datagram(Time::ZERO, SN, me, &chain.push());
    // The lying SN remembers the reply it will give: the old Tx with its proof.
    let stale_reply = |rid| chain_reply_with(&chain, rid, peer.hash_addr());
    let stale = stale_reply(0);
    for _ in 0..=FRESH_BLOCKS.min(100) {
        chain.mine(vec![]);
        en.handle_datagram(Time::ZERO, SN, me, &chain.push());
    }
    peer.set_addresses(new_at, new_at);
    let new_tx = peer.next_tx(1);
    chain.mine(vec![new_tx.clone()]);
    en.handle_datagram(Time::ZERO, SN, me, &chain.push());
    while en.poll_transmit().is_some() {}
    // ... but the new Tx is too fresh to be checked: the lie goes through only if the EN is
    // behind; here the EN is at the tip, so the old Tx is more than FRESH_BLOCKS old.
    en.call(Time::from_millis(10), peer.hash_addr());
    let (rid, to) = query_for(&mut en, peer.hash_addr()).expect("query");
    assert_eq!(to, SN);
    let Message::Reply { tx, proof, .. } = stale else {
        unreachable!()
    };
    let lie = Message::Reply {
        request_id: rid,
        hash_addr: peer.hash_addr(),
        found: true,
        height: 1,
        confirmations: 1,
        tx,
        unconfirmed: None,
        proof,
    };
    en.handle_datagram(Time::from_millis(20), SN, me, &lie.to_bytes());
    let (rid2, to2) = query_for(&mut en, peer.hash_addr()).expect("asks a second SN");
    assert_eq!((rid2, to2), (rid, SN2));
    assert!(matches!(en.calls()[0].state, CallState::LookingUp(_)));
    en.handle_datagram(
        Time::from_millis(30),
        SN2,
        me,
        &chain.reply(rid, peer.hash_addr()).to_bytes(),
    );
    let stale_seen = drain(&mut en, |e| match e.downcast_ref()? {
        EnEvent::StaleReply {
            first_seq,
            second_seq,
            ..
        } => Some((*first_seq, *second_seq)),
        _ => None,
    });
    assert_eq!(stale_seen, vec![(1, 2)]);
    assert_eq!(en.calls()[0].state, CallState::Requesting);
    let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
    assert!(sent.iter().any(|t| t.dst == new_at));
    assert!(sent.iter().all(|t| t.dst != old_at));
}

fn chain_reply_with(chain: &TestChain, rid: u32, addr: HashAddr) -> Message {
    chain.reply(rid, addr)
}

/// A restarted EN (a new EndNode with the same wallet key, its seq counter lost) learns its
/// latest seq from the chain and registers above it, instead of being refused forever.
#[test]
fn a_restarted_end_node_resumes_its_sequence_from_the_chain() {
    let me = SocketAddrV4::new(ME, ports::EN);
    let mut chain = TestChain::new();
    // Its previous life registered seq 1, 2 and 3.
    let mut before = wallet(1, me);
    for t in 0..3 {
        chain.mine(vec![before.next_tx(t)]);
    }
    let mut en = chain.en(wallet(1, me), 9, 440.0);
    en.on_address(Time::ZERO, ME, None, vec![SN]);
    let mut registered = None;
    for _ in 0..10 {
        let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
        if sent.is_empty() {
            break;
        }
        for t in sent {
            let answer = match Message::parse(&t.payload) {
                Ok(Message::TxSubmit { tx }) => {
                    // The SN's rule: the seq must be above the latest confirmed one.
                    let latest = chain
                        .chain
                        .lookup(&tx.out.hash_addr)
                        .map_or(0, |(t, _)| t.out.seq);
                    let status = if tx.out.seq > latest {
                        registered = Some(tx.out.seq);
                        TxStatus::Accepted
                    } else {
                        TxStatus::Rejected(binfm_stack::wire::binfm::reject::STALE_SEQ)
                    };
                    Message::TxAck {
                        tx_id: tx.id(),
                        status,
                        observed: me,
                    }
                }
                Ok(Message::Query {
                    request_id,
                    hash_addr,
                    ..
                }) => chain.reply(request_id, hash_addr),
                _ => continue,
            };
            en.handle_datagram(Time::from_millis(80), SN, me, &answer.to_bytes());
        }
    }
    assert_eq!(registered, Some(4));
    assert_eq!(en.wallet().seq(), 4);
}

/// Datagrams the node would send now.
fn sent(en: &mut EndNode) -> Vec<Transmit> {
    std::iter::from_fn(|| en.poll_transmit()).collect()
}

/// A registered node at `ip` (no NAT), its registration acknowledged and mined, with the
/// chain that serves its lookups.
fn registered(seed: u8, ip: Ipv4Addr) -> (EndNode, TestChain) {
    let at = SocketAddrV4::new(ip, ports::EN);
    let mut chain = TestChain::new();
    let mut en = chain.en(wallet(seed, at), seed, 440.0);
    en.on_address(Time::ZERO, ip, None, vec![SN]);
    let mut other = chain.en(wallet(99, at), 99, 440.0);
    pump(&mut en, &mut other, Time::ZERO, &mut chain);
    assert!(en.wallet().seq() >= 1, "registered");
    sent(&mut en);
    (en, chain)
}

/// Defence 1: a Session Request without the caller's valid signature costs the callee no
/// lookup and makes it send nothing (to the source or anyone).
#[test]
fn an_unsigned_or_forged_session_request_costs_no_lookup_and_sends_nothing() {
    let (mut b, _chain) = registered(2, Ipv4Addr::new(198, 51, 100, 41));
    let me = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let victim = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 5060);
    let key = SigningKey::from_bytes(&[7; 32]);
    let genuine = signed_request(&key, b.hash_addr(), 1);
    let Ok(Message::SessionRequest { .. }) = Message::parse(&genuine) else {
        unreachable!()
    };
    // A bit of the signature flipped; another caller named under this key; an unsigned
    // request naming a registered caller (zero signature, its key).
    let mut flipped = genuine.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 1;
    let mut other_caller = Message::parse(&genuine).unwrap();
    if let Message::SessionRequest { caller, .. } = &mut other_caller {
        *caller = [0x42; 32];
    }
    let mut unsigned = Message::parse(&genuine).unwrap();
    if let Message::SessionRequest { signature, .. } = &mut unsigned {
        *signature = [0; 64];
    }
    for (k, bytes) in [flipped, other_caller.to_bytes(), unsigned.to_bytes()]
        .iter()
        .enumerate()
    {
        b.handle_datagram(Time::from_millis(k as u64), victim, me, bytes);
        assert!(sent(&mut b).is_empty(), "forgery {k}: something was sent");
        assert!(b.calls().is_empty(), "forgery {k}: a call was made");
    }
    assert_eq!(b.requests_refused.get("bad_signature"), Some(&2));
    assert_eq!(b.requests_refused.get("key_not_caller"), Some(&1));
    // The genuine one is looked up (a Query to the SN, nothing to the source).
    b.handle_datagram(Time::from_millis(5), victim, me, &genuine);
    let out = sent(&mut b);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dst, SN);
}

/// A and B registered (no NAT) with the SN played by `pump`.
fn two_registered(chain: &mut TestChain) -> (EndNode, EndNode, SocketAddrV4, SocketAddrV4) {
    let at_a = SocketAddrV4::new(ME, ports::EN);
    let at_b = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let mut a = chain.en(wallet(1, at_a), 1, 440.0);
    let mut b = chain.en(wallet(2, at_b), 2, 660.0);
    a.on_address(Time::ZERO, *at_a.ip(), None, vec![SN]);
    b.on_address(Time::ZERO, *at_b.ip(), None, vec![SN]);
    pump(&mut a, &mut b, Time::ZERO, chain);
    (a, b, at_a, at_b)
}

/// Answers B's Queries from `chain` (the SN, with proofs), returns everything else B sent.
fn serve_queries(b: &mut EndNode, now: Time, chain: &TestChain) -> Vec<Transmit> {
    let mut others = Vec::new();
    for _ in 0..4 {
        let out = sent(b);
        if out.is_empty() {
            break;
        }
        for t in out {
            if let (
                true,
                Ok(Message::Query {
                    request_id,
                    hash_addr,
                    ..
                }),
            ) = (t.dst == SN, Message::parse(&t.payload))
            {
                let reply = chain.reply(request_id, hash_addr);
                let to = b.private.unwrap_or(SN);
                b.handle_datagram(now, SN, to, &reply.to_bytes());
            } else {
                others.push(t);
            }
        }
    }
    others
}

/// Attack 1 and defence 1: A's genuine Session Request, sent to B from a victim's address
/// (a replay, or a spoofed source), makes B send nothing to the victim: the Response and the
/// audio go to A's registered endpoint, and stop once B's initial consent runs out because A
/// never answers. Replayed once more after that call ended, it starts nothing.
#[test]
fn a_session_request_from_a_spoofed_source_reflects_nothing_to_it() {
    let mut chain = TestChain::new();
    let (mut a, mut b, at_a, at_b) = two_registered(&mut chain);
    a.call(Time::ZERO, b.hash_addr());
    let request = serve_queries(&mut a, Time::ZERO, &chain)
        .into_iter()
        .find(|t| {
            matches!(
                Message::parse(&t.payload),
                Ok(Message::SessionRequest { .. })
            )
        })
        .expect("A sends its request")
        .payload;
    let victim = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 5060);
    let mut to_victim = 0usize;
    let mut to_a = 0usize;
    let mut now = Time::ZERO;
    b.handle_datagram(now, victim, at_b, &request);
    while now < Time::from_secs(10) {
        b.handle_timeout(now);
        for t in serve_queries(&mut b, now, &chain) {
            if t.dst == victim {
                to_victim += t.payload.len();
            }
            if t.dst == at_a {
                to_a += t.payload.len();
            }
        }
        now += Duration::from_millis(20);
    }
    assert_eq!(to_victim, 0, "nothing reflected to the spoofed source");
    assert!(to_a > 0, "the Response went to A's registered endpoint");
    // At most the initial consent's worth of audio (4 s, 50 frames/s) plus the Response.
    assert!(
        to_a < 620 + 200 * 50 * 4 + 200,
        "{to_a} bytes to A's registered endpoint"
    );
    assert_eq!(b.calls()[0].state, CallState::Ended, "consent ran out");
    // The same request again: remembered as answered, refused, nothing sent.
    b.handle_datagram(now, victim, at_b, &request);
    assert!(sent(&mut b).is_empty());
    assert_eq!(b.requests_refused.get("replayed"), Some(&1));
}

/// Attack 5 and defence 1: signed requests from made-up callers (fresh keys are free), each
/// from its own spoofed source and never answered by the SN, take at most
/// MAX_INCOMING_LOOKUPS of the callee's lookups: its own call still gets its Query.
#[test]
fn made_up_callers_cannot_take_the_callees_lookups_for_its_own_calls() {
    let (mut b, _chain) = registered(2, Ipv4Addr::new(198, 51, 100, 41));
    let me = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let mut queries = 0;
    for i in 0..200u32 {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 4000);
        let req = signed_request(&SigningKey::from_bytes(&seed), b.hash_addr(), i);
        b.handle_datagram(Time::from_millis(u64::from(i)), from, me, &req);
        queries += sent(&mut b).iter().filter(|t| t.dst == SN).count();
    }
    assert_eq!(queries, MAX_INCOMING_LOOKUPS);
    assert_eq!(
        b.requests_refused.get("too_many_incoming_lookups"),
        Some(&(200 - MAX_INCOMING_LOOKUPS as u64))
    );
    // B's own call to someone: its lookup goes out.
    b.call(Time::from_millis(300), [0x77; 32]);
    let out = sent(&mut b);
    assert!(
        out.iter().any(|t| t.dst == SN
            && matches!(Message::parse(&t.payload), Ok(Message::Query { hash_addr, .. }) if hash_addr == [0x77; 32])),
        "B's own lookup was refused"
    );
}

/// Defence 1: the per-source and per-caller limits on the lookups a callee makes for
/// callers (bursts of 10 per source, 4 per caller).
#[test]
fn callee_lookups_are_limited_per_source_and_per_caller() {
    let (mut b, chain) = registered(2, Ipv4Addr::new(198, 51, 100, 41));
    let me = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
    let one_source = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 4000);
    let mut queries = 0;
    for i in 0..30u32 {
        let mut seed = [1u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let req = signed_request(&SigningKey::from_bytes(&seed), b.hash_addr(), i);
        b.handle_datagram(Time::from_millis(u64::from(i)), one_source, me, &req);
        // Each lookup is answered "not found" at once, so the total cap does not interfere.
        queries += answer_queries(&mut b, Time::from_millis(u64::from(i)), &chain);
    }
    assert_eq!(queries, REQUEST_SOURCE_LIMIT.burst as usize);
    assert_eq!(b.requests_refused.get("source_rate_limited"), Some(&20));

    let one_caller = SigningKey::from_bytes(&[9; 32]);
    let mut queries = 0;
    for i in 0..30u32 {
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0c00_0000 + i), 4000);
        let now = Time::from_secs(5) + Time::from_millis(u64::from(i));
        let req = signed_request(&one_caller, b.hash_addr(), 1000 + i);
        b.handle_datagram(now, from, me, &req);
        let out = sent(&mut b);
        queries += out.iter().filter(|t| t.dst == SN).count();
        for t in out {
            if let Ok(Message::Query {
                request_id,
                hash_addr,
                ..
            }) = Message::parse(&t.payload)
            {
                let reply = chain.reply(request_id, hash_addr);
                assert!(matches!(reply, Message::Reply { found: false, .. }));
                b.handle_datagram(now, SN, me, &reply.to_bytes());
            }
        }
    }
    assert_eq!(queries, REQUEST_CALLER_LIMIT.burst as usize);
    assert_eq!(b.requests_refused.get("caller_rate_limited"), Some(&26));
}

#[test]
fn a_registered_end_node_behind_a_nat_keeps_its_mapping_alive_with_get_headers() {
    let keepalives = |nat: Option<Ipv4Addr>| {
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), ports::EN);
        let chain = TestChain::new();
        let mut en = chain.en(wallet(1, private), 1, 440.0);
        en.on_address(Time::ZERO, *private.ip(), nat, vec![SN]);
        let tx = std::iter::from_fn(|| en.poll_transmit())
            .find_map(|t| match Message::parse(&t.payload) {
                Ok(Message::TxSubmit { tx }) => Some(tx),
                _ => None,
            })
            .expect("registers");
        let observed = SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port);
        let ack = Message::TxAck {
            tx_id: tx.id(),
            status: TxStatus::Accepted,
            observed,
        };
        en.handle_datagram(Time::from_millis(80), SN, private, &ack.to_bytes());
        let mut at = Vec::new();
        while let Some(t) = en.poll_timeout() {
            if t > Time::from_secs(200) {
                break;
            }
            en.handle_timeout(t);
            for s in std::iter::from_fn(|| en.poll_transmit()) {
                if s.dst == SN
                    && matches!(Message::parse(&s.payload), Ok(Message::GetHeaders { .. }))
                {
                    at.push(t.as_millis());
                }
            }
        }
        at
    };
    // Every 60 s after the registration was accepted: within the NAT's 2-minute idle timeout.
    assert_eq!(
        keepalives(Some(Ipv4Addr::new(198, 51, 100, 1))),
        vec![60_080, 120_080, 180_080]
    );
    // Without a NAT there is no mapping to keep.
    assert!(keepalives(None).is_empty());
}

/// A call whose lookup no super node answers fails (it waited forever before), and leaves
/// no retry count behind for the next call to that peer.
#[test]
fn a_call_whose_lookup_nobody_answers_fails() {
    let (mut en, _chain) = registered(1, ME);
    let peer = wallet(2, SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2), ports::EN)).hash_addr();
    en.call(Time::from_secs(1), peer);
    while en.poll_event().is_some() {}
    let mut now = Time::from_secs(1);
    for _ in 0..1000 {
        match en.poll_timeout() {
            Some(t) if t <= Time::from_secs(600) => now = now.max(t),
            _ => break,
        }
        en.handle_timeout(now);
        sent(&mut en); // the super node never answers
        if en.calls()[0].state == CallState::Ended {
            break;
        }
    }
    assert_eq!(en.calls()[0].state, CallState::Ended, "at {now:?}");
    let failed: Vec<String> = drain(&mut en, |e| match e.downcast_ref()? {
        CallEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(failed, vec!["no super node answered the lookup".to_owned()]);
    assert!(en.not_found.is_empty());
}

/// A caller waiting to ask again about a peer not found yet, whose new lookup is refused
/// (its pending queries at their limit), fails the call instead of waiting forever.
#[test]
fn a_call_whose_next_lookup_is_refused_fails() {
    let (mut en, chain) = registered(1, ME);
    let me = SocketAddrV4::new(ME, ports::EN);
    let peer = [0x77; 32];
    en.call(Time::from_secs(1), peer);
    let (rid, _) = query_for(&mut en, peer).expect("the caller looks the peer up");
    let not_found = chain.reply(rid, peer).to_bytes();
    en.handle_datagram(Time::from_secs(1), SN, me, &not_found);
    assert!(matches!(en.calls()[0].state, CallState::LookingUp(_)));
    // Other lookups fill the pending queries before the retry is due.
    for i in 0..MAX_PENDING_QUERIES {
        let mut addr = [0x55; 32];
        addr[..8].copy_from_slice(&(i as u64).to_le_bytes());
        en.lookup(Time::from_secs(1), addr);
    }
    while en.poll_event().is_some() {}
    en.handle_timeout(Time::from_secs(2));
    assert_eq!(en.calls()[0].state, CallState::Ended);
    let failed: Vec<String> = drain(&mut en, |e| match e.downcast_ref()? {
        CallEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(failed, vec!["lookup refused".to_owned()]);
}
