//! Signalling overhead of a call setup, measured from a run's capture.
//!
//! The paper (section 4.3) weighs each message of a procedure by the kind of path it
//! crosses: S_I for a message between an EN and its own domain's server (the unit: one Query
//! over the EN->SN path), S_II = 5 S_I for one between the ENs, S_III = 10 S_I for the
//! collaboration of the distributed location servers. We count, in the capture, every
//! signalling datagram of the call setup (sent between the caller's first message and the
//! model's pre-call end point, retransmissions included), classify its path from the
//! public addresses it carries (NAT <-> SN or domain server: S_I; NAT <-> NAT: S_II; domain
//! server <-> domain server: half an S_III, because one resolution is a request and its
//! answer, as T_III is), and add its bytes on every link it crossed (the same UDP payload
//! seen on each segment).
//!
//! Which datagrams are signalling: BINFM Query, Reply, Session Request and Response, and
//! the caller's first SRTP frame (step (g) of Figure 8: the callee accepts the session
//! when that frame decrypts); vertical STUN, location-service and Invite/key-exchange
//! messages. Media otherwise is not signalling.

use crate::topology::{Model, Topology};
use binfm_roles::Time;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::rtp::RtpHeader;
use binfm_stack::wire::stun::StunMessage;
use binfm_stack::wire::vertical::VmMessage;
use pcap_file::pcapng::{Block, PcapNgReader};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;

/// S_II in units of S_I (paper, section 4.3).
pub const S_II: f64 = 5.0;
/// S_III in units of S_I.
pub const S_III: f64 = 10.0;

/// The kind of path a message crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathClass {
    /// EN <-> its domain's server (SN, STUN, location server).
    IntraDomain,
    /// EN <-> EN.
    EndToEnd,
    /// Location server <-> location server.
    InterServer,
    /// Super node <-> super node (Tx relay: the paper gives it no unit; not weighed).
    BetweenSuperNodes,
    /// Anything else (not weighed; reported so nothing is hidden).
    Other,
}

impl PathClass {
    fn weight(self) -> f64 {
        match self {
            PathClass::IntraDomain => 1.0,
            PathClass::EndToEnd => S_II,
            PathClass::InterServer => S_III / 2.0,
            PathClass::BetweenSuperNodes | PathClass::Other => 0.0,
        }
    }
    fn name(self) -> &'static str {
        match self {
            PathClass::IntraDomain => "intra_domain",
            PathClass::EndToEnd => "end_to_end",
            PathClass::InterServer => "inter_server",
            PathClass::BetweenSuperNodes => "between_super_nodes",
            PathClass::Other => "other",
        }
    }
}

/// The procedure whose signalling is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    /// Call setup (the paper's section 4.3 counts this one).
    CallSetup,
    /// Mid-call move: BINFM's re-registration and Handover Request; the vertical model's
    /// STUN, re-registration and ReInvite.
    Handover,
    /// Key renewal: BINFM's new Tx and Key Renewal; the vertical model's key exchange.
    Rekey,
}

/// What the window of one procedure is.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Which procedure.
    pub procedure: Procedure,
    /// The caller starts (its first message leaves).
    pub start: Time,
    /// The model's pre-call end point.
    pub end: Time,
    /// The caller's SSRC (BINFM step (g) is its first frame).
    pub caller_ssrc: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Nat,
    Server,
    DomainServer,
}

/// One signalling datagram seen on a segment.
struct Seen {
    name: &'static str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ip_len: usize,
}

/// Measures the signalling of each window in `windows` from `capture`, which is read once.
/// Errors only for an unreadable file; packets that do not parse are skipped.
pub fn measure(topo: &Topology, capture: &Path, windows: &[Window]) -> anyhow::Result<Vec<Value>> {
    let mut roles: HashMap<Ipv4Addr, Role> = HashMap::new();
    for n in &topo.nodes {
        let role = if matches!(n.kind, crate::topology::NodeKind::Nat(_)) {
            Some((Role::Nat, n.ports.get(1).and_then(|p| p.addr)))
        } else if n.domain_server {
            Some((Role::DomainServer, n.ports.first().and_then(|p| p.addr)))
        } else if n.super_node.is_some() {
            Some((Role::Server, n.ports.first().and_then(|p| p.addr)))
        } else {
            None
        };
        if let Some((r, Some(ip))) = role {
            roles.insert(ip, r);
        }
    }
    let bytes = std::fs::read(capture)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", capture.display()))?;
    let mut reader = PcapNgReader::new(&bytes[..])
        .map_err(|e| anyhow::anyhow!("{}: not a pcapng file: {e}", capture.display()))?;
    // Only the packets some window covers are kept.
    let covered = |t: Time| windows.iter().any(|w| w.start <= t && t <= w.end);
    let mut packets: Vec<(Time, Vec<u8>)> = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Ok(Block::EnhancedPacket(epb)) = block
            && covered(epb.timestamp)
        {
            packets.push((epb.timestamp, epb.data.into_owned()));
        }
    }
    Ok(windows
        .iter()
        .map(|w| measure_window(topo, &roles, &packets, *w))
        .collect())
}

/// The signalling of one window (see the module documentation).
fn measure_window(
    topo: &Topology,
    roles: &HashMap<Ipv4Addr, Role>,
    packets: &[(Time, Vec<u8>)],
    w: Window,
) -> Value {
    // Payload -> every appearance (one per link crossed).
    let mut seen: BTreeMap<Vec<u8>, Vec<Seen>> = BTreeMap::new();
    let mut g_payload: Option<Vec<u8>> = None;
    for (t, packet) in packets {
        if *t < w.start || *t > w.end {
            continue;
        }
        let Some((src, dst, payload, ip_len)) = udp_of(packet) else {
            continue;
        };
        let name = match classify(topo.model, w.procedure, payload) {
            Some(n) => n,
            None if w.procedure != Procedure::CallSetup => continue,
            None => {
                // BINFM step (g): the caller's first SRTP frame.
                let is_g = topo.model == Model::Binfm
                    && RtpHeader::parse(payload).is_ok_and(|(h, _)| Some(h.ssrc) == w.caller_ssrc)
                    && g_payload.as_deref().is_none_or(|g| g == payload);
                if !is_g {
                    continue;
                }
                g_payload = Some(payload.to_vec());
                "srtp_first_frame_g"
            }
        };
        seen.entry(payload.to_vec()).or_default().push(Seen {
            name,
            src,
            dst,
            ip_len,
        });
    }
    let mut by_class: BTreeMap<&'static str, (u64, f64)> = BTreeMap::new();
    let mut by_message: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut messages, mut s_i, mut byte_links, mut traversals) = (0u64, 0.0f64, 0u64, 0u64);
    for appearances in seen.values() {
        // The message's path: the appearance whose two ends both have a public role.
        let classified: Vec<PathClass> = appearances
            .iter()
            .filter_map(|a| path_class(roles.get(&a.src), roles.get(&a.dst)))
            .collect();
        let class = classified.first().copied().unwrap_or(PathClass::Other);
        // Retransmissions of the same bytes appear on that hop once per send.
        let count = classified.len().max(1) as u64;
        messages += count;
        s_i += class.weight() * count as f64;
        let e = by_class.entry(class.name()).or_default();
        e.0 += count;
        e.1 += class.weight() * count as f64;
        *by_message.entry(appearances[0].name).or_default() += count;
        for a in appearances {
            byte_links += a.ip_len as u64;
            traversals += 1;
        }
    }
    json!({
        "messages": messages,
        "s_i": s_i,
        "bytes_x_links": byte_links,
        "link_traversals": traversals,
        "by_path": by_class.iter().map(|(k, (n, w))| (k.to_string(), json!({"messages": n, "s_i": w}))).collect::<serde_json::Map<String, Value>>(),
        "by_message": by_message,
    })
}

fn path_class(a: Option<&Role>, b: Option<&Role>) -> Option<PathClass> {
    use Role::*;
    Some(match (a?, b?) {
        (Nat, Nat) => PathClass::EndToEnd,
        (Nat, Server | DomainServer) | (Server | DomainServer, Nat) => PathClass::IntraDomain,
        (DomainServer, DomainServer) => PathClass::InterServer,
        (Server, Server) => PathClass::BetweenSuperNodes,
        _ => PathClass::Other,
    })
}

/// The signalling message of `procedure` a UDP payload is, for the model that ran.
fn classify(model: Model, procedure: Procedure, payload: &[u8]) -> Option<&'static str> {
    let name = match model {
        Model::Binfm => Message::parse(payload).ok()?.name(),
        Model::Vertical => match StunMessage::parse(payload) {
            Ok(_) => "stun_binding",
            Err(_) => VmMessage::parse(payload).ok()?.name(),
        },
    };
    let wanted: &[&str] = match (model, procedure) {
        (Model::Binfm, Procedure::CallSetup) => {
            &["query", "reply", "session_request", "session_response"]
        }
        (Model::Binfm, Procedure::Handover) => &[
            "tx_submit",
            "tx_ack",
            "tx_relay",
            "handover_request",
            "path_challenge",
            "path_response",
            "control_ack",
        ],
        (Model::Binfm, Procedure::Rekey) => &[
            "tx_submit",
            "tx_ack",
            "tx_relay",
            "key_renewal",
            "key_renewal_reply",
            "control_ack",
        ],
        (Model::Vertical, Procedure::CallSetup) => &[
            "stun_binding",
            "lookup",
            "lookup_reply",
            "resolve",
            "resolved",
            "invite",
            "invite_ok",
            "key_exchange",
            "key_exchange_reply",
        ],
        (Model::Vertical, Procedure::Handover) => {
            &["stun_binding", "register", "register_ack", "re_invite"]
        }
        (Model::Vertical, Procedure::Rekey) => &["key_exchange", "key_exchange_reply"],
    };
    wanted.contains(&name).then_some(name)
}

/// Source, destination, UDP payload and IP length of an IPv4/UDP packet.
fn udp_of(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8], usize)> {
    let ip = etherparse::Ipv4Slice::from_slice(packet).ok()?;
    if ip.payload().ip_number != etherparse::IpNumber::UDP {
        return None;
    }
    let udp = etherparse::UdpSlice::from_slice(ip.payload().payload).ok()?;
    Some((
        ip.header().source_addr(),
        ip.header().destination_addr(),
        udp.payload(),
        packet.len(),
    ))
}
