//! Tests of the BINFM control messages: byte layouts, round trips and malformed inputs.

use super::*;
use crate::wire::toall::tests::{arb_tx, small_tx, small_tx_bytes};
use proptest::prelude::*;

fn header(kind: u8) -> Vec<u8> {
    vec![b'B', b'F', 1, kind]
}

fn check(msg: Message, bytes: Vec<u8>) {
    assert_eq!(msg.buffer_len(), bytes.len(), "{}", msg.name());
    assert_eq!(msg.to_bytes(), bytes, "{}", msg.name());
    assert_eq!(Message::parse(&bytes), Ok(msg.clone()), "{}", msg.name());
    let mut buf = vec![0u8; bytes.len()];
    assert_eq!(msg.emit(&mut buf), Ok(bytes.len()));
    assert_eq!(buf, bytes);
}

#[test]
fn tx_submit_and_relay_fixtures() {
    let mut b = header(1);
    b.extend_from_slice(&small_tx_bytes());
    check(Message::TxSubmit { tx: small_tx() }, b);
    let mut b = header(5);
    b.extend_from_slice(&small_tx_bytes());
    check(Message::TxRelay { tx: small_tx() }, b);
}

#[test]
fn tx_ack_fixture() {
    let mut b = header(2);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[1, 0]); // EndpointMismatch
    b.extend_from_slice(&[198, 51, 100, 1, 0x6a, 0x3f]);
    check(
        Message::TxAck {
            tx_id: [0x22; 32],
            status: TxStatus::EndpointMismatch,
            observed: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 0x6a3f),
        },
        b.clone(),
    );
    assert_eq!(b.len(), 44);
    b[36..38].copy_from_slice(&[2, reject::BAD_SIGNATURE]);
    assert!(matches!(
        Message::parse(&b),
        Ok(Message::TxAck {
            status: TxStatus::Rejected(2),
            ..
        })
    ));
    b[36..38].copy_from_slice(&[0, 5]);
    assert!(matches!(
        Message::parse(&b),
        Err(WireError::BadValue { value: 5, .. })
    ));
    b[36..38].copy_from_slice(&[4, 0]);
    assert_eq!(
        Message::parse(&b),
        Err(WireError::BadValue {
            field: "ack status",
            value: 4
        })
    );
}

#[test]
fn query_fixture() {
    let mut b = header(3);
    b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    b.extend_from_slice(&[0x11; 32]);
    b.push(1);
    assert_eq!(b.len(), 41);
    check(
        Message::Query {
            request_id: 0xdead_beef,
            hash_addr: [0x11; 32],
            want_unconfirmed: true,
        },
        b.clone(),
    );
    b[40] = 2;
    assert_eq!(
        Message::parse(&b),
        Err(WireError::BadValue {
            field: "query flags",
            value: 2
        })
    );
}

#[test]
fn reply_fixtures() {
    // Not found: no Tx.
    let mut b = header(4);
    b.extend_from_slice(&[0, 0, 0, 9]);
    b.extend_from_slice(&[0x11; 32]);
    b.push(0);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]); // height 42
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(b.len(), 53);
    check(
        Message::Reply {
            request_id: 9,
            hash_addr: [0x11; 32],
            found: false,
            height: 42,
            confirmations: 0,
            tx: None,
            unconfirmed: None,
            proof: None,
        },
        b,
    );
    // Found, with a confirmed and an unconfirmed Tx.
    let mut b = header(4);
    b.extend_from_slice(&[0, 0, 0, 9]);
    b.extend_from_slice(&[0x11; 32]);
    b.push(0b111);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
    b.extend_from_slice(&[0, 0, 0, 3]); // 3 confirmations
    b.extend_from_slice(&small_tx_bytes());
    b.extend_from_slice(&small_tx_bytes());
    check(
        Message::Reply {
            request_id: 9,
            hash_addr: [0x11; 32],
            found: true,
            height: 42,
            confirmations: 3,
            tx: Some(small_tx()),
            unconfirmed: Some(small_tx()),
            proof: None,
        },
        b.clone(),
    );
    b.truncate(b.len() - 1);
    assert_eq!(
        Message::parse(&b),
        Err(WireError::Truncated {
            field: "tx signature",
            need: 64,
            have: 63
        })
    );
}

fn proof_fixture() -> (TxProof, Vec<u8>) {
    let proof = TxProof {
        header: [0x44; BLOCK_HEADER_LEN],
        index: 2,
        siblings: vec![[0x55; 32], [0x66; 32]],
    };
    let mut b = vec![0x44; BLOCK_HEADER_LEN];
    b.extend_from_slice(&[0, 2, 2]); // index 2, depth 2
    b.extend_from_slice(&[0x55; 32]);
    b.extend_from_slice(&[0x66; 32]);
    (proof, b)
}

#[test]
fn reply_with_proof_fixture_and_bounds() {
    let (proof, proof_bytes) = proof_fixture();
    let mut b = header(4);
    b.extend_from_slice(&[0, 0, 0, 9]);
    b.extend_from_slice(&[0x11; 32]);
    b.push(0b1011); // found, tx, proof
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
    b.extend_from_slice(&[0, 0, 0, 3]);
    b.extend_from_slice(&small_tx_bytes());
    b.extend_from_slice(&proof_bytes);
    let reply = Message::Reply {
        request_id: 9,
        hash_addr: [0x11; 32],
        found: true,
        height: 42,
        confirmations: 3,
        tx: Some(small_tx()),
        unconfirmed: None,
        proof: Some(proof.clone()),
    };
    check(reply, b.clone());
    // The depth is bounded before anything is read.
    let depth_at = b.len() - proof_bytes.len() + BLOCK_HEADER_LEN + 2;
    let mut deep = b.clone();
    deep[depth_at] = MAX_PROOF_DEPTH as u8 + 1;
    assert_eq!(
        Message::parse(&deep),
        Err(WireError::OverBound {
            field: "proof depth",
            len: MAX_PROOF_DEPTH + 1,
            max: MAX_PROOF_DEPTH
        })
    );
    // The index must fit the depth.
    let mut far = b.clone();
    far[depth_at - 1] = 4;
    assert!(matches!(
        Message::parse(&far),
        Err(WireError::BadValue { .. })
    ));
    // A truncated sibling.
    assert!(matches!(
        Message::parse(&b[..b.len() - 1]),
        Err(WireError::Truncated { .. })
    ));
    // A proof flag without a Tx.
    let mut no_tx = header(4);
    no_tx.extend_from_slice(&[0, 0, 0, 9]);
    no_tx.extend_from_slice(&[0x11; 32]);
    no_tx.push(0b1001);
    no_tx.extend_from_slice(&[0; 12]);
    no_tx.extend_from_slice(&proof_bytes);
    assert!(matches!(
        Message::parse(&no_tx),
        Err(WireError::BadValue { .. })
    ));
    // Reply sizes against MAX_REPLY_LEN (a full-size Y makes a 417-byte Tx): one Tx and the
    // deepest proof fit; two Txs fit with proofs of up to 8 levels (the SN leaves the
    // unconfirmed Tx out of deeper ones).
    let big = crate::wire::toall::tests::small_tx();
    let proof = |depth| TxProof {
        header: [0; BLOCK_HEADER_LEN],
        index: 255,
        siblings: vec![[0; 32]; depth],
    };
    let tx_len = big.buffer_len().max(417);
    let one = 4 + 49 + tx_len + proof(MAX_PROOF_DEPTH).buffer_len();
    assert_eq!(one, 977);
    let two_at_8 = 4 + 49 + 2 * tx_len + proof(8).buffer_len();
    assert!(two_at_8 <= MAX_REPLY_LEN, "{two_at_8}");
    let two_at_9 = 4 + 49 + 2 * tx_len + proof(9).buffer_len();
    assert!(two_at_9 > MAX_REPLY_LEN, "{two_at_9}");
}

#[test]
fn headers_and_get_headers_fixtures_and_bounds() {
    let mut b = header(20);
    b.push(2);
    b.extend_from_slice(&[0x77; BLOCK_HEADER_LEN]);
    b.extend_from_slice(&[0x78; BLOCK_HEADER_LEN]);
    check(
        Message::Headers {
            headers: vec![[0x77; BLOCK_HEADER_LEN], [0x78; BLOCK_HEADER_LEN]],
        },
        b,
    );
    check(
        Message::Headers { headers: vec![] },
        [header(20), vec![0]].concat(),
    );
    let mut too_many = header(20);
    too_many.push(MAX_HEADERS as u8 + 1);
    assert_eq!(
        Message::parse(&too_many),
        Err(WireError::OverBound {
            field: "headers count",
            len: MAX_HEADERS + 1,
            max: MAX_HEADERS
        })
    );
    let mut b = header(21);
    b.push(1);
    b.extend_from_slice(&[0x99; 32]);
    check(
        Message::GetHeaders {
            locator: vec![[0x99; 32]],
        },
        b,
    );
    assert!(matches!(
        Message::parse(&[header(21), vec![0]].concat()),
        Err(WireError::BadValue { .. })
    ));
    let mut long = header(21);
    long.push(MAX_LOCATOR as u8 + 1);
    assert!(matches!(
        Message::parse(&long),
        Err(WireError::OverBound { .. })
    ));
}

#[test]
fn block_part_fixture_and_bounds() {
    let mut b = header(6);
    b.extend_from_slice(&[0x33; 32]);
    b.extend_from_slice(&[0, 1, 0, 3, 0, 3, 7, 8, 9]); // part 1 of 3, 3 bytes
    check(
        Message::BlockPart(BlockPart {
            block_hash: [0x33; 32],
            part: 1,
            parts: 3,
            data: vec![7, 8, 9],
        }),
        b.clone(),
    );
    let mut bad = b.clone();
    bad[38..40].copy_from_slice(&[0, 1]); // part 1 of 1
    assert!(matches!(
        Message::parse(&bad),
        Err(WireError::BadValue { value: 1, .. })
    ));
    bad[38..40].copy_from_slice(&[0, 0]);
    assert_eq!(
        Message::parse(&bad),
        Err(WireError::BadValue {
            field: "block part count",
            value: 0
        })
    );
    let mut long = b.clone();
    long[40..42].copy_from_slice(&1201u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::OverBound {
            field: "block part length",
            len: 1201,
            max: 1200
        })
    );
    long[40..42].copy_from_slice(&1200u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::Truncated {
            field: "block part data",
            need: 1200,
            have: 3
        })
    );
}

#[test]
fn get_block_and_tip_fixtures() {
    let mut b = header(7);
    b.extend_from_slice(&[0x44; 32]);
    check(
        Message::GetBlock {
            block_hash: [0x44; 32],
        },
        b,
    );
    let mut b = header(8);
    b.extend_from_slice(&[0x55; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]); // height 256
    b.extend_from_slice(&[0x66; 32]);
    assert_eq!(b.len(), 76);
    check(
        Message::TipAnnounce {
            tip_hash: [0x55; 32],
            height: 256,
            total_work: [0x66; 32],
        },
        b,
    );
}

#[test]
fn session_request_and_response_fixtures() {
    let mut b = header(9);
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0x33; 16]);
    b.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
    b.extend_from_slice(&[0, 2, 0xe1, 0xe2]); // ephemeral, 2 bytes
    b.extend_from_slice(&[0, 1, 0x4e]); // next, 1 byte
    b.extend_from_slice(&[0x99; 32]);
    b.extend_from_slice(&[0x5a; 64]);
    assert_eq!(b.len(), 191);
    let req = Message::SessionRequest {
        caller: [0x11; 32],
        callee: [0x22; 32],
        nonce: [0x33; 16],
        ssrc: 0xcafe_babe,
        ephemeral: vec![0xe1, 0xe2],
        next: vec![0x4e],
        public_key: [0x99; 32],
        signature: [0x5a; 64],
    };
    check(req.clone(), b.clone());
    assert_eq!(mac_input(&req), b, "no MAC tag: plain encoding");
    let signed = signing_input(&req);
    assert_eq!(
        &signed[..SESSION_REQUEST_LABEL.len()],
        SESSION_REQUEST_LABEL
    );
    assert_eq!(
        &signed[SESSION_REQUEST_LABEL.len()..],
        &b[..127],
        "all but the signature"
    );
    // A group-14 request: 700 bytes.
    let mut full = req.clone();
    if let Message::SessionRequest {
        ephemeral, next, ..
    } = &mut full
    {
        *ephemeral = vec![7; 256];
        *next = vec![8; 256];
    }
    assert_eq!(full.to_bytes().len(), 700);
    let mut long = b.clone();
    long[88..90].copy_from_slice(&513u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::OverBound {
            field: "session request ephemeral",
            len: 513,
            max: 512
        })
    );
    assert_eq!(
        Message::parse(&b[..190]),
        Err(WireError::Truncated {
            field: "session request signature",
            need: 64,
            have: 63
        })
    );

    let mut b = header(10);
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0x44; 16]);
    b.extend_from_slice(&[0, 0, 0, 7]);
    b.extend_from_slice(&[0, 1, 0xe3]);
    b.extend_from_slice(&[0, 0]); // empty next (parses; the EN refuses it as a DH value)
    b.extend_from_slice(&[0x55; 16]);
    assert_eq!(b.len(), 109);
    let resp = Message::SessionResponse {
        caller: [0x11; 32],
        callee: [0x22; 32],
        nonce: [0x44; 16],
        ssrc: 7,
        ephemeral: vec![0xe3],
        next: vec![],
        confirm: [0x55; 16],
    };
    check(resp.clone(), b.clone());
    let mut zeroed = b.clone();
    zeroed[93..].fill(0);
    assert_eq!(mac_input(&resp), zeroed);
    assert_eq!(signing_input(&resp)[SESSION_REQUEST_LABEL.len()..], b[..]);
    assert_eq!(
        Message::parse(&b[..108]),
        Err(WireError::Truncated {
            field: "session response confirm",
            need: 16,
            have: 15
        })
    );
    let mut full = resp;
    if let Message::SessionResponse {
        ephemeral, next, ..
    } = &mut full
    {
        *ephemeral = vec![7; 256];
        *next = vec![8; 256];
    }
    assert_eq!(full.to_bytes().len(), 620);
}

#[test]
fn key_renewal_reply_and_path_fixtures() {
    let mut b = header(14);
    b.extend_from_slice(&[0x12; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
    b.extend_from_slice(&[0, 2, 0xb1, 0xb2]);
    b.extend_from_slice(&[0x78; 16]);
    assert_eq!(b.len(), 64);
    let msg = Message::KeyRenewalReply {
        sender: [0x12; 32],
        counter: 3,
        y: vec![0xb1, 0xb2],
        mac: [0x78; 16],
    };
    check(msg.clone(), b.clone());
    assert_eq!(mac_input(&msg)[..48], b[..48]);
    assert_eq!(mac_input(&msg)[48..], [0; 16]);
    let mut long = b.clone();
    long[44..46].copy_from_slice(&600u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::OverBound {
            field: "key renewal reply y",
            len: 600,
            max: 512
        })
    );

    for (kind, make) in [
        (
            15u8,
            (|s, d, m| Message::PathChallenge {
                sender: s,
                data: d,
                mac: m,
            }) as fn([u8; 32], [u8; 16], [u8; 16]) -> Message,
        ),
        (15 + 1, |s, d, m| Message::PathResponse {
            sender: s,
            data: d,
            mac: m,
        }),
    ] {
        let mut b = header(kind);
        b.extend_from_slice(&[0x13; 32]);
        b.extend_from_slice(&[0xd0; 16]);
        b.extend_from_slice(&[0x79; 16]);
        assert_eq!(b.len(), 68);
        let msg = make([0x13; 32], [0xd0; 16], [0x79; 16]);
        check(msg.clone(), b.clone());
        assert_eq!(mac_input(&msg)[..52], b[..52]);
        assert_eq!(mac_input(&msg)[52..], [0; 16]);
        assert!(matches!(
            Message::parse(&b[..67]),
            Err(WireError::Truncated {
                need: 16,
                have: 15,
                ..
            })
        ));
    }
}

#[test]
fn handover_fixture() {
    let mut b = header(11);
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]); // counter 5
    b.extend_from_slice(&[10, 2, 0, 100, 0x1c, 0xe9]); // 10.2.0.100:7401
    b.extend_from_slice(&[203, 0, 113, 7, 0x6a, 0x3f]);
    b.extend_from_slice(&[0x66; 16]);
    assert_eq!(b.len(), 72);
    let msg = Message::HandoverRequest {
        sender: [0x11; 32],
        counter: 5,
        private: SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 100), 7401),
        nat: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 0x6a3f),
        mac: [0x66; 16],
    };
    check(msg.clone(), b.clone());
    let input = mac_input(&msg);
    assert_eq!(input[..56], b[..56]);
    assert_eq!(input[56..], [0; 16]);
}

#[test]
fn key_renewal_and_ack_fixtures() {
    let mut b = header(12);
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]); // counter 256
    b.extend_from_slice(&[0, 3, 0xa1, 0xa2, 0xa3]); // y_len 3
    b.extend_from_slice(&[0x77; 16]);
    assert_eq!(b.len(), 65);
    let msg = Message::KeyRenewal {
        sender: [0x11; 32],
        counter: 256,
        y: vec![0xa1, 0xa2, 0xa3],
        mac: [0x77; 16],
    };
    check(msg.clone(), b.clone());
    assert_eq!(mac_input(&msg)[..49], b[..49]);
    assert_eq!(mac_input(&msg)[49..], [0; 16]);
    // A group-14 renewal: 62 + 256 bytes.
    let full = Message::KeyRenewal {
        sender: [0; 32],
        counter: 1,
        y: vec![9; 256],
        mac: [0; 16],
    };
    assert_eq!(full.to_bytes().len(), 318);
    let mut long = b.clone();
    long[44..46].copy_from_slice(&513u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::OverBound {
            field: "key renewal y",
            len: 513,
            max: 512
        })
    );
    long[44..46].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        Message::parse(&long),
        Err(WireError::Truncated {
            field: "key renewal y",
            need: 20,
            have: 19
        })
    );

    let mut b = header(13);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    b.extend_from_slice(&[0x88; 16]);
    assert_eq!(b.len(), 60);
    check(
        Message::ControlAck {
            sender: [0x22; 32],
            counter: 9,
            mac: [0x88; 16],
        },
        b,
    );
}

#[test]
fn header_errors() {
    assert_eq!(
        Message::parse(b"BX\x01\x03"),
        Err(WireError::BadMagic(*b"BX"))
    );
    assert_eq!(
        Message::parse(b"BF\x02\x03"),
        Err(WireError::BadVersion {
            what: "BINFM message",
            version: 2
        })
    );
    assert_eq!(
        Message::parse(b"BF\x01\x11"),
        Err(WireError::UnknownType(17))
    );
    assert_eq!(
        Message::parse(b"BF\x01").map_err(|e| e.to_string()),
        Err("truncated at message type: need 1 bytes, 0 left".to_string())
    );
    let mut trailing = header(7);
    trailing.extend_from_slice(&[0; 33]);
    assert_eq!(
        Message::parse(&trailing),
        Err(WireError::TrailingBytes { len: 1 })
    );
}

#[test]
fn split_block_sizes() {
    let hash = [9u8; 32];
    let empty = split_block(hash, &[]).expect("fits");
    assert_eq!(empty.len(), 1);
    let bytes: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    let parts = split_block(hash, &bytes).expect("fits");
    assert_eq!(parts.len(), 3);
    let mut joined = Vec::new();
    for (i, m) in parts.iter().enumerate() {
        let Message::BlockPart(p) = m else {
            panic!("not a block part")
        };
        assert_eq!((p.part as usize, p.parts), (i, 3));
        assert!(m.to_bytes().len() <= 1242);
        joined.extend_from_slice(&p.data);
    }
    assert_eq!(joined, bytes);
    let exact = split_block(hash, &[0; 2400]).expect("fits");
    assert_eq!(exact.len(), 2);
}

fn arb_message() -> impl Strategy<Value = Message> {
    let status = prop_oneof![
        Just(TxStatus::Accepted),
        Just(TxStatus::EndpointMismatch),
        Just(TxStatus::Duplicate),
        any::<u8>().prop_map(TxStatus::Rejected),
    ];
    prop_oneof![
        arb_tx().prop_map(|tx| Message::TxSubmit { tx }),
        arb_tx().prop_map(|tx| Message::TxRelay { tx }),
        (any::<[u8; 32]>(), status, any::<u32>(), any::<u16>()).prop_map(
            |(tx_id, status, ip, port)| Message::TxAck {
                tx_id,
                status,
                observed: SocketAddrV4::new(Ipv4Addr::from(ip), port),
            }
        ),
        (any::<u32>(), any::<[u8; 32]>(), any::<bool>()).prop_map(|(r, h, w)| {
            Message::Query {
                request_id: r,
                hash_addr: h,
                want_unconfirmed: w,
            }
        }),
        (
            (any::<u32>(), any::<[u8; 32]>(), any::<bool>()),
            (any::<u64>(), any::<u32>()),
            proptest::option::of(arb_tx()),
            proptest::option::of(arb_tx()),
            proptest::option::of(arb_proof()),
        )
            .prop_map(|((r, h, f), (height, c), tx, unconfirmed, proof)| {
                let proof = proof.filter(|_| tx.is_some());
                Message::Reply {
                    request_id: r,
                    hash_addr: h,
                    found: f,
                    height,
                    confirmations: c,
                    tx,
                    unconfirmed,
                    proof,
                }
            }),
        proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_HEADERS).prop_map(|hs| {
            Message::Headers {
                headers: hs
                    .into_iter()
                    .map(|h| {
                        let mut raw = [0u8; BLOCK_HEADER_LEN];
                        raw[..32].copy_from_slice(&h);
                        raw
                    })
                    .collect(),
            }
        }),
        proptest::collection::vec(any::<[u8; 32]>(), 1..=MAX_LOCATOR)
            .prop_map(|locator| Message::GetHeaders { locator }),
        (
            any::<[u8; 32]>(),
            1..=u16::MAX,
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_PART_DATA),
        )
            .prop_map(|(h, parts, part, data)| Message::BlockPart(BlockPart {
                block_hash: h,
                part: part % parts,
                parts,
                data,
            })),
        any::<[u8; 32]>().prop_map(|h| Message::GetBlock { block_hash: h }),
        (any::<[u8; 32]>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(t, h, w)| {
            Message::TipAnnounce {
                tip_hash: t,
                height: h,
                total_work: w,
            }
        }),
        arb_session_message(),
    ]
}

fn arb_proof() -> impl Strategy<Value = TxProof> {
    (
        any::<[u8; 32]>(),
        any::<u16>(),
        proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF_DEPTH),
    )
        .prop_map(|(h, index, siblings)| {
            let mut header = [0u8; BLOCK_HEADER_LEN];
            header[..32].copy_from_slice(&h);
            let index = (u32::from(index) & ((1u32 << siblings.len()) - 1)) as u16;
            TxProof {
                header,
                index,
                siblings,
            }
        })
}

fn arb_session_message() -> impl Strategy<Value = Message> {
    let y = || proptest::collection::vec(any::<u8>(), 0..=MAX_Y_LEN);
    let addr = || (any::<u32>(), any::<u16>()).prop_map(|(ip, p)| SocketAddrV4::new(ip.into(), p));
    prop_oneof![
        (
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<[u8; 16]>(),
                any::<u32>()
            ),
            (y(), y()),
            (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>())
        )
            .prop_map(
                |((caller, callee, nonce, ssrc), (ephemeral, next), (pk, s1, s2))| {
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&s1);
                    signature[32..].copy_from_slice(&s2);
                    Message::SessionRequest {
                        caller,
                        callee,
                        nonce,
                        ssrc,
                        ephemeral,
                        next,
                        public_key: pk,
                        signature,
                    }
                }
            ),
        (
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<[u8; 16]>(),
                any::<u32>()
            ),
            (y(), y()),
            any::<[u8; 16]>()
        )
            .prop_map(
                |((caller, callee, nonce, ssrc), (ephemeral, next), confirm)| {
                    Message::SessionResponse {
                        caller,
                        callee,
                        nonce,
                        ssrc,
                        ephemeral,
                        next,
                        confirm,
                    }
                }
            ),
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            addr(),
            addr(),
            any::<[u8; 16]>()
        )
            .prop_map(|(sender, counter, private, nat, mac)| {
                Message::HandoverRequest {
                    sender,
                    counter,
                    private,
                    nat,
                    mac,
                }
            }),
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_Y_LEN),
            any::<[u8; 16]>()
        )
            .prop_map(|(sender, counter, y, mac)| Message::KeyRenewal {
                sender,
                counter,
                y,
                mac,
            }),
        (any::<[u8; 32]>(), any::<u64>(), any::<[u8; 16]>()).prop_map(|(sender, counter, mac)| {
            Message::ControlAck {
                sender,
                counter,
                mac,
            }
        }),
        (any::<[u8; 32]>(), any::<u64>(), y(), any::<[u8; 16]>()).prop_map(
            |(sender, counter, y, mac)| Message::KeyRenewalReply {
                sender,
                counter,
                y,
                mac,
            }
        ),
        (
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<bool>()
        )
            .prop_map(|(sender, data, mac, challenge)| if challenge {
                Message::PathChallenge { sender, data, mac }
            } else {
                Message::PathResponse { sender, data, mac }
            }),
    ]
}

proptest! {
    #[test]
    fn roundtrip(msg in arb_message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(bytes.len(), msg.buffer_len());
        prop_assert_eq!(Message::parse(&bytes), Ok(msg));
    }

    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        if let Ok(msg) = Message::parse(&data) {
            prop_assert_eq!(msg.to_bytes(), data);
        }
    }

    #[test]
    fn parse_after_valid_header_never_panics(
        kind in 0u8..=17,
        body in proptest::collection::vec(any::<u8>(), 0..1300),
    ) {
        let mut data = header(kind);
        data.extend_from_slice(&body);
        if let Ok(msg) = Message::parse(&data) {
            prop_assert_eq!(msg.to_bytes(), data);
        }
    }

    #[test]
    fn mutated_messages_never_panic(msg in arb_message(), idx in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut data = msg.to_bytes();
        let i = idx % data.len();
        data[i] = val;
        data.truncate(cut % (data.len() + 1));
        if let Ok(back) = Message::parse(&data) {
            prop_assert_eq!(back.to_bytes(), data);
        }
    }

    #[test]
    fn mac_input_zeroes_only_the_tag(msg in arb_session_message()) {
        let bytes = msg.to_bytes();
        let input = mac_input(&msg);
        prop_assert_eq!(input.len(), bytes.len());
        let tagged = !matches!(msg, Message::SessionRequest { .. });
        let keep = if tagged { bytes.len() - MAC_LEN } else { bytes.len() };
        prop_assert_eq!(&input[..keep], &bytes[..keep]);
        prop_assert!(input[keep..].iter().all(|&b| b == 0));
    }

    #[test]
    fn split_then_join(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let parts = split_block([1; 32], &bytes).expect("fits");
        let mut joined = Vec::new();
        for m in &parts {
            let back = Message::parse(&m.to_bytes()).expect("parses");
            if let Message::BlockPart(p) = back {
                joined.extend_from_slice(&p.data);
            }
        }
        prop_assert_eq!(joined, bytes);
    }
}
