//! Which roles a node of a topology runs: the one place where a role is registered. The node
//! and the drivers only ever see `Box<dyn Role>`; adding a role is a file in roles/ and a line
//! here.

use crate::apps::{EnApp, sn_role};
use crate::events::RunEvent;
use crate::topology::{Model, Topology};
use crate::vertical_app::{domain_server, vertical_en};
use binfm_roles::Role;
use binfm_roles::Time;
use binfm_roles::chain::persist::BlockLog;
use binfm_roles::dhcp::{ClientConfig, DhcpClient, DhcpServer, ServerConfig};
use binfm_roles::echo::{EchoClient, EchoClientConfig, EchoServer};
use std::path::Path;

/// A role bound to one port of a node, with the durable log its `poll_persist` output goes
/// to (a super node's block log), if it has one.
#[derive(Debug)]
pub struct Slot {
    /// Index of the node's port the role is bound to.
    pub port: usize,
    /// The role.
    pub role: Box<dyn Role>,
    /// Where the role's persisted records are appended.
    pub log: Option<BlockLog>,
}

impl Slot {
    /// A role on port `port` with nothing to persist.
    pub fn new(port: usize, role: impl Role) -> Slot {
        Slot {
            port,
            role: Box::new(role),
            log: None,
        }
    }
}

/// The DHCP identity of node `index` called `name`: client id (RFC 2132 option 61: a type
/// byte, 0 = not a hardware address, then the host name) and hardware address (02:00 and the
/// index). Anyone on the node's segment sees both in its DHCP messages.
pub fn dhcp_client_config(name: &str, index: usize) -> ClientConfig {
    let mut hw = [0x02u8, 0, 0, 0, 0, 0];
    hw[2..6].copy_from_slice(&(index as u32).to_be_bytes());
    ClientConfig {
        client_id: [&[0u8][..], name.as_bytes()].concat(),
        hw_addr: hw,
    }
}

/// The roles of node `index`, in start order, and the events of their construction.
pub fn roles_of(
    topo: &Topology,
    index: usize,
    seed: u64,
    now: Time,
    data_root: Option<&Path>,
) -> anyhow::Result<(Vec<Slot>, Vec<RunEvent>)> {
    let def = &topo.nodes[index];
    let mut slots = Vec::new();
    let mut events = Vec::new();
    for (si, seg) in topo.segments.iter().enumerate() {
        if let Some(d) = seg.dhcp.as_ref().filter(|d| d.server == index) {
            let port = def.ports.iter().position(|p| p.segment == si).unwrap_or(0);
            slots.push(Slot::new(
                port,
                DhcpServer::new(ServerConfig {
                    server_ip: d.server_ip,
                    prefix_len: seg.subnet.prefix_len(),
                    router: d.router,
                    pool_start: d.pool.0,
                    pool_end: d.pool.1,
                    lease_time: d.lease,
                    nat_public: d.nat_public,
                    super_nodes: d.super_nodes.clone(),
                }),
            ));
        }
    }
    if def.ports.first().is_some_and(|p| p.addr.is_none()) {
        slots.push(Slot::new(
            0,
            DhcpClient::new(dhcp_client_config(&def.name, index), seed),
        ));
    }
    if let Some(port) = def.echo_server {
        slots.push(Slot::new(0, EchoServer::new(port)));
    }
    if let Some(ec) = &def.echo_client {
        slots.push(Slot::new(
            0,
            EchoClient::new(EchoClientConfig {
                local_port: ec.port,
                target: ec.target,
                interval: ec.interval,
                count: ec.count,
                size: ec.size,
            }),
        ));
    }
    for name in &def.roles {
        if let Some(role) = binfm_roles::registry::named_role(name) {
            slots.push(Slot {
                port: 0,
                role,
                log: None,
            });
        }
    }
    match topo.model {
        Model::Binfm => {
            if let Some(en) = EnApp::new(topo, def, now) {
                slots.push(Slot::new(0, en));
            }
            if let Some(setup) = sn_role(topo, index, data_root, now, seed)? {
                slots.push(Slot {
                    port: 0,
                    role: Box::new(setup.sn),
                    log: setup.log,
                });
                events.extend(setup.recovered.map(RunEvent::from));
            }
        }
        // Super nodes stay idle in the vertical model (they are BINFM infrastructure).
        Model::Vertical => {
            if def.end_node.is_some() {
                let v = vertical_en(topo, def).ok_or_else(|| {
                    anyhow::anyhow!(
                        "end node `{}`: the vertical model needs a domain server on its first network (`domain_server` in the segment's dhcp table)",
                        def.name
                    )
                })?;
                slots.push(Slot::new(0, v));
            }
        }
    }
    if let Some((stun, location)) = domain_server(topo, index) {
        slots.push(Slot::new(0, stun));
        slots.push(Slot::new(0, location));
    }
    Ok((slots, events))
}

/// Whether a run of `topo` has super nodes mining (which wind down at the end of the run and
/// get time to settle).
pub fn mines(topo: &Topology) -> bool {
    topo.model == Model::Binfm && topo.nodes.iter().any(|n| n.super_node.is_some())
}
