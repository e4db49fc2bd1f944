//! The network engine: nodes, segments and link emulation as a deterministic discrete-event
//! loop. The virtual driver runs it as fast as it can; the live driver paces it with the real
//! clock and opens its [`Boundary`] to TUN devices.
//!
//! `now` jumps to the earliest pending event: a packet delivery scheduled by link emulation or
//! a node's own `poll_at`. Ties are broken by insertion order, so a topology and a seed give
//! byte-identical captures. Nothing here reads the wall clock (that is why tokio's paused
//! clock is not used: it jumps over real I/O).

use crate::events::EventLog;
use crate::events::TestbedEvent;
use crate::node::{Node, Output};
use crate::topology::compute::ComputeCosts;
use crate::topology::{Action, Topology};
use binfm_roles::{Command, Time, Work};
use binfm_stack::capture::Capture;
use binfm_stack::fabric::{Dest, MemberId, Segment, Transmission};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

mod attack;
mod boundary;
mod flood;
mod queue;

use queue::Popped;

pub use boundary::{Boundary, Closed};

/// A packet waiting to be delivered: its own bytes, or bytes shared by every receiver of a
/// broadcast (one copy in flight however many members the segment has; each receiver gets
/// its own copy when the packet arrives, the last one the original).
#[derive(Debug)]
enum Payload {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Payload {
    /// The bytes, owned.
    fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Own(p) => p,
            Payload::Shared(p) => Arc::try_unwrap(p).unwrap_or_else(|p| (*p).clone()),
        }
    }
}

/// Something scheduled at a time.
#[derive(Debug)]
enum What {
    Deliver {
        segment: usize,
        member: usize,
        packet: Payload,
    },
    Wake {
        node: usize,
    },
    Step {
        index: usize,
    },
    /// The next datagram of flood `id` (scenario step `flood`).
    Flood {
        id: usize,
    },
    /// Attack `id` wakes up (scenario step `attack`).
    Attack {
        id: usize,
    },
    /// Node `node`'s CPU finished the work of an input: what the input produced leaves now
    /// (`[compute]`; never scheduled when compute is free).
    Emit {
        node: usize,
        outputs: Vec<Output>,
    },
}

/// Who put a packet on a segment: a node, an outside member (through the boundary) or a
/// flood step's source.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sender {
    Node(usize),
    Outside,
    Flood(usize),
    Attack(usize),
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Writing the capture failed.
    #[error(transparent)]
    Capture(#[from] binfm_stack::capture::CaptureError),
    /// Writing events failed.
    #[error("writing events.jsonl: {0}")]
    Events(#[from] std::io::Error),
    /// A restarted node could not be rebuilt (e.g. its data directory is unreadable).
    #[error("restart failed: {0}")]
    Restart(String),
    /// A flood step could not start (its target has no free public source address).
    #[error("flood: {0}")]
    Flood(String),
    /// An attack step could not start.
    #[error("attack: {0}")]
    Attack(String),
}

/// What results read of a finished run: nodes with their roles, segments, the event log and
/// the engine's counters, and nothing that could change them.
#[derive(Debug)]
pub struct RunView<'a> {
    /// Nodes, in topology order.
    pub nodes: &'a [Node],
    /// Segments, in topology order.
    pub segments: &'a [Segment],
    /// The event log.
    pub events: &'a EventLog,
    /// Packets the segments did not deliver: (segment, reason) -> count.
    pub link_drops: &'a BTreeMap<(String, &'static str), u64>,
    /// Packets put on each segment.
    pub segment_packets: &'a [u64],
    /// The time the run reached.
    pub now: Time,
    /// Each flood step: target, spec and what it did.
    pub floods: Vec<(
        String,
        crate::topology::flood_step::FloodSpec,
        crate::flood::FloodStats,
    )>,
    /// What each attack step achieved (`results.json` `attacks`), in step order.
    pub attacks: Vec<serde_json::Value>,
    /// What computation cost in this run (zero: nothing was charged).
    pub compute: &'a ComputeCosts,
    /// Per node: the operations charged, and the time they cost.
    pub charged: &'a [(Work, Time)],
}

/// The whole emulated network: nodes, segments and the event queue.
pub struct Network<W: Write, B: Boundary = Closed> {
    now: Time,
    /// Nodes, in topology order.
    pub nodes: Vec<Node>,
    /// Segments, in topology order.
    pub segments: Vec<Segment>,
    /// Scheduled events, and deliveries (packets) in per-channel lanes.
    queue: queue::EventQueue<What, Payload>,
    wake: Vec<Option<Time>>,
    capture: Option<Capture<W>>,
    /// The event log.
    pub events: EventLog,
    /// Packets the segments did not deliver: (segment, reason) -> count.
    pub link_drops: BTreeMap<(String, &'static str), u64>,
    /// Packets put on each segment.
    pub segment_packets: Vec<u64>,
    /// Events handled by the loop (deliveries and wakes).
    pub steps: u64,
    scratch_out: Vec<Output>,
    scratch_fates: Vec<Transmission>,
    topo: Topology,
    data_root: Option<std::path::PathBuf>,
    /// The edge of the engine (closed in virtual runs).
    boundary: B,
    /// Flood steps and their sources.
    flood: flood::Floods,
    /// Attack steps.
    attack: attack::Attacks,
    /// What each expensive operation costs (from the topology; zero in live runs).
    compute: ComputeCosts,
    /// `compute.is_zero()`, asked once per input.
    compute_free: bool,
    /// Per node: until when its CPU is busy with inputs already handled.
    busy: Vec<Time>,
    /// Per node: the operations charged so far and their total cost.
    charged: Vec<(Work, Time)>,
    /// Whether a quiet node that forwards a packet skips its poll ([`Network::forwarded`]).
    quiet_forwarding: bool,
}

impl<W: Write, B: Boundary> std::fmt::Debug for Network<W, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl<W: Write> Network<W, Closed> {
    /// Builds segments and nodes from a checked topology (nothing runs yet), closed to the
    /// outside.
    pub fn new(
        topo: &Topology,
        seed: u64,
        capture: Option<Capture<W>>,
        events: EventLog,
        data_root: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        Self::with_boundary(topo, seed, capture, events, data_root, Closed)
    }
}

impl<W: Write, B: Boundary> Network<W, B> {
    /// Builds segments and nodes from a checked topology (nothing runs yet), with `boundary`
    /// at its edge.
    pub fn with_boundary(
        topo: &Topology,
        seed: u64,
        capture: Option<Capture<W>>,
        events: EventLog,
        data_root: Option<&std::path::Path>,
        boundary: B,
    ) -> anyhow::Result<Self> {
        let mut segments: Vec<Segment> = topo
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| Segment::new(&s.name, s.subnet, i, seed, s.params.clone()))
            .collect();
        let mut topo = topo.clone();
        topo.seed = seed;
        let topo_ref = &topo;
        let mut nodes = Vec::with_capacity(topo.nodes.len());
        for (n, def) in topo.nodes.iter().enumerate() {
            let members: Vec<usize> = def
                .ports
                .iter()
                .enumerate()
                .map(|(p, port)| segments[port.segment].add_member(n, p, port.addr))
                .collect();
            nodes.push(Node::new(topo_ref, n, &members, Time::ZERO, data_root)?);
        }
        for (si, s) in topo.segments.iter().enumerate() {
            for (a, b, params) in &s.paths {
                let ma = nodes[*a]
                    .ports
                    .iter()
                    .find(|p| p.segment == si)
                    .map(|p| p.member);
                let mb = nodes[*b]
                    .ports
                    .iter()
                    .find(|p| p.segment == si)
                    .map(|p| p.member);
                if let (Some(ma), Some(mb)) = (ma, mb) {
                    segments[si].set_path(ma, mb, params.clone());
                }
            }
        }
        let n = nodes.len();
        let s = segments.len();
        Ok(Network {
            now: Time::ZERO,
            nodes,
            segments,
            queue: queue::EventQueue::new(s),
            wake: vec![None; n],
            capture,
            events,
            link_drops: BTreeMap::new(),
            segment_packets: vec![0; s],
            steps: 0,
            scratch_out: Vec::new(),
            scratch_fates: Vec::new(),
            data_root: data_root.map(std::path::Path::to_path_buf),
            boundary,
            flood: flood::Floods::default(),
            attack: attack::Attacks::default(),
            compute: topo.compute,
            compute_free: topo.compute.is_zero(),
            busy: vec![Time::ZERO; n],
            charged: vec![(Work::NONE, Time::ZERO); n],
            quiet_forwarding: true,
            topo,
        })
    }

    /// Cuts every path between nodes of different groups, on every segment (fault
    /// injection: `partition {sn1} {sn2,sn3}`). Nodes in no group keep all their paths.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let group_of = |n: usize| groups.iter().position(|g| g.contains(&n));
        for seg in &mut self.segments {
            let members: Vec<(usize, Option<usize>)> = seg
                .members()
                .iter()
                .enumerate()
                .map(|(m, mem)| (m, group_of(mem.node)))
                .collect();
            for &(a, ga) in &members {
                for &(b, gb) in &members {
                    if let (Some(x), Some(y)) = (ga, gb)
                        && a < b
                        && x != y
                    {
                        seg.set_cut(a, b, true);
                    }
                }
            }
        }
        let ev = TestbedEvent::Partition {
            groups: format!(
                "{:?}",
                groups
                    .iter()
                    .map(|g| g
                        .iter()
                        .map(|&n| self.nodes[n].name.clone())
                        .collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            ),
        };
        let _ = self.events.push(self.now, "testbed", ev);
    }

    /// Restores every cut path.
    pub fn heal(&mut self) {
        for seg in &mut self.segments {
            seg.heal();
        }
        let _ = self.events.push(self.now, "testbed", TestbedEvent::Heal {});
    }

    /// Stops node `n` (a crash: it neither receives nor sends; its state is lost).
    pub fn crash(&mut self, n: usize) {
        self.nodes[n].up = false;
        self.wake[n] = None;
        self.busy[n] = self.now;
        let _ = self
            .events
            .push(self.now, &self.nodes[n].name, TestbedEvent::Crash {});
    }

    /// Restarts node `n` from its configuration (and, for a super node, its data directory).
    pub fn restart(&mut self, n: usize) -> Result<(), RunError> {
        let members: Vec<usize> = self.nodes[n].ports.iter().map(|p| p.member).collect();
        self.nodes[n] = Node::new(&self.topo, n, &members, self.now, self.data_root.as_deref())
            .map_err(|e| RunError::Restart(e.to_string()))?;
        for p in 0..self.nodes[n].ports.len() {
            let (seg, member, addr) = (
                self.nodes[n].ports[p].segment,
                self.nodes[n].ports[p].member,
                self.nodes[n].ports[p].addr,
            );
            self.segments[seg].set_addr(member, addr);
        }
        self.events
            .push(self.now, &self.nodes[n].name, TestbedEvent::Restart {})?;
        let mut out = std::mem::take(&mut self.scratch_out);
        self.nodes[n].start(self.now, &mut out);
        let r = self.process(n, &mut out);
        self.scratch_out = out;
        r
    }

    /// Current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Starts every node at time zero (binds sockets, starts DHCP clients and apps).
    pub fn start(&mut self) -> Result<(), RunError> {
        self.schedule_scenario();
        for n in 0..self.nodes.len() {
            let mut out = std::mem::take(&mut self.scratch_out);
            self.nodes[n].start(self.now, &mut out);
            self.process(n, &mut out)?;
            self.scratch_out = out;
        }
        Ok(())
    }

    /// Schedules the topology's scenario steps (called by `start`).
    fn schedule_scenario(&mut self) {
        for i in 0..self.topo.scenario.len() {
            let at = self.topo.scenario[i].at;
            self.schedule(at, What::Step { index: i });
        }
    }

    /// Carries out scenario step `index` now.
    fn apply_step(&mut self, index: usize) -> Result<(), RunError> {
        let step = self.topo.scenario[index].clone();
        let ev = TestbedEvent::ScenarioStep {
            line: step.line,
            action: format!("{:?}", step.action),
        };
        self.events.push(self.now, "testbed", ev)?;
        match step.action {
            Action::Call(a, b) => {
                let peer = self.hash_addr_of(b);
                self.command(a, &Command::Call(peer))?;
            }
            Action::Hangup(a, b) => {
                for (x, y) in [(a, b), (b, a)] {
                    let peer = self.hash_addr_of(y);
                    self.command(x, &Command::Hangup(peer))?;
                }
            }
            Action::Rekey(a) => self.command(a, &Command::Rekey)?,
            Action::Move(a, seg) => self.move_node(a, seg)?,
            Action::Leave(a) => {
                let mut out = std::mem::take(&mut self.scratch_out);
                self.nodes[a].release(self.now, &mut out);
                let r = self.process(a, &mut out);
                self.scratch_out = out;
                r?;
                let (seg, member) = (
                    self.nodes[a].ports[0].segment,
                    self.nodes[a].ports[0].member,
                );
                self.segments[seg].detach(member);
            }
            Action::Join(a, seg) => self.move_node(a, seg)?,
            Action::Crash(n) => self.crash(n),
            Action::Restart(n) => self.restart(n)?,
            Action::Partition(groups) => self.partition(&groups),
            Action::Heal => self.heal(),
            Action::Loss(seg, loss) => {
                self.segments[seg].set_loss(loss);
                let ev = TestbedEvent::Loss {
                    segment: self.segments[seg].name.clone(),
                    loss,
                };
                self.events.push(self.now, "testbed", ev)?;
            }
            Action::Flood(spec) => self.start_flood(index, &spec)?,
            Action::Exec { .. } | Action::MoveKernel(..) => self.boundary.outside_step(index),
            Action::Attack(spec) => self.start_attack(index, &spec)?,
        }
        Ok(())
    }

    /// Moves node `n`'s port 0 to segment `seg`: detached from the old segment, attached to
    /// the new one, and a new DHCP lease requested there.
    pub fn move_node(&mut self, n: usize, seg: usize) -> Result<(), RunError> {
        let (old_seg, old_member) = (
            self.nodes[n].ports[0].segment,
            self.nodes[n].ports[0].member,
        );
        self.segments[old_seg].detach(old_member);
        let member = self.segments[seg].add_member(n, 0, None);
        let subnet = self.segments[seg].subnet;
        let ev = TestbedEvent::Moved {
            from: self.segments[old_seg].name.clone(),
            to: self.segments[seg].name.clone(),
        };
        self.events.push(self.now, &self.nodes[n].name, ev)?;
        let mut out = std::mem::take(&mut self.scratch_out);
        self.nodes[n].move_to(self.now, seg, member, subnet, &mut out);
        let r = self.process(n, &mut out);
        self.scratch_out = out;
        r
    }

    /// The hash address of node `n` (its end node's identity in both models).
    fn hash_addr_of(&self, n: usize) -> binfm_stack::wire::toall::HashAddr {
        self.hash_addr_of_name(&self.topo.nodes[n].name)
    }

    /// The hash address of the node called `name`.
    fn hash_addr_of_name(&self, name: &str) -> binfm_stack::wire::toall::HashAddr {
        crate::apps::wallet_of(&self.topo, name).hash_addr()
    }

    /// Gives node `n`'s roles a command now and handles what follows.
    pub fn command(&mut self, n: usize, command: &Command) -> Result<(), RunError> {
        self.nodes[n].command(self.now, command);
        self.kick(n)
    }

    /// Polls node `n` now (after changing it from outside, e.g. a benchmark sending a datagram).
    pub fn kick(&mut self, n: usize) -> Result<(), RunError> {
        let mut out = std::mem::take(&mut self.scratch_out);
        self.nodes[n].poll(self.now, &mut out);
        self.process(n, &mut out)?;
        self.scratch_out = out;
        Ok(())
    }

    fn schedule(&mut self, at: Time, what: What) {
        self.queue.push(at, what);
    }

    /// Turns the quiet-forwarding shortcut ([`Network::forwarded`]) off or on (on by
    /// default). It must change nothing but speed: a test runs scenarios both ways and
    /// compares the captures.
    pub fn set_quiet_forwarding(&mut self, on: bool) {
        self.quiet_forwarding = on;
    }

    /// What computation costs from now on (live runs set zero: their work takes real time).
    pub fn set_compute(&mut self, compute: ComputeCosts) {
        self.compute_free = compute.is_zero();
        self.compute = compute;
    }

    /// Charges the work node `n`'s roles did for the input just handled: its CPU starts on
    /// it when it is free ([`Network::busy`]), and what the input produced (datagrams and
    /// events; not address changes) is held back until the work is done and goes out then
    /// ([`What::Emit`]). Nothing is held back when compute is free, so such runs are exactly
    /// as without this step.
    fn charge(&mut self, n: usize, out: &mut Vec<Output>) {
        let work = self.nodes[n].take_work();
        if self.compute_free {
            return;
        }
        let cost = self.compute.cost(&work);
        let (done_work, done_cost) = &mut self.charged[n];
        done_work.merge(work);
        *done_cost += cost;
        let start = self.now.max(self.busy[n]);
        if start == self.now && cost.is_zero() {
            return;
        }
        let done = start + cost;
        self.busy[n] = done;
        let mut later = Vec::new();
        for o in std::mem::take(out) {
            match o {
                Output::AddrChanged { .. } => out.push(o),
                o => later.push(o),
            }
        }
        if !later.is_empty() {
            self.schedule(
                done,
                What::Emit {
                    node: n,
                    outputs: later,
                },
            );
        }
    }

    /// Handles a node's outputs (after charging the work that produced them) and re-arms its
    /// timer.
    fn process(&mut self, n: usize, out: &mut Vec<Output>) -> Result<(), RunError> {
        self.charge(n, out);
        self.emit(n, out)?;
        self.rearm(n);
        Ok(())
    }

    /// What [`Network::process`] does for a packet that a [`Node::quiet`] node forwarded or
    /// dropped: none of its roles ran, so there is no work to take; with compute charged,
    /// `charge` still holds the output back while the node's CPU is busy. Its next wake-up,
    /// `next`, is what [`Node::quiet`] said `Node::poll_at` would answer.
    fn forwarded(
        &mut self,
        n: usize,
        next: Option<Time>,
        out: &mut Vec<Output>,
    ) -> Result<(), RunError> {
        if !self.compute_free {
            self.charge(n, out);
        }
        self.emit(n, out)?;
        self.set_wake(n, next);
        Ok(())
    }

    /// Puts a node's outputs on their segments and its events in the log, now.
    fn emit(&mut self, n: usize, out: &mut Vec<Output>) -> Result<(), RunError> {
        for o in out.drain(..) {
            match o {
                Output::Send { port, dest, packet } => {
                    let (seg, member) = (
                        self.nodes[n].ports[port].segment,
                        self.nodes[n].ports[port].member,
                    );
                    self.put_on_segment(seg, member, dest, packet, Sender::Node(n))?;
                }
                Output::AddrChanged { port, addr } => {
                    let (seg, member) = (
                        self.nodes[n].ports[port].segment,
                        self.nodes[n].ports[port].member,
                    );
                    self.segments[seg].set_addr(member, addr);
                }
                Output::Event(e) => {
                    self.events.push(self.now, &self.nodes[n].name, e)?;
                }
            }
        }
        Ok(())
    }

    /// Schedules node `n`'s next wake-up at its own `poll_at`.
    fn rearm(&mut self, n: usize) {
        let next = self.nodes[n].poll_at(self.now);
        self.set_wake(n, next);
    }

    /// Schedules node `n`'s next wake-up at `next` (at least a microsecond from now), unless
    /// it is already scheduled then.
    fn set_wake(&mut self, n: usize, next: Option<Time>) {
        let next = next.map(|t| t.max(self.now + Time::from_micros(1)));
        if next != self.wake[n] {
            self.wake[n] = next;
            if let Some(at) = next {
                self.schedule(at, What::Wake { node: n });
            }
        }
    }

    /// A packet arrives at `member` of `segment` now: taken by the boundary, a flood source or
    /// an attacker host if the member is one of theirs, else received by its node.
    fn deliver(&mut self, segment: usize, member: usize, packet: Payload) -> Result<(), RunError> {
        let packet = packet.into_vec();
        if self.boundary.is_outside(segment, member) {
            // Live mode: a kernel member's packets go into its TUN.
            self.boundary.delivered(segment, member, packet);
            return Ok(());
        }
        if self.flood.is_member(segment, member) {
            // An answer to a spoofed flood source: counted, goes no further.
            self.flood.absorb(segment, member, packet.len());
            return Ok(());
        }
        if let Some(id) = self.attack.interceptor(segment, member) {
            // A packet for an attacker host: the attack takes it.
            self.attack_receive(id, &packet);
            return Ok(());
        }
        if self.attack.observes(segment, member) {
            self.attack_observe(segment, member, &packet);
        }
        let m = &self.segments[segment].members()[member];
        let (n, port) = (m.node, m.port);
        if !m.attached
            || self.nodes[n].ports[port].member != member
            || self.nodes[n].ports[port].segment != segment
        {
            // The node moved away while the packet was in flight.
            *self
                .link_drops
                .entry((self.segments[segment].name.clone(), "detached"))
                .or_default() += 1;
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.scratch_out);
        let local = self.nodes[n].receive(self.now, port, packet, &mut out);
        let quiet = if local || !self.quiet_forwarding {
            None
        } else {
            self.nodes[n].quiet(self.now)
        };
        let r = match quiet {
            // Forwarded (or dropped) by a node with nothing else to do: a poll would change
            // nothing, and only the NAT's timer can have moved.
            Some(next) => self.forwarded(n, next, &mut out),
            None => {
                self.nodes[n].poll(self.now, &mut out);
                self.process(n, &mut out)
            }
        };
        self.scratch_out = out;
        r
    }

    /// Handles the next event if it is due by `end`; returns false when there is none.
    pub fn step(&mut self, end: Time) -> Result<bool, RunError> {
        let ev = match self.queue.pop_due(end) {
            None => return Ok(false),
            Some(Popped::Lane {
                at,
                segment,
                channel,
                item,
            }) => {
                self.now = self.now.max(at);
                self.steps += 1;
                let member = self.segments[segment].channel_receiver(channel);
                self.deliver(segment, member, item)?;
                return Ok(true);
            }
            Some(Popped::Event(ev)) => ev,
        };
        self.now = self.now.max(ev.at);
        self.steps += 1;
        let mut out = std::mem::take(&mut self.scratch_out);
        let n = match ev.item {
            What::Deliver {
                segment,
                member,
                packet,
            } => {
                self.scratch_out = out;
                self.deliver(segment, member, packet)?;
                return Ok(true);
            }
            What::Step { index } => {
                self.scratch_out = out;
                self.apply_step(index)?;
                return Ok(true);
            }
            What::Flood { id } => {
                self.scratch_out = out;
                self.flood_tick(id)?;
                return Ok(true);
            }
            What::Attack { id } => {
                self.scratch_out = out;
                self.attack_wake(id, ev.at)?;
                return Ok(true);
            }
            What::Emit { node, outputs } => {
                self.scratch_out = out;
                if self.nodes[node].up {
                    let mut outputs = outputs;
                    self.emit(node, &mut outputs)?;
                }
                return Ok(true);
            }
            What::Wake { node } => {
                if self.wake[node] != Some(ev.at) {
                    self.scratch_out = out;
                    return Ok(true); // superseded timer
                }
                self.wake[node] = None;
                self.nodes[node].poll(self.now, &mut out);
                node
            }
        };
        let r = self.process(n, &mut out);
        self.scratch_out = out;
        r.map(|()| true)
    }

    /// Runs until `end` (virtual) or until `stop` is set; returns whether it was stopped.
    pub fn run_until(&mut self, end: Time, stop: &AtomicBool) -> Result<bool, RunError> {
        let mut i: u32 = 0;
        while self.step(end)? {
            i = i.wrapping_add(1);
            if i.is_multiple_of(1024) && stop.load(AtomicOrdering::Relaxed) {
                return Ok(true);
            }
        }
        self.now = self.now.max(end);
        Ok(false)
    }

    /// Ends a run: SNs stop mining, and the network gets `settle` more time so that blocks in
    /// flight arrive and the final chain tips can be compared. Returns whether `stop` was set.
    pub fn settle(&mut self, settle: Time, stop: &AtomicBool) -> Result<bool, RunError> {
        if !self.begin_settle(settle)? {
            return Ok(false);
        }
        let end = self.now + settle;
        self.run_until(end, stop)
    }

    /// Winds the run down ([`Network::wind_down`]) and, when something settles, logs
    /// `run.settle`. Returns whether the caller should give the network `settle` more time.
    pub fn begin_settle(&mut self, settle: Time) -> Result<bool, RunError> {
        if !self.wind_down() {
            return Ok(false);
        }
        self.events.push(
            self.now,
            "testbed",
            TestbedEvent::Settle {
                settle_ms: settle.as_millis() as u64,
            },
        )?;
        Ok(true)
    }

    /// Tells every node's roles that the run is ending (super nodes stop mining). Returns
    /// whether the run has work that settles (super nodes mining), so the caller gives the
    /// network time to deliver what is in flight. Nodes are not polled: nothing is sent now.
    pub fn wind_down(&mut self) -> bool {
        for node in &mut self.nodes {
            node.command(self.now, &Command::WindDown);
        }
        crate::node_roles::mines(&self.topo)
    }

    /// Flushes the capture and the event log; returns the capture writer.
    pub fn finish(&mut self) -> Result<Option<W>, RunError> {
        self.events.flush()?;
        match self.capture.take() {
            Some(c) => Ok(Some(c.finish()?)),
            None => Ok(None),
        }
    }

    /// Packets captured so far.
    pub fn captured(&self) -> u64 {
        self.capture.as_ref().map_or(0, |c| c.packets())
    }

    /// A read-only view of the run, for results.
    pub fn view(&self) -> RunView<'_> {
        RunView {
            nodes: &self.nodes,
            segments: &self.segments,
            events: &self.events,
            link_drops: &self.link_drops,
            segment_packets: &self.segment_packets,
            now: self.now,
            floods: self.floods(),
            attacks: self.attack_results(),
            compute: &self.compute,
            charged: &self.charged,
        }
    }

    /// The engine's boundary.
    pub fn boundary(&self) -> &B {
        &self.boundary
    }

    /// The engine's boundary, mutably (the live driver takes the packets leaving it).
    pub fn boundary_mut(&mut self) -> &mut B {
        &mut self.boundary
    }

    /// Time of the earliest scheduled event (a delivery or a node's timer), if any.
    pub fn next_event_at(&self) -> Option<Time> {
        self.queue.next_at()
    }

    /// The topology this network was built from.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Moves the clock forward to `t` (never back): the live driver sets it to the real
    /// elapsed time before handling due events or packets from the kernel.
    pub fn advance_to(&mut self, t: Time) {
        self.now = self.now.max(t);
    }

    /// Puts a packet that an outside member of `segment` sent on that segment at the current
    /// time (captured, link-emulated, delivered like any other).
    pub fn put_from_outside(
        &mut self,
        segment: usize,
        member: MemberId,
        dest: Dest,
        packet: Vec<u8>,
    ) -> Result<(), RunError> {
        self.put_on_segment(segment, member, dest, packet, Sender::Outside)
    }

    /// Puts a packet from `member` on segment `seg`: capture, the boundary (not for packets
    /// an outside member wrote), link emulation, and either a scheduled delivery per receiver
    /// or a counted drop (logged as `fabric.drop`, or counted by the flood that sent it).
    pub(crate) fn put_on_segment(
        &mut self,
        seg: usize,
        member: usize,
        dest: Dest,
        packet: Vec<u8>,
        sender: Sender,
    ) -> Result<(), RunError> {
        let packet = if self.attack_hooks() {
            let p = self.attack_rewrite(sender, packet);
            if !matches!(sender, Sender::Attack(_)) {
                self.attack_tap(seg, &p);
            }
            p
        } else {
            packet
        };
        if let Some(c) = &mut self.capture {
            c.record(seg, self.now, &packet)?;
        }
        if !matches!(sender, Sender::Outside) {
            self.boundary.sent(seg, member, dest, &packet);
        }
        self.segment_packets[seg] += 1;
        if let Dest::Unicast(addr) = dest {
            let t = self.segments[seg].unicast(self.now, member, addr, packet.len());
            return self.carry(seg, member, dest, sender, t, Payload::Own(packet));
        }
        let mut fates = std::mem::take(&mut self.scratch_fates);
        self.segments[seg].transmit(self.now, member, dest, packet.len(), &mut fates);
        let shared = Arc::new(packet);
        let mut r = Ok(());
        for t in fates.drain(..) {
            let p = Payload::Shared(Arc::clone(&shared));
            r = self.carry(seg, member, dest, sender, t, p);
            if r.is_err() {
                break; // the event log failed: the run stops
            }
        }
        self.scratch_fates = fates;
        r
    }

    /// What the segment decided for one receiver of a packet from `member`: a delivery waiting
    /// in its channel's lane, or a counted drop (logged as `fabric.drop`, or counted by the
    /// flood or attack that sent it).
    fn carry(
        &mut self,
        seg: usize,
        member: usize,
        dest: Dest,
        sender: Sender,
        t: Transmission,
        packet: Payload,
    ) -> Result<(), RunError> {
        let Transmission { to, fate, channel } = t;
        let reason = match fate {
            Ok(at) => {
                if let Err(packet) = self.queue.push_lane(at, seg, channel, packet) {
                    let deliver = What::Deliver {
                        segment: seg,
                        member: to,
                        packet,
                    };
                    self.queue.push(at, deliver);
                }
                return Ok(());
            }
            Err(reason) => reason,
        };
        *self
            .link_drops
            .entry((self.segments[seg].name.clone(), reason.as_str()))
            .or_default() += 1;
        let host = match sender {
            Sender::Node(n) => self.nodes[n].name.clone(),
            Sender::Outside => self.boundary.outside_name(seg, member),
            Sender::Attack(id) => {
                self.attack.count_link_drop(id);
                return Ok(());
            }
            Sender::Flood(id) => {
                // Counted, not logged one by one: the end event and results carry it.
                self.flood.count_link_drop(id);
                return Ok(());
            }
        };
        let ev = TestbedEvent::FabricDrop {
            segment: self.segments[seg].name.clone(),
            reason: reason.as_str(),
            next_hop: format!("{dest:?}"),
        };
        self.events.push(self.now, &host, ev)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::path::Path;

    /// A broadcast waits for its receivers as one shared copy of its bytes, not one copy
    /// per receiver (a DHCP broadcast on a 100-host LAN would be 99 copies).
    #[test]
    fn a_broadcast_in_flight_is_one_copy_shared_by_its_receivers() {
        let text = r#"
name = "bcast"
[[segment]]
name = "lan"
subnet = "10.1.0.0/24"
delay = "1ms"
[[host]]
name = "a"
segment = "lan"
address = "10.1.0.10"
[[host]]
name = "b"
segment = "lan"
address = "10.1.0.11"
[[host]]
name = "c"
segment = "lan"
address = "10.1.0.12"
"#;
        let topo = Topology::from_str(text, Path::new("bcast.toml")).expect("topology");
        let events = EventLog::create(None).expect("event log");
        let mut net: Network<std::io::Sink> =
            Network::new(&topo, 1, None, events, None).expect("network");
        let a = topo.node_index("a").expect("a");
        net.start().expect("start");
        let stack = &mut net.nodes[a].ports[0].stack;
        stack.bind_udp(9, 4096).expect("bind");
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 255), 9);
        stack.send_udp(None, 9, to, b"hello all").expect("send");
        net.kick(a).expect("kick");
        let mut copies = Vec::new();
        while let Some(p) = net.queue.pop_due(Time::MAX) {
            if let Popped::Lane { item, .. } = p {
                copies.push(item);
            }
        }
        assert_eq!(copies.len(), 2, "b and c each get the broadcast");
        let shared: Vec<&Arc<Vec<u8>>> = copies
            .iter()
            .filter_map(|p| match p {
                Payload::Shared(bytes) => Some(bytes),
                Payload::Own(_) => None,
            })
            .collect();
        assert_eq!(shared.len(), 2, "both copies are shared");
        assert!(Arc::ptr_eq(shared[0], shared[1]), "one allocation");
        let bytes = copies.pop().map(Payload::into_vec).expect("a copy");
        assert!(bytes.ends_with(b"hello all"));
    }
}
