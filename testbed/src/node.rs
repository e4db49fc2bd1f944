//! A node at run time: its IP stacks (one smoltcp stack per port), its services (DHCP, echo),
//! and, for routers and NATs, forwarding with the NAT as a middleware on the path.
//!
//! Both drivers use this code; they differ only in how time passes and how packets travel
//! between nodes. A node never reads a clock: `now` is always passed in.

use crate::apps::{EnApp, SnApp};
use crate::topology::Model;
use crate::topology::{NodeDef, NodeKind, Topology};
use crate::vertical_app::{DomainServer, VerticalApp};
use binfm_roles::dhcp::{ClientConfig, ConfigChange, DhcpClient, DhcpServer, ServerConfig};
use binfm_roles::echo::{EchoClient, EchoClientConfig, EchoServer};
use binfm_roles::nat::{Nat, NatConfig, Translated};
use binfm_roles::vertical::location::LocationServer;
use binfm_roles::vertical::stun::StunServer;
use binfm_roles::{Event, Time, Transmit};
use binfm_stack::checksum;
use binfm_stack::fabric::{Dest, MemberId, RouteTable};
use binfm_stack::host::IpStack;
use binfm_stack::wire::ports;
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
    Event(Event),
}

#[derive(Debug)]
enum Service {
    DhcpServer(Box<DhcpServer>),
    DhcpClient(Box<DhcpClient>),
    EchoServer(EchoServer),
    EchoClient(EchoClient),
    EndNode(Box<EnApp>),
    SuperNode(Box<SnApp>),
    Vertical(Box<VerticalApp>),
    Stun(StunServer),
    Location(Box<LocationServer>),
}

impl Service {
    fn udp_port(&self) -> u16 {
        match self {
            Service::DhcpServer(_) => ports::DHCP_SERVER,
            Service::DhcpClient(_) => ports::DHCP_CLIENT,
            Service::EchoServer(s) => s.port(),
            Service::EchoClient(c) => c.local_port(),
            Service::EndNode(e) => e.en.port(),
            Service::SuperNode(_) => ports::SN,
            Service::Vertical(v) => v.en.port(),
            Service::Stun(_) => ports::STUN,
            Service::Location(_) => ports::LOCATION,
        }
    }

    fn handle_datagram(&mut self, now: Time, d: &binfm_stack::host::Datagram) {
        match self {
            Service::DhcpServer(s) => s.handle_datagram(now, d.from, d.to, &d.payload),
            Service::DhcpClient(c) => c.handle_datagram(now, d.from, d.to, &d.payload),
            Service::EchoServer(s) => s.handle_datagram(now, d.from, d.to, &d.payload),
            Service::EchoClient(c) => c.handle_datagram(now, d.from, d.to, &d.payload),
            Service::EndNode(e) => e.handle_datagram(now, d),
            Service::SuperNode(s) => s.handle_datagram(now, d),
            Service::Vertical(v) => v.en.handle_datagram(now, d.from, d.to, &d.payload),
            Service::Stun(s) => s.handle_datagram(now, d.from, d.to, &d.payload),
            Service::Location(s) => s.handle_datagram(now, d.from, d.to, &d.payload),
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self {
            Service::DhcpServer(s) => s.poll_timeout(),
            Service::DhcpClient(c) => c.poll_timeout(),
            Service::EchoServer(_) => None,
            Service::EchoClient(c) => c.poll_timeout(),
            Service::EndNode(e) => e.poll_timeout(),
            Service::SuperNode(s) => s.poll_timeout(),
            Service::Vertical(v) => v.en.poll_timeout(),
            Service::Stun(s) => s.poll_timeout(),
            Service::Location(s) => s.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        match self {
            Service::DhcpServer(s) => s.handle_timeout(now),
            Service::DhcpClient(c) => c.handle_timeout(now),
            Service::EchoServer(_) => {}
            Service::EchoClient(c) => c.handle_timeout(now),
            Service::EndNode(e) => e.handle_timeout(now),
            Service::SuperNode(s) => s.handle_timeout(now),
            Service::Vertical(v) => v.en.handle_timeout(now),
            Service::Stun(s) => s.handle_timeout(now),
            Service::Location(s) => s.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Service::DhcpServer(s) => s.poll_transmit(),
            Service::DhcpClient(c) => c.poll_transmit(),
            Service::EchoServer(s) => s.poll_transmit(),
            Service::EchoClient(c) => c.poll_transmit(),
            Service::EndNode(e) => e.poll_transmit(),
            Service::SuperNode(s) => s.poll_transmit(),
            Service::Vertical(v) => v.en.poll_transmit(),
            Service::Stun(s) => s.poll_transmit(),
            Service::Location(s) => s.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        match self {
            Service::DhcpServer(s) => s.poll_event(),
            Service::DhcpClient(c) => c.poll_event(),
            Service::EchoServer(s) => s.poll_event(),
            Service::EchoClient(c) => c.poll_event(),
            Service::EndNode(e) => e.poll_event(),
            Service::SuperNode(s) => s.poll_event(),
            Service::Vertical(v) => v.en.poll_event(),
            Service::Stun(s) => s.poll_event(),
            Service::Location(s) => s.poll_event(),
        }
    }
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
    /// Services with the port they are bound to.
    services: Vec<(usize, Service)>,
    /// Packets this node dropped, by reason (NAT drops are counted by the NAT).
    pub drops: BTreeMap<&'static str, u64>,
    /// False while the node is crashed (fault injection).
    pub up: bool,
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
        let mut services = Vec::new();
        for (si, seg) in topo.segments.iter().enumerate() {
            if let Some(d) = seg.dhcp.as_ref().filter(|d| d.server == index) {
                let port = def.ports.iter().position(|p| p.segment == si).unwrap_or(0);
                services.push((
                    port,
                    Service::DhcpServer(Box::new(DhcpServer::new(ServerConfig {
                        server_ip: d.server_ip,
                        prefix_len: seg.subnet.prefix_len(),
                        router: d.router,
                        pool_start: d.pool.0,
                        pool_end: d.pool.1,
                        lease_time: d.lease,
                        nat_public: d.nat_public,
                        super_nodes: d.super_nodes.clone(),
                    }))),
                ));
            }
        }
        if def.ports.first().is_some_and(|p| p.addr.is_none()) {
            // RFC 2132 option 61: a type byte (0 = not a hardware address) then the host name.
            let id = [&[0u8][..], def.name.as_bytes()].concat();
            let mut hw = [0x02u8, 0, 0, 0, 0, 0];
            hw[2..6].copy_from_slice(&(index as u32).to_be_bytes());
            services.push((
                0,
                Service::DhcpClient(Box::new(DhcpClient::new(
                    ClientConfig {
                        client_id: id,
                        hw_addr: hw,
                    },
                    seed,
                ))),
            ));
        }
        if let Some(port) = def.echo_server {
            services.push((0, Service::EchoServer(EchoServer::new(port))));
        }
        if let Some(ec) = &def.echo_client {
            services.push((
                0,
                Service::EchoClient(EchoClient::new(EchoClientConfig {
                    local_port: ec.port,
                    target: ec.target,
                    interval: ec.interval,
                    count: ec.count,
                    size: ec.size,
                })),
            ));
        }
        match topo.model {
            Model::Binfm => {
                if let Some(en) = EnApp::new(topo, def) {
                    services.push((0, Service::EndNode(Box::new(en))));
                }
                if let Some(sn) = SnApp::new(topo, index, data_root, now, seed)? {
                    services.push((0, Service::SuperNode(Box::new(sn))));
                }
            }
            // Super nodes stay idle in the vertical model (they are BINFM infrastructure).
            Model::Vertical => {
                if def.end_node.is_some() {
                    let v = VerticalApp::new(topo, def).ok_or_else(|| {
                        anyhow::anyhow!(
                            "end node `{}`: the vertical model needs a domain server on its first network (`domain_server` in the segment's dhcp table)",
                            def.name
                        )
                    })?;
                    services.push((0, Service::Vertical(Box::new(v))));
                }
            }
        }
        if let Some(ds) = DomainServer::new(topo, index) {
            services.push((0, Service::Stun(ds.stun)));
            services.push((0, Service::Location(Box::new(ds.location))));
        }
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
            drops: BTreeMap::new(),
            up: true,
        })
    }

    /// Binds the services' sockets and starts DHCP clients and statically addressed apps.
    pub fn start(&mut self, now: Time, out: &mut Vec<Output>) {
        for (port, svc) in &mut self.services {
            let udp = svc.udp_port();
            if let Err(e) = self.ports[*port].stack.bind_udp(udp) {
                out.push(Output::Event(
                    Event::new("node.bind_failed")
                        .with("port", udp)
                        .with_display("error", e),
                ));
            }
            match svc {
                Service::DhcpClient(c) => c.start(now),
                Service::EchoClient(c) if self.ports[*port].addr.is_some() => c.start(now),
                Service::SuperNode(s) => s.start(now),
                _ => {}
            }
        }
        self.poll(now, out);
    }

    fn count_drop(&mut self, reason: &'static str, out: &mut Vec<Output>, packet: &[u8]) {
        *self.drops.entry(reason).or_default() += 1;
        let mut ev = Event::new("node.drop").with("reason", reason);
        if let Ok(ip) = Ipv4Packet::new_checked(packet) {
            ev = ev
                .with_display("src", ip.src_addr())
                .with_display("dst", ip.dst_addr());
        }
        out.push(Output::Event(ev));
    }

    fn drain_nat_events(&mut self, out: &mut Vec<Output>) {
        if let Some(nat) = &mut self.nat {
            while let Some(e) = nat.poll_event() {
                out.push(Output::Event(e));
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

    /// A packet arrived on `port` at `now`. Outputs are appended to `out`; call [`Node::poll`]
    /// afterwards if [`Node::needs_poll`] says so.
    pub fn receive(&mut self, now: Time, port: usize, mut packet: Vec<u8>, out: &mut Vec<Output>) {
        if !self.up {
            *self.drops.entry("node_down").or_default() += 1;
            return;
        }
        let (dst, ttl) = match Ipv4Packet::new_checked(&packet[..]) {
            Ok(ip) if ip.verify_checksum() => (ip.dst_addr(), ip.hop_limit()),
            Ok(_) => return self.count_drop("bad_ip_checksum", out, &packet),
            Err(_) => return self.count_drop("malformed_ip", out, &packet),
        };
        if let Some(nat) = &mut self.nat {
            let public = nat.config().public_ip;
            if port == 1 && dst == public {
                let r = nat.inbound(now, &mut packet);
                self.drain_nat_events(out);
                if r.is_ok() {
                    self.forward(now, 1, packet, ttl, out);
                }
                return;
            }
            if port == 0 && dst == public {
                // Hairpin (RFC 4787 REQ-9): translate both ways, send back inside.
                let r = nat.outbound(now, &mut packet);
                self.drain_nat_events(out);
                if r.is_ok() {
                    self.forward(now, 0, packet, ttl, out);
                }
                return;
            }
        }
        let local = self.ports.iter().any(|p| p.addr == Some(dst)) || self.is_broadcast(port, dst);
        if local {
            self.ports[port].stack.push_rx(packet);
            return;
        }
        if !self.forwards {
            return self.count_drop("not_for_us", out, &packet);
        }
        self.forward(now, port, packet, ttl, out);
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
                while let Some(d) = self.ports[p].stack.recv_udp() {
                    progressed = true;
                    match self
                        .services
                        .iter_mut()
                        .find(|(sp, s)| *sp == p && s.udp_port() == d.to.port())
                    {
                        Some((_, svc)) => svc.handle_datagram(now, &d),
                        // A socket bound from outside (benchmarks, tests) acts as a sink.
                        None => *self.drops.entry("udp_no_service").or_default() += 1,
                    }
                }
            }
            for i in 0..self.services.len() {
                let (port, svc) = &mut self.services[i];
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
                            Event::new("node.send_failed").with_display("error", e),
                        )),
                    }
                }
                while let Some(e) = svc.poll_event() {
                    out.push(Output::Event(e));
                }
                if let Service::DhcpClient(c) = svc
                    && let Some(change) = c.poll_config()
                {
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
                return;
            }
        }
        out.push(Output::Event(
            Event::new("node.poll_limit").with("rounds", MAX_POLL_ROUNDS),
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
                for (sp, s) in &mut self.services {
                    match (*sp == port, s) {
                        (true, Service::EchoClient(c)) => c.start(now),
                        (true, Service::EndNode(e)) => e.on_bound(now, &lease),
                        (true, Service::Vertical(v)) => v.on_bound(now, &lease, segment),
                        _ => {}
                    }
                }
            }
            ConfigChange::Unbound => {
                p.addr = None;
                p.gateway = None;
                p.stack.set_address(None, None);
                for (sp, s) in &mut self.services {
                    match (*sp == port, s) {
                        (true, Service::EchoClient(c)) => c.stop(),
                        (true, Service::EndNode(e)) => e.on_unbound(),
                        (true, Service::Vertical(v)) => v.on_unbound(),
                        _ => {}
                    }
                }
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
        for (_, svc) in &mut self.services {
            if let Service::DhcpClient(c) = svc {
                // Restarting emits Unbound (old address dropped), then DISCOVER on the new segment.
                c.start(now);
            }
        }
        self.poll(now, out);
    }

    /// Releases the DHCP lease (the RELEASE goes out now); the driver detaches afterwards.
    pub fn release(&mut self, now: Time, out: &mut Vec<Output>) {
        for (_, svc) in &mut self.services {
            if let Service::DhcpClient(c) = svc {
                c.release(now);
            }
        }
        self.poll(now, out);
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
        let stacks = self.ports.iter_mut().filter_map(|p| p.stack.poll_at(now));
        let services = self.services.iter().filter_map(|(_, s)| s.poll_timeout());
        let nat = self.nat.as_ref().and_then(|n| n.poll_timeout());
        stacks.chain(services).chain(nat).min()
    }

    /// NAT drop counters, if this node is a NAT.
    pub fn nat_drops(&self) -> Vec<(&'static str, u64)> {
        self.nat
            .as_ref()
            .map(|n| n.drops().map(|(r, c)| (r.as_str(), c)).collect())
            .unwrap_or_default()
    }

    /// The end node app, if this node runs one.
    pub fn end_node(&mut self) -> Option<&mut EnApp> {
        self.services.iter_mut().find_map(|(_, s)| match s {
            Service::EndNode(e) => Some(&mut **e),
            _ => None,
        })
    }

    /// The end node app, read-only.
    pub fn end_node_ref(&self) -> Option<&EnApp> {
        self.services.iter().find_map(|(_, s)| match s {
            Service::EndNode(e) => Some(&**e),
            _ => None,
        })
    }

    /// The vertical-model end node, if this node runs one.
    pub fn vertical(&mut self) -> Option<&mut VerticalApp> {
        self.services.iter_mut().find_map(|(_, s)| match s {
            Service::Vertical(v) => Some(&mut **v),
            _ => None,
        })
    }

    /// The vertical-model end node, read-only.
    pub fn vertical_ref(&self) -> Option<&VerticalApp> {
        self.services.iter().find_map(|(_, s)| match s {
            Service::Vertical(v) => Some(&**v),
            _ => None,
        })
    }

    /// The super node app, if this node runs one.
    pub fn super_node(&self) -> Option<&SnApp> {
        self.services.iter().find_map(|(_, s)| match s {
            Service::SuperNode(sn) => Some(&**sn),
            _ => None,
        })
    }

    /// The super node app, mutably.
    pub fn super_node_mut(&mut self) -> Option<&mut SnApp> {
        self.services.iter_mut().find_map(|(_, s)| match s {
            Service::SuperNode(sn) => Some(&mut **sn),
            _ => None,
        })
    }

    /// The NAT, if this node is one.
    pub fn nat(&self) -> Option<&Nat> {
        self.nat.as_ref()
    }

    /// Echo client counts (sent, received), if the node runs one.
    pub fn echo_counts(&self) -> Option<(u64, u64)> {
        self.services.iter().find_map(|(_, s)| match s {
            Service::EchoClient(c) => Some(c.counts()),
            _ => None,
        })
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
