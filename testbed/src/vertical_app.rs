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
use binfm_roles::vertical::en::VerticalNode;
use binfm_roles::vertical::location::LocationServer;
use binfm_roles::vertical::stun::StunServer;
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

/// The vertical EN of node `def`, with the STUN server of every network, or `None` if the
/// node is no end node or its first network has no domain server.
pub fn vertical_en(topo: &Topology, def: &NodeDef) -> Option<VerticalNode> {
    def.end_node.as_ref()?;
    let home = domain_server_of(topo, def.ports.first()?.segment)?;
    let (tone_hz, seed) = tone_and_seed(topo, def);
    let mut en = VerticalNode::new(
        vertical_id(topo.seed, &def.name),
        ports::EN,
        SocketAddrV4::new(home, ports::LOCATION),
        seed,
        tone_hz,
    );
    en.set_stun_servers(
        (0..topo.segments.len())
            .map(|s| domain_server_of(topo, s).map(|ip| SocketAddrV4::new(ip, ports::STUN)))
            .collect(),
    );
    Some(en)
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
