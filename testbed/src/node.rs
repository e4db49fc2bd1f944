//! A node at run time: its IP stacks (one smoltcp stack per port), its services (DHCP, echo),
//! and, for routers and NATs, forwarding with the NAT as a middleware on the path.
//!
//! Both drivers use this code; they differ only in how time passes and how packets travel
//! between nodes. A node never reads a clock: `now` is always passed in.

use crate::events::{RunEvent, TestbedEvent};
use crate::node_roles::{Slot, roles_of};
use crate::topology::{NodeDef, NodeKind, Topology};
use binfm_roles::address::ConfigChange;
use binfm_roles::event::Event;
use binfm_roles::nat::{Nat, NatConfig, Translated};
use binfm_roles::{Command, Role, Time};
use binfm_stack::checksum;
use binfm_stack::fabric::{Dest, MemberId, RouteTable};
use binfm_stack::host::IpStack;
use smoltcp::wire::{Ipv4Cidr, Ipv4Packet};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Bound on the work one `poll` may do, so a misbehaving role cannot hang a run.
const MAX_POLL_ROUNDS: usize = 64;

/// One attachment of a node.
#[derive(Debug)]
pub struct Port {
    /// Segment index.
    pub segment: usize,
    /// Member id on that segment.
    pub member: MemberId,
    /// The segment's subnet.
    pub subnet: Ipv4Cidr,
    /// Current address (`None` while a DHCP client has no lease).
    pub addr: Option<Ipv4Addr>,
    /// Default gateway learned from DHCP (or configured).
    pub gateway: Option<Ipv4Addr>,
    /// The port's IP stack (answers pings; runs the services bound to this port).
    pub stack: IpStack,
}

/// What a node asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Put `packet` on the port's segment toward `dest`.
    Send {
        /// Outgoing port.
        port: usize,
        /// Next hop or broadcast.
        dest: Dest,
        /// The IPv4 packet.
        packet: Vec<u8>,
    },
    /// The port's address changed (the driver updates the segment's neighbour table).
    AddrChanged {
        /// Port.
        port: usize,
        /// New address.
        addr: Option<Ipv4Addr>,
    },
    /// A protocol event for `events.jsonl`.
    Event(RunEvent),
}

/// A host, router or NAT at run time.
#[derive(Debug)]
pub struct Node {
    /// Name from the topology.
    pub name: String,
    /// Attachments.
    pub ports: Vec<Port>,
    forwards: bool,
    routes: RouteTable,
    /// The NAT middleware (port 0 inside, port 1 outside).
    nat: Option<Nat>,
    /// Roles with the port they are bound to.
    services: Vec<Slot>,
    /// Events of the roles' construction (a super node's recovery), logged at start.
    startup_events: Vec<RunEvent>,
    /// Packets this node dropped, by reason (NAT drops are counted by the NAT).
    pub drops: BTreeMap<&'static str, u64>,
    /// False while the node is crashed (fault injection).
    pub up: bool,
    /// The last [`Node::poll`] ran until nothing more happened, and no role has been given
    /// anything since: only a timer falling due, or input to a stack, can make a poll do
    /// work ([`Node::quiet`]).
    settled: bool,
}

impl Node {
    /// Builds node `index` of the topology. `members[p]` is the member id of port `p`.
    pub fn new(
        topo: &Topology,
        index: usize,
        members: &[MemberId],
        now: Time,
        data_root: Option<&std::path::Path>,
    ) -> anyhow::Result<Node> {
        let def: &NodeDef = &topo.nodes[index];
        let seed = topo.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let ports: Vec<Port> = def
            .ports
            .iter()
            .zip(members)
            .enumerate()
            .map(|(i, (p, &member))| {
                let subnet = topo.segments[p.segment].subnet;
                let mut stack = IpStack::new(now, seed.wrapping_add(i as u64));
                let gateway = def.gateway;
                stack.set_address(p.addr.map(|a| (a, subnet.prefix_len())), gateway);
                Port {
                    segment: p.segment,
                    member,
                    subnet,
                    addr: p.addr,
                    gateway,
                    stack,
                }
            })
            .collect();
        let nat = match &def.kind {
            NodeKind::Nat(n) => {
                let inside = ports[0].subnet;
                let public = ports[1].addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
                let mut cfg =
                    NatConfig::new(public, inside.network().address(), inside.prefix_len());
                cfg.filtering = n.filtering;
                cfg.mapping_timeout = n.mapping_timeout;
                Some(Nat::new(cfg))
            }
            _ => None,
        };
        let (services, startup_events) = roles_of(topo, index, seed, now, data_root)?;
        let dhcp_host = def.ports.iter().any(|p| p.addr.is_none());
        Ok(Node {
            name: def.name.clone(),
            ports,
            forwards: def.forwards(),
            routes: if dhcp_host {
                RouteTable::default()
            } else {
                topo.routes[index].clone()
            },
            nat,
            services,
            startup_events,
            drops: BTreeMap::new(),
            up: true,
            settled: false,
        })
    }

    /// Binds the roles' sockets and starts them (DHCP clients, statically addressed apps,
    /// mining).
    pub fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        out.extend(self.startup_events.drain(..).map(Output::Event));
        for slot in &mut self.services {
            let udp = slot.role.port();
            let bytes = slot.role.socket_buffer();
            if let Err(e) = self.ports[slot.port].stack.bind_udp(udp, bytes) {
                out.push(Output::Event(
                    TestbedEvent::BindFailed {
                        port: udp,
                        error: e.to_string(),
                    }
                    .into(),
                ));
            }
            let address = self.ports[slot.port].addr;
            slot.role.handle_command(now, &Command::Start { address });
        }
        self.poll(now, out);
    }

    /// Gives every role a command (an end node's call, hang-up or rekey; the end of a run).
    /// The caller polls the node afterwards if the command may produce output.
    pub fn command(&mut self, now: Time, command: &Command) {
        self.settled = false;
        for slot in &mut self.services {
            slot.role.handle_command(now, command);
        }
    }

    fn count_drop(&mut self, reason: &'static str, out: &mut Vec<Output>, packet: &[u8]) {
        *self.drops.entry(reason).or_default() += 1;
        let ip = Ipv4Packet::new_checked(packet).ok();
        out.push(Output::Event(
            TestbedEvent::NodeDrop {
                reason,
                src: ip.as_ref().map(|ip| ip.src_addr()),
                dst: ip.as_ref().map(|ip| ip.dst_addr()),
            }
            .into(),
        ));
    }

    fn drain_nat_events(&mut self, out: &mut Vec<Output>) {
        if let Some(nat) = &mut self.nat {
            while let Some(e) = nat.poll_event() {
                out.push(Output::Event(Event::from(e).into()));
            }
        }
    }

    /// Whether `addr` is a broadcast address on `port`'s segment.
    fn is_broadcast(&self, port: usize, addr: Ipv4Addr) -> bool {
        addr == Ipv4Addr::BROADCAST || self.ports[port].subnet.broadcast() == Some(addr)
    }

    /// Where a packet to `dst` leaves this node: (port, next hop).
    fn route(&self, origin: Option<usize>, dst: Ipv4Addr) -> Option<(usize, Dest)> {
        if let Some(p) = origin
            && self.is_broadcast(p, dst)
        {
            return Some((p, Dest::Broadcast));
        }
        if let Some(p) = self
            .ports
            .iter()
            .position(|p| p.addr.is_some() && p.subnet.contains_addr(&dst))
        {
            return Some((p, Dest::Unicast(dst)));
        }
        if let Some(r) = self.routes.lookup(dst) {
            return Some((r.port, Dest::Unicast(r.via.unwrap_or(dst))));
        }
        let p = self
            .ports
            .iter()
            .position(|p| p.addr.is_some() && p.gateway.is_some())?;
        Some((p, Dest::Unicast(self.ports[p].gateway?)))
    }

    /// A packet arrived on `port` at `now`. Outputs are appended to `out`. Returns whether
    /// the packet went to one of the node's own stacks; if it did not (it was forwarded or
    /// dropped), a node that is [`Node::quiet`] needs no [`Node::poll`] afterwards.
    pub fn receive(
        &mut self,
        now: Time,
        port: usize,
        mut packet: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> bool {
        if !self.up {
            *self.drops.entry("node_down").or_default() += 1;
            return false;
        }
        let (dst, ttl) = match Ipv4Packet::new_checked(&packet[..]) {
            Ok(ip) if ip.verify_checksum() => (ip.dst_addr(), ip.hop_limit()),
            Ok(_) => {
                self.count_drop("bad_ip_checksum", out, &packet);
                return false;
            }
            Err(_) => {
                self.count_drop("malformed_ip", out, &packet);
                return false;
            }
        };
        if let Some(nat) = &mut self.nat {
            let public = nat.config().public_ip;
            if port == 1 && dst == public {
                let r = nat.inbound(now, &mut packet);
                self.drain_nat_events(out);
                if r.is_ok() {
                    self.forward(now, 1, packet, ttl, out);
                }
                return false;
            }
            if port == 0 && dst == public {
                // Hairpin (RFC 4787 REQ-9): translate both ways, send back inside.
                let r = nat.outbound(now, &mut packet);
                self.drain_nat_events(out);
                if r.is_ok() {
                    self.forward(now, 0, packet, ttl, out);
                }
                return false;
            }
        }
        let local = self.ports.iter().any(|p| p.addr == Some(dst)) || self.is_broadcast(port, dst);
        if local {
            self.ports[port].stack.push_rx(packet);
            return true;
        }
        if self.forwards {
            self.forward(now, port, packet, ttl, out);
        } else {
            self.count_drop("not_for_us", out, &packet);
        }
        false
    }

    /// Whether a [`Node::poll`] at `now` would do nothing: the node is up and settled, its
    /// stacks are idle and no timer of its NAT or roles is due. Then it returns what
    /// [`Node::poll_at`] would answer (`Some(None)`: no timer set), without asking the idle
    /// stacks.
    pub fn quiet(&self, now: Time) -> Option<Option<Time>> {
        if !self.up || !self.settled || !self.ports.iter().all(|p| p.stack.is_idle()) {
            return None;
        }
        let next = self.next_timer();
        if next.is_some_and(|t| t <= now) {
            return None;
        }
        Some(next)
    }

    /// Forwards a packet that entered on `in_port` (TTL, NAT, route).
    fn forward(
        &mut self,
        now: Time,
        in_port: usize,
        mut packet: Vec<u8>,
        ttl: u8,
        out: &mut Vec<Output>,
    ) {
        if ttl <= 1 {
            return self.count_drop("ttl_expired", out, &packet);
        }
        decrement_ttl(&mut packet);
        let dst = match Ipv4Packet::new_checked(&packet[..]) {
            Ok(ip) => ip.dst_addr(),
            Err(_) => return self.count_drop("malformed_ip", out, &packet),
        };
        let Some((out_port, dest)) = self.route(None, dst) else {
            return self.count_drop("no_route", out, &packet);
        };
        if let Some(nat) = &mut self.nat
            && in_port == 0
            && out_port == 1
        {
            let r = nat.outbound(now, &mut packet);
            self.drain_nat_events(out);
            match r {
                Ok(Translated::ToOutside) => {}
                Ok(Translated::Hairpin) => {
                    // Cannot happen here (hairpin is handled on receive), but be total.
                    return self.forward_hairpin(packet, out);
                }
                Err(_) => return,
            }
        }
        out.push(Output::Send {
            port: out_port,
            dest,
            packet,
        });
    }

    fn forward_hairpin(&mut self, packet: Vec<u8>, out: &mut Vec<Output>) {
        match Ipv4Packet::new_checked(&packet[..]) {
            Ok(ip) => {
                let dst = ip.dst_addr();
                out.push(Output::Send {
                    port: 0,
                    dest: Dest::Unicast(dst),
                    packet,
                });
            }
            Err(_) => self.count_drop("malformed_ip", out, &packet),
        }
    }

    /// Runs stacks and services at `now` until nothing more happens.
    pub fn poll(&mut self, now: Time, out: &mut Vec<Output>) {
        self.settled = false;
        if !self.up {
            return;
        }
        if let Some(nat) = &mut self.nat
            && nat.poll_timeout().is_some_and(|t| t <= now)
        {
            nat.handle_timeout(now);
        }
        self.drain_nat_events(out);
        for _ in 0..MAX_POLL_ROUNDS {
            let mut progressed = false;
            for p in 0..self.ports.len() {
                self.ports[p].stack.poll(now);
                while let Some(pkt) = self.ports[p].stack.pop_tx() {
                    progressed = true;
                    self.send_local(p, pkt, out);
                }
                let Node {
                    ports,
                    services,
                    drops,
                    ..
                } = self;
                while let Some(()) = ports[p].stack.recv_udp_with(|from, to, payload| {
                    match services
                        .iter_mut()
                        .find(|s| s.port == p && s.role.port() == to.port())
                    {
                        Some(slot) => slot.role.handle_datagram(now, from, to, payload),
                        // A socket bound from outside (benchmarks, tests) acts as a sink.
                        None => *drops.entry("udp_no_service").or_default() += 1,
                    }
                }) {
                    progressed = true;
                }
            }
            for i in 0..self.services.len() {
                let Slot {
                    port,
                    role: svc,
                    log,
                } = &mut self.services[i];
                let port = *port;
                if svc.poll_timeout().is_some_and(|t| t <= now) {
                    svc.handle_timeout(now);
                }
                while let Some(t) = svc.poll_transmit() {
                    progressed = true;
                    match self.ports[port]
                        .stack
                        .send_udp(t.src_ip, t.src_port, t.dst, &t.payload)
                    {
                        Ok(()) => {}
                        // Answers to spoofed off-link sources: counted, not logged one by one.
                        Err(binfm_stack::host::HostError::NoRoute(_)) => {
                            *self.drops.entry("udp_no_route").or_default() += 1;
                        }
                        Err(e) => out.push(Output::Event(
                            TestbedEvent::SendFailed {
                                error: e.to_string(),
                            }
                            .into(),
                        )),
                    }
                }
                while let Some(e) = svc.poll_event() {
                    out.push(Output::Event(e.into()));
                }
                while let Some(record) = svc.poll_persist() {
                    if let Some(Err(e)) = log.as_mut().map(|l| l.append(&record)) {
                        out.push(Output::Event(
                            TestbedEvent::PersistFailed {
                                error: e.to_string(),
                            }
                            .into(),
                        ));
                    }
                }
                if let Some(change) = svc.poll_config() {
                    progressed = true;
                    // Let the stack send what is queued first (a RELEASE goes out from the
                    // address that is about to be removed).
                    self.ports[port].stack.poll(now);
                    while let Some(pkt) = self.ports[port].stack.pop_tx() {
                        self.send_local(port, pkt, out);
                    }
                    self.apply_config(now, port, change, out);
                }
            }
            if !progressed {
                self.settled = true;
                return;
            }
        }
        out.push(Output::Event(
            TestbedEvent::PollLimit {
                rounds: MAX_POLL_ROUNDS,
            }
            .into(),
        ));
    }

    fn apply_config(
        &mut self,
        now: Time,
        port: usize,
        change: ConfigChange,
        out: &mut Vec<Output>,
    ) {
        let p = &mut self.ports[port];
        let segment = p.segment;
        match change {
            ConfigChange::Bound(lease) => {
                p.addr = Some(lease.address);
                p.gateway = lease.router;
                p.subnet = Ipv4Cidr::new(lease.address, lease.prefix_len).network();
                p.stack
                    .set_address(Some((lease.address, lease.prefix_len)), lease.router);
                self.command_port(now, port, &Command::Bound { lease, segment });
            }
            ConfigChange::Unbound => {
                p.addr = None;
                p.gateway = None;
                p.stack.set_address(None, None);
                self.command_port(now, port, &Command::Unbound);
            }
        }
        out.push(Output::AddrChanged {
            port,
            addr: self.ports[port].addr,
        });
    }

    /// Re-attaches port 0 to another segment (the node moved) and asks for a new lease there.
    /// The driver has already detached the old member and created the new one.
    pub fn move_to(
        &mut self,
        now: Time,
        segment: usize,
        member: MemberId,
        subnet: Ipv4Cidr,
        out: &mut Vec<Output>,
    ) {
        let p = &mut self.ports[0];
        p.segment = segment;
        p.member = member;
        p.subnet = subnet;
        // The DHCP client restarts: Unbound (old address dropped), then DISCOVER here.
        self.command(now, &Command::Moved);
        self.poll(now, out);
    }

    /// Releases the DHCP lease (the RELEASE goes out now); the driver detaches afterwards.
    pub fn release(&mut self, now: Time, out: &mut Vec<Output>) {
        self.command(now, &Command::Release);
        self.poll(now, out);
    }

    /// Gives the roles bound to `port` a command (without running the node).
    fn command_port(&mut self, now: Time, port: usize, command: &Command) {
        self.settled = false;
        for slot in self.services.iter_mut().filter(|s| s.port == port) {
            slot.role.handle_command(now, command);
        }
    }

    /// A packet produced by the stack of `port`.
    fn send_local(&mut self, port: usize, packet: Vec<u8>, out: &mut Vec<Output>) {
        let dst = match Ipv4Packet::new_checked(&packet[..]) {
            Ok(ip) => ip.dst_addr(),
            Err(_) => return self.count_drop("malformed_ip", out, &packet),
        };
        match self.route(Some(port), dst) {
            Some((p, dest)) => out.push(Output::Send {
                port: p,
                dest,
                packet,
            }),
            None => self.count_drop("no_route", out, &packet),
        }
    }

    /// The earliest time this node must be polled without new input.
    pub fn poll_at(&mut self, now: Time) -> Option<Time> {
        if !self.up {
            return None;
        }
        let timer = self.next_timer();
        let stacks = self.ports.iter_mut().filter_map(|p| p.stack.poll_at(now));
        stacks.chain(timer).min()
    }

    /// The earliest timer of the node's roles and NAT (its stacks aside).
    fn next_timer(&self) -> Option<Time> {
        let roles = self.services.iter().filter_map(|s| s.role.poll_timeout());
        let nat = self.nat.as_ref().and_then(Nat::poll_timeout);
        roles.chain(nat).min()
    }

    /// NAT drop counters, if this node is a NAT.
    pub fn nat_drops(&self) -> Vec<(&'static str, u64)> {
        self.nat
            .as_ref()
            .map(|n| n.drops().map(|(r, c)| (r.as_str(), c)).collect())
            .unwrap_or_default()
    }

    /// The expensive operations the node's roles did since this was last called
    /// ([`Role::take_work`]).
    pub fn take_work(&mut self) -> binfm_roles::Work {
        let mut w = binfm_roles::Work::NONE;
        for s in &mut self.services {
            w.merge(s.role.take_work());
        }
        w
    }

    /// The roles this node runs, in start order.
    pub fn roles(&self) -> impl Iterator<Item = &dyn Role> {
        self.services.iter().map(|s| &*s.role)
    }

    /// The first role of type `R` this node runs (reports and tests read a role's state).
    pub fn role<R: Role>(&self) -> Option<&R> {
        self.roles()
            .find_map(|r| (r as &dyn std::any::Any).downcast_ref::<R>())
    }

    /// The first role of type `R`, mutably.
    pub fn role_mut<R: Role>(&mut self) -> Option<&mut R> {
        self.settled = false;
        self.services
            .iter_mut()
            .find_map(|s| (&mut *s.role as &mut dyn std::any::Any).downcast_mut::<R>())
    }

    /// The NAT, if this node is one.
    pub fn nat(&self) -> Option<&Nat> {
        self.nat.as_ref()
    }
}

/// Decrements the TTL and updates the header checksum incrementally.
fn decrement_ttl(packet: &mut [u8]) {
    if packet.len() < 20 {
        return;
    }
    let old = u16::from_be_bytes([packet[8], packet[9]]);
    packet[8] = packet[8].saturating_sub(1);
    let new = u16::from_be_bytes([packet[8], packet[9]]);
    let c = u16::from_be_bytes([packet[10], packet[11]]);
    packet[10..12].copy_from_slice(&checksum::update_word(c, old, new).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::packet::udp_packet;
    use std::net::SocketAddrV4;
    use std::path::Path;

    const TOPOLOGY: &str = r#"
name = "quiet"
[[segment]]
name = "lan"
subnet = "10.1.0.0/24"
[[segment]]
name = "public"
subnet = "198.51.100.0/24"
[[nat]]
name = "nat"
inside = { segment = "lan", address = "10.1.0.1" }
outside = { segment = "public", address = "198.51.100.1" }
[[host]]
name = "a"
segment = "lan"
address = "10.1.0.10"
gateway = "10.1.0.1"
"#;

    /// `quiet` is what lets the engine skip a poll: it must say no whenever a poll could do
    /// something (not yet polled, a role given a command, a stack given work, a timer due).
    #[test]
    fn a_node_is_quiet_only_when_a_poll_would_do_nothing() {
        let topo = Topology::from_str(TOPOLOGY, Path::new("quiet.toml")).expect("topology");
        let n = topo.node_index("nat").expect("nat");
        let mut nat = Node::new(&topo, n, &[0, 0], Time::ZERO, None).expect("node");
        let mut out = Vec::new();
        assert_eq!(nat.quiet(Time::ZERO), None, "never polled");
        nat.start(Time::ZERO, &mut out);
        assert_eq!(
            nat.quiet(Time::ZERO),
            Some(None),
            "started, nothing pending"
        );

        // Forwarded outward: the NAT maps it and arms its expiry timer.
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 9);
        let local = nat.receive(Time::ZERO, 0, udp_packet(from, to, b"x"), &mut out);
        assert!(!local, "forwarded, not for the NAT's own stack");
        assert!(matches!(out.last(), Some(Output::Send { port: 1, .. })));
        let expiry = nat
            .nat()
            .and_then(Nat::poll_timeout)
            .expect("a mapping expires");
        let one_s = Time::from_secs(1);
        assert_eq!(
            nat.quiet(one_s),
            Some(Some(expiry)),
            "quiet, next timer the mapping's expiry"
        );
        assert_eq!(
            nat.quiet(one_s),
            Some(nat.poll_at(one_s)),
            "what poll_at says"
        );
        assert_eq!(nat.quiet(expiry), None, "the NAT's timer is due");

        // A packet for the NAT itself goes to its stack: a poll has work.
        let me = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 1), 9);
        assert!(nat.receive(Time::ZERO, 0, udp_packet(from, me, b"y"), &mut out));
        assert_eq!(nat.quiet(Time::ZERO), None, "a stack has input");
        nat.poll(Time::ZERO, &mut out);
        assert_eq!(nat.quiet(Time::ZERO), Some(Some(expiry)));

        nat.command(Time::ZERO, &Command::WindDown);
        assert_eq!(nat.quiet(Time::ZERO), None, "a role was given a command");
        nat.poll(Time::ZERO, &mut out);
        nat.up = false;
        assert_eq!(nat.quiet(Time::ZERO), None, "a crashed node");
    }
}
