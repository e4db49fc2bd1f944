//! Glue between the BINFM roles and a node: when an EN registers and looks peers up, and
//! how an SN is configured and where it keeps its block log. The roles stay sans-IO; file I/O and schedules live here.

use crate::events::TestbedEvent;
use crate::topology::{NodeDef, Topology};
use binfm_roles::chain::persist::{BlockLog, open_chain};
use binfm_roles::chain::{ChainConfig, MempoolConfig};
use binfm_roles::en::EndNode;
use binfm_roles::event::Event;
use binfm_roles::keyseed;
use binfm_roles::role::CallView;
use binfm_roles::sn::{BatchValidator, SnConfig, SuperNode};
use binfm_roles::wallet::Wallet;
use binfm_roles::{Command, Role, Time, Transmit};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::HashAddr;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::net::SocketAddrV4;
use std::path::Path;

/// The wallet seed of a node: reproducible from the run seed and the node's name, so every
/// node can compute every other EN's hash address.
pub fn wallet_seed(run_seed: u64, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"binfm wallet v1");
    h.update(run_seed.to_be_bytes());
    h.update(name.as_bytes());
    h.finalize().into()
}

/// The wallet of node `name` in a reproducible run with `run_seed`: the identity key is
/// [`wallet_seed`] (256 bits from SHA-256 of the seed and the name), the first DH secret is
/// drawn from a ChaCha8 keyed with the same 256 bits, as it always was. Kept bit for bit:
/// every Tx's bytes, and so every block's proof of work and the moment it is found, follow
/// from it, and the paper's figures on `topologies/paper.toml` depend on those moments. A
/// reproducible run's keys are public by construction (anyone with the file recomputes
/// them); live runs draw theirs from the operating system ([`wallet_of`]).
pub fn wallet_for(run_seed: u64, name: &str) -> Wallet {
    let seed = wallet_seed(run_seed, name);
    let mut rng = ChaCha8Rng::from_seed(seed);
    Wallet::from_seed(seed, &mut rng)
}

/// The wallet of node `name` in the run of `topo`: [`wallet_for`] of its seed, or, with a key
/// master drawn from the operating system (live runs), identity and DH secret derived from
/// that master. One master per run, so every node can still compute every EN's hash address,
/// and a restarted EN keeps its identity (as a key file on disk would).
pub fn wallet_of(topo: &Topology, name: &str) -> Wallet {
    match &topo.key_master {
        None => wallet_for(topo.seed, name),
        Some(master) => {
            let identity = keyseed::derive(master, "binfm identity", name, 0);
            let mut dh = keyseed::rng(master, "binfm dh", name, 0);
            Wallet::from_seed(identity, &mut dh)
        }
    }
}

/// The 256-bit seed of a BINFM end node's generator (nonces, SSRCs, request ids, renewed DH
/// keys), separate from its identity: HKDF of the run's key master, the node name and the
/// instant the node (re)started (ns), so a restarted EN draws a new stream and never reuses
/// a nonce or SSRC of its previous life (a node starts at most once per instant).
pub fn en_seed(topo: &Topology, name: &str, started: Time) -> [u8; 32] {
    let master = topo
        .key_master
        .unwrap_or_else(|| keyseed::master_from_seed(topo.seed));
    let started_ns = u64::try_from(started.as_nanos()).unwrap_or(u64::MAX);
    keyseed::derive(&master, "binfm en rng", name, started_ns)
}

/// The tone an EN sends and the seed of the vertical model's end node (the baseline, kept
/// as it was; a BINFM EN is seeded by [`en_seed`]). Each EN sends its own tone (440 Hz,
/// 660 Hz, 880 Hz, ...) so directions can be told apart by ear, in both models.
pub fn tone_and_seed(topo: &Topology, def: &NodeDef) -> (f64, u64) {
    let k = topo
        .nodes
        .iter()
        .take_while(|n| n.name != def.name)
        .filter(|n| n.end_node.is_some())
        .count();
    let seed = u64::from_be_bytes(
        wallet_seed(topo.seed, &def.name)[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    (440.0 * (1.0 + 0.5 * k as f64), seed)
}

/// An end node with its scheduled lookups.
#[derive(Debug)]
pub struct EnApp {
    /// The role.
    pub en: EndNode,
    lookups: Vec<(Time, HashAddr)>,
    next: usize,
    bound: bool,
}

impl EnApp {
    /// The EN of node `def` (its lookups resolved to hash addresses), started at `now`.
    pub fn new(topo: &Topology, def: &NodeDef, now: Time) -> Option<EnApp> {
        let en_def = def.end_node.as_ref()?;
        let (tone_hz, _) = tone_and_seed(topo, def);
        let seed = en_seed(topo, &def.name, now);
        let mut en = EndNode::new(wallet_of(topo, &def.name), ports::EN, seed, tone_hz);
        en.set_chain_config(chain_config(topo));
        // With `[chain] reply_unconfirmed`, ENs ask for the newest pending Tx too.
        en.set_want_unconfirmed(topo.chain.reply_unconfirmed);
        let mut lookups: Vec<(Time, HashAddr)> = en_def
            .lookups
            .iter()
            .map(|(peer, at)| (*at, wallet_of(topo, &topo.nodes[*peer].name).hash_addr()))
            .collect();
        lookups.sort_by_key(|l| l.0);
        Some(EnApp {
            en,
            lookups,
            next: 0,
            bound: false,
        })
    }
}

/// The end node's own [`Role`], with the scheduled lookups added: lookups are due only
/// while the EN holds an address.
impl Role for EnApp {
    fn port(&self) -> u16 {
        self.en.port()
    }

    /// The end node's (a client's): without it every crowd host took a server's 256 kB each
    /// way.
    fn socket_buffer(&self) -> usize {
        Role::socket_buffer(&self.en)
    }

    fn handle_command(&mut self, now: Time, command: &Command) {
        match command {
            Command::Bound { .. } => self.bound = true,
            Command::Unbound => self.bound = false,
            _ => {}
        }
        Role::handle_command(&mut self.en, now, command);
    }

    fn handle_datagram(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
        self.en.handle_datagram(now, from, to, payload);
    }

    /// Due lookups and retransmissions.
    fn handle_timeout(&mut self, now: Time) {
        self.en.handle_timeout(now);
        while self.bound && self.next < self.lookups.len() && self.lookups[self.next].0 <= now {
            let addr = self.lookups[self.next].1;
            self.en.lookup(now, addr);
            self.next += 1;
        }
        while self.en.poll_lookup().is_some() {}
    }

    /// Next retransmission or scheduled lookup.
    fn poll_timeout(&self) -> Option<Time> {
        let lookup = if self.bound {
            self.lookups.get(self.next).map(|l| l.0)
        } else {
            None
        };
        [self.en.poll_timeout(), lookup].into_iter().flatten().min()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.en.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.en.poll_event()
    }

    fn calls(&self) -> Vec<CallView<'_>> {
        Role::calls(&self.en)
    }

    fn take_work(&mut self) -> binfm_roles::Work {
        Role::take_work(&mut self.en)
    }
}

/// The chain parameters of a run: the SNs' (which fix the genesis block) and the ones the
/// end nodes' light clients check headers with.
pub fn chain_config(topo: &Topology) -> ChainConfig {
    ChainConfig {
        max_block_bytes: topo.chain.block_bytes,
        ..chain_config_of(topo.network_hash_rate(), topo.chain.block_interval)
    }
}

/// Chain parameters from a network hash rate and a mean block interval (at least 1 ms):
/// what a topology's SNs use, and what a daemon's config gives.
pub fn chain_config_of(network_hash_rate: f64, block_interval: std::time::Duration) -> ChainConfig {
    ChainConfig {
        network_hash_rate,
        block_interval_ms: u64::try_from(block_interval.as_millis())
            .unwrap_or(1000)
            .max(1),
        ..ChainConfig::default()
    }
}

/// A super node ready to run: the role, the block log its persisted blocks go to (with a
/// data directory, from which its chain was recovered first) and the event reporting that
/// recovery.
#[derive(Debug)]
pub struct SnSetup {
    /// The role.
    pub sn: SuperNode,
    /// Its block log, with a data directory.
    pub log: Option<BlockLog>,
    /// `sn.recovered`, with a data directory.
    pub recovered: Option<TestbedEvent>,
}

/// The super node of node `index`, if it is one.
pub fn sn_role(
    topo: &Topology,
    index: usize,
    data_root: Option<&Path>,
    now: Time,
    seed: u64,
) -> anyhow::Result<Option<SnSetup>> {
    let def = &topo.nodes[index];
    let Some(sn_def) = &def.super_node else {
        return Ok(None);
    };
    let chain_cfg = chain_config(topo);
    let peers = sn_def
        .peers
        .iter()
        .filter_map(|&p| topo.sn_addr(p))
        .collect();
    let mut cfg = SnConfig::new(index as u32, peers, sn_def.hash_rate, chain_cfg);
    cfg.reply_unconfirmed = topo.chain.reply_unconfirmed;
    cfg.max_block_txs = topo.chain.block_txs;
    cfg.set_per_source_limits(sn_def.tx_per_source, sn_def.queries_per_source);
    let mut recovered = None;
    let (sn, log) = match &sn_def.data_dir {
        Some(dir) => {
            let dir = match data_root {
                Some(root) if dir.is_relative() => root.join(dir),
                _ => dir.clone(),
            };
            let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            let (chain, log, recovery) = open_chain(
                &dir,
                chain_cfg,
                MempoolConfig::default(),
                now_ms,
                &BatchValidator::new(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "super node `{}`: data directory {}: {e}",
                    def.name,
                    dir.display()
                )
            })?;
            let height = chain.tip().1;
            recovered = Some(TestbedEvent::Recovered {
                dir: dir.display().to_string(),
                height,
                recovery: format!("{recovery:?}"),
            });
            (SuperNode::with_chain(cfg, chain, seed), Some(log))
        }
        None => (
            SuperNode::new(cfg, seed)
                .map_err(|e| anyhow::anyhow!("super node `{}`: {e}", def.name))?,
            None,
        ),
    };
    Ok(Some(SnSetup { sn, log, recovered }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn an_end_node_app_buffers_like_a_client() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../topologies/paper.toml"
        ));
        let topo = Topology::load(path).expect("paper.toml loads");
        let def = topo
            .nodes
            .iter()
            .find(|n| n.end_node.is_some())
            .expect("paper.toml has end nodes");
        let app = EnApp::new(&topo, def, Time::ZERO).expect("an end node");
        assert_eq!(
            Role::socket_buffer(&app),
            binfm_roles::role::CLIENT_SOCKET_BUFFER
        );
    }
}
