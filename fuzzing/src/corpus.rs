//! The seed corpus of every target, made by the real encoders and roles.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use binfm_roles::Time;
use binfm_roles::chain::Block;
use binfm_roles::session::SrtpSender;
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_stack::wire::binfm::{Message, TxProof};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::ToallTx;

use super::roles_target::{
    EN_PRIVATE, NAT_PUBLIC, PEER_ADDR, SN_ADDR, SN_PEER, dhcp_client, dhcp_server, end_node, role,
    role_record, roles_chain, roles_en_sent, roles_wallet,
};
use super::srtp::{SRTP_SSRC, srtp_key};
use super::vertical;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn drain_sn(sn: &mut SuperNode) -> Vec<binfm_roles::Transmit> {
    while sn.poll_event().is_some() {}
    while sn.poll_persist().is_some() {}
    std::iter::from_fn(|| sn.poll_transmit()).collect()
}

/// A block mined on the `roles` chain holding the peer's Tx, as its BlockParts and its bytes.
fn mined_block(peer_tx: &ToallTx) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut cfg = SnConfig::new(2, vec![SN_ADDR], 2000.0, roles_chain());
    cfg.mine = true;
    let mut miner = SuperNode::new(cfg, 9).ok()?;
    miner.start(Time::ZERO);
    let submit = Message::TxSubmit {
        tx: peer_tx.clone(),
    }
    .to_bytes();
    miner.handle_datagram(Time::ZERO, PEER_ADDR, SN_PEER, &submit);
    drain_sn(&mut miner);
    for _ in 0..100 {
        let now = miner.poll_timeout()?;
        miner.handle_timeout(now);
        let parts: Vec<Vec<u8>> = drain_sn(&mut miner)
            .into_iter()
            .filter(|t| matches!(Message::parse(&t.payload), Ok(Message::BlockPart(_))))
            .map(|t| t.payload)
            .collect();
        let (tip, height) = miner.chain().tip();
        if height > 0 && !parts.is_empty() {
            let block = miner.chain().block(&tip)?;
            if !block.txs.is_empty() {
                return Some((parts, block.encode()));
            }
        }
    }
    None
}

/// The seed corpus: small valid inputs for every target, made by the real encoders and roles
/// (so they stay valid when a format changes: rerun the `write_seed_corpus` test).
/// `root` is the repository root (the topology files are read from it).
pub fn seeds(root: &Path) -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };

    // DHCP: a full DISCOVER / OFFER / REQUEST / ACK exchange with our site options.
    let mut server = dhcp_server();
    let (mut client, _, discover) = dhcp_client();
    let srv_from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ports::DHCP_CLIENT);
    let srv_to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_SERVER);
    let cl_from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), ports::DHCP_SERVER);
    let cl_to = SocketAddrV4::new(Ipv4Addr::BROADCAST, ports::DHCP_CLIENT);
    let mut dhcp = Vec::new();
    let mut request = Some(discover);
    while let Some(req) = request.take() {
        server.handle_datagram(Time::ZERO, srv_from, srv_to, &req);
        dhcp.push(req);
        let Some(reply) = server.poll_transmit().map(|t| t.payload) else {
            break;
        };
        client.handle_datagram(Time::ZERO, cl_from, cl_to, &reply);
        dhcp.push(reply);
        request = client.poll_transmit().map(|t| t.payload);
    }
    let names = ["discover", "offer", "request", "ack"];
    for (name, bytes) in names.iter().zip(&dhcp) {
        add("dhcp_options", name, bytes.clone());
    }

    // ToALL Txs: the EN's (behind the NAT) and the peer's (public).
    let en_private = SocketAddrV4::new(EN_PRIVATE, ports::EN);
    let en_nat = SocketAddrV4::new(NAT_PUBLIC, binfm_roles::nat::h16(EN_PRIVATE, ports::EN));
    let mut en_wallet = roles_wallet(1, en_private, en_nat);
    let mut peer_wallet = roles_wallet(2, PEER_ADDR, PEER_ADDR);
    let en_tx = en_wallet.next_tx(0);
    let peer_tx = peer_wallet.next_tx(0);
    add("toall_tx", "en_tx", en_tx.to_bytes());
    add("toall_tx", "peer_tx", peer_tx.to_bytes());

    // Every BINFM message type.
    let mined = mined_block(&peer_tx);
    // The mined block's header and the peer Tx's proof in it (the Reply carries both).
    let (mined_header, peer_proof) = mined
        .as_ref()
        .and_then(|(_, bytes)| Block::<ToallTx>::decode(bytes).ok())
        .and_then(|b| {
            let ids: Vec<[u8; 32]> = b.txs.iter().map(ToallTx::id).collect();
            let index = ids.iter().position(|i| *i == peer_tx.id())?;
            let siblings = binfm_roles::chain::merkle::merkle_path(&ids, index)?;
            let header = b.header.encode();
            Some((
                Some(header),
                Some(TxProof {
                    header,
                    index: u16::try_from(index).ok()?,
                    siblings,
                }),
            ))
        })
        .unwrap_or((None, None));
    let en_addr = en_wallet.hash_addr();
    let peer_addr = peer_wallet.hash_addr();
    let msgs = [
        ("tx_submit", Message::TxSubmit { tx: en_tx.clone() }),
        (
            "tx_relay",
            Message::TxRelay {
                tx: peer_tx.clone(),
            },
        ),
        (
            "tx_ack",
            Message::TxAck {
                tx_id: en_tx.id(),
                status: binfm_stack::wire::binfm::TxStatus::EndpointMismatch,
                observed: SocketAddrV4::new(NAT_PUBLIC, 40000),
            },
        ),
        (
            "query",
            Message::Query {
                request_id: 1,
                hash_addr: peer_addr,
                want_unconfirmed: true,
            },
        ),
        (
            "reply",
            Message::Reply {
                request_id: 1,
                hash_addr: peer_addr,
                found: true,
                height: 1,
                confirmations: 2,
                tx: Some(peer_tx.clone()),
                unconfirmed: None,
                proof: peer_proof.clone(),
            },
        ),
        (
            "reply_not_found",
            Message::Reply {
                request_id: 2,
                hash_addr: en_addr,
                found: false,
                height: 0,
                confirmations: 0,
                tx: None,
                unconfirmed: Some(en_tx.clone()),
                proof: None,
            },
        ),
        (
            "get_block",
            Message::GetBlock {
                block_hash: [0x44; 32],
            },
        ),
        (
            "tip_announce",
            Message::TipAnnounce {
                tip_hash: [0x55; 32],
                height: 3,
                total_work: {
                    let mut w = [0u8; 32];
                    w[30] = 0x1f;
                    w
                },
            },
        ),
        (
            "session_request",
            Message::SessionRequest {
                caller: peer_addr,
                callee: en_addr,
                nonce: [0x33; 16],
                ssrc: 0xcafe_babe,
                ephemeral: en_tx.out.y.clone(),
                next: peer_tx.out.y.clone(),
                public_key: peer_tx.public_key,
                signature: [0x5a; 64],
            },
        ),
        (
            "session_response",
            Message::SessionResponse {
                caller: en_addr,
                callee: peer_addr,
                nonce: [0x44; 16],
                ssrc: 7,
                ephemeral: peer_tx.out.y.clone(),
                next: en_tx.out.y.clone(),
                confirm: [0x55; 16],
            },
        ),
        (
            "handover_request",
            Message::HandoverRequest {
                sender: peer_addr,
                counter: 1,
                private: SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 100), ports::EN),
                nat: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 0x6a3f),
                mac: [0x66; 16],
            },
        ),
        (
            "key_renewal",
            Message::KeyRenewal {
                sender: peer_addr,
                counter: 2,
                y: peer_tx.out.y.clone(),
                mac: [0x77; 16],
            },
        ),
        (
            "control_ack",
            Message::ControlAck {
                sender: peer_addr,
                counter: 2,
                mac: [0x88; 16],
            },
        ),
        (
            "key_renewal_reply",
            Message::KeyRenewalReply {
                sender: peer_addr,
                counter: 2,
                y: en_tx.out.y.clone(),
                mac: [0x89; 16],
            },
        ),
        (
            "path_challenge",
            Message::PathChallenge {
                sender: peer_addr,
                data: [0x8a; 16],
                mac: [0x8b; 16],
            },
        ),
        (
            "path_response",
            Message::PathResponse {
                sender: peer_addr,
                data: [0x8a; 16],
                mac: [0x8c; 16],
            },
        ),
    ];
    for (name, msg) in &msgs {
        add("binfm_message", name, msg.to_bytes());
    }
    let headers_msg = Message::Headers {
        headers: mined_header.into_iter().collect(),
    };
    add("binfm_message", "headers", headers_msg.to_bytes());
    let get_headers = Message::GetHeaders {
        locator: vec![roles_chain().genesis::<ToallTx>().hash()],
    };
    add("binfm_message", "get_headers", get_headers.to_bytes());
    if let Some((parts, _)) = &mined {
        for (i, p) in parts.iter().enumerate() {
            add("binfm_message", &format!("block_part_{i}"), p.clone());
        }
    }

    // Blocks: genesis (no Tx) and a mined one.
    add(
        "block",
        "genesis",
        roles_chain().genesis::<ToallTx>().encode(),
    );
    if let Some((_, bytes)) = &mined {
        add("block", "mined_one_tx", bytes.clone());
    }

    // SRTP: an authentic packet alone, then a script (see `rtp_srtp`).
    let mut sender = SrtpSender::new(srtp_key(1), SRTP_SSRC, 1000);
    let first = sender.protect(0, 0, &[0x55; 160]);
    add("rtp_srtp", "authentic_packet", first.clone());
    let mut script = vec![0u8, first.len().min(255) as u8];
    script.extend_from_slice(&first[..first.len().min(255)]);
    script.extend_from_slice(&[1, 0x03, 0xe8, 4, 1, 2, 3, 4]); // seq 1000 again: replay
    script.extend_from_slice(&[1, 0x03, 0xe9, 2, 9, 9]); // seq 1001
    script.extend_from_slice(&[3]); // rekey
    script.extend_from_slice(&[2, 0x03, 0xea, 1, 7]); // seq 1002 under the next key
    script.extend_from_slice(&[1, 0x03, 0xe7, 1, 7]); // straggler under the old key
    add("rtp_srtp", "script", script);

    // Topologies: the shipped ones and the known-bad ones.
    for dir in ["topologies", "testbed/tests/bad-topologies"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            if let (Some(name), Ok(bytes)) = (path.file_name(), std::fs::read(&path)) {
                add("topology", &name.to_string_lossy(), bytes);
            }
        }
    }

    // Roles: the DHCP exchange, a registration, a query and a block into the SN, the EN's
    // own traffic answered, and UDP both ways through the NAT.
    let mut en = end_node();
    let mut en_query = None;
    let mut en_reg = None;
    while let Some(t) = en.poll_transmit() {
        match Message::parse(&t.payload) {
            Ok(Message::Query {
                request_id,
                hash_addr,
                ..
            }) if hash_addr == peer_addr => en_query = Some(request_id),
            Ok(Message::TxSubmit { tx }) => en_reg = Some(tx),
            _ => {}
        }
    }
    let mut dhcp_records = Vec::new();
    for (i, bytes) in dhcp.iter().enumerate() {
        let sel = if i % 2 == 0 {
            role::DHCP_SERVER
        } else {
            role::DHCP_CLIENT | role::FLAG
        };
        dhcp_records.extend(role_record(sel, bytes));
    }
    add("roles", "dhcp_exchange", dhcp_records);

    let mut sn_records = role_record(
        role::SN,
        &Message::TxSubmit {
            tx: peer_tx.clone(),
        }
        .to_bytes(),
    );
    sn_records.extend(role_record(role::SN, &msgs[3].1.to_bytes()));
    if let Some((parts, _)) = &mined {
        for p in parts {
            sn_records.extend(role_record(role::SN | role::FLAG | role::ADVANCE, p));
        }
    }
    sn_records.extend(role_record(role::SN, &msgs[3].1.to_bytes()));
    add("roles", "sn_register_block_query", sn_records);

    let mut en_records = Vec::new();
    if let Some(tx) = &en_reg {
        let ack = Message::TxAck {
            tx_id: tx.id(),
            status: binfm_stack::wire::binfm::TxStatus::Accepted,
            observed: SocketAddrV4::new(NAT_PUBLIC, tx.out.nat_port),
        };
        en_records.extend(role_record(role::EN | role::FLAG, &ack.to_bytes()));
    }
    // The SN pushes the block's header, then answers the call's Query with the proof.
    en_records.extend(role_record(role::EN | role::FLAG, &headers_msg.to_bytes()));
    if let Some(request_id) = en_query {
        let reply = Message::Reply {
            request_id,
            hash_addr: peer_addr,
            found: true,
            height: 1,
            confirmations: 1,
            tx: Some(peer_tx.clone()),
            unconfirmed: None,
            proof: peer_proof.clone(),
        };
        en_records.extend(role_record(role::EN | role::FLAG, &reply.to_bytes()));
    }
    en_records.extend(role_record(role::EN, &msgs[8].1.to_bytes()));
    en_records.extend(role_record(role::EN, &first));
    en_records.extend(role_record(
        role::EN | role::ADVANCE,
        &msgs[10].1.to_bytes(),
    ));
    add("roles", "en_register_call", en_records);
    if let (Some(tx), Some(request_id)) = (&en_reg, en_query) {
        add(
            "roles",
            "en_authentic_session",
            en_session_records(tx, request_id, &peer_tx),
        );
    }

    let out_pkt = udp_packet(en_private, SN_ADDR, b"BF\x01\x03");
    let in_pkt = udp_packet(SN_ADDR, en_nat, b"BF\x01\x04");
    let mut nat_records = role_record(role::NAT_OUT, &out_pkt);
    nat_records.extend(role_record(role::NAT_IN, &in_pkt));
    nat_records.extend(role_record(role::NAT_IN | role::ADVANCE, &in_pkt));
    add("roles", "nat_udp_both_ways", nat_records);

    // The vertical model: STUN, its messages, and its roles.
    vertical::seeds(&mut add);
    out
}

/// The EN's call answered by a genuine peer (a real end node with the peer's wallet): the
/// EN's registration acknowledged, a block holding both ENs' Txs pushed, the EN's Query
/// answered with the peer Tx's proof, then the peer's Session Response, a media frame, a Key
/// Renewal and a Handover Request, all authentic, and the peer's Path Response to the EN's
/// challenge of its new path, so the fuzzer starts from inputs that reach the code behind the
/// signature, proof and MAC checks. The EN's datagrams are made by
/// running a copy of the target's EN on the same records.
fn en_session_records(en_tx: &ToallTx, request_id: u32, peer_tx: &ToallTx) -> Vec<u8> {
    use binfm_roles::en::EndNode;
    let mut records = Vec::new();
    let Some(chain) = chain_with(&[peer_tx.clone(), en_tx.clone()]) else {
        return records;
    };
    let (tip, _) = chain.tip();
    let headers = Message::Headers {
        headers: chain
            .block(&tip)
            .map(|b| vec![b.header.encode()])
            .unwrap_or_default(),
    }
    .to_bytes();
    let reply_for = |request_id: u32, addr: binfm_stack::wire::toall::HashAddr| {
        let found = chain.lookup_with_proof(&addr);
        Message::Reply {
            request_id,
            hash_addr: addr,
            found: found.is_some(),
            height: found.as_ref().map_or(0, |f| f.1),
            confirmations: 1,
            proof: found.as_ref().and_then(|(_, _, h, i, path)| {
                Some(TxProof {
                    header: h.encode(),
                    index: u16::try_from(*i).ok()?,
                    siblings: path.clone(),
                })
            }),
            tx: found.map(|f| f.0.clone()),
            unconfirmed: None,
        }
        .to_bytes()
    };
    let ack = Message::TxAck {
        tx_id: en_tx.id(),
        status: binfm_stack::wire::binfm::TxStatus::Accepted,
        observed: SocketAddrV4::new(NAT_PUBLIC, en_tx.out.nat_port),
    }
    .to_bytes();
    let reply = reply_for(request_id, peer_tx.out.hash_addr);
    let en_at = SocketAddrV4::new(EN_PRIVATE, ports::EN);
    let en_nat = SocketAddrV4::new(en_tx.out.nat_ip, en_tx.out.nat_port);
    let mut en = end_node();
    while en.poll_transmit().is_some() {}
    let mut from_en = Vec::new();
    for bytes in [&ack, &headers, &reply] {
        en.handle_datagram(Time::ZERO, SN_ADDR, en_at, bytes);
        records.extend(role_record(role::EN | role::FLAG, bytes));
        from_en.extend(std::iter::from_fn(|| en.poll_transmit()));
    }
    let Some(request) = from_en.into_iter().find(|t| {
        matches!(
            Message::parse(&t.payload),
            Ok(Message::SessionRequest { .. })
        )
    }) else {
        return records;
    };
    // The peer: registered and following the chain, it gets the request, looks the EN up
    // (the Reply proves the EN's Tx), answers.
    let mut peer = EndNode::new(
        roles_wallet(2, PEER_ADDR, PEER_ADDR),
        ports::EN,
        [22; 32],
        660.0,
    );
    peer.set_chain_config(roles_chain());
    peer.on_address(Time::ZERO, *PEER_ADDR.ip(), None, vec![SN_ADDR]);
    peer.handle_datagram(Time::ZERO, SN_ADDR, PEER_ADDR, &headers);
    while peer.poll_transmit().is_some() {}
    peer.handle_datagram(Time::ZERO, en_nat, PEER_ADDR, &request.payload);
    let mut to_en = Vec::new();
    let drain_peer = |peer: &mut EndNode, to_en: &mut Vec<Vec<u8>>| {
        let out: Vec<_> = std::iter::from_fn(|| peer.poll_transmit()).collect();
        for t in out {
            if let Ok(Message::Query {
                request_id,
                hash_addr,
                ..
            }) = Message::parse(&t.payload)
            {
                let reply = reply_for(request_id, hash_addr);
                peer.handle_datagram(Time::ZERO, SN_ADDR, PEER_ADDR, &reply);
            } else if t.dst == en_nat {
                to_en.push(t.payload);
            }
        }
    };
    drain_peer(&mut peer, &mut to_en);
    drain_peer(&mut peer, &mut to_en);
    // One audio frame, a key renewal and a move of the peer.
    peer.handle_timeout(Time::ZERO);
    drain_peer(&mut peer, &mut to_en);
    peer.rekey(Time::ZERO);
    drain_peer(&mut peer, &mut to_en);
    peer.on_address_lost();
    peer.on_address(
        Time::ZERO,
        Ipv4Addr::new(198, 51, 100, 51),
        None,
        vec![SN_ADDR],
    );
    drain_peer(&mut peer, &mut to_en);
    let mut rtp_done = false;
    for bytes in to_en {
        let keep = match Message::parse(&bytes) {
            Ok(
                Message::SessionResponse { .. }
                | Message::KeyRenewal { .. }
                | Message::HandoverRequest { .. },
            ) => true,
            Ok(_) => false,
            Err(_) => {
                binfm_stack::wire::rtp::is_rtp(&bytes) && !std::mem::replace(&mut rtp_done, true)
            }
        };
        if keep {
            records.extend(role_record(role::EN, &bytes));
        }
    }
    // The EN (the target's own, run on these records) challenges the peer's new path; the
    // moved peer answers, which validates the path.
    let challenge = roles_en_sent(&records)
        .into_iter()
        .find(|p| matches!(Message::parse(p), Ok(Message::PathChallenge { .. })));
    if let Some(challenge) = challenge {
        let moved = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 51), ports::EN);
        peer.handle_datagram(Time::ZERO, en_nat, moved, &challenge);
        let response = std::iter::from_fn(|| peer.poll_transmit())
            .map(|t| t.payload)
            .find(|p| matches!(Message::parse(p), Ok(Message::PathResponse { .. })));
        if let Some(response) = response {
            records.extend(role_record(role::EN, &response));
        }
    }
    records
}

/// A `roles` chain with one block mined on genesis holding `txs`.
fn chain_with(txs: &[ToallTx]) -> Option<binfm_roles::chain::Chain<ToallTx>> {
    use binfm_roles::chain::{Chain, MempoolConfig, pow};
    use binfm_roles::sn::validate_tx;
    let mut chain = Chain::new(roles_chain(), MempoolConfig::default()).ok()?;
    for tx in txs {
        chain.add_tx(tx.clone(), 10, &validate_tx).ok()?;
    }
    let mut block = chain.block_template(10, 1, 100);
    let (nonce, _) = pow::mine(&block.header, 0, 1 << 24)?;
    block.header.nonce = nonce;
    chain.add_block(block, 10, &validate_tx).ok()?;
    Some(chain)
}

/// An IPv4/UDP packet with correct checksums (etherparse builds it).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(b.size(payload.len()));
    match b.write(&mut v, payload) {
        Ok(()) => v,
        Err(_) => Vec::new(),
    }
}
