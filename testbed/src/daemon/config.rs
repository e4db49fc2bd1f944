//! `binfm node ROLE --config FILE`: the daemon's TOML configuration, checked with the topology
//! file's conventions (durations like `"1s"`, `a.b.c.d:port` addresses, every error with the
//! file, line and key). Every key is documented in docs/node.md.

use crate::topology::{line_of, parse_duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Which role a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleKind {
    /// A BINFM super node: relays and mines ToALL Txs, answers Queries (UDP 7400).
    SuperNode,
    /// A BINFM end node: registers, calls, hands over, renews keys (UDP 7401).
    EndNode,
    /// The vertical model's end node: STUN, registration with its home location server,
    /// calls with a key exchange, re-INVITE on a move, rekey (UDP 7401).
    VerticalEndNode,
    /// The vertical model's RFC 8489 STUN server (UDP 3478).
    Stun,
    /// The vertical model's location server of one domain (UDP 5060).
    Location,
}

impl RoleKind {
    /// The name on the command line and in the `role` table key.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::SuperNode => "super-node",
            RoleKind::EndNode => "end-node",
            RoleKind::VerticalEndNode => "vertical-end-node",
            RoleKind::Stun => "stun",
            RoleKind::Location => "location",
        }
    }

    /// The table that configures this role.
    pub fn table(self) -> &'static str {
        match self {
            RoleKind::SuperNode => "super_node",
            RoleKind::EndNode => "end_node",
            RoleKind::VerticalEndNode => "vertical_end_node",
            RoleKind::Stun => "stun",
            RoleKind::Location => "location",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    listen: Spanned<String>,
    #[serde(default)]
    events: Option<Spanned<String>>,
    #[serde(default)]
    control: Option<Spanned<String>>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    super_node: Option<Spanned<SuperNodeSpec>>,
    #[serde(default)]
    end_node: Option<Spanned<EndNodeSpec>>,
    #[serde(default)]
    vertical_end_node: Option<Spanned<VerticalEndNodeSpec>>,
    #[serde(default)]
    stun: Option<Spanned<StunSpec>>,
    #[serde(default)]
    location: Option<Spanned<LocationSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuperNodeSpec {
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    #[serde(default)]
    hash_rate: Option<Spanned<f64>>,
    #[serde(default)]
    network_hash_rate: Option<Spanned<f64>>,
    #[serde(default)]
    block_interval: Option<Spanned<String>>,
    #[serde(default)]
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    reply_unconfirmed: Option<bool>,
    #[serde(default)]
    tx_per_source: Option<Spanned<u32>>,
    #[serde(default)]
    queries_per_source: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndNodeSpec {
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    #[serde(default)]
    nat_address: Option<Spanned<String>>,
    #[serde(default)]
    super_nodes: Vec<Spanned<String>>,
    #[serde(default)]
    lease_file: Option<Spanned<String>>,
    #[serde(default)]
    tone_hz: Option<Spanned<f64>>,
    #[serde(default)]
    audio_out: Option<Spanned<String>>,
    #[serde(default)]
    audio_in: Option<Spanned<String>>,
    #[serde(default)]
    peers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    network_hash_rate: Option<Spanned<f64>>,
    #[serde(default)]
    block_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerticalEndNodeSpec {
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    location: Spanned<String>,
    #[serde(default)]
    stun: Option<Spanned<String>>,
    #[serde(default)]
    stun_by_network: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    lease_file: Option<Spanned<String>>,
    #[serde(default)]
    tone_hz: Option<Spanned<f64>>,
    #[serde(default)]
    audio_out: Option<Spanned<String>>,
    #[serde(default)]
    audio_in: Option<Spanned<String>>,
    #[serde(default)]
    peers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StunSpec {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationSpec {
    domain: Spanned<String>,
    #[serde(default)]
    peers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    homes: BTreeMap<String, Spanned<String>>,
}

/// A checked daemon configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Address and port the role's UDP socket binds.
    pub listen: SocketAddrV4,
    /// Where the role's events go as JSON lines (default: standard output).
    pub events: Option<PathBuf>,
    /// Unix socket for `binfm ctl`.
    pub control: Option<PathBuf>,
    /// Reproducible randomness (default: the OS's entropy).
    pub seed: Option<u64>,
    /// The role and its settings.
    pub role: RoleConfig,
}

/// The settings of the role a daemon runs.
#[derive(Debug, Clone)]
pub enum RoleConfig {
    /// `[super_node]`.
    SuperNode {
        /// SN id (in its events and block headers).
        id: u32,
        /// Peer SNs.
        peers: Vec<SocketAddrV4>,
        /// Hashes per second this SN may spend (a cap, so a test machine is not saturated).
        hash_rate: f64,
        /// Hash rate of the whole network (sets the difficulty); default: `hash_rate` times
        /// the number of SNs.
        network_hash_rate: f64,
        /// Mean block interval the difficulty aims at.
        block_interval: Duration,
        /// Block log folder (a restart resumes the chain from it).
        data_dir: Option<PathBuf>,
        /// Replies may carry the newest unconfirmed Tx.
        reply_unconfirmed: bool,
        /// TxSubmits a second one source address may send (bursts of twice that); `None`:
        /// the super node's default.
        tx_per_source: Option<u32>,
        /// Queries a second one source address may send, likewise.
        queries_per_source: Option<u32>,
    },
    /// `[end_node]`.
    EndNode {
        /// What both end nodes take.
        common: EnCommon,
        /// The NAT's public address (DHCP option 224), unless a lease file gives it.
        nat_address: Option<Ipv4Addr>,
        /// Super nodes, nearest first (option 225), unless a lease file gives them.
        super_nodes: Vec<SocketAddrV4>,
        /// The network's hash rate and block interval: the light client checks block headers'
        /// proof of work against the targets they imply (they must match the super nodes').
        network_hash_rate: f64,
        /// See `network_hash_rate`.
        block_interval: Duration,
    },
    /// `[vertical_end_node]`.
    VerticalEndNode {
        /// What both end nodes take.
        common: EnCommon,
        /// The home location server (it registers there wherever it is).
        location: SocketAddrV4,
        /// The STUN server of a network not in `stun_by_network`.
        stun: Option<SocketAddrV4>,
        /// The STUN server of each network the end node may be on: (address, prefix) ->
        /// server, in file order.
        stun_by_network: Vec<((Ipv4Addr, u8), SocketAddrV4)>,
    },
    /// `[stun]`.
    Stun,
    /// `[location]`.
    Location {
        /// This domain's name.
        domain: String,
        /// Other domains' location servers.
        peers: Vec<(String, SocketAddrV4)>,
        /// Home domains of end nodes: vertical id (hex) -> domain.
        homes: Vec<([u8; 32], String)>,
    },
}

/// What both end nodes (BINFM and vertical) take from their table.
#[derive(Debug, Clone)]
pub struct EnCommon {
    /// The key file (created on first start, mode 0600); the hash address it gives is the
    /// end node's name in both models.
    pub key_file: Option<PathBuf>,
    /// A udhcpc `lease.env` (`ip=`, `opt224=`, `opt225=`), read at start and watched.
    pub lease_file: Option<PathBuf>,
    /// The tone this EN sends.
    pub tone_hz: f64,
    /// Where received audio is written as WAV when the daemon ends.
    pub audio_out: Option<PathBuf>,
    /// A WAV file (8 kHz 16-bit mono) sent in a loop instead of the tone.
    pub audio_in: Option<PathBuf>,
    /// Names for `binfm ctl call NAME`: name -> hash address.
    pub peers: BTreeMap<String, [u8; 32]>,
}

impl RoleConfig {
    /// Which role this configures.
    pub fn kind(&self) -> RoleKind {
        match self {
            RoleConfig::SuperNode { .. } => RoleKind::SuperNode,
            RoleConfig::EndNode { .. } => RoleKind::EndNode,
            RoleConfig::VerticalEndNode { .. } => RoleKind::VerticalEndNode,
            RoleConfig::Stun => RoleKind::Stun,
            RoleConfig::Location { .. } => RoleKind::Location,
        }
    }

    /// The end-node settings, if the role is an end node (either model).
    pub fn en_common(&self) -> Option<&EnCommon> {
        match self {
            RoleConfig::EndNode { common, .. } | RoleConfig::VerticalEndNode { common, .. } => {
                Some(common)
            }
            _ => None,
        }
    }

    fn en_common_mut(&mut self) -> Option<&mut EnCommon> {
        match self {
            RoleConfig::EndNode { common, .. } | RoleConfig::VerticalEndNode { common, .. } => {
                Some(common)
            }
            _ => None,
        }
    }
}

/// What is wrong with a configuration file: each problem with its line.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// (line, message).
    pub problems: Vec<(Option<usize>, String)>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (line, m)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match line {
                Some(l) => write!(f, "{}:{l}: {m}", self.file)?,
                None => write!(f, "{}: {m}", self.file)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

struct Cx<'a> {
    text: &'a str,
    problems: Vec<(Option<usize>, String)>,
}

impl Cx<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }
    fn err<T>(&mut self, at: &Spanned<T>, message: String) {
        let line = self.line(at.span().start);
        self.problems.push((Some(line), message));
    }
    fn sock(&mut self, s: &Spanned<String>, key: &str) -> Option<SocketAddrV4> {
        match s.get_ref().trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    s,
                    format!(
                        "key `{key}`: `{}` is not an IPv4 address with a port (a.b.c.d:port)",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }
    fn ip(&mut self, s: &Spanned<String>, key: &str) -> Option<Ipv4Addr> {
        match s.get_ref().trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    s,
                    format!("key `{key}`: `{}` is not an IPv4 address", s.get_ref()),
                );
                None
            }
        }
    }
    fn hash(&mut self, s: &Spanned<String>, key: &str) -> Option<[u8; 32]> {
        match parse_hex32(s.get_ref()) {
            Some(h) => Some(h),
            None => {
                self.err(
                    s,
                    format!(
                        "key `{key}`: `{}` is not a hash address (64 hex digits)",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }
    /// An optional rate of at least 1 a second: `Some(None)` when absent, `None` (an error
    /// reported) when 0.
    fn per_second(&mut self, v: &Option<Spanned<u32>>, key: &str) -> Option<Option<u32>> {
        match v {
            None => Some(None),
            Some(v) if *v.get_ref() == 0 => {
                self.err(v, format!("key `{key}`: must be at least 1 per second"));
                None
            }
            Some(v) => Some(Some(*v.get_ref())),
        }
    }

    fn positive(&mut self, v: &Spanned<f64>, key: &str) -> Option<f64> {
        let x = *v.get_ref();
        if x.is_finite() && x > 0.0 {
            Some(x)
        } else {
            self.err(v, format!("key `{key}`: {x} must be a positive number"));
            None
        }
    }
}

/// Paths given on the command line, which replace the file's (relative to the current
/// folder, where the file's are relative to the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--events`.
    pub events: Option<PathBuf>,
    /// `--control`.
    pub control: Option<PathBuf>,
    /// `--key-file` (end node).
    pub key_file: Option<PathBuf>,
    /// `--lease-file` (end node).
    pub lease_file: Option<PathBuf>,
    /// `--audio-out` (end node).
    pub audio_out: Option<PathBuf>,
}

impl NodeConfig {
    /// Applies command-line paths, then checks what needs both (an end node's key file and
    /// where its address comes from).
    pub fn with_overrides(mut self, o: &Overrides) -> Result<NodeConfig, ConfigError> {
        if o.events.is_some() {
            self.events.clone_from(&o.events);
        }
        if o.control.is_some() {
            self.control.clone_from(&o.control);
        }
        let file = self.path.display().to_string();
        let err = |m: &str| ConfigError {
            file: file.clone(),
            problems: vec![(None, m.to_owned())],
        };
        let table = self.role.kind().table();
        let static_address = match &self.role {
            RoleConfig::EndNode {
                nat_address,
                super_nodes,
                ..
            } => nat_address.is_some() && !super_nodes.is_empty(),
            _ => true,
        };
        match self.role.en_common_mut() {
            Some(c) => {
                if o.key_file.is_some() {
                    c.key_file.clone_from(&o.key_file);
                }
                if o.lease_file.is_some() {
                    c.lease_file.clone_from(&o.lease_file);
                }
                if o.audio_out.is_some() {
                    c.audio_out.clone_from(&o.audio_out);
                }
                if c.key_file.is_none() {
                    return Err(err(&format!(
                        "table `[{table}]` needs `key_file` (or --key-file): where the end node's key is kept"
                    )));
                }
                if c.lease_file.is_none() && !static_address {
                    return Err(err(
                        "table `[end_node]` needs `nat_address` and `super_nodes`, or a `lease_file` (or --lease-file) that gives them",
                    ));
                }
            }
            None => {
                if o.key_file.is_some() || o.lease_file.is_some() || o.audio_out.is_some() {
                    return Err(err(
                        "--key-file, --lease-file and --audio-out are end-node options",
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// 64 hex digits as 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A relative path in the file is taken from the file's folder.
fn resolve(config: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

impl NodeConfig {
    /// Reads and checks `path` for a daemon running `kind`.
    pub fn load(path: &Path, kind: RoleKind) -> Result<NodeConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![(None, format!("cannot read it: {e}"))],
        })?;
        Self::parse(&text, path, kind)
    }

    /// Checks the text of a configuration file (`path` names it in errors and anchors
    /// relative paths).
    pub fn parse(text: &str, path: &Path, kind: RoleKind) -> Result<NodeConfig, ConfigError> {
        let file = path.display().to_string();
        let spec: FileSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let mut message = e.message().trim().to_owned();
            if message.starts_with("unknown field") || message.starts_with("missing field") {
                message.push_str("; see docs/node.md for the keys");
            }
            ConfigError {
                file: file.clone(),
                problems: vec![(line, message)],
            }
        })?;
        let mut cx = Cx {
            text,
            problems: Vec::new(),
        };
        let listen = cx.sock(&spec.listen, "listen");
        let events = spec.events.as_ref().map(|e| resolve(path, e.get_ref()));
        let control = spec.control.as_ref().map(|c| resolve(path, c.get_ref()));
        let tables = [
            (
                RoleKind::SuperNode,
                spec.super_node.as_ref().map(Spanned::span),
            ),
            (RoleKind::EndNode, spec.end_node.as_ref().map(Spanned::span)),
            (
                RoleKind::VerticalEndNode,
                spec.vertical_end_node.as_ref().map(Spanned::span),
            ),
            (RoleKind::Stun, spec.stun.as_ref().map(Spanned::span)),
            (
                RoleKind::Location,
                spec.location.as_ref().map(Spanned::span),
            ),
        ];
        for (k, span) in tables {
            if let Some(span) = span
                && k != kind
            {
                let line = cx.line(span.start);
                cx.problems.push((
                    Some(line),
                    format!(
                        "table `[{}]` configures the {} role, but this daemon runs `{}`",
                        k.table(),
                        k.as_str(),
                        kind.as_str()
                    ),
                ));
            }
        }
        let role = match kind {
            RoleKind::Stun => Some(RoleConfig::Stun),
            RoleKind::SuperNode => match &spec.super_node {
                None => missing(&mut cx, kind),
                Some(t) => super_node(&mut cx, path, t.get_ref()),
            },
            RoleKind::EndNode => match &spec.end_node {
                None => missing(&mut cx, kind),
                Some(t) => end_node(&mut cx, path, t),
            },
            RoleKind::VerticalEndNode => match &spec.vertical_end_node {
                None => missing(&mut cx, kind),
                Some(t) => vertical_end_node(&mut cx, path, t.get_ref()),
            },
            RoleKind::Location => match &spec.location {
                None => missing(&mut cx, kind),
                Some(t) => location(&mut cx, t.get_ref()),
            },
        };
        match (listen, role) {
            (Some(listen), Some(role)) if cx.problems.is_empty() => Ok(NodeConfig {
                path: path.to_path_buf(),
                listen,
                events,
                control,
                seed: spec.seed,
                role,
            }),
            _ => {
                cx.problems.sort_by_key(|p| p.0.unwrap_or(usize::MAX));
                Err(ConfigError {
                    file,
                    problems: cx.problems,
                })
            }
        }
    }
}

fn missing(cx: &mut Cx<'_>, kind: RoleKind) -> Option<RoleConfig> {
    cx.problems.push((
        None,
        format!(
            "no `[{}]` table: a `{}` daemon needs one (see docs/node.md)",
            kind.table(),
            kind.as_str()
        ),
    ));
    None
}

fn super_node(cx: &mut Cx<'_>, path: &Path, t: &SuperNodeSpec) -> Option<RoleConfig> {
    let peers: Vec<SocketAddrV4> = t
        .peers
        .iter()
        .filter_map(|p| cx.sock(p, "super_node.peers"))
        .collect();
    let hash_rate = match &t.hash_rate {
        Some(h) => cx.positive(h, "super_node.hash_rate")?,
        None => 2000.0,
    };
    let network_hash_rate = match &t.network_hash_rate {
        Some(h) => cx.positive(h, "super_node.network_hash_rate")?,
        None => hash_rate * (peers.len() + 1) as f64,
    };
    let block_interval = match &t.block_interval {
        Some(b) => match parse_duration(b.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                cx.err(
                    b,
                    "key `super_node.block_interval`: must be more than 0".into(),
                );
                return None;
            }
            Err(e) => {
                cx.err(b, format!("key `super_node.block_interval`: {e}"));
                return None;
            }
        },
        None => Duration::from_secs(1),
    };
    Some(RoleConfig::SuperNode {
        id: t.id.unwrap_or(0),
        peers,
        hash_rate,
        network_hash_rate,
        block_interval,
        data_dir: t.data_dir.as_ref().map(|d| resolve(path, d.get_ref())),
        reply_unconfirmed: t.reply_unconfirmed.unwrap_or(false),
        tx_per_source: cx.per_second(&t.tx_per_source, "super_node.tx_per_source")?,
        queries_per_source: cx
            .per_second(&t.queries_per_source, "super_node.queries_per_source")?,
    })
}

/// A block interval: a duration above zero.
fn interval(cx: &mut Cx<'_>, b: &Spanned<String>, key: &str) -> Option<Duration> {
    match parse_duration(b.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            cx.err(b, format!("key `{key}`: must be more than 0"));
            None
        }
        Err(e) => {
            cx.err(b, format!("key `{key}`: {e}"));
            None
        }
    }
}

/// The keys both end-node tables have.
struct CommonKeys<'a> {
    table: &'static str,
    key_file: &'a Option<Spanned<String>>,
    lease_file: &'a Option<Spanned<String>>,
    tone_hz: &'a Option<Spanned<f64>>,
    audio_out: &'a Option<Spanned<String>>,
    audio_in: &'a Option<Spanned<String>>,
    peers: &'a BTreeMap<String, Spanned<String>>,
}

fn en_common(cx: &mut Cx<'_>, path: &Path, k: CommonKeys<'_>) -> Option<EnCommon> {
    let table = k.table;
    let tone_hz = match k.tone_hz {
        Some(h) => cx.positive(h, &format!("{table}.tone_hz"))?,
        None => 440.0,
    };
    let mut peers = BTreeMap::new();
    for (name, h) in k.peers {
        if let Some(addr) = cx.hash(h, &format!("{table}.peers.{name}")) {
            peers.insert(name.clone(), addr);
        }
    }
    Some(EnCommon {
        key_file: k.key_file.as_ref().map(|f| resolve(path, f.get_ref())),
        lease_file: k.lease_file.as_ref().map(|l| resolve(path, l.get_ref())),
        tone_hz,
        audio_out: k.audio_out.as_ref().map(|a| resolve(path, a.get_ref())),
        audio_in: k.audio_in.as_ref().map(|a| resolve(path, a.get_ref())),
        peers,
    })
}

fn end_node(cx: &mut Cx<'_>, path: &Path, t: &Spanned<EndNodeSpec>) -> Option<RoleConfig> {
    let e = t.get_ref();
    let nat_address = e
        .nat_address
        .as_ref()
        .and_then(|a| cx.ip(a, "end_node.nat_address"));
    let super_nodes: Vec<SocketAddrV4> = e
        .super_nodes
        .iter()
        .filter_map(|s| cx.sock(s, "end_node.super_nodes"))
        .collect();
    let common = en_common(
        cx,
        path,
        CommonKeys {
            table: "end_node",
            key_file: &e.key_file,
            lease_file: &e.lease_file,
            tone_hz: &e.tone_hz,
            audio_out: &e.audio_out,
            audio_in: &e.audio_in,
            peers: &e.peers,
        },
    )?;
    let network_hash_rate = match &e.network_hash_rate {
        Some(h) => cx.positive(h, "end_node.network_hash_rate")?,
        None => 2000.0,
    };
    let block_interval = match &e.block_interval {
        Some(b) => interval(cx, b, "end_node.block_interval")?,
        None => Duration::from_secs(1),
    };
    Some(RoleConfig::EndNode {
        common,
        network_hash_rate,
        block_interval,
        nat_address,
        super_nodes,
    })
}

fn vertical_end_node(cx: &mut Cx<'_>, path: &Path, e: &VerticalEndNodeSpec) -> Option<RoleConfig> {
    let location = cx.sock(&e.location, "vertical_end_node.location");
    let stun = e
        .stun
        .as_ref()
        .and_then(|s| cx.sock(s, "vertical_end_node.stun"));
    let mut stun_by_network = Vec::new();
    for (net, server) in &e.stun_by_network {
        let key = format!("vertical_end_node.stun_by_network.\"{net}\"");
        let Some(server) = cx.sock(server, &key) else {
            continue;
        };
        match parse_network(net) {
            Some(n) => stun_by_network.push((n, server)),
            None => cx.err(
                e.stun_by_network.get(net)?,
                format!("key `{key}`: `{net}` is not a network like \"10.1.0.0/24\""),
            ),
        }
    }
    let common = en_common(
        cx,
        path,
        CommonKeys {
            table: "vertical_end_node",
            key_file: &e.key_file,
            lease_file: &e.lease_file,
            tone_hz: &e.tone_hz,
            audio_out: &e.audio_out,
            audio_in: &e.audio_in,
            peers: &e.peers,
        },
    )?;
    Some(RoleConfig::VerticalEndNode {
        common,
        location: location?,
        stun,
        stun_by_network,
    })
}

/// `a.b.c.d/len`.
fn parse_network(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

fn location(cx: &mut Cx<'_>, t: &LocationSpec) -> Option<RoleConfig> {
    let mut peers = Vec::new();
    for (name, a) in &t.peers {
        if let Some(addr) = cx.sock(a, &format!("location.peers.{name}")) {
            peers.push((name.clone(), addr));
        }
    }
    let mut homes = Vec::new();
    for (id, domain) in &t.homes {
        match parse_hex32(id) {
            Some(h) => homes.push((h, domain.get_ref().clone())),
            None => cx.err(
                domain,
                format!("key `location.homes`: `{id}` is not a vertical id (64 hex digits)"),
            ),
        }
    }
    Some(RoleConfig::Location {
        domain: t.domain.get_ref().clone(),
        peers,
        homes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, kind: RoleKind) -> Result<NodeConfig, String> {
        NodeConfig::parse(text, Path::new("/etc/binfm/x.toml"), kind).map_err(|e| e.to_string())
    }

    #[test]
    fn a_super_node_config_with_every_key() {
        let c = parse(
            "listen = \"198.51.100.11:7400\"\ncontrol = \"sn1.sock\"\nseed = 3\n[super_node]\nid = 1\npeers = [\"198.51.100.12:7400\"]\nhash_rate = 1000\nblock_interval = \"2s\"\ndata_dir = \"blocks\"\ntx_per_source = 200\nqueries_per_source = 500\n",
            RoleKind::SuperNode,
        )
        .unwrap();
        assert_eq!(c.listen, "198.51.100.11:7400".parse().unwrap());
        assert_eq!(c.control, Some(PathBuf::from("/etc/binfm/sn1.sock")));
        let RoleConfig::SuperNode {
            peers,
            network_hash_rate,
            block_interval,
            data_dir,
            tx_per_source,
            queries_per_source,
            ..
        } = c.role
        else {
            panic!("not a super node")
        };
        assert_eq!((tx_per_source, queries_per_source), (Some(200), Some(500)));
        assert_eq!(peers.len(), 1);
        assert_eq!(network_hash_rate, 2000.0);
        assert_eq!(block_interval, Duration::from_secs(2));
        assert_eq!(data_dir, Some(PathBuf::from("/etc/binfm/blocks")));
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let e = parse(
            "listen = \"198.51.100.11:7400\"\n[super_node]\npeers = [\"198.51.100.12\"]\nblock_interval = \"soon\"\n",
            RoleKind::SuperNode,
        )
        .unwrap_err();
        assert!(
            e.contains("/etc/binfm/x.toml:3: key `super_node.peers`: `198.51.100.12` is not an IPv4 address with a port"),
            "{e}"
        );
        let e = parse(
            "listen = \"198.51.100.11:7400\"\n[super_node]\n\ntx_per_source = 0\n",
            RoleKind::SuperNode,
        )
        .unwrap_err();
        assert!(
            e.contains("x.toml:4: key `super_node.tx_per_source`: must be at least 1 per second"),
            "{e}"
        );
        let e = parse("listen = \"x\"\n[stun]\n", RoleKind::Stun).unwrap_err();
        assert!(e.contains("x.toml:1: key `listen`"), "{e}");
        let e = parse(
            "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
            RoleKind::Stun,
        )
        .unwrap_err();
        assert!(e.contains("x.toml:2: unknown field `listen_port`"), "{e}");
        let e = parse("listen = \"127.0.0.1:1\"\n\n[stun]\n", RoleKind::Location).unwrap_err();
        assert!(
            e.contains("x.toml:3: table `[stun]` configures the stun role"),
            "{e}"
        );
        let e = parse(
            "listen = \"127.0.0.1:1\"\n[end_node]\nkey_file = \"a.key\"\n",
            RoleKind::EndNode,
        )
        .and_then(|c| {
            c.with_overrides(&Overrides::default())
                .map_err(|e| e.to_string())
        })
        .unwrap_err();
        assert!(e.contains("needs `nat_address` and `super_nodes`"), "{e}");
    }

    #[test]
    fn a_vertical_end_node_config_and_its_errors() {
        let c = parse(
            "listen = \"0.0.0.0:7401\"\n[vertical_end_node]\nkey_file = \"a.key\"\nlocation = \"198.51.100.21:5060\"\nstun = \"198.51.100.21:3478\"\nstun_by_network = { \"10.3.0.0/24\" = \"198.51.100.23:3478\" }\n",
            RoleKind::VerticalEndNode,
        )
        .unwrap();
        let RoleConfig::VerticalEndNode {
            location,
            stun,
            stun_by_network,
            common,
        } = &c.role
        else {
            panic!("{c:?}")
        };
        assert_eq!(location.to_string(), "198.51.100.21:5060");
        assert_eq!(
            stun.map(|s| s.to_string()).as_deref(),
            Some("198.51.100.21:3478")
        );
        assert_eq!(
            stun_by_network,
            &vec![(
                ("10.3.0.0".parse().unwrap(), 24),
                "198.51.100.23:3478".parse().unwrap()
            )]
        );
        assert_eq!(
            common.key_file.as_deref(),
            Some(Path::new("/etc/binfm/a.key"))
        );
        let e = parse(
            "listen = \"0.0.0.0:7401\"\n[vertical_end_node]\nkey_file = \"a.key\"\nlocation = \"198.51.100.21:5060\"\nstun_by_network = { \"10.3.0.0\" = \"198.51.100.23:3478\" }\n",
            RoleKind::VerticalEndNode,
        )
        .unwrap_err();
        assert!(
            e.contains("x.toml:5: key `vertical_end_node.stun_by_network.\"10.3.0.0\"`: `10.3.0.0` is not a network"),
            "{e}"
        );
        let e = parse(
            "listen = \"0.0.0.0:7401\"\n[vertical_end_node]\nkey_file = \"a.key\"\n",
            RoleKind::VerticalEndNode,
        )
        .unwrap_err();
        assert!(e.contains("missing field `location`"), "{e}");
        let e = parse(
            "listen = \"0.0.0.0:7401\"\n[vertical_end_node]\nlocation = \"198.51.100.21:5060\"\n",
            RoleKind::VerticalEndNode,
        )
        .and_then(|c| {
            c.with_overrides(&Overrides::default())
                .map_err(|e| e.to_string())
        })
        .unwrap_err();
        assert!(
            e.contains("table `[vertical_end_node]` needs `key_file`"),
            "{e}"
        );
    }
}
