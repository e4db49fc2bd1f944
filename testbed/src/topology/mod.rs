//! Topology files: loading, checking and the resolved model the drivers run.
//!
//! Every error names the file and the line and says what to do, e.g.
//! `topologies/x.toml:14: host `a` is on segment `lan-b`, which has no DHCP server ...`.

pub mod attack_step;
pub mod compute;
pub mod flood_step;
mod parse;
pub mod spec;
pub(crate) mod units;

use binfm_roles::nat::Filtering;
use binfm_stack::fabric::{NatSide, RouteGraphNode, RoutePort, RouteTable, compute_routes};
use binfm_stack::netem::LinkParams;
use smoltcp::wire::Ipv4Cidr;
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use units::{line_of, parse_duration, parse_rate};

/// Default virtual duration of a run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// Default DHCP lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// Default mean block interval (the paper assumes 1 s).
pub const DEFAULT_BLOCK_INTERVAL: Duration = Duration::from_secs(1);
/// Default `[chain] block_bytes`: 60,000 bytes, one datagram, about 140 ToALL Txs.
pub const DEFAULT_BLOCK_BYTES: usize = binfm_roles::chain::MAX_BLOCK_BYTES;
/// Default `[chain] block_txs`.
pub const DEFAULT_BLOCK_TXS: usize = 500;
/// Default hash rate of a super node, in hashes per second of run time. Low on purpose:
/// mining is real hashing, and a run should stay fast in wall time.
pub const DEFAULT_HASH_RATE: f64 = 2000.0;
/// Default NAT mapping timeout (RFC 4787 REQ-5 minimum).
pub const DEFAULT_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Every problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The file as the user named it.
    pub file: String,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.line {
                Some(line) => write!(f, "{}:{}: {}", self.file, line, d.message)?,
                None => write!(f, "{}: {}", self.file, d.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}

/// A checked topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Topology name (also the default output folder and the live namespace suffix).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The file it came from.
    pub path: PathBuf,
    /// Seed of every random decision of a run.
    pub seed: u64,
    /// Virtual duration of a run.
    pub duration: Duration,
    /// Segments and point-to-point links.
    pub segments: Vec<SegmentDef>,
    /// Hosts, routers and NATs.
    pub nodes: Vec<NodeDef>,
    /// Static routes per node (same order as `nodes`).
    pub routes: Vec<RouteTable>,
    /// Blockchain settings.
    pub chain: ChainDef,
    /// Scenario steps, in time order.
    pub scenario: Vec<Step>,
    /// Which scheme the end nodes run.
    pub model: Model,
    /// Live mode only: hosts that are real network namespaces (see [`KernelHostDef`]).
    pub kernel_hosts: Vec<KernelHostDef>,
    /// The 256-bit master of the end nodes' keys (`binfm_roles::keyseed`). `None` (every
    /// file, every virtual run): derived from `seed`, so the run is reproducible. A live run
    /// sets it from the operating system unless `--reproducible-keys` is given.
    pub key_master: Option<[u8; 32]>,
    /// The all-virtual twin a live run is compared with, when the file says what its kernel
    /// hosts and `exec` steps are there (`twin` keys); otherwise the topology without its
    /// kernel hosts.
    pub twin: Option<Box<Topology>>,
    /// What each expensive operation of a role costs in virtual time (`[compute]`; zero
    /// without the table). Live runs charge nothing: their work takes real time.
    pub compute: compute::ComputeCosts,
}

/// A kernel host: in live mode its own network namespace `binfm-<topology>-<name>`, attached
/// to a segment by one TUN device, where real programs run (`exec` steps, `binfm exec`).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelHostDef {
    /// Unique among hosts, routers and NATs.
    pub name: String,
    /// Segment index it starts on.
    pub segment: usize,
    /// How it gets its address.
    pub addressing: KernelAddressing,
    /// The event log its program writes, relative to the run's output folder (`events`).
    pub events: Option<PathBuf>,
    /// Line of its `[[host]]` table (for messages).
    pub line: usize,
}

/// How a kernel host gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAddressing {
    /// busybox `udhcpc` in the host's namespace asks the segment's DHCP server.
    Dhcp,
    /// A fixed address and, to reach other subnets, a gateway on the segment.
    Static {
        /// The host's address.
        address: Ipv4Addr,
        /// Its default route's next hop.
        gateway: Option<Ipv4Addr>,
    },
}

/// The scheme a run's end nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// BINFM: super nodes, ToALL Txs, Query/Reply (the paper's proposal).
    #[default]
    Binfm,
    /// The vertical model: STUN, then the location service, then a key exchange (baseline).
    Vertical,
}

impl Model {
    /// Lower-case name as in topology files and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Binfm => "binfm",
            Model::Vertical => "vertical",
        }
    }
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binfm" => Ok(Model::Binfm),
            "vertical" => Ok(Model::Vertical),
            _ => Err(format!(
                "model `{s}` is unknown; write \"binfm\" or \"vertical\""
            )),
        }
    }
}

/// A scenario step at a time of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When.
    pub at: Duration,
    /// What.
    pub action: Action,
    /// Line in the topology file (for messages).
    pub line: usize,
}

/// What a scenario step does. Node and segment fields are indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `call A B`: A sets up a secure session with B (paper, Figure 8).
    Call(usize, usize),
    /// `hangup A B`: both ends stop the call.
    Hangup(usize, usize),
    /// `move A to SEGMENT`: A leaves its segment and joins another (mid-call handover).
    Move(usize, usize),
    /// `rekey A`: A renews its DH key in every call (paper, Figure 10).
    Rekey(usize),
    /// `leave A`: A releases its lease and detaches from its segment.
    Leave(usize),
    /// `join A SEGMENT`: a detached A attaches to a segment and asks for a lease.
    Join(usize, usize),
    /// `crash N`: node N stops (state lost).
    Crash(usize),
    /// `restart N`: a crashed node starts again (an SN from its data directory).
    Restart(usize),
    /// `partition {a,b} {c,d}`: paths between the groups are cut.
    Partition(Vec<Vec<usize>>),
    /// `heal`: every cut path is restored.
    Heal,
    /// `loss SEGMENT 20%`: every pair on the segment loses that fraction from now on.
    Loss(usize, f64),
    /// `flood SN RATE/s for DURATION [KIND]`: spoofed junk to a super node (see
    /// [`crate::flood`]).
    Flood(flood_step::FloodSpec),
    /// `exec K -- CMD ARGS...`: live mode runs a program in kernel host K's namespace.
    Exec {
        /// Kernel host index (in [`Topology::kernel_hosts`]).
        host: usize,
        /// The program and its arguments (split like a shell does, without expansion).
        argv: Vec<String>,
    },
    /// `move K to SEGMENT` for a kernel host: its TUN is re-attached to the segment and, with
    /// DHCP, its client asks for a new lease there.
    MoveKernel(usize, usize),
    /// `attack KIND ...`: an attack on the scheme, measured (see [`crate::attack`]).
    Attack(attack_step::AttackSpec),
}

/// Network-wide blockchain settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainDef {
    /// Mean block interval.
    pub block_interval: Duration,
    /// Replies may carry the newest unconfirmed Tx.
    pub reply_unconfirmed: bool,
    /// Largest encoded block (`ChainConfig::max_block_bytes`).
    pub block_bytes: usize,
    /// Most Txs per mined block (`SnConfig::max_block_txs`).
    pub block_txs: usize,
}

/// A super node.
#[derive(Debug, Clone, PartialEq)]
pub struct SuperNodeDef {
    /// Hashes per second of run time.
    pub hash_rate: f64,
    /// Where blocks are appended and recovered from (a relative path is taken inside the
    /// run's output folder).
    pub data_dir: Option<PathBuf>,
    /// Peer SN node indices.
    pub peers: Vec<usize>,
    /// TxSubmits per second per source address (`roles::sn::DEFAULT_TX_LIMIT` if `None`).
    pub tx_per_source: Option<u32>,
    /// Queries per second per source address (`roles::sn::DEFAULT_QUERY_LIMIT` if `None`).
    pub queries_per_source: Option<u32>,
}

/// An end node.
#[derive(Debug, Clone, PartialEq)]
pub struct EndNodeDef {
    /// (peer node, when) lookups.
    pub lookups: Vec<(usize, Duration)>,
}

/// A segment (or a point-to-point link).
#[derive(Debug, Clone)]
pub struct SegmentDef {
    /// Name (capture interface name).
    pub name: String,
    /// Subnet.
    pub subnet: Ipv4Cidr,
    /// Default link parameters between any two members.
    pub params: LinkParams,
    /// Per-pair overrides: (node, node, parameters).
    pub paths: Vec<(usize, usize, LinkParams)>,
    /// DHCP service on this segment.
    pub dhcp: Option<DhcpDef>,
    /// Declared as a `[[link]]`.
    pub is_link: bool,
    /// Live mode only: the kernel's address on this segment's TUN device (a kernel program in
    /// the live namespace then joins the segment as a host with this address).
    pub kernel_address: Option<Ipv4Addr>,
    /// Per-pair overrides between a kernel host and a node: (kernel host, node, parameters).
    pub kernel_paths: Vec<(usize, usize, LinkParams)>,
}

/// A DHCP server on a segment.
#[derive(Debug, Clone)]
pub struct DhcpDef {
    /// Node running the server.
    pub server: usize,
    /// Server's address on the segment.
    pub server_ip: Ipv4Addr,
    /// First and last pool address.
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// Lease time.
    pub lease: Duration,
    /// Router option.
    pub router: Ipv4Addr,
    /// NAT public address option (when the router is a NAT whose inside is this segment).
    pub nat_public: Option<Ipv4Addr>,
    /// Super nodes option, nearest first.
    pub super_nodes: Vec<SocketAddrV4>,
    /// Vertical model: the domain server (STUN + location) of this network.
    pub domain_server: Option<Ipv4Addr>,
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// An end host (no forwarding).
    Host,
    /// A router.
    Router,
    /// A NAT box: port 0 is the inside, port 1 the outside.
    Nat(NatDef),
}

/// NAT settings.
#[derive(Debug, Clone)]
pub struct NatDef {
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Idle timeout of a mapping.
    pub mapping_timeout: Duration,
}

/// An attachment of a node.
#[derive(Debug, Clone)]
pub struct PortDef {
    /// Segment index.
    pub segment: usize,
    /// Static address, or `None` for DHCP.
    pub addr: Option<Ipv4Addr>,
}

/// An echo client app.
#[derive(Debug, Clone)]
pub struct EchoClientDef {
    /// The server.
    pub target: SocketAddrV4,
    /// Local port.
    pub port: u16,
    /// Probe interval.
    pub interval: Duration,
    /// Probe count (0 = unlimited).
    pub count: u64,
    /// Probe size.
    pub size: usize,
}

/// A host, router or NAT.
#[derive(Debug, Clone)]
pub struct NodeDef {
    /// Unique name.
    pub name: String,
    /// Role.
    pub kind: NodeKind,
    /// Attachments.
    pub ports: Vec<PortDef>,
    /// Default gateway of a static host.
    pub gateway: Option<Ipv4Addr>,
    /// Echo server port.
    pub echo_server: Option<u16>,
    /// Echo client.
    pub echo_client: Option<EchoClientDef>,
    /// Super node role.
    pub super_node: Option<SuperNodeDef>,
    /// End node role.
    pub end_node: Option<EndNodeDef>,
    /// Vertical-model domain server role (STUN + location server).
    pub domain_server: bool,
    /// Roles named in the host's `roles` list (see `binfm_roles::registry`).
    pub roles: Vec<String>,
}

impl Topology {
    /// Switches the scheme the end nodes run. The vertical model needs a domain server on
    /// every end node's first network.
    pub fn set_model(&mut self, model: Model) -> Result<(), String> {
        if model == Model::Vertical {
            for n in self.nodes.iter().filter(|n| n.end_node.is_some()) {
                let seg = n.ports.first().map_or(0, |p| p.segment);
                if self
                    .segments
                    .get(seg)
                    .and_then(|s| s.dhcp.as_ref())
                    .and_then(|d| d.domain_server)
                    .is_none()
                {
                    return Err(format!(
                        "end node `{}` cannot run the vertical model: segment `{}` names no domain server (add `domain_server = \"...\"` to its dhcp table and `domain_server = {{}}` to that host)",
                        n.name,
                        self.segments.get(seg).map_or("?", |s| s.name.as_str())
                    ));
                }
            }
        }
        self.model = model;
        Ok(())
    }
}

impl NodeDef {
    /// A node with these ports and no role yet (the role sections of the file add them).
    pub fn new(name: String, kind: NodeKind, ports: Vec<PortDef>) -> NodeDef {
        NodeDef {
            name,
            kind,
            ports,
            gateway: None,
            echo_server: None,
            echo_client: None,
            super_node: None,
            end_node: None,
            domain_server: false,
            roles: Vec::new(),
        }
    }

    /// Whether the node forwards packets.
    pub fn forwards(&self) -> bool {
        !matches!(self.kind, NodeKind::Host)
    }
}

/// Allowed address space (docs/design.md, "Address plan"): private 10.0.0.0/8 and the three documentation /24s.
pub fn allowed_ranges() -> [Ipv4Cidr; 4] {
    [
        Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8),
        Ipv4Cidr::new(Ipv4Addr::new(192, 0, 2, 0), 24),
        Ipv4Cidr::new(Ipv4Addr::new(198, 51, 100, 0), 24),
        Ipv4Cidr::new(Ipv4Addr::new(203, 0, 113, 0), 24),
    ]
}

impl Topology {
    /// Fails, naming the file and line of the first kernel host, when the topology has
    /// kernel hosts (real network namespaces exist only in live mode).
    pub fn require_virtual(&self) -> Result<(), String> {
        match self.kernel_hosts.first() {
            None => Ok(()),
            Some(k) => Err(format!(
                "{}:{}: host `{}` is a kernel host (a real network namespace where programs run), so this topology runs only live: `binfm run --live {}`",
                self.path.display(),
                k.line,
                k.name,
                self.path.display()
            )),
        }
    }

    /// The same topology without its kernel hosts and their steps (what a virtual run of it
    /// can compare with).
    pub fn without_kernel_hosts(&self) -> Topology {
        let mut t = self.clone();
        t.kernel_hosts.clear();
        t.scenario
            .retain(|s| !matches!(s.action, Action::Exec { .. } | Action::MoveKernel(..)));
        t
    }

    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: file.clone(),
            diagnostics: vec![Diagnostic {
                line: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Topology::from_str(&text, path)
    }

    /// Checks topology text (`path` names it in errors and in the model).
    pub fn from_str(text: &str, path: &Path) -> Result<Topology, TopologyError> {
        parse::build(text, path)
    }

    /// Total hash rate of all super nodes (the genesis difficulty is set from it).
    pub fn network_hash_rate(&self) -> f64 {
        self.nodes
            .iter()
            .filter_map(|n| n.super_node.as_ref())
            .map(|s| s.hash_rate)
            .sum()
    }

    /// The SN address of a super node (its first static address, SN port).
    pub fn sn_addr(&self, node: usize) -> Option<SocketAddrV4> {
        let ip = self.nodes.get(node)?.ports.iter().find_map(|p| p.addr)?;
        Some(SocketAddrV4::new(ip, binfm_stack::wire::ports::SN))
    }

    /// Index of a node by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Index of a segment by name.
    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.segments.iter().position(|s| s.name == name)
    }

    /// The route-computation view of the nodes.
    pub fn route_graph(
        segments: &[SegmentDef],
        nodes: &[NodeDef],
    ) -> (Vec<Ipv4Cidr>, Vec<RouteGraphNode>) {
        let subnets = segments.iter().map(|s| s.subnet).collect();
        let graph = nodes
            .iter()
            .map(|n| RouteGraphNode {
                forwards: n.forwards(),
                ports: n
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| RoutePort {
                        segment: p.segment,
                        addr: p.addr,
                        nat: match (&n.kind, i) {
                            (NodeKind::Nat(_), 0) => NatSide::Inside,
                            (NodeKind::Nat(_), _) => NatSide::Outside,
                            _ => NatSide::None,
                        },
                    })
                    .collect(),
            })
            .collect();
        (subnets, graph)
    }

    /// Computes the static routes of every node.
    pub fn compute_routes(segments: &[SegmentDef], nodes: &[NodeDef]) -> Vec<RouteTable> {
        let (subnets, graph) = Topology::route_graph(segments, nodes);
        compute_routes(&subnets, &graph)
    }

    /// A name -> static address map of the nodes (first static address of each).
    pub fn static_addresses(&self) -> HashMap<&str, Ipv4Addr> {
        self.nodes
            .iter()
            .filter_map(|n| Some((n.name.as_str(), n.ports.iter().find_map(|p| p.addr)?)))
            .collect()
    }
}
