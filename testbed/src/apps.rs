//! Glue between the BINFM roles and a node: when an EN registers and looks peers up, and
//! where an SN keeps its block log. The roles stay sans-IO; file I/O and schedules live here.

use crate::topology::{NodeDef, Topology};
use binfm_roles::chain::persist::{BlockLog, open_chain};
use binfm_roles::chain::{ChainConfig, MempoolConfig};
use binfm_roles::dhcp::Lease;
use binfm_roles::en::EndNode;
use binfm_roles::sn::{SnConfig, SuperNode, persist_into, validate_tx};
use binfm_roles::wallet::Wallet;
use binfm_roles::{Event, Time, Transmit};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::HashAddr;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
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

    /// Starts a call to `peer`.
    pub fn call(&mut self, now: Time, peer: HashAddr) {
        self.en.call(now, peer);
    }

    /// Hangs up the call with `peer`.
    pub fn hangup(&mut self, now: Time, peer: HashAddr) {
        self.en.hangup(now, peer);
    }

    /// Renews the DH key in every active call.
    pub fn rekey(&mut self, now: Time) {
        self.en.rekey(now);
    }

    /// A DHCP lease was bound: register.
    pub fn on_bound(&mut self, now: Time, lease: &Lease) {
        self.bound = true;
        self.en.on_address(
            now,
            lease.address,
            lease.nat_public,
            lease.super_nodes.clone(),
        );
    }

    /// The lease was lost.
    pub fn on_unbound(&mut self) {
        self.bound = false;
        self.en.on_address_lost();
    }

    /// See [`EndNode::handle_datagram`].
    pub fn handle_datagram(&mut self, now: Time, d: &binfm_stack::host::Datagram) {
        self.en.handle_datagram(now, d.from, d.to, &d.payload);
    }

    /// Due lookups and retransmissions.
    pub fn handle_timeout(&mut self, now: Time) {
        self.en.handle_timeout(now);
        while self.bound && self.next < self.lookups.len() && self.lookups[self.next].0 <= now {
            let addr = self.lookups[self.next].1;
            self.en.lookup(now, addr);
            self.next += 1;
        }
        while self.en.poll_lookup().is_some() {}
    }

    /// Next retransmission or scheduled lookup.
    pub fn poll_timeout(&self) -> Option<Time> {
        let lookup = if self.bound {
            self.lookups.get(self.next).map(|l| l.0)
        } else {
            None
        };
        [self.en.poll_timeout(), lookup].into_iter().flatten().min()
    }

    /// See [`EndNode::poll_transmit`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.en.poll_transmit()
    }

    /// See [`EndNode::poll_event`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.en.poll_event()
    }
}

/// A super node with its optional block log.
#[derive(Debug)]
pub struct SnApp {
    /// The role.
    pub sn: SuperNode,
    log: Option<BlockLog>,
    events: VecDeque<Event>,
}

impl SnApp {
    /// The SN of node `index`; with a data directory, its chain is recovered from there.
    pub fn new(
        topo: &Topology,
        index: usize,
        data_root: Option<&Path>,
        now: Time,
        seed: u64,
    ) -> anyhow::Result<Option<SnApp>> {
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
        let mut events = VecDeque::new();
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
                events.push_back(
                    Event::new("sn.recovered")
                        .with("dir", dir.display().to_string())
                        .with("height", height)
                        .with_display("recovery", format!("{recovery:?}")),
                );
                (SuperNode::with_chain(cfg, chain, seed), Some(log))
            }
            None => (
                SuperNode::new(cfg, seed)
                    .map_err(|e| anyhow::anyhow!("super node `{}`: {e}", def.name))?,
                None,
            ),
        };
        Ok(Some(SnApp { sn, log, events }))
    }

    fn persist(&mut self) {
        match &mut self.log {
            Some(log) => {
                if let Err(e) = persist_into(&mut self.sn, log) {
                    self.events
                        .push_back(Event::new("sn.persist_failed").with_display("error", e));
                }
            }
            None => while self.sn.poll_persist().is_some() {},
        }
    }

    /// Starts mining.
    pub fn start(&mut self, now: Time) {
        self.sn.start(now);
        self.persist();
    }

    /// See [`SuperNode::handle_datagram`].
    pub fn handle_datagram(&mut self, now: Time, d: &binfm_stack::host::Datagram) {
        self.sn.handle_datagram(now, d.from, d.to, &d.payload);
        self.persist();
    }

    /// See [`SuperNode::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        self.sn.handle_timeout(now);
        self.persist();
    }

    /// See [`SuperNode::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.sn.poll_timeout()
    }

    /// See [`SuperNode::poll_transmit`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.sn.poll_transmit()
    }

    /// Glue events first, then the role's.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().or_else(|| self.sn.poll_event())
    }
}
