//! The topology file as written: serde structs with `deny_unknown_fields`, spans kept for
//! error messages. [`super::Topology::load`] turns this into the checked model.

use serde::Deserialize;
use toml::Spanned;

/// A whole topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub segment: Vec<SegmentSpec>,
    #[serde(default)]
    pub link: Vec<SegmentSpec>,
    #[serde(default)]
    pub nat: Vec<NatSpec>,
    #[serde(default)]
    pub router: Vec<RouterSpec>,
    #[serde(default)]
    pub host: Vec<HostSpec>,
    #[serde(default)]
    pub chain: Option<ChainSpec>,
    #[serde(default)]
    pub scenario: Vec<StepSpec>,
    /// `"binfm"` (default) or `"vertical"`: which scheme the ENs run.
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// Crowds of end nodes behind NATs (expanded into the tables above before the checks).
    #[serde(default)]
    pub crowd: Vec<CrowdSpec>,
    /// Operation -> cost in virtual time (`dh_agree = "1.2ms"`); no table: zero.
    #[serde(default)]
    pub compute: Option<Spanned<std::collections::BTreeMap<String, String>>>,
}

/// `[[crowd]]`: `end_nodes` ENs over `networks` private networks (one /24 each in
/// `subnets`), each behind a NAT on the `public` segment, moving and calling at random.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdSpec {
    pub name: Spanned<String>,
    pub end_nodes: Spanned<u32>,
    pub networks: Spanned<u32>,
    pub public: Spanned<String>,
    pub subnets: Spanned<String>,
    pub super_nodes: Spanned<Vec<String>>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    #[serde(default)]
    pub move_every: Option<Spanned<String>>,
    #[serde(default)]
    pub calls_per_minute: Option<Spanned<f64>>,
    #[serde(default)]
    pub call_duration: Option<Spanned<String>>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
}

/// One scenario step: `at` a time, `do` a command (see docs/topology.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub at: Spanned<String>,
    #[serde(rename = "do")]
    pub action: Spanned<String>,
    /// What the step is in the all-virtual twin run a live run is compared with (e.g. an
    /// `exec` step that drives a daemon: `twin = "call a b"`).
    #[serde(default)]
    pub twin: Option<Spanned<String>>,
}

/// Network-wide blockchain settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Mean block interval the difficulty retargets to.
    #[serde(default)]
    pub block_interval: Option<Spanned<String>>,
    /// Default hash rate of each super node, in hashes per second of run time.
    #[serde(default)]
    pub hash_rate: Option<f64>,
    /// Replies also carry the newest unconfirmed Tx (flagged), when the asker wants it.
    #[serde(default)]
    pub reply_unconfirmed: Option<bool>,
    /// Largest encoded block in bytes (a consensus rule shared by every SN).
    #[serde(default)]
    pub block_bytes: Option<u64>,
    /// Most Txs an SN puts in a block it mines.
    #[serde(default)]
    pub block_txs: Option<u64>,
}

/// Link emulation parameters as written (segments, links and per-pair paths carry the same
/// six keys; serde cannot combine `flatten` with `deny_unknown_fields`, hence [`link_spec!`]).
#[derive(Debug, Default)]
pub struct LinkSpec<'a> {
    pub delay: Option<&'a Spanned<String>>,
    pub jitter: Option<&'a Spanned<String>>,
    pub loss: Option<&'a Spanned<LossSpec>>,
    pub rate: Option<&'a Spanned<String>>,
    pub queue: Option<usize>,
    pub reorder: Option<bool>,
}

macro_rules! link_spec {
    ($t:ty) => {
        impl $t {
            /// The link parameters written in this table.
            pub fn link(&self) -> LinkSpec<'_> {
                LinkSpec {
                    delay: self.delay.as_ref(),
                    jitter: self.jitter.as_ref(),
                    loss: self.loss.as_ref(),
                    rate: self.rate.as_ref(),
                    queue: self.queue,
                    reorder: self.reorder,
                }
            }
        }
    };
}
link_spec!(SegmentSpec);
link_spec!(PathSpec);

/// Loss as a fraction (`0.01`) or a percentage string (`"1%"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LossSpec {
    Fraction(f64),
    Text(String),
}

/// A segment (LAN) or a point-to-point link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    pub name: Spanned<String>,
    pub subnet: Spanned<String>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    #[serde(default)]
    pub jitter: Option<Spanned<String>>,
    #[serde(default)]
    pub loss: Option<Spanned<LossSpec>>,
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    #[serde(default)]
    pub queue: Option<usize>,
    #[serde(default)]
    pub reorder: Option<bool>,
    #[serde(default)]
    pub dhcp: Option<Spanned<DhcpSpec>>,
    #[serde(default)]
    pub path: Vec<PathSpec>,
    /// Live mode: the address the kernel gets on this segment's TUN device.
    #[serde(default)]
    pub kernel_address: Option<Spanned<String>>,
}

/// Link parameters between two members of a segment (both directions).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    pub between: Spanned<[String; 2]>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    #[serde(default)]
    pub jitter: Option<Spanned<String>>,
    #[serde(default)]
    pub loss: Option<Spanned<LossSpec>>,
    #[serde(default)]
    pub rate: Option<Spanned<String>>,
    #[serde(default)]
    pub queue: Option<usize>,
    #[serde(default)]
    pub reorder: Option<bool>,
}

/// A DHCP server for a segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSpec {
    /// Node that runs the server (must be attached with a static address).
    pub server: Spanned<String>,
    /// `"first-last"` addresses of the pool.
    pub pool: Spanned<String>,
    #[serde(default)]
    pub lease: Option<Spanned<String>>,
    /// Router option; default: the server's own address.
    #[serde(default)]
    pub router: Option<Spanned<String>>,
    /// Super nodes announced in option 225, nearest first.
    #[serde(default)]
    pub super_nodes: Option<Spanned<Vec<String>>>,
    /// Vertical model: this network's domain server (STUN + location service).
    #[serde(default)]
    pub domain_server: Option<Spanned<String>>,
}

/// An attachment of a router or NAT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub segment: Spanned<String>,
    pub address: Spanned<String>,
}

/// A NAT box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSpec {
    pub name: Spanned<String>,
    pub inside: PortSpec,
    pub outside: PortSpec,
    #[serde(default)]
    pub filtering: Option<Spanned<String>>,
    #[serde(default)]
    pub mapping_timeout: Option<Spanned<String>>,
}

/// A plain router.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub name: Spanned<String>,
    pub ports: Vec<PortSpec>,
}

/// An end host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: Spanned<String>,
    pub segment: Spanned<String>,
    /// `"dhcp"` (default) or a static address in the segment's subnet.
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    /// Default gateway of a host with a static address.
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub echo_server: Option<EchoServerSpec>,
    #[serde(default)]
    pub echo_client: Option<Spanned<EchoClientSpec>>,
    #[serde(default)]
    pub super_node: Option<Spanned<SuperNodeSpec>>,
    #[serde(default)]
    pub end_node: Option<Spanned<EndNodeSpec>>,
    /// Vertical model: a domain's STUN server and location server.
    #[serde(default)]
    pub domain_server: Option<Spanned<DomainServerSpec>>,
    /// Roles that need nothing but their well-known port, by name (e.g. `["discard"]`).
    #[serde(default)]
    pub roles: Option<Spanned<Vec<String>>>,
    /// Live mode: a kernel host (its own network namespace where real programs run) instead
    /// of a virtual one.
    #[serde(default)]
    pub kernel: Option<Spanned<KernelSpec>>,
}

/// How a kernel host gets its address: `{ dhcp = true }` (a real DHCP client, busybox
/// `udhcpc`) or `{ address = "a.b.c.d", gateway = "a.b.c.d" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    #[serde(default)]
    pub dhcp: Option<bool>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    /// The JSON-lines event log its program writes (`binfm node --events`), relative to the
    /// run's output folder; read into the results at the end of a live run.
    #[serde(default)]
    pub events: Option<Spanned<String>>,
    /// `"end_node"`: in the all-virtual twin run the host is a virtual end node.
    #[serde(default)]
    pub twin: Option<Spanned<String>>,
}

/// A vertical-model domain server: RFC 8489 STUN on 3478 and the domain's location server
/// on 5060 (peers: every other domain server).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainServerSpec {}

/// A super node (SN): verifies, relays and mines ToALL Txs, answers Queries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperNodeSpec {
    /// Hashes per second of run time (default: `[chain] hash_rate`).
    #[serde(default)]
    pub hash_rate: Option<f64>,
    /// Folder where the SN appends its blocks and recovers them after a restart.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Peer SNs (default: every other SN).
    #[serde(default)]
    pub peers: Option<Spanned<Vec<String>>>,
    /// TxSubmits per second one source address may send (bursts of twice that).
    #[serde(default)]
    pub tx_per_source: Option<Spanned<u32>>,
    /// Queries per second one source address may send (bursts of twice that).
    #[serde(default)]
    pub queries_per_source: Option<Spanned<u32>>,
}

/// An end node (EN): registers with its nearest SN and looks peers up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndNodeSpec {
    /// Lookups to make: `{ peer = "b", at = "5s" }`.
    #[serde(default)]
    pub lookup: Vec<LookupSpec>,
}

/// One lookup of a peer EN's hash address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    pub peer: Spanned<String>,
    pub at: Spanned<String>,
}

/// A UDP echo server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoServerSpec {
    #[serde(default)]
    pub port: Option<u16>,
}

/// A UDP echo client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoClientSpec {
    /// `"host"`, `"host:port"` or `"a.b.c.d:port"`.
    pub to: Spanned<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub size: Option<usize>,
}
