//! The live driver: the same [`Network`] (roles, link emulation, mining, faults) paced by
//! the real clock, with one TUN device per segment inside the testbed's own network namespace
//! `binfm-<topology name>` (see `docs/live.md`).
//!
//! - Pacing: the next event runs when the wall clock reaches its time
//!   (`tokio::time::sleep_until` on an `Instant` taken at the start), so the run's time is the
//!   real elapsed time.
//! - Mirror: every packet put on a segment is written into that segment's TUN, so
//!   `ip netns exec binfm-<name> tshark -i <segment>` shows the live traffic.
//! - Kernel hosts: a segment with `kernel_address` gets that address on its TUN; what the
//!   kernel writes into the TUN is put on the segment by a "kernel" member holding the address,
//!   and packets to that address reach the kernel through the TUN after link emulation.
//! - Cleanup: the namespace (and with it every TUN) is removed on a normal end, an error,
//!   SIGINT, SIGTERM and a panic (unwinding drops the [`Netns`] guard). Only SIGKILL leaves it
//!   behind, and `binfm clean` removes that.

use super::{RunOptions, RunSummary, SETTLE, Scaffold};
use crate::engine::{Boundary, Network};
use crate::events::EventLog;
use crate::events::TestbedEvent;
use crate::netns::{self, Netns};
use crate::results;
use crate::topology::Topology;
use anyhow::Context;
use binfm_roles::Time;
use binfm_stack::fabric::{Dest, MemberId};
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// The node index of a segment's kernel member (the kernel is not a node of the topology).
pub const KERNEL_NODE: usize = usize::MAX;

/// MTU of every TUN device (the emulated segments carry packets up to this size).
pub const TUN_MTU: u16 = 1500;

/// At most this many events are handled before the driver looks at the TUNs and signals again.
const MAX_STEPS_PER_TURN: usize = 4096;

/// Live mode's boundary of the engine: which member of each segment is the kernel, and the
/// packets waiting to be written into the TUNs.
#[derive(Debug, Default)]
pub struct Tap {
    /// Per segment: the kernel member, its address and the subnet broadcast address.
    kernel: Vec<Option<(MemberId, Ipv4Addr, Option<Ipv4Addr>)>>,
    /// Per segment: where the kernel's packets for other subnets go (see
    /// [`Tap::set_kernel_gateway`]).
    gateway: Vec<Option<Ipv4Addr>>,
    mirror: Vec<(usize, Vec<u8>)>,
}

impl Tap {
    /// A tap over `segments` segments, none with a kernel member yet.
    pub fn new(segments: usize) -> Tap {
        Tap {
            kernel: vec![None; segments],
            gateway: vec![None; segments],
            mirror: Vec::new(),
        }
    }

    /// Declares `member` of `segment` the kernel, holding `addr`; `broadcast` is the subnet
    /// broadcast address (a broadcast is mirrored when sent, not again when delivered).
    pub fn set_kernel(
        &mut self,
        segment: usize,
        member: MemberId,
        addr: Ipv4Addr,
        broadcast: Option<Ipv4Addr>,
    ) {
        if let Some(k) = self.kernel.get_mut(segment) {
            *k = Some((member, addr, broadcast));
        }
    }

    /// Lets the kernel on `segment` reach other subnets through `gateway` (a virtual router's
    /// address on the segment): a packet the kernel writes for an address outside the segment
    /// is then put on the segment toward `gateway` (a TUN has no link layer, so the kernel's
    /// own next hop is not in the packet). Without it such packets are ignored.
    pub fn set_kernel_gateway(&mut self, segment: usize, gateway: Ipv4Addr) {
        if let Some(g) = self.gateway.get_mut(segment) {
            *g = Some(gateway);
        }
    }

    /// The gateway set with [`Tap::set_kernel_gateway`] for `segment`.
    pub fn kernel_gateway(&self, segment: usize) -> Option<Ipv4Addr> {
        self.gateway.get(segment).copied().flatten()
    }

    /// The kernel member of `segment`, if it has one.
    pub fn kernel_member(&self, segment: usize) -> Option<MemberId> {
        self.kernel.get(segment).copied().flatten().map(|k| k.0)
    }

    /// Whether `member` of `segment` is the kernel.
    pub fn is_kernel(&self, segment: usize, member: MemberId) -> bool {
        self.kernel_member(segment) == Some(member)
    }

    /// A virtual member put `packet` on `segment` toward `dest`: mirror it now, unless it is
    /// unicast to the kernel (that one enters the TUN when link emulation delivers it).
    pub fn sent(&mut self, segment: usize, from: MemberId, dest: Dest, packet: &[u8]) {
        let kernel = self.kernel.get(segment).copied().flatten();
        if let Some((member, addr, _)) = kernel
            && (from == member || dest == Dest::Unicast(addr))
        {
            return;
        }
        self.mirror.push((segment, packet.to_vec()));
    }

    /// Link emulation delivered `packet` to the kernel member of `segment`. A broadcast was
    /// mirrored when it was sent; anything else goes into the TUN now.
    pub fn delivered(&mut self, segment: usize, packet: Vec<u8>) {
        let Some((_, _, broadcast)) = self.kernel.get(segment).copied().flatten() else {
            return;
        };
        let dst = smoltcp::wire::Ipv4Packet::new_checked(&packet[..]).map(|p| p.dst_addr());
        if let Ok(dst) = dst
            && (dst == Ipv4Addr::BROADCAST || Some(dst) == broadcast)
        {
            return;
        }
        self.mirror.push((segment, packet));
    }

    /// Takes the packets waiting for the TUNs, in order.
    pub fn drain(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.mirror)
    }
}

impl Boundary for Tap {
    fn is_outside(&self, segment: usize, member: MemberId) -> bool {
        self.is_kernel(segment, member)
    }
    fn delivered(&mut self, segment: usize, packet: Vec<u8>) {
        Tap::delivered(self, segment, packet);
    }
    fn sent(&mut self, segment: usize, from: MemberId, dest: Dest, packet: &[u8]) {
        Tap::sent(self, segment, from, dest, packet);
    }
    fn outside_name(&self) -> &'static str {
        "kernel"
    }
}

/// Adds a "kernel" member to every segment that declares a `kernel_address` (it holds that
/// address, so virtual hosts can answer it); the engine's [`Tap`] mirrors every packet put on
/// a segment from then on. Call once, before `start`.
pub fn attach_kernel<W: Write>(net: &mut Network<W, Tap>, topo: &Topology) {
    for (si, def) in topo.segments.iter().enumerate() {
        if let Some(addr) = def.kernel_address {
            let member = net.segments[si].add_member(KERNEL_NODE, 0, Some(addr));
            let broadcast = net.segments[si].subnet.broadcast();
            net.boundary_mut().set_kernel(si, member, addr, broadcast);
        }
    }
}

/// Puts a packet the kernel wrote into `segment`'s TUN on that segment, sent by the kernel
/// member at the current time (captured, link-emulated, delivered like any other). Returns
/// false, doing nothing, when the segment has no kernel member or the packet is not IPv4 to an
/// address of the segment (or its broadcast, or beyond the kernel's gateway).
pub fn inject<W: Write>(
    net: &mut Network<W, Tap>,
    segment: usize,
    packet: Vec<u8>,
) -> anyhow::Result<bool> {
    let Some(member) = net.boundary().kernel_member(segment) else {
        return Ok(false);
    };
    let dst = match smoltcp::wire::Ipv4Packet::new_checked(&packet[..]) {
        Ok(ip) if ip.version() == 4 => ip.dst_addr(),
        _ => return Ok(false),
    };
    let dest = if net.segments[segment].is_broadcast(dst) {
        Dest::Broadcast
    } else if net.segments[segment].subnet.contains_addr(&dst) {
        Dest::Unicast(dst)
    } else if let Some(gw) = net.boundary().kernel_gateway(segment) {
        Dest::Unicast(gw)
    } else {
        return Ok(false);
    };
    net.put_from_outside(segment, member, dest, packet)?;
    Ok(true)
}

/// One TUN device per segment, in segment order, created inside the namespace.
fn create_tuns(topo: &Topology) -> anyhow::Result<Vec<tun_rs::SyncDevice>> {
    let mut devices = Vec::with_capacity(topo.segments.len());
    for s in &topo.segments {
        let mut b = tun_rs::DeviceBuilder::new().name(&s.name).mtu(TUN_MTU);
        if let Some(addr) = s.kernel_address {
            b = b.ipv4(addr, s.subnet.prefix_len(), None);
        }
        let dev = b
            .build_sync()
            .with_context(|| format!("creating TUN device `{}`", s.name))?;
        devices.push(dev);
    }
    Ok(devices)
}

/// Aborts the TUN reader tasks when the run ends, whichever way.
struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP (handlers installed before anything is created).
#[derive(Debug, Default)]
struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Installs the handlers and a task that raises the flag on the first signal.
    fn install() -> anyhow::Result<Arc<Stop>> {
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let stop = Arc::new(Stop::default());
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            s.flag.store(true, Ordering::SeqCst);
            s.notify.notify_one();
        });
        Ok(stop)
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Counters of the TUN side of a run.
#[derive(Debug, Default, Clone)]
pub struct LiveCounters {
    /// Packets written into TUNs.
    pub tun_written: u64,
    /// Writes that failed.
    pub tun_write_errors: u64,
    /// Packets read from TUNs and put on their segment.
    pub kernel_injected: u64,
    /// Packets read from TUNs that could not be put on a segment (no kernel address on the
    /// segment, not IPv4, not for the segment).
    pub kernel_ignored: u64,
}

/// Runs a topology live: real clock, TUN devices in namespace `binfm-<name>`. Writes the same
/// files as [`super::run_virtual`]. `announce` receives one line once the devices are up.
pub fn run_live(
    topo: &Topology,
    opts: &RunOptions,
    announce: &mut dyn FnMut(&str),
) -> anyhow::Result<RunSummary> {
    netns::check_prerequisites()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(live_main(topo, opts, announce))
}

async fn live_main(
    topo: &Topology,
    opts: &RunOptions,
    announce: &mut dyn FnMut(&str),
) -> anyhow::Result<RunSummary> {
    // Signals first: a Ctrl-C during setup still ends in the cleanup below.
    let stop = Stop::install()?;
    let scaffold = Scaffold::new(topo, opts)?;
    let (seed, duration) = (scaffold.seed, scaffold.duration);

    let ns = Netns::create(&netns::namespace_name(&topo.name))?;
    let topo_for_thread = topo.clone();
    let sync_devices = ns.run_inside(move || create_tuns(&topo_for_thread))?;
    let mut tuns = Vec::with_capacity(sync_devices.len());
    for (d, s) in sync_devices.into_iter().zip(&topo.segments) {
        let dev = tun_rs::AsyncDevice::new(d)
            .with_context(|| format!("registering TUN device `{}` with tokio", s.name))?;
        tuns.push(Arc::new(dev));
    }

    let names: Vec<String> = topo.segments.iter().map(|s| s.name.clone()).collect();
    let mut net = scaffold.network(topo, Tap::new(topo.segments.len()))?;
    attach_kernel(&mut net, topo);

    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1024);
    let readers = spawn_readers(&tuns, tx);

    let kernels: Vec<String> = topo
        .segments
        .iter()
        .filter_map(|s| s.kernel_address.map(|a| format!("{}={a}", s.name)))
        .collect();
    announce(&format!(
        "live: namespace {ns} with TUN devices {devs}{k}; watch with `ip netns exec {ns} tshark -i {first}`",
        ns = ns.name(),
        devs = names.join(", "),
        k = if kernels.is_empty() {
            String::new()
        } else {
            format!(" (kernel addresses: {})", kernels.join(", "))
        },
        first = names.first().map_or("SEGMENT", String::as_str),
    ));

    let base = Instant::now();
    let _ = net.events.push(
        Time::ZERO,
        "testbed",
        TestbedEvent::LiveStart {
            namespace: ns.name().to_owned(),
            segments: names.len() as u64,
        },
    );
    let mut counters = LiveCounters::default();
    let outcome = drive(
        &mut net,
        &tuns,
        &mut rx,
        &stop,
        base,
        duration,
        &mut counters,
    )
    .await;
    // Whatever happened, close the files (capture flushed) before the namespace goes.
    let packets = net.captured();
    let _ = net.events.push(
        net.now(),
        "testbed",
        TestbedEvent::LiveEnd {
            tun_written: counters.tun_written,
            tun_write_errors: counters.tun_write_errors,
            kernel_injected: counters.kernel_injected,
            kernel_ignored: counters.kernel_ignored,
        },
    );
    let finished = net.finish();
    drop(readers);
    drop(rx);
    drop(tuns);
    let deleted = ns.delete();
    let interrupted = outcome?;
    finished?;
    deleted?;
    scaffold.complete(topo, net, packets, interrupted, |results| {
        if !interrupted {
            let reference = virtual_reference(topo, seed, duration)?;
            let comparison = compare_with_virtual(results, &reference);
            if let Some(obj) = results.as_object_mut() {
                obj.insert("live_vs_virtual".into(), comparison);
            }
        }
        Ok(())
    })
}

/// Paces `net` on the real clock against TUN devices made elsewhere (one per segment, in
/// segment order; each may live in any namespace, the driver only uses their file
/// descriptors) until `duration` of real time has passed or `stop` is set. For benches and
/// programs embedding live mode; `binfm run --live` uses [`run_live`]. Call
/// [`attach_kernel`] before, not `start` (this does it). Installs no signal
/// handlers: the caller owns cleanup. Returns the TUN counters and whether `stop` ended it.
pub fn pace<W: Write>(
    net: &mut Network<W, Tap>,
    devices: Vec<tun_rs::SyncDevice>,
    duration: Time,
    stop: &AtomicBool,
) -> anyhow::Result<(LiveCounters, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let mut tuns = Vec::with_capacity(devices.len());
        for d in devices {
            tuns.push(Arc::new(
                tun_rs::AsyncDevice::new(d).context("registering a TUN device with tokio")?,
            ));
        }
        let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1024);
        let _readers = spawn_readers(&tuns, tx);
        let flag = Arc::new(Stop::default());
        let base = Instant::now();
        let mut counters = LiveCounters::default();
        let watch = flag.clone();
        let run = drive(net, &tuns, &mut rx, &flag, base, duration, &mut counters);
        let poll_stop = async {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            watch.flag.store(true, Ordering::SeqCst);
            watch.notify.notify_one();
            std::future::pending::<()>().await;
        };
        let interrupted = tokio::select! {
            r = run => r?,
            () = poll_stop => unreachable!(),
        };
        Ok((counters, interrupted))
    })
}

/// One task per TUN: what the kernel writes goes into `tx` as `(segment, packet)`.
fn spawn_readers(tuns: &[Arc<tun_rs::AsyncDevice>], tx: mpsc::Sender<(usize, Vec<u8>)>) -> Readers {
    Readers(
        tuns.iter()
            .enumerate()
            .map(|(seg, dev)| {
                let dev = dev.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = dev.recv(&mut buf).await {
                        let packet = buf.get(..n).unwrap_or_default().to_vec();
                        if tx.send((seg, packet)).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect(),
    )
}

/// The paced loop: runs until `duration` (plus [`SETTLE`] when there are super nodes) of real
/// time has passed; returns whether a signal stopped it.
async fn drive<W: Write>(
    net: &mut Network<W, Tap>,
    tuns: &[Arc<tun_rs::AsyncDevice>],
    rx: &mut mpsc::Receiver<(usize, Vec<u8>)>,
    stop: &Stop,
    base: Instant,
    duration: Time,
    counters: &mut LiveCounters,
) -> anyhow::Result<bool> {
    net.start()?;
    let mut end = duration;
    let mut settling = false;
    loop {
        if stop.is_set() {
            let now = base.elapsed().max(net.now());
            net.advance_to(now);
            net.events
                .push(now, "testbed", TestbedEvent::LiveSignal {})?;
            return Ok(true);
        }
        for (seg, packet) in net.boundary_mut().drain() {
            let Some(dev) = tuns.get(seg) else { continue };
            match dev.send(&packet).await {
                Ok(_) => counters.tun_written += 1,
                Err(e) => {
                    counters.tun_write_errors += 1;
                    tracing::debug!("writing into TUN {seg}: {e}");
                }
            }
        }
        let elapsed = base.elapsed();
        if elapsed >= end {
            net.advance_to(end);
            if settling || !net.begin_settle(SETTLE)? {
                return Ok(false);
            }
            settling = true;
            end += SETTLE;
            continue;
        }
        let next = net.next_event_at().map_or(end, |t| t.min(end));
        if next <= elapsed {
            net.advance_to(elapsed);
            let mut steps = 0;
            while steps < MAX_STEPS_PER_TURN && net.step(elapsed)? {
                steps += 1;
            }
            // Let the readers and the signal handler run even when events pile up.
            tokio::task::yield_now().await;
            if let Ok((seg, packet)) = rx.try_recv() {
                inject_now(net, base, seg, packet, counters)?;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(base + next) => {}
            got = rx.recv() => {
                if let Some((seg, packet)) = got {
                    inject_now(net, base, seg, packet, counters)?;
                }
            }
            _ = stop.notify.notified() => {}
        }
    }
}

fn inject_now<W: Write>(
    net: &mut Network<W, Tap>,
    base: Instant,
    seg: usize,
    packet: Vec<u8>,
    counters: &mut LiveCounters,
) -> anyhow::Result<()> {
    net.advance_to(base.elapsed());
    if inject(net, seg, packet)? {
        counters.kernel_injected += 1;
    } else {
        counters.kernel_ignored += 1;
    }
    Ok(())
}

/// The same topology and seed in virtual time (in memory, no files): what the live run is
/// compared with.
fn virtual_reference(
    topo: &Topology,
    seed: u64,
    duration: Time,
) -> anyhow::Result<serde_json::Value> {
    let mut topo = topo.clone();
    topo.seed = seed;
    for n in &mut topo.nodes {
        if let Some(sn) = &mut n.super_node {
            sn.data_dir = None; // the reference run must not touch the live run's block logs
        }
    }
    let mut net: Network<std::io::Sink> =
        Network::new(&topo, seed, None, EventLog::create(None)?, None)?;
    net.start()?;
    let never = std::sync::atomic::AtomicBool::new(false);
    net.run_until(duration, &never)?;
    net.settle(super::SETTLE, &never)?;
    Ok(results::collect(&topo, seed, &net.view(), false))
}

/// The paper's three figures, live against virtual: each value, the ratio, and whether it
/// is within 5% (the live run adds real scheduling and DH compute time).
fn compare_with_virtual(
    live: &serde_json::Value,
    reference: &serde_json::Value,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let mut all = true;
    // The figures sit under the name of the model that ran ("binfm" or "vertical").
    let model = live["model"].as_str().unwrap_or("binfm");
    for key in ["pre_call_ms", "mid_call_ms", "rekey_ms"] {
        let l = live[model][key].as_f64();
        let v = reference[model][key].as_f64();
        let ratio = match (l, v) {
            (Some(l), Some(v)) if v > 0.0 => Some(l / v),
            _ => None,
        };
        let within = ratio.is_some_and(|r| (r - 1.0).abs() <= 0.05);
        all &= within || (l.is_none() && v.is_none());
        out.insert(
            key.into(),
            serde_json::json!({ "live": l, "virtual": v, "ratio": ratio, "within_5pct": within }),
        );
    }
    out.insert("all_within_5pct".into(), serde_json::Value::Bool(all));
    serde_json::Value::Object(out)
}
