//! The virtual-time harness of one point: the SN, the crowd's registrations and moves, the
//! prober's Queries, and the event loop that delivers them.

use super::crowd::{
    PROBER_ADDR, SN_ADDR, crowd_endpoint, crowd_private, exp_delay, later, millis, nanos,
};
use super::{Action, Harness, Member, PendingQuery, ScaleConfig, Scheduled};
use binfm_roles::Time;
use binfm_roles::chain::{ChainConfig, HEADER_LEN, MAX_BLOCK_TXS};
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::binfm::{Message, TxStatus};
use binfm_stack::wire::toall::HashAddr;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

impl<'a> Harness<'a> {
    /// The harness of a point of `wallets.len()` ENs (fresh wallets, see [`super::Wallets`]).
    pub(super) fn new(
        cfg: &'a ScaleConfig,
        wallets: Vec<Wallet>,
        point_seed: u64,
    ) -> anyhow::Result<Self> {
        let n = wallets.len();
        let members = wallets
            .into_iter()
            .map(|wallet| Member {
                wallet,
                endpoint: crowd_endpoint(0, cfg.crowd_addrs),
                sent_at: Vec::new(),
                in_block: Vec::new(),
                confirmed_seq: 0,
            })
            .collect::<Vec<_>>();
        let by_owner = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.wallet.hash_addr(), i as u32))
            .collect();
        let chain = ChainConfig {
            network_hash_rate: cfg.hash_rate,
            block_interval_ms: u64::try_from(cfg.block_interval.as_millis())
                .unwrap_or(1000)
                .max(1),
            max_block_bytes: cfg.block_bytes,
            ..ChainConfig::default()
        };
        // The SN as a topology builds it (default mempool, the topology's block limits).
        let mut sn_cfg = SnConfig::new(1, vec![], cfg.hash_rate, chain);
        sn_cfg.max_block_txs = cfg.block_txs;
        let sn = SuperNode::new(sn_cfg, point_seed)
            .map_err(|e| anyhow::anyhow!("scale: super node config: {e}"))?;
        Ok(Harness {
            cfg,
            n,
            sn,
            members,
            by_endpoint: HashMap::new(),
            by_owner,
            heap: BinaryHeap::new(),
            order: 0,
            now: Time::ZERO,
            rng: ChaCha8Rng::seed_from_u64(point_seed),
            next_endpoint: 0,
            confirmed_members: Vec::new(),
            seen_height: 0,
            measure_from: None,
            measure_until: Time::MAX,
            next_request: 1,
            pending: HashMap::new(),
            txs_submitted: 0,
            txs_accepted: 0,
            txs_rejected: 0,
            endpoint_corrections: 0,
            txs_confirmed: 0,
            moves: 0,
            moves_confirmed: 0,
            measured_confirmed: 0,
            queries: 0,
            replies_found: 0,
            replies_not_found: 0,
            replies_outdated: 0,
            replies_malformed: 0,
            unrouted: 0,
            rtt_ns: Vec::new(),
            query_cpu_ns: Vec::new(),
            latency_ns: Vec::new(),
            tx_cpu_ns: Vec::new(),
            confirm_delay_ns: Vec::new(),
            sn_cpu_total: Duration::ZERO,
            sn_cpu_measure: Duration::ZERO,
            measure_blocks: 0,
            fill_sum: 0.0,
        })
    }

    fn schedule(&mut self, at: Time, action: Action) {
        self.order += 1;
        self.heap.push(Scheduled {
            at,
            order: self.order,
            item: action,
        });
    }

    /// Sends the SN's output on its way and drops its events and block-log queue.
    fn drain_sn(&mut self) {
        while let Some(t) = self.sn.poll_transmit() {
            let at = later(self.now, self.cfg.t_i);
            if t.dst == PROBER_ADDR {
                self.schedule(at, Action::ToProber { payload: t.payload });
            } else if let Some(&member) = self.by_endpoint.get(&t.dst) {
                self.schedule(
                    at,
                    Action::ToMember {
                        member,
                        payload: t.payload,
                    },
                );
            } else if !matches!(Message::parse(&t.payload), Ok(Message::Headers { .. })) {
                // Header pushes to a member's old endpoint (it moved) are not lost answers.
                self.unrouted += 1;
            }
        }
        while self.sn.poll_event().is_some() {}
        while self.sn.poll_persist().is_some() {}
        self.note_blocks();
    }

    /// Records the Txs of best-chain blocks above the last height seen.
    fn note_blocks(&mut self) {
        let (_, tip) = self.sn.chain().tip();
        while self.seen_height < tip {
            self.seen_height += 1;
            let Some(hash) = self.sn.chain().store().best_hash_at(self.seen_height) else {
                continue;
            };
            let Some(block) = self.sn.chain().block(&hash) else {
                continue;
            };
            let owners: Vec<(HashAddr, u64)> = block
                .txs
                .iter()
                .map(|tx| (tx.out.hash_addr, tx.out.seq))
                .collect();
            if self.measure_from.is_some() && self.now < self.measure_until {
                // How full the block is: its Txs over what blocks of its Txs' size hold.
                let largest = block.txs.iter().map(|t| t.to_bytes().len()).max();
                let fill = largest.map_or(0.0, |len| {
                    let by_bytes = self.cfg.block_bytes.saturating_sub(HEADER_LEN + 4) / (4 + len);
                    let cap = by_bytes.min(self.cfg.block_txs).clamp(1, MAX_BLOCK_TXS);
                    owners.len() as f64 / cap as f64
                });
                self.measure_blocks += 1;
                self.fill_sum += fill.min(1.0);
            }
            for (owner, seq) in owners {
                self.txs_confirmed += 1;
                let Some(&i) = self.by_owner.get(&owner) else {
                    continue;
                };
                let Some(m) = self.members.get_mut(i as usize) else {
                    continue;
                };
                if m.confirmed_seq == 0 {
                    self.confirmed_members.push(i);
                }
                m.confirmed_seq = m.confirmed_seq.max(seq);
                if let Some(flag) = usize::try_from(seq)
                    .ok()
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|s| m.in_block.get_mut(s))
                {
                    *flag = true;
                }
                let sent = usize::try_from(seq)
                    .ok()
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|s| m.sent_at.get(s).copied());
                if let (Some(sent), Some(from)) = (sent, self.measure_from)
                    && sent >= from
                {
                    self.measured_confirmed += 1;
                    if seq > 1 {
                        self.moves_confirmed += 1;
                    }
                    self.confirm_delay_ns
                        .push(nanos(self.now.saturating_sub(sent)));
                }
            }
        }
    }

    /// Member `i` registers from a fresh endpoint (its first Tx or a move).
    fn register(&mut self, i: u32) {
        let k = self.next_endpoint;
        self.next_endpoint += 1;
        let endpoint = crowd_endpoint(k, self.cfg.crowd_addrs);
        self.by_endpoint.insert(endpoint, i);
        let now = self.now;
        let Some(m) = self.members.get_mut(i as usize) else {
            return;
        };
        m.endpoint = endpoint;
        m.wallet.set_addresses(crowd_private(k), endpoint);
        let tx = m.wallet.next_tx(millis(now));
        m.sent_at.push(now);
        m.in_block.push(false);
        self.txs_submitted += 1;
        let payload = Message::TxSubmit { tx }.to_bytes();
        self.schedule(
            later(now, self.cfg.t_i),
            Action::ToSn {
                from: endpoint,
                payload,
                query: None,
            },
        );
    }

    fn on_member_datagram(&mut self, i: u32, payload: &[u8]) {
        // Members do not follow headers (the prober checks nothing against them).
        if matches!(Message::parse(payload), Ok(Message::Headers { .. })) {
            return;
        }
        let Ok(Message::TxAck {
            status, observed, ..
        }) = Message::parse(payload)
        else {
            self.unrouted += 1;
            return;
        };
        match status {
            TxStatus::Accepted | TxStatus::Duplicate => self.txs_accepted += 1,
            TxStatus::EndpointMismatch => {
                // Never expected (each Tx names the endpoint it is sent from); re-register
                // from the current endpoint if the SN saw that one, as an EN would after
                // learning its mapping.
                self.endpoint_corrections += 1;
                if self
                    .members
                    .get(i as usize)
                    .is_some_and(|m| m.endpoint == observed)
                {
                    self.register(i);
                }
            }
            TxStatus::Rejected(_) => self.txs_rejected += 1,
        }
    }

    fn on_reply(&mut self, payload: &[u8]) {
        let Ok(Message::Reply {
            request_id,
            found,
            tx,
            ..
        }) = Message::parse(payload)
        else {
            self.replies_malformed += 1;
            return;
        };
        let Some(q) = self.pending.remove(&request_id) else {
            self.replies_malformed += 1;
            return;
        };
        let rtt = nanos(self.now.saturating_sub(q.sent));
        self.rtt_ns.push(rtt);
        self.query_cpu_ns.push(q.cpu_ns);
        self.latency_ns.push(rtt.saturating_add(q.cpu_ns));
        match (found, tx) {
            (true, Some(tx)) => {
                self.replies_found += 1;
                let current = self.members.get(q.member as usize).map(|m| m.endpoint);
                if current != Some(SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port)) {
                    self.replies_outdated += 1;
                }
            }
            _ => self.replies_not_found += 1,
        }
    }

    fn probe(&mut self) {
        if self.confirmed_members.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..self.confirmed_members.len());
        let member = self.confirmed_members[pick];
        let Some(m) = self.members.get(member as usize) else {
            return;
        };
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let payload = Message::Query {
            request_id,
            hash_addr: m.wallet.hash_addr(),
            want_unconfirmed: false,
        }
        .to_bytes();
        self.pending.insert(
            request_id,
            PendingQuery {
                sent: self.now,
                member,
                cpu_ns: 0,
            },
        );
        self.queries += 1;
        self.schedule(
            later(self.now, self.cfg.t_i),
            Action::ToSn {
                from: PROBER_ADDR,
                payload,
                query: Some(request_id),
            },
        );
    }

    fn handle(&mut self, action: Action) {
        let measuring = self.measure_from.is_some() && self.now < self.measure_until;
        match action {
            Action::ToSn {
                from,
                payload,
                query,
            } => {
                let t0 = Instant::now();
                self.sn.handle_datagram(self.now, from, SN_ADDR, &payload);
                let spent = t0.elapsed();
                self.sn_cpu_total += spent;
                if measuring {
                    self.sn_cpu_measure += spent;
                }
                match query {
                    Some(id) => {
                        if let Some(q) = self.pending.get_mut(&id) {
                            q.cpu_ns = nanos(spent);
                        }
                    }
                    None => self.tx_cpu_ns.push(nanos(spent)),
                }
                self.drain_sn();
            }
            Action::ToMember { member, payload } => self.on_member_datagram(member, &payload),
            Action::ToProber { payload } => self.on_reply(&payload),
            Action::Register { member } => {
                let first = self
                    .members
                    .get(member as usize)
                    .is_some_and(|m| m.sent_at.is_empty());
                if first || measuring {
                    if !first {
                        self.moves += 1;
                    }
                    self.register(member);
                }
                // Moves are scheduled only once the measurement phase started (which
                // scheduled every member's first move).
                if measuring && !first {
                    let at = later(self.now, exp_delay(&mut self.rng, self.cfg.move_interval));
                    if at < self.measure_until {
                        self.schedule(at, Action::Register { member });
                    }
                }
            }
            Action::Probe => {
                if measuring {
                    self.probe();
                    let mean = Duration::try_from_secs_f64(1.0 / self.cfg.query_rate)
                        .unwrap_or(Duration::MAX);
                    let at = later(self.now, exp_delay(&mut self.rng, mean));
                    if at < self.measure_until {
                        self.schedule(at, Action::Probe);
                    }
                }
            }
        }
    }

    /// Starts the measurement phase at `now`: first moves and the first Query.
    fn start_measuring(&mut self) {
        self.measure_from = Some(self.now);
        self.measure_until = later(self.now, self.cfg.duration);
        for i in 0..self.n {
            let at = later(self.now, exp_delay(&mut self.rng, self.cfg.move_interval));
            if at < self.measure_until {
                self.schedule(at, Action::Register { member: i as u32 });
            }
        }
        if self.cfg.query_rate > 0.0 {
            self.schedule(self.now, Action::Probe);
        }
    }

    /// Runs the point; `false` if `stop` was set.
    pub(super) fn run(&mut self, progress: &mut dyn FnMut(&str), stop: &AtomicBool) -> bool {
        self.sn.start(Time::ZERO);
        self.drain_sn();
        for i in 0..self.n {
            let u: f64 = self.rng.random();
            let at = Duration::try_from_secs_f64(u * self.cfg.register_window.as_secs_f64())
                .unwrap_or(Duration::ZERO);
            self.schedule(at, Action::Register { member: i as u32 });
        }
        let mut next_progress = Time::from_secs(1);
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps.is_multiple_of(256) && stop.load(AtomicOrdering::Relaxed) {
                return false;
            }
            if self.measure_from.is_none()
                && (self.confirmed_members.len() >= self.n || self.now >= self.cfg.max_warmup)
            {
                self.start_measuring();
            }
            // The SN's timers (mining, tip announcements) run until the measurement ends;
            // after that only datagrams in flight are delivered.
            let sn_at = self.sn.poll_timeout().filter(|&t| t < self.measure_until);
            let heap_at = self.heap.peek().map(|s| s.at);
            let at = match (heap_at, sn_at) {
                (None, None) => break,
                (Some(h), Some(s)) => h.min(s),
                (Some(h), None) => h,
                (None, Some(s)) => s,
            };
            self.now = self.now.max(at);
            if self.now >= next_progress {
                next_progress = later(self.now, Time::from_secs(1));
                progress(&self.progress_line());
                if stop.load(AtomicOrdering::Relaxed) {
                    return false;
                }
            }
            if heap_at == Some(at) {
                if let Some(s) = self.heap.pop() {
                    self.handle(s.item);
                }
            } else {
                let t0 = Instant::now();
                self.sn.handle_timeout(self.now);
                let spent = t0.elapsed();
                self.sn_cpu_total += spent;
                if self.measure_from.is_some() && self.now < self.measure_until {
                    self.sn_cpu_measure += spent;
                }
                self.drain_sn();
            }
        }
        true
    }

    fn progress_line(&self) -> String {
        match self.measure_from {
            None => format!(
                "scale {} ENs: warm-up t={:.0} s, {}/{} registered",
                self.n,
                self.now.as_secs_f64(),
                self.confirmed_members.len(),
                self.n
            ),
            Some(from) => format!(
                "scale {} ENs: t={:.0}/{:.0} s, {} Txs, {} Queries",
                self.n,
                self.now.saturating_sub(from).as_secs_f64(),
                self.cfg.duration.as_secs_f64(),
                self.txs_submitted,
                self.queries
            ),
        }
    }
}
