//! The `attack` scenario steps in the engine: the attacker host's packets go to the attack
//! instead of its node, its segment is sniffed for it, a victim's deliveries are counted, a
//! lying super node's output is rewritten, and the attack's own packets are put on the
//! segment. What each attack does and measures: [`crate::attack`].

use super::{Network, RunError, Sender, What};
use crate::attack::packet::{dst_ip, udp_of};
use crate::attack::{
    ATTACKER_PORT, Attack, DhcpIdentity, DhcpRelease, HandoverRace, LongTermKeys, LookupFlood,
    LyingSn, Outbox, Reflection, RekeyInjection,
};
use crate::events::TestbedEvent;
use crate::topology::attack_step::{AttackSpec, Lie};
use binfm_roles::Time;
use binfm_roles::call_events::CallEvent;
use binfm_roles::dh::DhSecret;
use binfm_roles::dhcp::events::DhcpServerEvent;
use binfm_roles::en::events::EnEvent;
use binfm_roles::sn::SuperNode;
use binfm_roles::util::hex;
use binfm_roles::wallet::Wallet;
use binfm_stack::fabric::Dest;
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::HashAddr;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// After a `lookup-flood` ends, calls started up to this long after are still counted as
/// placed under the flood (the callee's pending Queries take that long to drain).
pub const FLOOD_GRACE: Duration = Duration::from_secs(5);

/// One attack step.
#[derive(Debug)]
struct AttackRun {
    spec: AttackSpec,
    line: usize,
    start: Time,
    /// The actor's segment, member and address.
    segment: usize,
    member: usize,
    addr: Ipv4Addr,
    attack: Attack,
    outbox: Outbox,
    wake: Option<Time>,
    sent: u64,
    link_dropped: u64,
    /// Super nodes' `query_rate_limited` counts when the step started (`lookup-flood`).
    rate_limited_before: u64,
}

/// Every attack of a run and the hooks they need.
#[derive(Debug, Default)]
pub(super) struct Attacks {
    runs: Vec<AttackRun>,
    /// (segment, member, run): deliveries that go to the attack instead of the node.
    intercept: Vec<(usize, usize, usize)>,
    /// (segment, member, run): deliveries the attack sees (a victim, a lying SN).
    observe: Vec<(usize, usize, usize)>,
    /// (node, run): nodes whose packets the attack may rewrite (a lying SN).
    rewrite: Vec<(usize, usize)>,
}

impl Attacks {
    /// Link emulation dropped a packet of attack `id`.
    pub(super) fn count_link_drop(&mut self, id: usize) {
        if let Some(r) = self.runs.get_mut(id) {
            r.link_dropped += 1;
        }
    }

    /// The attack that takes deliveries to `member` of `segment`, if any.
    #[inline]
    pub(super) fn interceptor(&self, segment: usize, member: usize) -> Option<usize> {
        self.intercept
            .iter()
            .rev()
            .find(|(s, m, _)| *s == segment && *m == member)
            .map(|(_, _, id)| *id)
    }

    /// Whether an attack watches deliveries to `member` of `segment`.
    #[inline]
    pub(super) fn observes(&self, segment: usize, member: usize) -> bool {
        self.observe
            .iter()
            .any(|(s, m, _)| *s == segment && *m == member)
    }

    fn rewrites(&self, node: usize) -> bool {
        self.rewrite.iter().any(|(n, _)| *n == node)
    }

    fn taps(&self, segment: usize) -> bool {
        self.runs
            .iter()
            .any(|r| r.segment == segment && r.attack.taps())
    }
}

impl<W: Write, B: super::Boundary> Network<W, B> {
    /// Starts attack step `index` now.
    pub(super) fn start_attack(&mut self, index: usize, spec: &AttackSpec) -> Result<(), RunError> {
        let actor = spec.actor();
        let line = self.topo.scenario.get(index).map_or(0, |s| s.line);
        let Some(port) = self.nodes.get(actor).and_then(|n| n.ports.first()) else {
            return Err(RunError::Attack(format!("line {line}: no such node")));
        };
        let (segment, member) = (port.segment, port.member);
        let Some(addr) = self.segments[segment].members()[member].addr else {
            return Err(RunError::Attack(format!(
                "line {line}: `{}` has no address",
                self.nodes[actor].name
            )));
        };
        let seed = self.topo.seed ^ (index as u64 + 1).wrapping_mul(0xa77a_c4ed_0000_0001);
        let me = SocketAddrV4::new(addr, ATTACKER_PORT);
        let id = self.attack.runs.len();
        let mut rate_limited_before = 0;
        let attack = match *spec {
            AttackSpec::SpoofedSessionRequest {
                victim,
                callee,
                caller,
                requests,
                ..
            } => {
                let victim_port = self.nodes[victim]
                    .ports
                    .first()
                    .map(|p| (p.segment, p.member));
                let victim_ip = self.topo.nodes[victim]
                    .ports
                    .first()
                    .and_then(|p| p.addr)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                if let Some((s, m)) = victim_port {
                    self.attack.observe.push((s, m, id));
                }
                Attack::Reflection(Reflection::new(
                    me,
                    self.super_node_for(segment),
                    self.hash_addr_of(caller),
                    // Public: every Tx of the caller on the chain carries it.
                    crate::apps::wallet_of(&self.topo, &self.topo.nodes[caller].name).public_key(),
                    self.hash_addr_of(callee),
                    victim_ip,
                    requests,
                    seed,
                ))
            }
            AttackSpec::HandoverRace { .. } => Attack::HandoverRace(HandoverRace::new(addr)),
            AttackSpec::LongTermKeys { .. } => Attack::LongTermKeys(LongTermKeys::default()),
            AttackSpec::LyingSn { sn, lie, about } => {
                let peers = self.topo.nodes[sn]
                    .super_node
                    .as_ref()
                    .map(|d| d.peers.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| self.topo.nodes[p].ports.first().and_then(|x| x.addr))
                    .map(|ip| SocketAddrV4::new(ip, ports::SN))
                    .collect();
                self.attack.observe.push((segment, member, id));
                self.attack.rewrite.push((sn, id));
                Attack::LyingSn(LyingSn::new(
                    lie,
                    self.hash_addr_of(about),
                    SocketAddrV4::new(addr, ports::SN),
                    peers,
                ))
            }
            AttackSpec::LookupFlood {
                callee,
                rate,
                duration,
                ..
            } => {
                let (_, _, sources) = crate::topology::flood_step::sources(
                    &self.topo.segments,
                    &self.topo.nodes,
                    actor,
                )
                .map_err(|e| RunError::Attack(format!("line {line}: {e}")))?;
                for &a in &sources {
                    self.segments[segment].add_alias(member, a);
                }
                rate_limited_before = self.queries_rate_limited();
                Attack::LookupFlood(LookupFlood::new(
                    me,
                    self.super_node_for(segment),
                    self.hash_addr_of(callee),
                    rate,
                    duration,
                    sources,
                    seed,
                ))
            }
            AttackSpec::DhcpRelease {
                attacker,
                victim,
                spoofed,
            } => {
                let identity = |n: usize| {
                    let c = crate::node_roles::dhcp_client_config(&self.topo.nodes[n].name, n);
                    DhcpIdentity {
                        client_id: c.client_id,
                        hw_addr: c.hw_addr,
                    }
                };
                Attack::DhcpRelease(DhcpRelease::new(
                    addr,
                    identity(attacker),
                    identity(victim),
                    spoofed,
                    seed,
                ))
            }
            AttackSpec::RekeyInjection { .. } => {
                Attack::RekeyInjection(RekeyInjection::new(addr, seed))
            }
        };
        if !matches!(attack, Attack::LyingSn(_)) {
            self.attack.intercept.push((segment, member, id));
        }
        let ev = TestbedEvent::Attack {
            kind: spec.kind(),
            actor: self.nodes[actor].name.clone(),
            segment: self.segments[segment].name.clone(),
        };
        self.events.push(self.now, "testbed", ev)?;
        let mut run = AttackRun {
            spec: spec.clone(),
            line,
            start: self.now,
            segment,
            member,
            addr,
            attack,
            outbox: Outbox::new(),
            wake: None,
            sent: 0,
            link_dropped: 0,
            rate_limited_before,
        };
        run.attack.start(self.now, &mut run.outbox);
        self.attack.runs.push(run);
        self.arm_attack(id);
        Ok(())
    }

    /// The super node an attacker on `segment` asks: the first one with an address there,
    /// else the first of the topology.
    fn super_node_for(&self, segment: usize) -> SocketAddrV4 {
        let sns = || {
            self.topo
                .nodes
                .iter()
                .filter(|n| n.super_node.is_some())
                .flat_map(|n| n.ports.iter())
        };
        let ip = sns()
            .find(|p| p.segment == segment && p.addr.is_some())
            .or_else(|| sns().find(|p| p.addr.is_some()))
            .and_then(|p| p.addr)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        SocketAddrV4::new(ip, ports::SN)
    }

    /// Every super node's `query_rate_limited` count, summed.
    fn queries_rate_limited(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.role::<SuperNode>())
            .map(|sn| sn.refused.get("query_rate_limited").copied().unwrap_or(0))
            .sum()
    }

    /// (Re-)arms attack `id`'s wake-up: now when it has packets to send, else its timer.
    fn arm_attack(&mut self, id: usize) {
        let Some(run) = self.attack.runs.get_mut(id) else {
            return;
        };
        let at = if run.outbox.is_empty() {
            run.attack.poll_timeout().map(|t| t.max(self.now))
        } else {
            Some(self.now)
        };
        if at != run.wake {
            run.wake = at;
            if let Some(at) = at {
                self.schedule(at, What::Attack { id });
            }
        }
    }

    /// Attack `id`'s wake-up: its timer, then its packets onto its segment.
    pub(super) fn attack_wake(&mut self, id: usize, at: Time) -> Result<(), RunError> {
        let Some(run) = self.attack.runs.get_mut(id) else {
            return Ok(());
        };
        if run.wake != Some(at) {
            return Ok(()); // superseded
        }
        run.wake = None;
        if run.attack.poll_timeout().is_some_and(|t| t <= self.now) {
            run.attack.on_timeout(self.now, &mut run.outbox);
        }
        let (seg, member) = (run.segment, run.member);
        let packets: Vec<Vec<u8>> = run.outbox.drain(..).collect();
        run.sent += packets.len() as u64;
        for p in packets {
            let dest = match dst_ip(&p) {
                Some(ip) if self.segments[seg].is_broadcast(ip) => Dest::Broadcast,
                Some(ip) => Dest::Unicast(ip),
                None => continue,
            };
            self.put_on_segment(seg, member, dest, p, Sender::Attack(id))?;
        }
        self.arm_attack(id);
        Ok(())
    }

    /// A packet for an attacker host.
    pub(super) fn attack_receive(&mut self, id: usize, packet: &[u8]) {
        if let Some(run) = self.attack.runs.get_mut(id) {
            run.attack.on_receive(self.now, packet, &mut run.outbox);
        }
        self.arm_attack(id);
    }

    /// A packet delivered to a watched member (a victim, a lying SN), before its node gets it.
    pub(super) fn attack_observe(&mut self, segment: usize, member: usize, packet: &[u8]) {
        let ids: Vec<usize> = self
            .attack
            .observe
            .iter()
            .filter(|(s, m, _)| *s == segment && *m == member)
            .map(|(_, _, id)| *id)
            .collect();
        let udp = udp_of(packet);
        for id in ids {
            if let Some(run) = self.attack.runs.get_mut(id) {
                match &mut run.attack {
                    Attack::Reflection(a) => a.on_victim_delivery(packet.len(), udp),
                    Attack::LyingSn(a) => {
                        if let Some(u) = udp {
                            a.on_sn_delivery(u, &mut run.outbox);
                        }
                    }
                    _ => {}
                }
            }
            self.arm_attack(id);
        }
    }

    /// A packet node `n` puts on a segment: a lying SN's lie replaces it.
    pub(super) fn attack_rewrite(&mut self, sender: Sender, packet: Vec<u8>) -> Vec<u8> {
        let Sender::Node(n) = sender else {
            return packet;
        };
        if !self.attack.rewrites(n) {
            return packet;
        }
        let ids: Vec<usize> = self
            .attack
            .rewrite
            .iter()
            .filter(|(node, _)| *node == n)
            .map(|(_, id)| *id)
            .collect();
        let mut packet = packet;
        for id in ids {
            let Some(Attack::LyingSn(a)) = self.attack.runs.get_mut(id).map(|r| &mut r.attack)
            else {
                continue;
            };
            if let Some(lie) = udp_of(&packet).and_then(|u| a.rewrite(u)) {
                packet = lie;
            }
        }
        packet
    }

    /// A packet put on `segment` by someone other than an attack: sniffed by the attacks there.
    pub(super) fn attack_tap(&mut self, segment: usize, packet: &[u8]) {
        if !self.attack.taps(segment) {
            return;
        }
        for id in 0..self.attack.runs.len() {
            let run = &mut self.attack.runs[id];
            if run.segment == segment && run.attack.taps() {
                run.attack.on_tap(self.now, packet, &mut run.outbox);
                self.arm_attack(id);
            }
        }
    }

    /// Whether the run has attack steps that sniff or rewrite (the hooks in `put_on_segment`).
    pub(super) fn attack_hooks(&self) -> bool {
        !self.attack.runs.is_empty()
    }

    /// What every attack step achieved, for `results.json` (`attacks`), in step order.
    pub fn attack_results(&self) -> Vec<Value> {
        self.attack
            .runs
            .iter()
            .map(|r| self.attack_result(r))
            .collect()
    }

    fn name_of(&self, n: usize) -> &str {
        self.topo.nodes.get(n).map_or("?", |d| d.name.as_str())
    }

    fn attack_result(&self, r: &AttackRun) -> Value {
        let records = &self.events.records;
        let after = |t: Time| t >= r.start;
        let mut v = json!({
            "kind": r.spec.kind(),
            "line": r.line,
            "at_s": r.start.as_secs_f64(),
            "actor": self.name_of(r.spec.actor()),
            "actor_address": r.addr.to_string(),
            "packets_sent": r.sent,
            "link_dropped": r.link_dropped,
        });
        let figures = match (&r.attack, &r.spec) {
            (
                Attack::Reflection(a),
                AttackSpec::SpoofedSessionRequest {
                    victim,
                    callee,
                    caller,
                    ..
                },
            ) => {
                let victim_ip = self.topo.nodes[*victim].ports.first().and_then(|p| p.addr);
                let callee_name = self.name_of(*callee);
                let calls_to_victim = records
                    .iter()
                    .filter(|x| after(x.t) && x.host == callee_name)
                    .filter(|x| {
                        matches!(x.role_event::<CallEvent>(),
                            Some(CallEvent::Active { peer_addr: Some(p), .. }) if Some(*p.ip()) == victim_ip)
                    })
                    .count();
                json!({
                    "victim": self.name_of(*victim),
                    "callee": callee_name,
                    "claimed_caller": self.name_of(*caller),
                    "callee_endpoint": a.callee_endpoint().map(|e| e.to_string()),
                    "requests_sent": a.requests_sent,
                    "request_bytes": a.bytes_sent,
                    "bytes_to_victim": a.victim_bytes,
                    "packets_to_victim": a.victim_packets,
                    "media_bytes_to_victim": a.victim_media_bytes,
                    "media_packets_to_victim": a.victim_media_packets,
                    "callee_calls_to_victim": calls_to_victim,
                    "worked": a.victim_media_packets > 0 || a.victim_bytes > a.bytes_sent,
                })
            }
            (Attack::HandoverRace(a), _) => {
                let me = a.address();
                let accepted = records
                    .iter()
                    .filter(|x| after(x.t))
                    .filter(|x| {
                        matches!(x.role_event::<CallEvent>(),
                            Some(CallEvent::HandoverAccepted { new_addr, .. }) if *new_addr.ip() == me)
                    })
                    .count();
                let genuine_refused = records
                    .iter()
                    .filter(|x| after(x.t))
                    .filter(|x| {
                        matches!(x.role_event::<CallEvent>(),
                            Some(CallEvent::HandoverRejected { reason: "replayed", from, .. }) if *from.ip() != me)
                    })
                    .count();
                json!({
                    "handover_requests_copied": a.copied,
                    "handovers_accepted_from_attacker": accepted,
                    "genuine_handovers_refused": genuine_refused,
                    "packets_to_attacker": a.received_packets,
                    "bytes_to_attacker": a.received_bytes,
                    "media_packets_to_attacker": a.media_packets,
                    "media_bytes_to_attacker": a.media_bytes,
                    "worked": a.media_packets > 0,
                })
            }
            (Attack::LongTermKeys(a), _) => {
                // The stolen long-term keys: each EN's first DH secret, derived as the testbed
                // derives it, and the one it holds at the end (another after a key renewal).
                // Never the ENs' generators, which draw the ephemerals.
                let ens: Vec<(HashAddr, Wallet, Option<&DhSecret>)> = self
                    .topo
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.end_node.is_some())
                    .map(|(i, n)| {
                        let first = crate::apps::wallet_of(&self.topo, &n.name);
                        let now = self
                            .nodes
                            .get(i)
                            .and_then(|x| x.role::<crate::apps::EnApp>())
                            .map(|app| app.en.wallet().dh());
                        (first.hash_addr(), first, now)
                    })
                    .collect();
                let mut long_term: BTreeMap<HashAddr, Vec<&DhSecret>> = BTreeMap::new();
                for (h, first, now) in &ens {
                    let keys = long_term.entry(*h).or_default();
                    keys.push(first.dh());
                    if let Some(x) = now
                        && x.public_bytes() != first.dh().public_bytes()
                    {
                        keys.push(x);
                    }
                }
                let d = a.decrypt(&long_term);
                json!({
                    "sessions_recorded": d.sessions,
                    "key_epochs_derived": d.epochs,
                    "frames_recorded": d.frames_recorded,
                    "frames_decrypted": d.frames_decrypted,
                    "media_not_recorded": a.media_not_recorded,
                    "worked": d.frames_decrypted > 0,
                })
            }
            (Attack::LyingSn(a), AttackSpec::LyingSn { about, .. }) => {
                let about_hex = hex(&self.hash_addr_of(*about));
                let mut o = json!({ "lie": a.lie().as_str(), "about": self.name_of(*about) });
                let fig = match a.lie() {
                    Lie::Mismatch => {
                        let forged = a.forged_endpoint();
                        let about_name = self.name_of(*about);
                        let corrections = records
                            .iter()
                            .filter(|x| after(x.t) && x.host == about_name)
                            .filter(|x| {
                                matches!(x.role_event::<EnEvent>(),
                                    Some(EnEvent::EndpointCorrected { observed, .. }) if *observed == forged)
                            })
                            .count();
                        let honest_serving = self
                            .nodes
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i != r.spec.actor())
                            .filter_map(|(_, n)| n.role::<SuperNode>())
                            .filter(|sn| {
                                sn.chain().lookup(&self.hash_addr_of(*about)).is_some_and(
                                    |(tx, _)| {
                                        SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port) == forged
                                    },
                                )
                            })
                            .count();
                        json!({
                            "forged_endpoint": forged.to_string(),
                            "acks_forged": a.acks_forged,
                            "corrections_taken": corrections,
                            "forged_txs_signed": a.forged_txs_signed,
                            "forged_seqs": a.forged_seqs,
                            "relayed_to_peers": a.relayed,
                            "honest_sns_serving_forged_endpoint": honest_serving,
                            "worked": a.forged_txs_signed > 0,
                        })
                    }
                    Lie::Stale => {
                        let taken = a
                            .reply_lies
                            .iter()
                            .filter(|l| {
                                records.iter().any(|x| {
                                    matches!(x.role_event::<EnEvent>(),
                                        Some(EnEvent::LookupOk { request_id, peer, seq, .. })
                                            if *request_id == l.request_id && *peer == about_hex && *seq == l.served_seq)
                                })
                            })
                            .count();
                        json!({
                            "stale_replies": a.reply_lies.len(),
                            "stale_seqs_served": a.reply_lies.iter().map(|l| l.served_seq).collect::<Vec<_>>(),
                            "genuine_seqs": a.reply_lies.iter().map(|l| l.genuine_seq).collect::<Vec<_>>(),
                            "stale_replies_accepted": taken,
                            "worked": taken > 0,
                        })
                    }
                    Lie::NotFound => {
                        let taken = a
                            .reply_lies
                            .iter()
                            .filter(|l| {
                                records.iter().any(|x| {
                                    matches!(x.role_event::<EnEvent>(),
                                        Some(EnEvent::LookupNotFound { request_id, peer, .. })
                                            if *request_id == l.request_id && *peer == about_hex)
                                })
                            })
                            .count();
                        let calls_failed = records
                            .iter()
                            .filter(|x| after(x.t))
                            .filter(|x| {
                                matches!(x.role_event::<CallEvent>(),
                                    Some(CallEvent::Failed { peer, reason }) if *peer == about_hex && reason == "peer not found")
                            })
                            .count();
                        json!({
                            "false_not_found_replies": a.reply_lies.len(),
                            "false_not_found_accepted": taken,
                            "calls_failed_peer_not_found": calls_failed,
                            "worked": taken > 0,
                        })
                    }
                };
                if let (Some(o), Some(f)) = (o.as_object_mut(), fig.as_object()) {
                    o.extend(f.clone());
                }
                o
            }
            (Attack::LookupFlood(a), AttackSpec::LookupFlood { callee, .. }) => {
                self.lookup_flood_result(r, a, *callee)
            }
            (Attack::DhcpRelease(a), AttackSpec::DhcpRelease { victim, .. }) => {
                self.dhcp_release_result(r, a, *victim)
            }
            (Attack::RekeyInjection(a), _) => self.rekey_injection_result(r, a),
            _ => json!({ "worked": false }),
        };
        if let (Some(o), Some(f)) = (v.as_object_mut(), figures.as_object()) {
            o.extend(f.clone());
        }
        v
    }

    fn lookup_flood_result(&self, r: &AttackRun, a: &LookupFlood, callee: usize) -> Value {
        let records = &self.events.records;
        // The callee and the end nodes whose first segment is the callee's (behind its NAT).
        let seg = self.topo.nodes[callee].ports.first().map(|p| p.segment);
        let near: Vec<&str> = self
            .topo
            .nodes
            .iter()
            .filter(|n| n.end_node.is_some() && n.ports.first().map(|p| p.segment) == seg)
            .map(|n| n.name.as_str())
            .collect();
        let near_hex: Vec<String> = near
            .iter()
            .map(|n| hex(&self.hash_addr_of_name(n)))
            .collect();
        let (from, to) = match (a.flood_start, a.flood_end()) {
            (Some(s), Some(e)) => (s, e + FLOOD_GRACE),
            _ => (r.start, r.start),
        };
        let in_window = |t: Time| t >= from && t <= to;
        let callee_name = self.name_of(callee);
        let count_en = |pred: &dyn Fn(&EnEvent) -> bool, hosts: &[&str]| {
            records
                .iter()
                .filter(|x| in_window(x.t) && hosts.contains(&x.host.as_str()))
                .filter(|x| x.role_event::<EnEvent>().is_some_and(pred))
                .count()
        };
        let queries = count_en(&|e| matches!(e, EnEvent::QuerySent { .. }), &[callee_name]);
        let refused = count_en(&|e| matches!(e, EnEvent::LookupRefused { .. }), &near);
        // Genuine calls placed in the window by, or to, an EN behind the callee's NAT.
        let mut started = 0;
        let mut failed = 0;
        for (i, x) in records.iter().enumerate() {
            if !in_window(x.t) {
                continue;
            }
            let Some(CallEvent::Started { peer, .. }) = x.role_event::<CallEvent>() else {
                continue;
            };
            if !near.contains(&x.host.as_str()) && !near_hex.contains(peer) {
                continue;
            }
            started += 1;
            let active = records[i..].iter().any(|y| {
                y.host == x.host
                    && matches!(y.role_event::<CallEvent>(),
                        Some(CallEvent::Active { peer: p, .. }) if p == peer)
            });
            if !active {
                failed += 1;
            }
        }
        let limited = self
            .queries_rate_limited()
            .saturating_sub(r.rate_limited_before);
        json!({
            "callee": callee_name,
            "requests_planned": a.planned(),
            "requests_sent": a.sent,
            "request_bytes": a.bytes_sent,
            "replies_to_spoofed_sources": a.replies,
            "reply_bytes": a.reply_bytes,
            "callee_queries_sent": queries,
            "lookups_refused_behind_nat": refused,
            "sn_queries_rate_limited": limited,
            "genuine_calls_started": started,
            "genuine_calls_failed": failed,
            "worked": failed > 0,
        })
    }

    fn dhcp_release_result(&self, r: &AttackRun, a: &DhcpRelease, victim: usize) -> Value {
        let records = &self.events.records;
        let after = |t: Time| t >= r.start;
        let id_hex = |n: usize| {
            hex(&crate::node_roles::dhcp_client_config(&self.topo.nodes[n].name, n).client_id)
        };
        let (victim_hex, attacker_hex) = (id_hex(victim), id_hex(r.spec.actor()));
        let address = a.lease.map(|l| l.address);
        let server_events = || {
            records
                .iter()
                .filter(move |x| after(x.t))
                .filter_map(|x| x.role_event::<DhcpServerEvent>())
        };
        let leases_freed = server_events()
            .filter(|e| {
                matches!(e, DhcpServerEvent::Release { client, address: ad }
                    if *client == victim_hex && Some(*ad) == address)
            })
            .count();
        let refused = server_events()
            .filter(|e| {
                matches!(e, DhcpServerEvent::Refused { client, address: ad, .. }
                    if (*client == victim_hex || *client == attacker_hex) && *ad == address)
            })
            .count();
        let acks: Vec<Ipv4Addr> = server_events()
            .filter_map(|e| match e {
                DhcpServerEvent::Ack {
                    client,
                    address: ad,
                    ..
                } if *client == attacker_hex => Some(*ad),
                _ => None,
            })
            .collect();
        let reassigned = server_events().any(|e| {
            matches!(e, DhcpServerEvent::Ack { client, address: ad, .. }
                if *client != victim_hex && Some(*ad) == address)
        });
        json!({
            "victim": self.name_of(victim),
            "variant": if a.spoofed() { "spoofed" } else { "own-address" },
            "victim_address": address.map(|x| x.to_string()),
            "dhcp_server": a.lease.map(|l| l.server.to_string()),
            "releases_sent": a.releases_sent,
            "releases_from": if a.spoofed() { "victim's address" } else { "attacker's address" },
            "leases_freed": leases_freed,
            "bind_attempts": a.bind_attempts,
            "discovers_sent": a.discovers_sent,
            "offers_of_victim_address": a.offers_of_victim_address,
            "offers_of_other_addresses": a.offers_of_other_addresses,
            "naks_to_attacker": a.naks_to_attacker,
            "refused_by_server": refused,
            "addresses_bound_to_attacker": acks.len(),
            "addresses_bound": acks.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            "victim_address_reassigned": reassigned,
            "worked": leases_freed > 0 || !acks.is_empty(),
        })
    }

    fn rekey_injection_result(&self, r: &AttackRun, a: &RekeyInjection) -> Value {
        let records = &self.events.records;
        let after = |t: Time| t >= r.start;
        let ens: Vec<(usize, HashAddr)> = self
            .topo
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.end_node.is_some())
            .map(|(i, n)| (i, self.hash_addr_of_name(&n.name)))
            .collect();
        let calls_of = |i: usize| {
            self.nodes
                .get(i)
                .and_then(|x| x.role::<crate::apps::EnApp>())
                .map(|app| app.en.calls())
                .unwrap_or_default()
        };
        let count = |host: &str, pred: &dyn Fn(&CallEvent) -> bool| {
            records
                .iter()
                .filter(|x| after(x.t) && x.host == host)
                .filter(|x| x.role_event::<CallEvent>().is_some_and(pred))
                .count()
        };
        // The attacked calls: an EN (the target) holding a call with a sender the attack
        // named, and that sender.
        let mut calls_attacked = 0;
        let mut accepted = 0;
        let mut refused = 0;
        let mut replies_refused = 0;
        let mut broken = 0;
        let mut frames_refused = 0;
        let mut desynced = 0;
        for &(t, t_hash) in &ens {
            for &(s, s_hash) in &ens {
                if !a.senders.contains(&s_hash) || s == t {
                    continue;
                }
                let Some(tc) = calls_of(t).iter().find(|c| c.peer == s_hash) else {
                    continue;
                };
                calls_attacked += 1;
                let (tn, sn) = (self.name_of(t), self.name_of(s));
                let (t_hex, s_hex) = (hex(&t_hash), hex(&s_hash));
                // Renewals the target applied beyond those the sender really sent it.
                let applied = count(
                    tn,
                    &|e| matches!(e, CallEvent::RekeyAccepted { peer, .. } if *peer == s_hex),
                );
                let sent = count(
                    sn,
                    &|e| matches!(e, CallEvent::RekeySent { peer, .. } if *peer == t_hex),
                );
                accepted += applied.saturating_sub(sent);
                // A Key Renewal refused (`from` is left out), and a Key Renewal Reply refused
                // (`from` given): the Reply the sender resent to a replayed renewal.
                refused += count(
                    tn,
                    &|e| matches!(e, CallEvent::RekeyRejected { peer: Some(p), from: None, .. } if *p == s_hex),
                );
                replies_refused += count(
                    tn,
                    &|e| matches!(e, CallEvent::RekeyRejected { peer: Some(p), from: Some(_), .. } if *p == s_hex),
                );
                let sc = calls_of(s).iter().find(|c| c.peer == t_hash);
                let desync = sc.is_some_and(|sc| sc.epoch() != tc.epoch());
                let refused_frames: u64 = tc
                    .media
                    .media_refused
                    .values()
                    .chain(sc.iter().flat_map(|sc| sc.media.media_refused.values()))
                    .sum();
                let consent_lost = [(tn, &s_hex), (sn, &t_hex)].iter().any(|(h, p)| {
                    records
                        .iter()
                        .filter(|x| a.first_injection.is_some_and(|f| x.t >= f) && x.host == *h)
                        .any(|x| {
                            matches!(x.role_event::<CallEvent>(),
                                Some(CallEvent::ConsentExpired { peer, .. }) if peer == *p)
                        })
                });
                frames_refused += refused_frames;
                desynced += usize::from(desync);
                broken += usize::from(desync || refused_frames > 0 || consent_lost);
            }
        }
        json!({
            "renewals_injected": a.injected(),
            "forged_injected": a.forged,
            "tampered_injected": a.tampered,
            "replayed_injected": a.replayed,
            "calls_attacked": calls_attacked,
            "renewals_refused": refused,
            "replies_refused": replies_refused,
            "renewals_accepted": accepted,
            "epochs_desynced": desynced,
            "frames_refused": frames_refused,
            "calls_broken": broken,
            "worked": accepted > 0 || broken > 0,
        })
    }
}
