//! The Wireshark dissector `scripts/wireshark/binfm.lua` against a real run: tshark with the
//! script decodes every BINFM datagram of `paper.toml` (registration, lookups, the SNs' chain
//! traffic, and the call: SessionRequest/Response, HandoverRequest, KeyRenewal) and hands the
//! call's SRTP, which shares the EN's port, to Wireshark's RTP dissector. The counts per
//! message type on the public segment match the roles' events, the RTP frames there match the
//! frames `results.json` says were sent, the decoded fields match the events, the DHCP offers
//! and acks show our site options 224 and 225 as `dhcp.ack` reported them, and neither the
//! real capture nor a capture of truncated and corrupted datagrams (BINFM types 1-13 and RTP)
//! makes the script raise a Lua error (the malformed ones get a `binfm.*` expert info).
//! Wireshark's own STUN dissectors decode the vertical model's STUN server's answers to an RFC
//! 3489 client (MAPPED-ADDRESS, 420 with UNKNOWN-ATTRIBUTES) without complaint.
//!
//! Skipped (with a printed `SKIPPED:` line) when tshark is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_roles::session::audio::tone_frame;
use binfm_testbed::events::JsonRecord as Record;
use binfm_testbed::topology::Topology;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::Command;

const SN_PORT: u16 = 7400;
const EN_PORT: u16 = 7401;
/// RTP header (12) + one 20 ms PCMU frame (160) + AES-GCM tag (16), plus the UDP header.
const RTP_UDP_LEN: usize = 8 + 12 + 160 + 16;
/// The tones the ENs of `paper.toml` send (testbed/src/apps.rs: 440 Hz, 660 Hz, ...).
const TONES: [f64; 2] = [440.0, 660.0];

/// Every expert info the script adds for a bad datagram.
const BINFM_PROBLEMS: &str =
    "binfm.truncated || binfm.malformed || binfm.trailing || binfm.bad_value";

fn script() -> std::path::PathBuf {
    root().join("scripts/wireshark/binfm.lua")
}

/// Runs tshark with the script over `capture`; returns stdout. Panics on failure or on any
/// Lua complaint on stderr.
fn tshark(capture: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", script().display()))
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("lua"),
        "tshark complained about the Lua script: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `-T fields` rows, one per frame, each a map from field name to its text (empty when the
/// frame does not have the field; several occurrences are joined by `,`).
type Row = HashMap<&'static str, String>;

fn rows(capture: &Path, filter: &str, fields: &[&'static str]) -> Vec<Row> {
    let mut args = vec!["-Y", filter, "-T", "fields", "-E", "separator=/t"];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    tshark(capture, &args)
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            fields
                .iter()
                .map(|f| (*f, cols.next().unwrap_or("").to_owned()))
                .collect()
        })
        .collect()
}

/// Hex bytes as tshark prints them (with or without `:` separators), lower case, no `:`.
/// tshark prints bytes as `aa:bb:..`: the same digits without colons, lower case.
fn plain_hex(s: &str) -> String {
    s.replace(':', "").to_lowercase()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = plain_hex(s);
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn field<'a>(e: &'a Record, k: &str) -> &'a Value {
    e.fields.get(k).unwrap_or(&Value::Null)
}

fn count(events: &[Record], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// The hash address an EN registered with (from its first `en.register`).
fn hash_addr_of(events: &[Record], host: &str) -> String {
    events
        .iter()
        .find(|e| e.kind == "en.register" && e.host == host)
        .and_then(|e| field(e, "hash_addr").as_str())
        .unwrap_or_else(|| panic!("no en.register of {host}"))
        .to_owned()
}

/// Columns of the main tshark run.
const F: &[&str] = &[
    "frame.number",
    "frame.interface_name",
    "ip.src",
    "udp.srcport",
    "udp.dstport",
    "binfm.type",
    "binfm.tx.seq",
    "binfm.tx.hash_addr",
    "binfm.tx.nat_ip",
    "binfm.tx.nat_port",
    "binfm.tx.y",
    "binfm.ack.status",
    "binfm.proof.depth",
    "binfm.session.caller",
    "binfm.session.callee",
    "binfm.session.ssrc",
    "binfm.session.confirm",
    "binfm.session.ephemeral_len",
    "binfm.session.next_len",
    "binfm.session.public_key",
    "binfm.session.signature",
    "binfm.rekey_reply.sender",
    "binfm.rekey_reply.counter",
    "binfm.path.sender",
    "binfm.handover.sender",
    "binfm.handover.counter",
    "binfm.handover.private_ip",
    "binfm.handover.private_port",
    "binfm.handover.nat_ip",
    "binfm.handover.nat_port",
    "binfm.rekey.sender",
    "binfm.rekey.counter",
    "binfm.rekey.y_len",
    "binfm.rekey.y",
    "binfm.dhcp.nat_public",
    "binfm.dhcp.super_node",
    "dhcp.option.dhcp",
    "rtp.ssrc",
];

#[test]
fn dissector_decodes_every_binfm_message_and_the_rtp_of_a_paper_run() {
    if !have("tshark") {
        println!("SKIPPED: tshark is not installed");
        return;
    }
    // The whole story: the call starts at 3 s, A moves at 10 s, rekeys at 20 s, hangs up at
    // 28 s.
    let (dir, summary) = run("paper.toml", None, None);
    assert!(!summary.interrupted);
    let capture = dir.path().join("capture.pcapng");
    let events = read_events(&dir.path().join("events.jsonl"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();

    // No Lua error, no malformed packet, no binfm expert anywhere in a clean run.
    let bad = tshark(
        &capture,
        &[
            "-Y",
            &format!("_ws.lua.error || _ws.malformed || binfm.dhcp.bad_option || {BINFM_PROBLEMS}"),
        ],
    );
    assert!(bad.trim().is_empty(), "problems in a clean run:\n{bad}");

    let all = rows(&capture, "udp", F);
    // Every UDP datagram but DHCP is BINFM or RTP, on every segment: on the EN and SN ports
    // by port, and behind the NATs (public side: the NATs' ports) by the heuristic and the
    // conversation it claims, which is how the RTP between two NAT mappings is found.
    for r in &all {
        if !r["dhcp.option.dhcp"].is_empty() {
            continue;
        }
        let binfm = !r["binfm.type"].is_empty();
        let rtp = !r["rtp.ssrc"].is_empty();
        assert!(
            binfm != rtp,
            "not decoded as exactly one of BINFM, RTP: {r:?}"
        );
        if [SN_PORT, EN_PORT]
            .iter()
            .any(|p| r["udp.srcport"] == p.to_string() || r["udp.dstport"] == p.to_string())
        {
            assert!(binfm || rtp, "BINFM port but not decoded: {r:?}");
        }
    }

    // Counts per type on the public segment (each datagram is captured once per segment it
    // crosses; every EN <-> SN, SN <-> SN and EN <-> EN datagram crosses `public` once).
    let public: Vec<&Row> = all
        .iter()
        .filter(|r| r["frame.interface_name"] == "public")
        .collect();
    let of_type = |t: u8| -> Vec<&Row> {
        public
            .iter()
            .copied()
            .filter(|r| r["binfm.type"] == t.to_string())
            .collect()
    };
    let per_type: BTreeMap<u8, usize> = public
        .iter()
        .filter_map(|r| r["binfm.type"].parse::<u8>().ok())
        .fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t).or_default() += 1;
            m
        });
    println!("BINFM frames on public per type: {per_type:?}");

    let submits = of_type(1);
    let acks = of_type(2);
    let queries = of_type(3);
    let replies = of_type(4);
    let relays = of_type(5);
    assert!(!submits.is_empty() && !queries.is_empty());
    assert_eq!(submits.len(), count(&events, "en.tx_sent"), "TxSubmit");
    assert_eq!(queries.len(), count(&events, "en.query_sent"), "Query");
    // Every Query is answered (no loss on paper.toml): the peers' lookups (`sn.query`) and
    // each EN's lookup of its own latest seq at start (not found: counted as a refusal).
    assert_eq!(replies.len(), queries.len(), "Reply");
    // Every Reply that finds a Tx carries its Merkle proof.
    let proven = replies
        .iter()
        .filter(|r| !r["binfm.proof.depth"].is_empty())
        .count();
    let found_queries = events
        .iter()
        .filter(|e| e.kind == "sn.query" && field(e, "found") == true)
        .count();
    assert_eq!(proven, found_queries, "Replies with a proof");
    // The SNs push block headers to the ENs that registered with them (light client).
    assert!(!of_type(20).is_empty(), "no Headers");
    assert!(!of_type(6).is_empty(), "no BlockPart");
    assert!(!of_type(8).is_empty(), "no TipAnnounce");

    // TxAck: the SN answers every TxSubmit (no loss in paper.toml); per status, the events
    // of `SuperNode::on_tx_submit`.
    assert_eq!(acks.len(), submits.len(), "one TxAck per TxSubmit");
    let acks_with = |s: &str| acks.iter().filter(|r| r["binfm.ack.status"] == s).count();
    let accepted_direct = events
        .iter()
        .filter(|e| e.kind == "sn.tx_accepted" && field(e, "relayed_by").is_null())
        .count();
    assert_eq!(acks_with("0"), accepted_direct, "Accepted acks");
    assert_eq!(
        acks_with("1"),
        count(&events, "sn.endpoint_mismatch"),
        "EndpointMismatch acks"
    );
    let topo = Topology::load(&root().join("topologies/paper.toml")).unwrap();
    // Rejected TxAcks: each answers a TxSubmit that verify_tx or the mempool refused. The SNs
    // count every refusal by reason in results.json (relayed Txs they refuse too, without an
    // ack; refusal events are rate-limited `sn.drop`s, so they cannot be counted one by one).
    let refused = |reason: &str| -> usize {
        results["chain"]["super_nodes"]
            .as_object()
            .unwrap()
            .values()
            .map(|sn| sn["refused"][reason].as_u64().unwrap_or(0) as usize)
            .sum()
    };
    let rejected_acks = acks_with("2");
    let refusals = refused("tx_bad_signature") + refused("tx_invalid") + refused("tx_refused");
    assert!(
        rejected_acks <= refusals,
        "Rejected acks {rejected_acks}, refusals counted {refusals}"
    );

    // TxRelay: each accepted Tx is flooded to the SN's peers except the one it came from,
    // and a Tx requeued by a reorg to all of them.
    let peers: HashMap<&str, usize> = topo
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.super_node.as_ref()?.peers.len())))
        .collect();
    let expected_relays: usize = events
        .iter()
        .map(|e| match e.kind.as_str() {
            "sn.tx_accepted" if field(e, "relayed_by").is_null() => peers[e.host.as_str()],
            "sn.tx_accepted" => peers[e.host.as_str()] - 1,
            "sn.tx_requeued" => peers[e.host.as_str()],
            _ => 0,
        })
        .sum();
    assert_eq!(relays.len(), expected_relays, "TxRelay");

    // The decoded TxSubmit fields are what the EN registered.
    for reg in events.iter().filter(|e| e.kind == "en.register") {
        let seq = field(reg, "seq").as_u64().unwrap().to_string();
        let hash = field(reg, "hash_addr").as_str().unwrap();
        let nat = field(reg, "nat").as_str().unwrap();
        let frame = submits
            .iter()
            .find(|r| r["binfm.tx.seq"] == seq && plain_hex(&r["binfm.tx.hash_addr"]) == hash)
            .unwrap_or_else(|| panic!("no TxSubmit on public for {reg:?}"));
        assert_eq!(
            format!(
                "{}:{}",
                frame["binfm.tx.nat_ip"], frame["binfm.tx.nat_port"]
            ),
            nat
        );
    }

    // ---- the call: control messages ----
    // Each EN <-> EN message crosses `public` once (NAT to NAT). paper.toml loses nothing
    // and every answer beats the 500 ms retransmission timer (the Response comes 480 ms after
    // the Request), so each event stands for exactly one datagram.
    let requests = of_type(9);
    let responses = of_type(10);
    let handovers = of_type(11);
    let renewals = of_type(12);
    let callee_active: Vec<&Record> = events
        .iter()
        .filter(|e| e.kind == "call.active" && field(e, "role") == "callee")
        .collect();
    assert!(!requests.is_empty(), "no SessionRequest");
    assert_eq!(
        requests.len(),
        count(&events, "call.request_sent"),
        "SessionRequest"
    );
    assert_eq!(responses.len(), callee_active.len(), "SessionResponse");
    assert_eq!(
        handovers.len(),
        count(&events, "call.handover_sent"),
        "HandoverRequest"
    );
    assert!(!handovers.is_empty(), "no HandoverRequest");
    assert_eq!(
        renewals.len(),
        count(&events, "call.rekey_sent"),
        "KeyRenewal"
    );
    assert!(!renewals.is_empty(), "no KeyRenewal");
    assert!(of_type(13).is_empty(), "ControlAck is never sent (yet)");
    // Each accepted renewal is answered by one Reply; each accepted handover is checked with
    // path challenges, and answered.
    assert_eq!(
        of_type(14).len(),
        count(&events, "call.rekey_accepted"),
        "KeyRenewalReply"
    );
    assert!(!of_type(15).is_empty(), "no PathChallenge");
    assert_eq!(
        of_type(16).len(),
        of_type(15).len(),
        "one PathResponse per PathChallenge that reached the mover"
    );

    // The SessionRequest carries what the caller's `call.started` says; the Response names
    // the same two parties.
    let mut caller_ssrc = HashMap::new(); // caller host -> its SSRC
    for started in events.iter().filter(|e| e.kind == "call.started") {
        let me = hash_addr_of(&events, &started.host);
        let peer = field(started, "peer").as_str().unwrap();
        let ssrc = field(started, "ssrc").as_u64().unwrap();
        let ssrc = format!("{ssrc:#010x}");
        let req = requests
            .iter()
            .find(|r| plain_hex(&r["binfm.session.caller"]) == me)
            .unwrap_or_else(|| panic!("no SessionRequest from {}", started.host));
        assert_eq!(plain_hex(&req["binfm.session.callee"]), peer);
        assert_eq!(req["binfm.session.ssrc"], ssrc);
        assert_eq!(req["binfm.session.ephemeral_len"], "256");
        assert_eq!(req["binfm.session.next_len"], "256");
        assert_eq!(unhex(&req["binfm.session.public_key"]).len(), 32);
        assert_eq!(unhex(&req["binfm.session.signature"]).len(), 64);
        let resp = responses
            .iter()
            .find(|r| plain_hex(&r["binfm.session.caller"]) == me)
            .unwrap_or_else(|| panic!("no SessionResponse to {}", started.host));
        assert_eq!(plain_hex(&resp["binfm.session.callee"]), peer);
        assert_eq!(unhex(&resp["binfm.session.confirm"]).len(), 16);
        assert_eq!(resp["binfm.session.ephemeral_len"], "256");
        caller_ssrc.insert(started.host.clone(), ssrc);
    }

    // The HandoverRequest carries the new addresses of `call.handover_sent`, and the moved
    // EN's control counter rises from one control message to the next (handover, then
    // renewal).
    for ev in events.iter().filter(|e| e.kind == "call.handover_sent") {
        let me = hash_addr_of(&events, &ev.host);
        let h = handovers
            .iter()
            .find(|r| plain_hex(&r["binfm.handover.sender"]) == me)
            .unwrap_or_else(|| panic!("no HandoverRequest from {}", ev.host));
        assert_eq!(
            format!(
                "{}:{}",
                h["binfm.handover.private_ip"], h["binfm.handover.private_port"]
            ),
            field(ev, "private").as_str().unwrap()
        );
        assert_eq!(
            format!(
                "{}:{}",
                h["binfm.handover.nat_ip"], h["binfm.handover.nat_port"]
            ),
            field(ev, "nat_guess").as_str().unwrap()
        );
    }
    let mut counters: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &public {
        for (sender, counter) in [
            ("binfm.handover.sender", "binfm.handover.counter"),
            ("binfm.rekey.sender", "binfm.rekey.counter"),
        ] {
            if !r[sender].is_empty() {
                counters
                    .entry(plain_hex(&r[sender]))
                    .or_default()
                    .push(r[counter].parse().unwrap());
            }
        }
    }
    for (sender, c) in &counters {
        assert!(
            c.windows(2).all(|w| w[0] < w[1]),
            "control counters of {sender} do not rise: {c:?}"
        );
    }

    // The KeyRenewal carries a fresh ephemeral, not the Y' the EN registers in the Tx it
    // submits for the renewal: no session key depends on a long-term value any more.
    for ev in events.iter().filter(|e| e.kind == "call.rekey_sent") {
        let me = hash_addr_of(&events, &ev.host);
        let k = renewals
            .iter()
            .find(|r| plain_hex(&r["binfm.rekey.sender"]) == me)
            .unwrap_or_else(|| panic!("no KeyRenewal from {}", ev.host));
        assert_eq!(k["binfm.rekey.y_len"], "256");
        let reg = events
            .iter()
            .find(|e| {
                e.kind == "en.register"
                    && e.host == ev.host
                    && field(e, "why") == "key_renewal"
                    && e.t >= ev.t
            })
            .expect("a registration for the key renewal");
        let seq = field(reg, "seq").as_u64().unwrap().to_string();
        let tx = submits
            .iter()
            .find(|r| r["binfm.tx.seq"] == seq && plain_hex(&r["binfm.tx.hash_addr"]) == me)
            .expect("the renewal's TxSubmit on public");
        assert_ne!(
            plain_hex(&k["binfm.rekey.y"]),
            plain_hex(&tx["binfm.tx.y"]),
            "the renewal's ephemeral is not the registered Y'"
        );
    }

    // ---- the call: RTP ----
    let call = &results["binfm"]["calls"][0];
    let (caller, callee) = (
        call["caller"].as_str().unwrap(),
        call["callee"].as_str().unwrap(),
    );
    let sent = |dir: String| call["audio"][&dir]["frames_sent"].as_u64().unwrap() as usize;
    let forward_sent = sent(format!("{caller}->{callee}"));
    let backward_sent = sent(format!("{callee}->{caller}"));
    let caller_ssrc = caller_ssrc[caller].clone();
    let callee_ssrc = responses[0]["binfm.session.ssrc"].clone();

    let media = rows(
        &capture,
        "rtp && frame.interface_name == \"public\"",
        &[
            "rtp.ssrc",
            "rtp.p_type",
            "rtp.timestamp",
            "rtp.payload",
            "udp.length",
            "binfm",
        ],
    );
    let per_ssrc = |ssrc: &str| media.iter().filter(|r| r["rtp.ssrc"] == ssrc).count();
    println!(
        "RTP frames on public: {} ({caller_ssrc}: {}, {callee_ssrc}: {}); sent {forward_sent} + {backward_sent}",
        media.len(),
        per_ssrc(&caller_ssrc),
        per_ssrc(&callee_ssrc)
    );
    // Every frame an EN sent crosses `public` once: the caller's frames during its move were
    // not sent (it had no address), and the callee's frames toward the caller's old NAT
    // mapping, until the HandoverRequest arrived, crossed `public` before being dropped
    // behind that NAT (the caller had left its LAN).
    assert_eq!(
        per_ssrc(&caller_ssrc),
        forward_sent,
        "RTP {caller}->{callee}"
    );
    assert_eq!(
        per_ssrc(&callee_ssrc),
        backward_sent,
        "RTP {callee}->{caller}"
    );
    assert_eq!(
        media.len(),
        forward_sent + backward_sent,
        "RTP of other SSRCs"
    );
    let mut checked_all_indexes = 0;
    for (i, r) in media.iter().enumerate() {
        assert_eq!(r["rtp.p_type"], "0", "PCMU: {r:?}");
        assert_eq!(
            r["udp.length"],
            RTP_UDP_LEN.to_string(),
            "one SRTP frame: {r:?}"
        );
        assert!(r["binfm"].is_empty(), "no BINFM tree on clean RTP: {r:?}");
        // The payload is ciphertext: not the tone frame the timestamp stands for
        // (timestamp = frame index * 160), in either direction's tone.
        let payload = unhex(&r["rtp.payload"]);
        assert_eq!(payload.len(), 160 + 16);
        let index = r["rtp.timestamp"].parse::<u64>().unwrap() / 160;
        for tone in TONES {
            assert_ne!(
                payload[..160],
                tone_frame(tone, index),
                "plaintext on the wire: {r:?}"
            );
        }
        // A few frames against every frame of the call.
        if i % 500 == 0 {
            checked_all_indexes += 1;
            for tone in TONES {
                for k in 0..2000 {
                    assert_ne!(
                        payload[..160],
                        tone_frame(tone, k),
                        "tone frame {k} in {r:?}"
                    );
                }
            }
        }
    }
    assert!(checked_all_indexes > 1);

    // ---- DHCP ----
    // Every OFFER (2) and ACK (5) shows option 224; the ACKs match `dhcp.ack`.
    let dhcp_replies: Vec<&Row> = all
        .iter()
        .filter(|r| r["dhcp.option.dhcp"] == "2" || r["dhcp.option.dhcp"] == "5")
        .collect();
    assert!(!dhcp_replies.is_empty(), "no DHCP offers/acks");
    for r in &dhcp_replies {
        assert!(
            !r["binfm.dhcp.nat_public"].is_empty(),
            "no binfm.dhcp.nat_public in {r:?}"
        );
        assert!(
            !r["binfm.dhcp.super_node"].is_empty(),
            "no binfm.dhcp.super_node in {r:?}"
        );
    }
    for ack in events.iter().filter(|e| e.kind == "dhcp.ack") {
        let nat = field(ack, "nat_public").as_str().unwrap();
        let sns: Vec<&str> = field(ack, "super_nodes")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            dhcp_replies.iter().any(|r| r["dhcp.option.dhcp"] == "5"
                && r["binfm.dhcp.nat_public"] == nat
                && r["binfm.dhcp.super_node"] == sns.join(",")),
            "no DHCP ACK frame with {nat} and {sns:?}"
        );
    }
    let nat_filter = rows(&capture, "binfm.dhcp.nat_public", &["frame.number"]);
    assert_eq!(
        nat_filter.len(),
        dhcp_replies.len(),
        "-Y binfm.dhcp.nat_public"
    );
}

// ---- malformed datagrams ------------------------------------------------------------------

/// Internet checksum of an IPv4 header.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The same IPv4/UDP datagram as `orig` with another UDP payload (lengths and the IP checksum
/// fixed, UDP checksum 0 = none).
fn with_payload(orig: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = usize::from(orig[0] & 0x0f) * 4;
    let mut p = orig[..ihl + 8].to_vec();
    p.extend_from_slice(payload);
    let total = u16::try_from(p.len()).unwrap();
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = ip_checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[ihl + 4..ihl + 6].copy_from_slice(&(total - u16::try_from(ihl).unwrap()).to_be_bytes());
    p[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
    p
}

/// A classic pcap file of raw IPv4 packets (LINKTYPE_IPV4 = 228).
fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&228u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        let len = u32::try_from(p.len()).unwrap();
        b.extend_from_slice(&u32::try_from(i).unwrap().to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(p);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn dissector_flags_truncated_and_corrupted_datagrams_without_lua_errors() {
    if !have("tshark") {
        println!("SKIPPED: tshark is not installed");
        return;
    }
    // The whole story, for samples of the call's messages and media.
    let (dir, _) = run("paper.toml", None, None);
    let cap = read_capture(&dir.path().join("capture.pcapng"));
    let udp = |data: &[u8]| -> Option<(usize, u16)> {
        let ihl = usize::from(data[0] & 0x0f) * 4;
        (data[9] == 17 && data.len() >= ihl + 12)
            .then(|| (ihl, u16::from_be_bytes([data[ihl + 2], data[ihl + 3]])))
    };

    // One datagram of each BINFM type seen, sent to the SN port (so the port table, not the
    // heuristic, picks the dissector).
    let mut samples: BTreeMap<u8, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for c in &cap {
        let Some((ihl, dport)) = udp(&c.data) else {
            continue;
        };
        let payload = &c.data[ihl + 8..];
        if dport == SN_PORT && payload.starts_with(b"BF\x01") {
            samples
                .entry(payload[3])
                .or_insert_with(|| (c.data.clone(), payload.to_vec()));
        }
    }
    // An EN -> SN datagram doubles as a carrier for the other types (TxAck, Reply, the EN <->
    // EN messages): graft their payloads on it.
    let carrier = samples.values().next().unwrap().0.clone();
    for c in &cap {
        let Some((ihl, _)) = udp(&c.data) else {
            continue;
        };
        let payload = &c.data[ihl + 8..];
        if payload.starts_with(b"BF\x01") && !samples.contains_key(&payload[3]) {
            samples.insert(payload[3], (carrier.clone(), payload.to_vec()));
        }
    }
    // ControlAck (13) is never sent yet: make one from a HandoverRequest (sender[32]
    // counter u64 ... mac[16]) -> header, sender, counter, mac.
    let handover = samples.get(&11).expect("a HandoverRequest").1.clone();
    let mut ack = b"BF\x01\x0d".to_vec();
    ack.extend_from_slice(&handover[4..44]);
    ack.extend_from_slice(&handover[56..72]);
    assert_eq!(ack.len(), 60);
    samples.insert(13, (carrier.clone(), ack));
    let types: Vec<u8> = samples.keys().copied().collect();
    for t in [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16] {
        assert!(types.contains(&t), "no sample of type {t}: {types:?}");
    }

    let mut bad = Vec::new();
    for (t, (orig, payload)) in &samples {
        // Every truncation (an empty payload too: the dissector must cope, flagged or not).
        for n in 0..payload.len() {
            bad.push(with_payload(orig, &payload[..n]));
        }
        // A trailing byte.
        let mut p = payload.clone();
        p.push(0);
        bad.push(with_payload(orig, &p));
        // Header corruptions: magic, version, type 0 and 17 (unknown).
        for (off, val) in [(0, b'X'), (2, 2), (3, 0), (3, 17)] {
            let mut p = payload.clone();
            p[off] = val;
            bad.push(with_payload(orig, &p));
        }
        // Body corruptions per type: (offset, new byte).
        let body: &[(usize, u8)] = match t {
            // tx version 2; y_len 512 + low byte (Y runs past the end); y_len above 512
            1 | 5 => &[(4, 2), (67, 0x02), (67, 0xff)],
            // unknown ack status; a reason on Accepted
            2 => &[(36, 4), (37, 3)],
            // a reserved query flag
            3 => &[(40, 0x80)],
            // a reserved reply flag; "unconfirmed Tx follows" with none following
            4 => &[(40, 0x08), (40, 0x07)],
            // parts = 0; len 1024 + low byte (over 1200 or past the end); another low byte
            // (past the end or short of it: trailing bytes)
            6 => &[(38, 0), (40, 0x04), (41, 0xb1)],
            // KeyRenewal y_len (offset 44, 256 in the sample): 512 (Y runs past the end),
            // above 512, 0 + low byte (Y short of the end: trailing bytes)
            12 | 14 => &[(44, 0x02), (44, 0xff), (44, 0x00)],
            // SessionRequest/Response ephemeral length (offset 88, 256 in the sample): 512
            // (past the end), above 512, 0 + low byte (the rest misaligned)
            9 | 10 => &[(88, 0x02), (88, 0xff), (88, 0x00)],
            // HandoverRequest, ControlAck, PathChallenge/Response have no field with a
            // constrained value: only truncations and trailing bytes apply
            _ => &[],
        };
        for &(off, val) in body {
            if off < payload.len() {
                let mut p = payload.clone();
                p[off] = val;
                if off == 38 && *t == 6 {
                    p[39] = 0; // parts = 0
                }
                bad.push(with_payload(orig, &p));
            }
        }
    }

    // SRTP on the EN port (a NAT -> EN frame of the call): cut inside the header or the tag,
    // and first bytes with padding, an extension or CSRCs (wire::rtp refuses them; some make
    // Wireshark's RTP dissector throw).
    let (rtp_orig, rtp) = cap
        .iter()
        .find_map(|c| {
            let (ihl, dport) = udp(&c.data)?;
            let payload = &c.data[ihl + 8..];
            (dport == EN_PORT && (0x80..=0xbf).contains(payload.first()?))
                .then(|| (c.data.clone(), payload.to_vec()))
        })
        .expect("an RTP frame to an EN");
    assert_eq!(rtp.len() + 8, RTP_UDP_LEN);
    let rtp_first = bad.len();
    for n in 1..12 + 16 {
        bad.push(with_payload(&rtp_orig, &rtp[..n]));
    }
    for b0 in [0xa0, 0x90, 0x81, 0x8f, 0xbf] {
        let mut p = rtp.clone();
        p[0] = b0;
        bad.push(with_payload(&rtp_orig, &p));
        bad.push(with_payload(&rtp_orig, &p[..14]));
    }
    let rtp_crafted = bad.len() - rtp_first;

    let pcap = dir.path().join("bad.pcap");
    write_pcap(&pcap, &bad);
    println!(
        "{} crafted datagrams over BINFM types {types:?}, {rtp_crafted} of them RTP",
        bad.len()
    );

    // No Lua error and no exception (a binfm expert of group Malformed also sets
    // `_ws.malformed`, so that one is expected here). The one exception allowed is the RTP
    // dissector's on a corrupted RTP header, which the script catches and flags.
    let errors = tshark(
        &pcap,
        &[
            "-Y",
            "_ws.lua.error || _ws.malformed.dissector_bug \
             || (_ws.malformed.expert && !(rtp && binfm.malformed))",
        ],
    );
    assert!(
        errors.trim().is_empty(),
        "Lua errors or exceptions:\n{errors}"
    );

    let decoded = rows(&pcap, "binfm || rtp", &["frame.number", "udp.length"]);
    let non_empty = decoded.iter().filter(|r| r["udp.length"] != "8").count();
    assert_eq!(
        non_empty,
        bad.iter().filter(|p| p.len() > 28).count(),
        "every non-empty crafted datagram is dissected as BINFM or RTP"
    );
    let unflagged = rows(
        &pcap,
        &format!("(binfm || rtp) && udp.length > 8 && !({BINFM_PROBLEMS})"),
        &["frame.number", "_ws.col.Info"],
    );
    assert!(
        unflagged.is_empty(),
        "crafted datagrams without a binfm expert info: {unflagged:?}"
    );
    let rtp_flagged = rows(
        &pcap,
        &format!("udp.dstport == {EN_PORT} && udp.length > 8 && ({BINFM_PROBLEMS})"),
        &["frame.number"],
    );
    assert_eq!(
        rtp_flagged.len(),
        rtp_crafted,
        "every crafted RTP datagram flagged"
    );
}

// ---- STUN: the vertical model's server against classic clients ---------------------------

/// An IPv4/UDP datagram, no options, UDP checksum 0 (none).
fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(28 + payload.len()).unwrap();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let sum = ip_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(total - 20).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Wireshark's own dissectors (no Lua script) over `capture`; returns stdout.
fn plain_tshark(capture: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(capture)
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The STUN server of the vertical model answers an RFC 3489 client the way Wireshark expects:
/// a real classic Binding Request (no magic cookie, 128-bit transaction id) gets a response
/// with MAPPED-ADDRESS, one with CHANGE-REQUEST gets 420 naming 0x0003, and an RFC 8489
/// request with CHANGE-REQUEST gets the RFC 8489 form of the same 420. tshark decodes all six
/// datagrams without an exception or expert info, pairs each answer with its request (the
/// transaction id is echoed), and shows the fields. A broken copy of the 420 is flagged, so
/// the check can fail.
#[test]
fn tshark_decodes_the_stun_servers_classic_and_420_answers() {
    use binfm_roles::Time;
    use binfm_roles::vertical::stun::StunServer;
    use binfm_stack::wire::stun::StunMessage;
    use std::net::Ipv4Addr;

    if !have("tshark") {
        println!("SKIPPED: tshark is not installed");
        return;
    }
    let client = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 40000);
    let server = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 3478);
    let tid: [u8; 16] = [
        0x5c, 0x0e, 0x31, 0xa7, 0x08, 0x7f, 0xd2, 0x44, 0x19, 0xe3, 0x6b, 0x90, 0x2d, 0x01, 0xc8,
        0x56,
    ];
    let change_request = [0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
    // As a classic client sends them: type 0x0001, length, the 16-byte transaction id.
    let mut classic = vec![0x00, 0x01, 0x00, 0x00];
    classic.extend_from_slice(&tid);
    let mut classic_cr = vec![0x00, 0x01, 0x00, 0x08];
    classic_cr.extend_from_slice(&tid);
    classic_cr.extend_from_slice(&change_request);
    let mut modern_cr = StunMessage::binding_request([5; 12]).to_bytes();
    modern_cr[3] = 8;
    modern_cr.extend_from_slice(&change_request);

    let mut stun = StunServer::new(3478);
    let mut packets = Vec::new();
    for req in [&classic, &classic_cr, &modern_cr] {
        stun.handle_datagram(Time::ZERO, client, server, req);
        let answer = stun.poll_transmit().expect("the server answers");
        assert_eq!(answer.dst, client);
        packets.push(ipv4_udp(client, server, req));
        packets.push(ipv4_udp(server, client, &answer.payload));
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("stun.pcap");
    write_pcap(&pcap, &packets);

    let fields = [
        "frame.number",
        "_ws.col.Protocol",
        "classicstun.type",
        "classicstun.id",
        "classicstun.response_to",
        "classicstun.att.ipv4",
        "classicstun.att.port",
        "classicstun.att.error.class",
        "classicstun.att.error",
        "classicstun.att.unknown",
        "stun.type",
        "stun.id",
        "stun.response-to",
        "stun.att.error.class",
        "stun.att.error",
        "stun.att.unknown",
    ];
    let mut args = vec!["-T", "fields", "-E", "separator=/t"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let text = plain_tshark(&pcap, &args);
    let rows: Vec<HashMap<&str, &str>> = text
        .lines()
        .map(|l| fields.iter().copied().zip(l.split('\t')).collect())
        .collect();
    assert_eq!(rows.len(), 6, "{text}");
    let tid_hex: String = tid.iter().map(|b| format!("{b:02x}")).collect();
    let classic_rows = [&rows[0], &rows[1], &rows[2], &rows[3]];
    for r in classic_rows {
        assert_eq!(r["_ws.col.Protocol"], "CLASSIC-STUN", "{text}");
        assert_eq!(r["classicstun.id"], tid_hex, "the 128-bit id, echoed");
    }
    // Frame 2: Binding Response to frame 1 with MAPPED-ADDRESS = the client's address.
    assert_eq!(rows[1]["classicstun.type"], "0x0101");
    assert_eq!(rows[1]["classicstun.response_to"], "1");
    assert_eq!(rows[1]["classicstun.att.ipv4"], "203.0.113.9");
    assert_eq!(rows[1]["classicstun.att.port"], "40000");
    // Frame 4: Binding Error Response to frame 3, 420, UNKNOWN-ATTRIBUTES 0x0003 (repeated to
    // fill 4 bytes, as RFC 3489 pads the list).
    assert_eq!(rows[3]["classicstun.type"], "0x0111");
    assert_eq!(rows[3]["classicstun.response_to"], "3");
    assert_eq!(rows[3]["classicstun.att.error.class"], "4");
    assert_eq!(rows[3]["classicstun.att.error"], "20");
    assert_eq!(rows[3]["classicstun.att.unknown"], "0x0003,0x0003");
    // Frame 6: the RFC 8489 form, to frame 5.
    assert_eq!(rows[5]["_ws.col.Protocol"], "STUN", "{text}");
    assert_eq!(rows[5]["stun.type"], "0x0111");
    assert_eq!(rows[5]["stun.id"], "05".repeat(12));
    assert_eq!(rows[5]["stun.response-to"], "5");
    assert_eq!(rows[5]["stun.att.error.class"], "4");
    assert_eq!(rows[5]["stun.att.error"], "20");
    assert_eq!(rows[5]["stun.att.unknown"], "0x0003");

    // No exception, no expert info, nothing the dissector calls bogus.
    let problems = |pcap: &Path| plain_tshark(pcap, &["-Y", "_ws.malformed || _ws.expert"]);
    assert_eq!(problems(&pcap), "", "tshark flags a STUN datagram");
    let verbose = plain_tshark(&pcap, &["-V"]);
    for bad in ["Malformed", "bogus", "Expert Info"] {
        assert!(!verbose.contains(bad), "{bad} in:\n{verbose}");
    }
    assert!(verbose.contains("MAPPED-ADDRESS"), "{verbose}");
    // The same check on a broken 420 (ERROR-CODE length 2) does flag it.
    let mut broken = packets.clone();
    broken[3][28 + 23] = 2;
    let bad_pcap = dir.path().join("broken.pcap");
    write_pcap(&bad_pcap, &broken);
    assert_ne!(problems(&bad_pcap), "", "a malformed 420 goes unnoticed");
}
