//! Glue between the BINFM roles and a node: when an EN registers and looks peers up, and
//! how an SN is configured and where it keeps its block log. The roles stay sans-IO; file I/O and schedules live here.

use crate::events::TestbedEvent;
use crate::topology::{NodeDef, Topology};
use binfm_roles::chain::persist::{BlockLog, open_chain};
use binfm_roles::chain::{ChainConfig, MempoolConfig};
use binfm_roles::en::EndNode;
use binfm_roles::event::Event;
use binfm_roles::role::CallView;
use binfm_roles::sn::{SnConfig, SuperNode, validate_tx};
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

/// The wallet of node `name` in a run with `run_seed`.
pub fn wallet_for(run_seed: u64, name: &str) -> Wallet {
    let seed = wallet_seed(run_seed, name);
    let mut rng = ChaCha8Rng::from_seed(seed);
    Wallet::from_seed(seed, &mut rng)
}

/// The tone an EN sends and the seed of its role's randomness. Each EN sends its own tone
/// (440 Hz, 660 Hz, 880 Hz, ...) so directions can be told apart by ear, in both models.
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
    /// The EN of node `def` (its lookups resolved to hash addresses).
    pub fn new(topo: &Topology, def: &NodeDef) -> Option<EnApp> {
        let en_def = def.end_node.as_ref()?;
        let (tone_hz, seed) = tone_and_seed(topo, def);
        let mut en = EndNode::new(wallet_for(topo.seed, &def.name), ports::EN, seed, tone_hz);
        // With `[chain] reply_unconfirmed`, ENs ask for the newest pending Tx too.
        en.set_want_unconfirmed(topo.chain.reply_unconfirmed);
        let mut lookups: Vec<(Time, HashAddr)> = en_def
            .lookups
            .iter()
            .map(|(peer, at)| {
                (
                    *at,
                    wallet_for(topo.seed, &topo.nodes[*peer].name).hash_addr(),
                )
            })
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
    let chain_cfg = ChainConfig {
        network_hash_rate: topo.network_hash_rate(),
        block_interval_ms: u64::try_from(topo.chain.block_interval.as_millis())
            .unwrap_or(1000)
            .max(1),
        ..ChainConfig::default()
    };
    let peers = sn_def
        .peers
        .iter()
        .filter_map(|&p| topo.sn_addr(p))
        .collect();
    let mut cfg = SnConfig::new(index as u32, peers, sn_def.hash_rate, chain_cfg);
    cfg.reply_unconfirmed = topo.chain.reply_unconfirmed;
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
                &validate_tx,
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
