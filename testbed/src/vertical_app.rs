//! Glue between the vertical-model roles and a node: which STUN server an EN uses from the
//! network it is on, which location server is its home, and a domain server's two services.
//!
//! The vertical model runs on the same topology file as BINFM: hosts with `domain_server = {}`
//! run STUN (3478) and the domain's location server (5060); a segment's `dhcp.domain_server`
//! names the server of that network. An EN's home domain is the one of the network it starts
//! on (as a SIP address names its registrar); it registers there wherever it moves, and runs
//! STUN against the server of the network it is on.

use crate::apps::{tone_and_seed, wallet_for};
use crate::topology::{NodeDef, Topology};
use binfm_roles::event::Event;
use binfm_roles::role::CallView;
use binfm_roles::vertical::en::VerticalNode;
use binfm_roles::vertical::location::LocationServer;
use binfm_roles::vertical::stun::StunServer;
use binfm_roles::{Command, Role, Time, Transmit};
use binfm_stack::wire::ports;
use binfm_stack::wire::vertical::Id;
use std::net::SocketAddrV4;

/// The domain server of segment `seg`, if its DHCP table names one.
fn domain_server_of(topo: &Topology, seg: usize) -> Option<std::net::Ipv4Addr> {
    topo.segments
        .get(seg)?
        .dhcp
        .as_ref()
        .and_then(|d| d.domain_server)
}

/// The vertical-model id of EN `name`: the same 32 bytes as its BINFM hash address, so
/// results name the same ENs in both models.
pub fn vertical_id(run_seed: u64, name: &str) -> Id {
    wallet_for(run_seed, name).hash_addr()
}

/// A vertical-model end node.
#[derive(Debug)]
pub struct VerticalApp {
    /// The role.
    pub en: VerticalNode,
    /// STUN server (port 3478) per segment index, from the topology's `domain_server`s.
    stun_of_segment: Vec<Option<SocketAddrV4>>,
}

impl VerticalApp {
    /// The vertical EN of node `def`, or `None` if the node is no end node or its first
    /// network has no domain server.
    pub fn new(topo: &Topology, def: &NodeDef) -> Option<VerticalApp> {
        def.end_node.as_ref()?;
        let home = domain_server_of(topo, def.ports.first()?.segment)?;
        let (tone_hz, seed) = tone_and_seed(topo, def);
        let en = VerticalNode::new(
            vertical_id(topo.seed, &def.name),
            ports::EN,
            SocketAddrV4::new(home, ports::LOCATION),
            seed,
            tone_hz,
        );
        let stun_of_segment = (0..topo.segments.len())
            .map(|s| domain_server_of(topo, s).map(|ip| SocketAddrV4::new(ip, ports::STUN)))
            .collect();
        Some(VerticalApp {
            en,
            stun_of_segment,
        })
    }
}

impl Role for VerticalApp {
    fn port(&self) -> u16 {
        self.en.port()
    }

    /// A lease bound on a segment: STUN from there, register, re-invite active calls; call,
    /// hang-up and rekey go to the role.
    fn handle_command(&mut self, now: Time, command: &Command) {
        match command {
            Command::Bound { lease, segment } => {
                match self.stun_of_segment.get(*segment).copied().flatten() {
                    Some(stun) => self.en.on_address(now, lease.address, stun),
                    // No STUN server here: the EN has an address but cannot learn its contact.
                    None => self.en.on_address_lost(),
                }
            }
            Command::Unbound => self.en.on_address_lost(),
            Command::Call(peer) => self.en.call(now, *peer),
            Command::Hangup(peer) => self.en.hangup(now, *peer),
            Command::Rekey => self.en.rekey(now),
            _ => {}
        }
    }

    fn handle_datagram(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
        self.en.handle_datagram(now, from, to, payload);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.en.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.en.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.en.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.en.poll_event().map(Event::from)
    }

    fn calls(&self) -> Vec<CallView<'_>> {
        self.en
            .calls()
            .iter()
            .map(|c| CallView {
                peer: c.peer,
                my_ssrc: c.my_ssrc(),
                frames_sent: c.frames_sent,
                frames_unsent: c.frames_unsent,
                rx_stats: &c.rx_stats,
                rx_log: &c.rx_log,
                media_start: c.media_start,
                media_refused: &c.media_refused,
                recording: &c.recording,
            })
            .collect()
    }
}

/// The domain server of node `index`, if it is one: STUN and the domain's location server
/// (its name is the domain name), peered with every other domain server, and told the home
/// domain of every EN.
pub fn domain_server(topo: &Topology, index: usize) -> Option<(StunServer, LocationServer)> {
    let def = &topo.nodes[index];
    if !def.domain_server {
        return None;
    }
    let peers = topo
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| *i != index && n.domain_server)
        .filter_map(|(_, n)| {
            let ip = n.ports.first()?.addr?;
            Some((n.name.clone(), SocketAddrV4::new(ip, ports::LOCATION)))
        })
        .collect();
    let mut location = LocationServer::new(def.name.clone(), ports::LOCATION, peers);
    for n in topo.nodes.iter().filter(|n| n.end_node.is_some()) {
        let home = n
            .ports
            .first()
            .and_then(|p| domain_server_of(topo, p.segment))
            .and_then(|ip| {
                topo.nodes
                    .iter()
                    .find(|d| d.domain_server && d.ports.first().and_then(|p| p.addr) == Some(ip))
            });
        if let Some(home) = home {
            location.set_home(vertical_id(topo.seed, &n.name), home.name.clone());
        }
    }
    Some((StunServer::new(ports::STUN), location))
}
