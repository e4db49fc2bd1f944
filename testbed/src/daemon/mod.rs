//! `binfm node ROLE --config FILE`: one role as a standalone daemon on a kernel UDP socket and
//! the real clock. This driver adds no role logic: it feeds the role what the socket, the
//! clock, the control socket and the signals bring, and carries out what the role polls out
//! (datagrams, events, block-log records), exactly like the engine does for the virtual and
//! live drivers. See docs/node.md.

pub mod config;
pub mod ctl;
pub mod end_node;

use crate::apps::chain_config_of;
use crate::events::{Record, RunEvent};
use anyhow::{Context, bail};
use binfm_roles::address::Lease;
use binfm_roles::chain::MempoolConfig;
use binfm_roles::chain::persist::{BlockLog, open_chain};
use binfm_roles::en::EndNode;
use binfm_roles::sn::{BatchValidator, SnConfig, SuperNode};
use binfm_roles::vertical::en::VerticalNode;
use binfm_roles::vertical::location::LocationServer;
use binfm_roles::vertical::stun::StunServer;
use binfm_roles::{Command, Role, Time};
use config::{NodeConfig, RoleConfig};
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use tokio::net::{UdpSocket, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

/// The most a datagram can be (UDP over IPv4).
const MAX_DATAGRAM: usize = 65_535;
/// Most datagrams read from the socket before the role handles them as one burst.
const MAX_BURST: usize = 256;

/// A role ready to serve, with what its driver needs besides the socket.
#[derive(Debug)]
pub struct Prepared {
    /// The role.
    pub role: Box<dyn Role>,
    /// Where a super node's blocks are appended.
    pub log: Option<BlockLog>,
    /// A line to print at start (recovery, identity).
    pub notes: Vec<String>,
    /// An end node's first address, NAT address and super nodes.
    pub lease: Option<Lease>,
}

/// Builds the role a configuration describes.
pub fn prepare(cfg: &NodeConfig, seed: u64, now: Time) -> anyhow::Result<Prepared> {
    let mut notes = Vec::new();
    let mut lease = None;
    let (role, log): (Box<dyn Role>, Option<BlockLog>) = match &cfg.role {
        RoleConfig::Stun => (Box::new(StunServer::new(cfg.listen.port())), None),
        RoleConfig::Location {
            domain,
            peers,
            homes,
        } => {
            let mut loc = LocationServer::new(domain.clone(), cfg.listen.port(), peers.clone());
            for (id, home) in homes {
                loc.set_home(*id, home.clone());
            }
            (Box::new(loc), None)
        }
        RoleConfig::SuperNode {
            id,
            peers,
            hash_rate,
            network_hash_rate,
            block_interval,
            data_dir,
            reply_unconfirmed,
            tx_per_source,
            queries_per_source,
        } => {
            let chain_cfg = chain_config_of(*network_hash_rate, *block_interval);
            let mut sn_cfg = SnConfig::new(*id, peers.clone(), *hash_rate, chain_cfg);
            sn_cfg.reply_unconfirmed = *reply_unconfirmed;
            sn_cfg.set_per_source_limits(*tx_per_source, *queries_per_source);
            match data_dir {
                Some(dir) => {
                    let (chain, log, recovery) = open_chain(
                        dir,
                        chain_cfg,
                        MempoolConfig::default(),
                        u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                        &BatchValidator::new(),
                    )
                    .map_err(|e| anyhow::anyhow!("data directory {}: {e}", dir.display()))?;
                    let (tip, height) = chain.tip();
                    notes.push(format!(
                        "super node: chain recovered from {} at height {height}, tip {} ({recovery:?})",
                        dir.display(),
                        binfm_roles::util::short_hex(&tip)
                    ));
                    (
                        Box::new(SuperNode::with_chain(sn_cfg, chain, seed)),
                        Some(log),
                    )
                }
                None => (
                    Box::new(SuperNode::new(sn_cfg, seed).map_err(|e| anyhow::anyhow!("{e}"))?),
                    None,
                ),
            }
        }
        RoleConfig::EndNode {
            common,
            nat_address,
            super_nodes,
            network_hash_rate,
            block_interval,
        } => {
            let start = EndNodeStart::new(cfg, common, seed, now, *nat_address, super_nodes)?;
            notes.push(start.note);
            lease = start.lease;
            let mut en = EndNode::new(
                start.wallet,
                cfg.listen.port(),
                start.role_seed,
                common.tone_hz,
            );
            en.set_chain_config(chain_config_of(*network_hash_rate, *block_interval));
            if let Some(audio) = start.audio {
                en.set_audio_source(audio);
            }
            (Box::new(en), None)
        }
        RoleConfig::VerticalEndNode {
            common,
            location,
            stun,
            stun_by_network,
        } => {
            let start = EndNodeStart::new(cfg, common, seed, now, None, &[])?;
            notes.push(start.note);
            lease = start.lease;
            let mut seed8 = [0u8; 8];
            seed8.copy_from_slice(&start.role_seed[..8]);
            let mut en = VerticalNode::new(
                start.wallet.hash_addr(),
                cfg.listen.port(),
                *location,
                u64::from_le_bytes(seed8),
                common.tone_hz,
            );
            // Network 0: the default STUN server; network k: the k-th of `stun_by_network`
            // (see `network_of`).
            en.set_stun_servers(
                std::iter::once(*stun)
                    .chain(stun_by_network.iter().map(|(_, s)| Some(*s)))
                    .collect(),
            );
            if let Some(audio) = start.audio {
                en.set_audio_source(audio);
            }
            (Box::new(en), None)
        }
    };
    Ok(Prepared {
        role,
        log,
        notes,
        lease,
    })
}

/// What both end-node daemons start from.
struct EndNodeStart {
    /// From the key file (created on first start): the identity in both models.
    wallet: binfm_roles::wallet::Wallet,
    /// Seed of the role's randomness.
    role_seed: [u8; 32],
    /// From the lease file (`None` until it exists), or the configured address.
    lease: Option<Lease>,
    /// The `audio_in` file, if any.
    audio: Option<binfm_roles::session::audio::AudioSource>,
    /// The line to print at start.
    note: String,
}

impl EndNodeStart {
    /// Without a lease file the address is `listen`'s, with `nat` and `super_nodes` (the
    /// BINFM end node's config keys; none for the vertical one).
    fn new(
        cfg: &NodeConfig,
        common: &config::EnCommon,
        seed: u64,
        now: Time,
        nat: Option<std::net::Ipv4Addr>,
        super_nodes: &[SocketAddrV4],
    ) -> anyhow::Result<EndNodeStart> {
        let Some(key_file) = &common.key_file else {
            bail!("an end node needs a key file (`key_file` or --key-file)");
        };
        let (key, created) = end_node::load_or_create_key(key_file)?;
        let wallet = end_node::wallet(key);
        end_node::write_public(key_file, &wallet.hash_addr())?;
        let note = format!(
            "end node: hash address {} (key {} {})",
            binfm_roles::util::hex(&wallet.hash_addr()),
            key_file.display(),
            if created { "created" } else { "reused" }
        );
        let lease = match &common.lease_file {
            Some(f) => end_node::read_lease(f)?,
            None => Some(end_node::static_lease(
                *cfg.listen.ip(),
                nat,
                super_nodes.to_vec(),
            )),
        };
        // The role's randomness (nonces, SSRCs, ephemeral and renewed DH keys): fresh from
        // the OS at every start, or from the configured seed and the start time, so a
        // restart never repeats a (key, nonce) pair.
        let role_seed = match cfg.seed {
            Some(_) => binfm_roles::keyseed::derive(
                &binfm_roles::keyseed::master_from_seed(seed),
                "end-node role",
                &binfm_roles::util::hex(&key),
                u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            ),
            None => rand::random(),
        };
        Ok(EndNodeStart {
            wallet,
            role_seed,
            lease,
            audio: end_node::audio_source(common)?,
            note,
        })
    }
}

/// The network index a vertical end node's address is on (1 + the index of the first
/// `stun_by_network` entry that holds it, else 0: the default STUN server); `None` for
/// other roles, which count their addresses instead.
fn network_of(role: &RoleConfig, address: std::net::Ipv4Addr) -> Option<usize> {
    let RoleConfig::VerticalEndNode {
        stun_by_network, ..
    } = role
    else {
        return None;
    };
    let inside = |(net, len): (std::net::Ipv4Addr, u8)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        u32::from(address) & mask == u32::from(net) & mask
    };
    Some(
        stun_by_network
            .iter()
            .position(|(n, _)| inside(*n))
            .map_or(0, |k| k + 1),
    )
}

/// Runs `binfm node`: binds the socket, serves until SIGTERM/SIGINT. `announce` gets the
/// lines to print.
pub fn run(cfg: &NodeConfig, announce: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let clock = Clock::new();
    let prepared = prepare(cfg, seed, clock.now())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(cfg, prepared, clock, announce))
}

/// Where the role's events go: JSON lines like `events.jsonl`.
struct EventOut {
    out: Box<dyn Write>,
    host: String,
}

impl EventOut {
    fn open(cfg: &NodeConfig) -> anyhow::Result<EventOut> {
        let out: Box<dyn Write> = match &cfg.events {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?,
            )),
            None => Box::new(std::io::stdout()),
        };
        // An end node is named after its key file (`a.key` -> `a`), other roles after
        // their config file.
        let named = match cfg.role.en_common().and_then(|c| c.key_file.as_ref()) {
            Some(k) => k.as_path(),
            None => cfg.path.as_path(),
        };
        let host = named
            .file_stem()
            .map_or_else(|| "node".to_owned(), |s| s.to_string_lossy().into_owned());
        Ok(EventOut { out, host })
    }

    fn write(&mut self, t: Time, event: RunEvent) -> anyhow::Result<()> {
        let rec = Record {
            t,
            host: self.host.clone(),
            event,
        };
        serde_json::to_writer(&mut self.out, &rec.to_json_record().to_json())?;
        self.out.write_all(b"\n")?;
        Ok(())
    }
}

/// A daemon's time: the wall clock (time since the Unix epoch) when it started, advanced by a
/// monotonic clock. Unlike time since the start, it goes on across restarts, so a super node's
/// blocks from before a restart are not "in the future" after it, and daemons on different
/// machines agree on block times as far as their clocks do.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Time,
    start: Instant,
}

impl Clock {
    /// Starts now.
    pub fn new() -> Clock {
        let origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            origin,
            start: Instant::now(),
        }
    }

    /// The role time now.
    pub fn now(&self) -> Time {
        self.origin + self.start.elapsed()
    }

    /// When role time `t` comes, on tokio's clock.
    pub fn instant_of(&self, t: Time) -> Instant {
        self.start + t.saturating_sub(self.origin)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

async fn serve(
    cfg: &NodeConfig,
    prepared: Prepared,
    clock: Clock,
    announce: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let Prepared {
        mut role,
        mut log,
        notes,
        lease,
    } = prepared;
    let socket = UdpSocket::bind(SocketAddr::V4(cfg.listen))
        .await
        .with_context(|| format!("binding UDP {}", cfg.listen))?;
    let local = match socket.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => bail!("bound an IPv6 address {a}"),
    };
    let control = match &cfg.control {
        Some(path) => {
            let _ = std::fs::remove_file(path); // a stale socket of a killed daemon
            Some(
                UnixListener::bind(path)
                    .with_context(|| format!("binding control socket {}", path.display()))?,
            )
        }
        None => None,
    };
    let mut events = EventOut::open(cfg)?;
    let ctl_cx = ctl::CtlContext {
        peers: cfg
            .role
            .en_common()
            .map(|c| c.peers.clone())
            .unwrap_or_default(),
    };
    for n in &notes {
        announce(n);
    }
    announce(&format!(
        "binfm node: {} on udp {local}{}",
        role_name(&cfg.role),
        cfg.control
            .as_ref()
            .map_or_else(String::new, |c| format!(", control {}", c.display()))
    ));
    let now = || clock.now();
    role.handle_command(
        now(),
        &Command::Start {
            address: Some(*local.ip()),
        },
    );
    // An end node's address: the config's, or the lease file's (watched for changes: a new
    // address is a move, and the end node hands its calls over).
    let mut segment = 0;
    let mut to = local;
    let mut current = lease;
    if let Some(l) = &current {
        segment = network_of(&cfg.role, l.address).unwrap_or(segment);
        to = SocketAddrV4::new(l.address, local.port());
        role.handle_command(
            now(),
            &Command::Bound {
                lease: l.clone(),
                segment,
            },
        );
    }
    let lease_file = cfg.role.en_common().and_then(|c| c.lease_file.clone());
    // inotify wakes the loop when the file is written; a slow timer is the fallback.
    let watch = lease_file.as_deref().map(end_node::LeaseWatch::new);
    let mut lease_check = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut burst: Vec<(SocketAddrV4, Vec<u8>)> = Vec::with_capacity(MAX_BURST);
    loop {
        drain(&mut *role, &socket, &mut events, &mut log, now()).await?;
        let wake = role.poll_timeout().map(|t| clock.instant_of(t));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, SocketAddr::V4(from))) => {
                        burst.clear();
                        burst.push((from, buf.get(..n).unwrap_or_default().to_vec()));
                        // What else is queued already arrived together: one burst (a super
                        // node verifies its Txs in one batch).
                        while burst.len() < MAX_BURST {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, SocketAddr::V4(from))) => {
                                    burst.push((from, buf.get(..n).unwrap_or_default().to_vec()));
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        let refs: Vec<(SocketAddrV4, &[u8])> =
                            burst.iter().map(|(f, d)| (*f, &d[..])).collect();
                        role.handle_datagrams(now(), to, &refs);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("receiving: {e}"),
                }
            }
            _ = sleep_until_opt(wake) => role.handle_timeout(now()),
            conn = accept_opt(control.as_ref()) => {
                if let Ok(stream) = conn {
                    ctl::serve_one(stream, &mut *role, &ctl_cx, now()).await;
                }
            }
            () = lease_changed(watch.as_ref()) => lease_check.reset_immediately(),
            _ = lease_check.tick(), if lease_file.is_some() => {
                let Some(f) = &lease_file else { continue };
                match end_node::read_lease(f) {
                    Ok(Some(l)) if current.as_ref().is_none_or(|c| c.address != l.address) => {
                        announce(&format!("binfm node: new address {} from {}", l.address, f.display()));
                        segment = network_of(&cfg.role, l.address).unwrap_or(segment + 1);
                        to = SocketAddrV4::new(l.address, local.port());
                        role.handle_command(now(), &Command::Bound { lease: l.clone(), segment });
                        current = Some(l);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("{e:#}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Some(path) = cfg.role.en_common().and_then(|c| c.audio_out.as_ref()) {
        for p in end_node::write_audio(&*role, path)? {
            announce(&format!("binfm node: received audio in {}", p.display()));
        }
    }
    // SIGTERM: end every call (locally: the scheme has no hang-up message; the peer's
    // consent freshness ends its side), stop mining, send what that
    // produced, close the files.
    let peers: Vec<_> = role.calls().iter().map(|c| c.peer).collect();
    for p in peers {
        role.handle_command(now(), &Command::Hangup(p));
    }
    role.handle_command(now(), &Command::WindDown);
    drain(&mut *role, &socket, &mut events, &mut log, now()).await?;
    events.out.flush()?;
    if let Some(path) = &cfg.control {
        let _ = std::fs::remove_file(path);
    }
    announce("binfm node: stopped");
    Ok(())
}

fn role_name(role: &RoleConfig) -> &'static str {
    match role {
        RoleConfig::SuperNode { .. } => "super node",
        RoleConfig::EndNode { .. } => "end node",
        RoleConfig::VerticalEndNode { .. } => "vertical end node",
        RoleConfig::Stun => "STUN server",
        RoleConfig::Location { .. } => "location server",
    }
}

/// Sends what the role has to send, logs its events, appends its block-log records.
async fn drain(
    role: &mut dyn Role,
    socket: &UdpSocket,
    events: &mut EventOut,
    log: &mut Option<BlockLog>,
    now: Time,
) -> anyhow::Result<()> {
    while let Some(t) = role.poll_transmit() {
        if let Err(e) = socket.send_to(&t.payload, SocketAddr::V4(t.dst)).await {
            tracing::debug!("sending to {}: {e}", t.dst);
        }
    }
    while let Some(e) = role.poll_event() {
        events.write(now, RunEvent::Role(e))?;
    }
    while let Some(rec) = role.poll_persist() {
        if let Some(log) = log {
            log.append(&rec)
                .map_err(|e| anyhow::anyhow!("block log: {e}"))?;
        }
    }
    events.out.flush()?;
    Ok(())
}

async fn lease_changed(watch: Option<&end_node::LeaseWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn accept_opt(l: Option<&UnixListener>) -> std::io::Result<tokio::net::UnixStream> {
    match l {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}
