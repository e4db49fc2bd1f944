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

use super::kernel_host::{self, KernelHosts, ProgramKind};
use super::{RunOptions, RunSummary, SETTLE, Scaffold};
use crate::engine::{Boundary, Network};
use crate::events::EventLog;
use crate::events::TestbedEvent;
use crate::netns::{self, Netns};
use crate::results;
use crate::topology::{Action, KernelAddressing, Topology};
use anyhow::Context;
use binfm_roles::Time;
use binfm_stack::fabric::{Dest, MemberId};
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The node index of a segment's kernel member (the kernel is not a node of the topology).
pub const KERNEL_NODE: usize = usize::MAX;

pub use super::{TUN_MTU, TUN_TX_QUEUE_LEN, tun_builder};

/// At most this many events are handled before the driver looks at the TUNs and signals again.
const MAX_STEPS_PER_TURN: usize = 4096;
/// At most this many packets are read from one TUN per turn (each read is one `read(2)`; the
/// driver reads until the TUN is empty, this bound only lets due events and the other TUNs
/// have their turn during a flood).
const READ_BATCH: usize = 256;

/// A member of a segment that lives outside the engine: the testbed namespace's kernel
/// behind a segment's TUN (`kernel_address`), or a kernel host behind its own TUN.
#[derive(Debug, Clone)]
struct Outside {
    segment: usize,
    member: MemberId,
    /// Its address on the segment (a DHCP kernel host has none until its lease).
    addr: Option<Ipv4Addr>,
    /// Where its packets for other subnets go (a TUN has no link layer, so the kernel's own
    /// next hop is not in the packet).
    gateway: Option<Ipv4Addr>,
    /// The segment's broadcast address (for the segment's kernel: a broadcast reached it
    /// through the mirror when it was sent).
    broadcast: Option<Ipv4Addr>,
    /// The TUN its packets come from and go into.
    device: usize,
    /// Kernel host index, or `None` for a segment's kernel address.
    host: Option<usize>,
    /// A kernel host's DHCP client identifier (to recognise its ACK).
    client_id: Option<Vec<u8>>,
    /// Name in events.
    name: String,
}

/// Where a kernel host is attached and what the tap knows of its address.
#[derive(Debug, Clone)]
pub struct KernelHostLink {
    /// Segment index.
    pub segment: usize,
    /// Its member of the segment.
    pub member: MemberId,
    /// Its address (a DHCP host has none until its lease).
    pub addr: Option<Ipv4Addr>,
    /// Next hop of its packets for other subnets.
    pub gateway: Option<Ipv4Addr>,
    /// Its DHCP client identifier, whose ACK gives it address and gateway.
    pub client_id: Option<Vec<u8>>,
}

/// Live mode's boundary of the engine: the outside members of the segments, the packets
/// waiting to be written into the TUNs, and what the driver has to do for them.
///
/// Devices: device `i < segments` is segment `i`'s TUN in the testbed namespace (the mirror of
/// everything on the segment, and the kernel's interface where the segment declares a
/// `kernel_address`); device `segments + k` is kernel host `k`'s TUN in its own namespace.
#[derive(Debug, Default)]
pub struct Tap {
    segments: usize,
    outside: Vec<Outside>,
    mirror: Vec<(usize, Vec<u8>)>,
    /// Leases seen in ACKs delivered to kernel hosts: (outside index, address, router).
    learned: Vec<(usize, Ipv4Addr, Option<Ipv4Addr>)>,
    /// Scenario steps for kernel hosts, due now.
    steps: Vec<usize>,
}

impl Tap {
    /// A tap over `segments` segments, none with an outside member yet.
    pub fn new(segments: usize) -> Tap {
        Tap {
            segments,
            ..Tap::default()
        }
    }

    fn segment_kernel(&self, segment: usize) -> Option<&Outside> {
        self.outside
            .iter()
            .find(|o| o.segment == segment && o.host.is_none())
    }

    fn find(&self, segment: usize, member: MemberId) -> Option<usize> {
        self.outside
            .iter()
            .position(|o| o.segment == segment && o.member == member)
    }

    /// Declares `member` of `segment` the kernel behind the segment's TUN, holding `addr`;
    /// `broadcast` is the subnet broadcast address.
    pub fn set_kernel(
        &mut self,
        segment: usize,
        member: MemberId,
        addr: Ipv4Addr,
        broadcast: Option<Ipv4Addr>,
    ) {
        self.outside
            .retain(|o| !(o.segment == segment && o.host.is_none()));
        self.outside.push(Outside {
            segment,
            member,
            addr: Some(addr),
            gateway: None,
            broadcast,
            device: segment,
            host: None,
            client_id: None,
            name: "kernel".into(),
        });
    }

    /// Declares a member of a segment kernel host `host` (device `segments + host`).
    pub fn set_kernel_host(&mut self, host: usize, name: &str, link: KernelHostLink) {
        self.outside.retain(|o| o.host != Some(host));
        self.outside.push(Outside {
            segment: link.segment,
            member: link.member,
            addr: link.addr,
            gateway: link.gateway,
            broadcast: None,
            device: self.segments + host,
            host: Some(host),
            client_id: link.client_id,
            name: name.to_owned(),
        });
    }

    /// Where kernel host `host` is attached: (segment, member).
    pub fn kernel_host(&self, host: usize) -> Option<(usize, MemberId)> {
        self.outside
            .iter()
            .find(|o| o.host == Some(host))
            .map(|o| (o.segment, o.member))
    }

    /// Lets the kernel on `segment` reach other subnets through `gateway` (a virtual router's
    /// address on the segment): a packet the kernel writes for an address outside the segment
    /// is then put on the segment toward `gateway`. Without it such packets are ignored.
    pub fn set_kernel_gateway(&mut self, segment: usize, gateway: Ipv4Addr) {
        if let Some(o) = self
            .outside
            .iter_mut()
            .find(|o| o.segment == segment && o.host.is_none())
        {
            o.gateway = Some(gateway);
        }
    }

    /// The gateway set with [`Tap::set_kernel_gateway`] for `segment`.
    pub fn kernel_gateway(&self, segment: usize) -> Option<Ipv4Addr> {
        self.segment_kernel(segment).and_then(|o| o.gateway)
    }

    /// The kernel member of `segment` (behind the segment's TUN), if it has one.
    pub fn kernel_member(&self, segment: usize) -> Option<MemberId> {
        self.segment_kernel(segment).map(|o| o.member)
    }

    /// Whether `member` of `segment` lives outside the engine.
    pub fn is_kernel(&self, segment: usize, member: MemberId) -> bool {
        self.find(segment, member).is_some()
    }

    /// A virtual member put `packet` on `segment` toward `dest`: mirror it now into the
    /// segment's TUN, unless the segment's kernel sent it or it is unicast to that kernel
    /// (that one enters the TUN when link emulation delivers it).
    pub fn sent(&mut self, segment: usize, from: MemberId, dest: Dest, packet: &[u8]) {
        if let Some(k) = self.segment_kernel(segment)
            && (from == k.member || k.addr.is_some_and(|a| dest == Dest::Unicast(a)))
        {
            return;
        }
        self.mirror.push((segment, packet.to_vec()));
    }

    /// Link emulation delivered `packet` to outside member `member` of `segment`: into its
    /// TUN (a broadcast reached the segment's kernel already through the mirror). An ACK for
    /// a kernel host's DHCP client gives that member its address and gateway.
    pub fn delivered(&mut self, segment: usize, member: MemberId, packet: Vec<u8>) {
        let Some(i) = self.find(segment, member) else {
            return;
        };
        let o = &self.outside[i];
        if o.host.is_none() {
            let dst = smoltcp::wire::Ipv4Packet::new_checked(&packet[..]).map(|p| p.dst_addr());
            if let Ok(dst) = dst
                && (dst == Ipv4Addr::BROADCAST || Some(dst) == o.broadcast)
            {
                return;
            }
        } else if let Some(id) = &o.client_id
            && let Some((addr, router)) = super::kernel_host::snoop_ack(&packet, id)
        {
            self.learned.push((i, addr, router));
        }
        self.mirror.push((o.device, packet));
    }

    /// Takes the packets waiting for the TUNs, in order, as (device, packet).
    pub fn drain(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.mirror)
    }
}

impl Boundary for Tap {
    fn is_outside(&self, segment: usize, member: MemberId) -> bool {
        self.is_kernel(segment, member)
    }
    fn delivered(&mut self, segment: usize, member: MemberId, packet: Vec<u8>) {
        Tap::delivered(self, segment, member, packet);
    }
    fn sent(&mut self, segment: usize, from: MemberId, dest: Dest, packet: &[u8]) {
        Tap::sent(self, segment, from, dest, packet);
    }
    fn outside_name(&self, segment: usize, member: MemberId) -> String {
        self.find(segment, member)
            .map_or_else(|| "kernel".into(), |i| self.outside[i].name.clone())
    }
    fn outside_step(&mut self, index: usize) {
        self.steps.push(index);
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

/// Attaches every kernel host of `topo` to its segment (a static host with its address, a
/// DHCP host with none until its lease). Call once, before `start`.
pub fn attach_kernel_hosts<W: Write>(net: &mut Network<W, Tap>, topo: &Topology) {
    for (k, def) in topo.kernel_hosts.iter().enumerate() {
        let (addr, gateway, id) = match def.addressing {
            KernelAddressing::Static { address, gateway } => (Some(address), gateway, None),
            KernelAddressing::Dhcp => (None, None, Some(kernel_host::client_id(&def.name))),
        };
        let member = net.segments[def.segment].add_member(KERNEL_NODE, k + 1, addr);
        apply_kernel_paths(net, k, def.segment, member);
        net.boundary_mut().set_kernel_host(
            k,
            &def.name,
            KernelHostLink {
                segment: def.segment,
                member,
                addr,
                gateway,
                client_id: id,
            },
        );
    }
}

/// Applies the segment's `[[segment.path]]` entries that name kernel host `k` (now its
/// member `member` of segment `seg`).
fn apply_kernel_paths<W: Write>(net: &mut Network<W, Tap>, k: usize, seg: usize, member: MemberId) {
    let paths: Vec<(usize, binfm_stack::netem::LinkParams)> = net.topology().segments[seg]
        .kernel_paths
        .iter()
        .filter(|(kk, _, _)| *kk == k)
        .map(|(_, node, params)| (*node, params.clone()))
        .collect();
    for (node, params) in paths {
        let other = net.nodes[node]
            .ports
            .iter()
            .find(|p| p.segment == seg)
            .map(|p| p.member);
        if let Some(other) = other {
            net.segments[seg].set_path(member, other, params);
        }
    }
}

/// Re-attaches kernel host `k` to segment `seg` (a `move` step): detached from its segment,
/// attached to the new one without an address (its DHCP client asks for one there).
fn move_kernel_host<W: Write>(
    net: &mut Network<W, Tap>,
    topo: &Topology,
    k: usize,
    seg: usize,
) -> anyhow::Result<()> {
    let Some((old_seg, old_member)) = net.boundary().kernel_host(k) else {
        return Ok(());
    };
    net.segments[old_seg].detach(old_member);
    let member = net.segments[seg].add_member(KERNEL_NODE, k + 1, None);
    apply_kernel_paths(net, k, seg, member);
    let name = &topo.kernel_hosts[k].name;
    net.boundary_mut().set_kernel_host(
        k,
        name,
        KernelHostLink {
            segment: seg,
            member,
            addr: None,
            gateway: None,
            client_id: Some(kernel_host::client_id(name)),
        },
    );
    let ev = TestbedEvent::Moved {
        from: net.segments[old_seg].name.clone(),
        to: net.segments[seg].name.clone(),
    };
    net.events.push(net.now(), name, ev)?;
    Ok(())
}

/// Gives kernel hosts the addresses their DHCP ACKs carried (the fabric then delivers
/// unicast to them).
fn apply_leases<W: Write>(net: &mut Network<W, Tap>) -> anyhow::Result<()> {
    let learned = std::mem::take(&mut net.boundary_mut().learned);
    for (i, addr, router) in learned {
        let Some(o) = net.boundary_mut().outside.get_mut(i) else {
            continue;
        };
        o.addr = Some(addr);
        o.gateway = router;
        let (segment, member, name) = (o.segment, o.member, o.name.clone());
        net.segments[segment].set_addr(member, Some(addr));
        let ev = TestbedEvent::KernelLease {
            address: addr,
            router,
            segment: net.segments[segment].name.clone(),
        };
        net.events.push(net.now(), &name, ev)?;
    }
    Ok(())
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
    inject_from_device(net, segment, packet)
}

/// Puts a packet read from TUN `device` on the segment of the outside member behind it. A
/// kernel host's packet is also mirrored into its segment's TUN.
fn inject_from_device<W: Write>(
    net: &mut Network<W, Tap>,
    device: usize,
    packet: Vec<u8>,
) -> anyhow::Result<bool> {
    let Some(o) = net
        .boundary()
        .outside
        .iter()
        .find(|o| o.device == device)
        .cloned()
    else {
        return Ok(false);
    };
    let dst = match smoltcp::wire::Ipv4Packet::new_checked(&packet[..]) {
        Ok(ip) if ip.version() == 4 => ip.dst_addr(),
        _ => return Ok(false),
    };
    let seg = &net.segments[o.segment];
    let dest = if seg.is_broadcast(dst) {
        Dest::Broadcast
    } else if seg.subnet.contains_addr(&dst) {
        Dest::Unicast(dst)
    } else if let Some(gw) = o.gateway {
        Dest::Unicast(gw)
    } else {
        return Ok(false);
    };
    if o.host.is_some() {
        net.boundary_mut().mirror.push((o.segment, packet.clone()));
    }
    net.put_from_outside(o.segment, o.member, dest, packet)?;
    Ok(true)
}

/// One TUN device per segment, in segment order, created inside the namespace.
fn create_tuns(topo: &Topology) -> anyhow::Result<Vec<tun_rs::SyncDevice>> {
    let mut devices = Vec::with_capacity(topo.segments.len());
    for s in &topo.segments {
        let mut b = tun_builder(&s.name);
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
    /// Packets whose write failed (all packets of a device's batch when its
    /// `send_multiple` failed: some of them may have been written).
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
    run_live_with(topo, opts, LiveOptions::default(), announce)
}

/// How the live driver waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveOptions {
    /// Never sleep: poll the TUNs and the clock in a loop (one core at 100%). Waking from
    /// idle costs up to a few ms now and then on a virtual machine; busy polling removes that
    /// tail (see docs/live.md, "Delay fidelity").
    pub busy_poll: bool,
}

/// [`run_live`] with [`LiveOptions`].
pub fn run_live_with(
    topo: &Topology,
    opts: &RunOptions,
    live: LiveOptions,
    announce: &mut dyn FnMut(&str),
) -> anyhow::Result<RunSummary> {
    netns::check_prerequisites()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(live_main(topo, opts, live, announce))
}

async fn live_main(
    topo: &Topology,
    opts: &RunOptions,
    live: LiveOptions,
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

    let (mut hosts, host_devices) = KernelHosts::create(topo, &scaffold.out_dir)?;
    for (d, k) in host_devices.into_iter().zip(&topo.kernel_hosts) {
        let dev = tun_rs::AsyncDevice::new(d)
            .with_context(|| format!("registering kernel host `{}`'s TUN with tokio", k.name))?;
        tuns.push(Arc::new(dev));
    }

    let names: Vec<String> = topo.segments.iter().map(|s| s.name.clone()).collect();
    let mut net = scaffold.network(topo, Tap::new(topo.segments.len()))?;
    // The roles' work takes real time here: nothing is charged on top.
    net.set_compute(crate::topology::compute::ComputeCosts::ZERO);
    attach_kernel(&mut net, topo);
    attach_kernel_hosts(&mut net, topo);

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
    for (k, def) in topo.kernel_hosts.iter().enumerate() {
        announce(&format!(
            "live: kernel host {} is namespace {} (device {}); run programs with `binfm exec {} {} -- CMD`",
            def.name,
            hosts.namespace(k),
            kernel_host::TUN_NAME,
            topo.path.display(),
            def.name,
        ));
    }

    let base = Instant::now();
    // Run time 0 on the wall clock: daemons in kernel hosts log Unix times.
    let unix_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = net.events.push(
        Time::ZERO,
        "testbed",
        TestbedEvent::LiveStart {
            namespace: ns.name().to_owned(),
            segments: names.len() as u64,
            unix_ns: u64::try_from(unix_start.as_nanos()).unwrap_or(u64::MAX),
        },
    );
    let mut counters = LiveCounters::default();
    let outcome = drive(
        &mut net,
        &tuns,
        &stop,
        base,
        duration,
        &mut counters,
        &mut hosts,
        live,
    )
    .await;
    // Programs still running in kernel hosts are stopped, and how each ended is logged.
    let exits = hosts.stop_all(std::time::Duration::from_secs(4)).await;
    for e in exits {
        log_exit(&mut net, &hosts, &e)?;
    }
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
    drop(tuns);
    let hosts_deleted = hosts.delete();
    let deleted = ns.delete().and(hosts_deleted);
    let interrupted = outcome?;
    finished?;
    deleted?;
    net.events.imported = import_kernel_events(topo, &scaffold.out_dir, unix_start, announce);
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
        let flag = Arc::new(Stop::default());
        let base = Instant::now();
        let mut counters = LiveCounters::default();
        let watch = flag.clone();
        let mut hosts = KernelHosts::none();
        let run = drive(
            net,
            &tuns,
            &flag,
            base,
            duration,
            &mut counters,
            &mut hosts,
            LiveOptions::default(),
        );
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

/// The paced loop: runs until `duration` (plus [`SETTLE`] when there are super nodes) of real
/// time has passed; returns whether a signal stopped it. Kernel hosts' DHCP clients start
/// with it; their `exec` and `move` steps are carried out when the engine reaches them.
#[allow(clippy::too_many_arguments)]
async fn drive<W: Write>(
    net: &mut Network<W, Tap>,
    tuns: &[Arc<tun_rs::AsyncDevice>],
    stop: &Stop,
    base: Instant,
    duration: Time,
    counters: &mut LiveCounters,
    hosts: &mut KernelHosts,
    live: LiveOptions,
) -> anyhow::Result<bool> {
    let timer = PreciseTimer::new()?;
    net.start()?;
    for k in 0..hosts.len() {
        if hosts
            .def(k)
            .is_some_and(|d| d.addressing == KernelAddressing::Dhcp)
        {
            start_dhcp(net, hosts, k)?;
        }
    }
    let mut end = duration;
    let mut settling = false;
    let mut reader = TunReader::new(tuns.len());
    let mut writer = TunWriter::new();
    loop {
        if stop.is_set() {
            let now = base.elapsed().max(net.now());
            net.advance_to(now);
            net.events
                .push(now, "testbed", TestbedEvent::LiveSignal {})?;
            return Ok(true);
        }
        apply_leases(net)?;
        let packets = net.boundary_mut().drain();
        if !packets.is_empty() {
            writer.write(tuns, packets, counters).await;
        }
        for index in std::mem::take(&mut net.boundary_mut().steps) {
            kernel_step(net, hosts, index)?;
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
            // Overdue events run at their own times, not at the wake-up time: what they send
            // is scheduled from when it was due, so a late wake-up does not add to every
            // emulated delay that follows.
            let mut steps = 0;
            while steps < MAX_STEPS_PER_TURN && net.step(elapsed)? {
                steps += 1;
            }
            // Let the signal handler run even when events pile up, then take what the
            // kernel wrote meanwhile.
            tokio::task::yield_now().await;
            reader.read(net, tuns, base, counters)?;
            continue;
        }
        // Nothing is due: take what the kernel wrote before waiting.
        if reader.read(net, tuns, base, counters)? > 0 {
            continue;
        }
        if live.busy_poll {
            // Poll instead of sleeping (other tasks run at the yield).
            tokio::task::yield_now().await;
            if let Some(exit) = hosts.try_exit() {
                log_exit(net, hosts, &exit)?;
            }
            continue;
        }
        tokio::select! {
            r = timer.sleep_until(base + next) => r?,
            () = reader.readable(tuns) => {}
            exit = hosts.next_exit() => {
                net.advance_to(base.elapsed());
                log_exit(net, hosts, &exit)?;
            }
            _ = stop.notify.notified() => {}
        }
    }
}

/// Starts kernel host `k`'s DHCP client and logs it.
fn start_dhcp<W: Write>(
    net: &mut Network<W, Tap>,
    hosts: &mut KernelHosts,
    k: usize,
) -> anyhow::Result<()> {
    let pid = hosts.start_dhcp(k)?;
    let Some((segment, _)) = net.boundary().kernel_host(k) else {
        return Ok(());
    };
    let name = hosts.def(k).map_or_else(String::new, |d| d.name.clone());
    let ev = TestbedEvent::KernelDhcp {
        segment: net.segments[segment].name.clone(),
        pid: pid.map(i64::from),
    };
    net.events.push(net.now(), &name, ev)?;
    Ok(())
}

/// Carries out scenario step `index` for a kernel host (`exec` or `move`).
fn kernel_step<W: Write>(
    net: &mut Network<W, Tap>,
    hosts: &mut KernelHosts,
    index: usize,
) -> anyhow::Result<()> {
    let Some(step) = net.topology().scenario.get(index).cloned() else {
        return Ok(());
    };
    match step.action {
        Action::Exec { host, argv } => {
            let name = hosts.def(host).map_or_else(String::new, |d| d.name.clone());
            let command = command_text(&argv);
            let pid = match hosts.exec(index, step.line, host, &argv) {
                Ok((pid, _, _)) => pid,
                Err(e) => {
                    tracing::warn!("exec step on line {}: {e:#}", step.line);
                    None
                }
            };
            let ev = TestbedEvent::ExecStart {
                line: step.line,
                command,
                pid: pid.map(i64::from),
            };
            net.events.push(net.now(), &name, ev)?;
        }
        Action::MoveKernel(k, seg) => {
            let topo = net.topology().clone();
            move_kernel_host(net, &topo, k, seg)?;
            if topo.kernel_hosts[k].addressing == KernelAddressing::Dhcp {
                start_dhcp(net, hosts, k)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// An `exec` step's command as events show it: quoted like a shell would read it back.
fn command_text(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// Logs how a program of an `exec` step ended (a DHCP client's end is in its log file).
fn log_exit<W: Write>(
    net: &mut Network<W, Tap>,
    hosts: &KernelHosts,
    exit: &kernel_host::Exit,
) -> anyhow::Result<()> {
    let ProgramKind::Exec(index) = exit.what else {
        return Ok(());
    };
    let Some(step) = net.topology().scenario.get(index).cloned() else {
        return Ok(());
    };
    let Action::Exec { argv, .. } = &step.action else {
        return Ok(());
    };
    let name = hosts
        .def(exit.host)
        .map_or_else(String::new, |d| d.name.clone());
    let command = command_text(argv);
    let ev = TestbedEvent::ExecEnd {
        line: step.line,
        command,
        exit_code: exit.code.map(i64::from),
        signal: exit.signal.map(i64::from),
        killed_at_end: exit.killed_at_end,
        stdout: format!("exec/{}-{name}.stdout", step.line),
        stderr: format!("exec/{}-{name}.stderr", step.line),
    };
    net.events.push(net.now(), &name, ev)?;
    Ok(())
}

/// Sleeps until a deadline with microsecond precision. tokio's timer works in whole
/// milliseconds and rounds a deadline up, so every emulated delay would end up to 1 ms late;
/// a timerfd wakes within tens of microseconds.
#[derive(Debug)]
struct PreciseTimer {
    fd: tokio::io::unix::AsyncFd<TimerFdRaw>,
}

#[derive(Debug)]
struct TimerFdRaw(nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for TimerFdRaw {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl PreciseTimer {
    fn new() -> anyhow::Result<PreciseTimer> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .context("creating a timerfd")?;
        // `AsyncFd::new` is deprecated for types that may hand out another fd later; the
        // replacement `register` is `unsafe`, which this crate forbids. `TimerFdRaw` owns its
        // fd for its whole life, so the condition `register` documents holds.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(TimerFdRaw(fd))
            .context("registering the timerfd with tokio")?;
        Ok(PreciseTimer { fd })
    }

    async fn sleep_until(&self, deadline: Instant) -> anyhow::Result<()> {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        let now = Instant::now();
        if deadline <= now {
            return Ok(());
        }
        // A zero expiration would disarm the timer.
        let wait = (deadline - now).max(std::time::Duration::from_micros(1));
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(wait)),
                TimerSetTimeFlags::empty(),
            )
            .context("arming the timerfd")?;
        loop {
            let mut guard = self.fd.readable().await.context("waiting on the timerfd")?;
            match guard.get_inner().0.wait() {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(anyhow::anyhow!("reading the timerfd: {e}")),
            }
        }
    }
}

/// Reads what the kernel wrote into the TUNs, straight from their file descriptors (no
/// reader task, no channel): up to [`READ_BATCH`] reads per TUN per call, each packet put on
/// its segment at the time it was read. With offload (see [`tun_builder`]) a read starts with
/// a virtio-net header: tun-rs completes a checksum the kernel left partial and splits a GSO
/// packet (a kernel socket's TSO or UDP GSO send) into the packets it stands for.
struct TunReader {
    /// One read: virtio-net header and packet.
    raw: Vec<u8>,
    /// The packets of one read (several for a GSO packet), and their sizes.
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    /// A TUN whose read failed is not read again (the reader tasks before stopped the same).
    failed: Vec<bool>,
}

impl TunReader {
    fn new(devices: usize) -> TunReader {
        // The first buffer takes a whole read when there is no virtio-net header; the others
        // take segments of a GSO packet, each at most the MTU.
        let mut bufs = vec![vec![0u8; usize::from(TUN_MTU) + 64]; tun_rs::IDEAL_BATCH_SIZE];
        bufs[0] = vec![0u8; 65536];
        TunReader {
            raw: vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65536],
            sizes: vec![0; bufs.len()],
            bufs,
            failed: vec![false; devices],
        }
    }

    /// Reads every TUN until it is empty (or [`READ_BATCH`] reads); returns how many
    /// packets were read.
    fn read<W: Write>(
        &mut self,
        net: &mut Network<W, Tap>,
        tuns: &[Arc<tun_rs::AsyncDevice>],
        base: Instant,
        counters: &mut LiveCounters,
    ) -> anyhow::Result<usize> {
        let mut total = 0;
        for (dev_index, dev) in tuns.iter().enumerate() {
            if self.failed.get(dev_index).copied().unwrap_or(true) {
                continue;
            }
            for _ in 0..READ_BATCH {
                match dev.try_recv_multiple(&mut self.raw, &mut self.bufs, &mut self.sizes, 0) {
                    Ok(n) => {
                        for (buf, &size) in self.bufs.iter().zip(&self.sizes).take(n) {
                            let packet = buf.get(..size).unwrap_or_default().to_vec();
                            inject_now(net, base, dev_index, packet, counters)?;
                        }
                        total += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::InvalidInput
                            || e.kind() == std::io::ErrorKind::Other =>
                    {
                        // A read tun-rs could not take apart (malformed header or GSO
                        // packet): that packet is lost, the device is fine.
                        counters.kernel_ignored += 1;
                        tracing::debug!("reading TUN {dev_index}: {e}; packet dropped");
                    }
                    Err(e) => {
                        tracing::warn!("reading TUN {dev_index}: {e}; not read again");
                        self.failed[dev_index] = true;
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    /// Resolves when a TUN (not failed) may have something to read.
    fn readable<'a>(
        &'a self,
        tuns: &'a [Arc<tun_rs::AsyncDevice>],
    ) -> impl std::future::Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            for (i, dev) in tuns.iter().enumerate() {
                if !self.failed.get(i).copied().unwrap_or(true) && dev.poll_readable(cx).is_ready()
                {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
    }
}

/// Writes the packets waiting for the TUNs: each device's packets (in their order) with one
/// `send_multiple`. With offload (see [`tun_builder`]) tun-rs merges a run of datagrams of one
/// UDP flow of the same size (or consecutive segments of one TCP flow) into one GSO packet,
/// written with one `write(2)` and split again by the kernel, as a NIC's GRO would; every
/// other packet is one write. Packets of different flows may leave in another order.
struct TunWriter {
    gro: tun_rs::GROTable,
    /// Buffers with [`tun_rs::VIRTIO_NET_HDR_LEN`] bytes of headroom, reused.
    bufs: Vec<Vec<u8>>,
}

impl TunWriter {
    fn new() -> TunWriter {
        TunWriter {
            gro: tun_rs::GROTable::default(),
            bufs: Vec::new(),
        }
    }

    async fn write(
        &mut self,
        tuns: &[Arc<tun_rs::AsyncDevice>],
        packets: Vec<(usize, Vec<u8>)>,
        counters: &mut LiveCounters,
    ) {
        const HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;
        let mut devices: Vec<usize> = packets.iter().map(|(d, _)| *d).collect();
        devices.sort_unstable();
        devices.dedup();
        for d in devices {
            let mut n = 0;
            for (_, packet) in packets.iter().filter(|(dd, _)| *dd == d) {
                if self.bufs.len() <= n {
                    self.bufs
                        .push(Vec::with_capacity(HEADROOM + usize::from(TUN_MTU)));
                }
                let buf = &mut self.bufs[n];
                buf.clear();
                buf.resize(HEADROOM, 0);
                buf.extend_from_slice(packet);
                n += 1;
            }
            let Some(dev) = tuns.get(d) else {
                continue;
            };
            match dev
                .send_multiple(&mut self.gro, &mut self.bufs[..n], HEADROOM)
                .await
            {
                Ok(_) => counters.tun_written += n as u64,
                Err(e) => {
                    counters.tun_write_errors += n as u64;
                    tracing::debug!("writing {n} packets into TUN {d}: {e}");
                }
            }
        }
    }
}

fn inject_now<W: Write>(
    net: &mut Network<W, Tap>,
    base: Instant,
    device: usize,
    packet: Vec<u8>,
    counters: &mut LiveCounters,
) -> anyhow::Result<()> {
    net.advance_to(base.elapsed());
    if inject_from_device(net, device, packet)? {
        counters.kernel_injected += 1;
    } else {
        counters.kernel_ignored += 1;
    }
    Ok(())
}

/// The event logs of the kernel hosts' programs (`events` key), in run time and named after
/// their kernel host, for the results. A record from before the run (a daemon's log left from
/// an earlier run) is left out; an unreadable file or line is reported and skipped.
fn import_kernel_events(
    topo: &Topology,
    out_dir: &std::path::Path,
    unix_start: std::time::Duration,
    announce: &mut dyn FnMut(&str),
) -> Vec<crate::events::JsonRecord> {
    let mut out = Vec::new();
    for k in &topo.kernel_hosts {
        let Some(rel) = &k.events else { continue };
        let path = out_dir.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                announce(&format!(
                    "live: kernel host {}: no event log {} ({e}); its calls are not in results.json",
                    k.name,
                    path.display()
                ));
                continue;
            }
        };
        let mut bad = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match crate::events::JsonRecord::from_json(line) {
                Ok(mut r) if r.t >= unix_start => {
                    r.t -= unix_start;
                    r.host = k.name.clone();
                    out.push(r);
                }
                Ok(_) => {}
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            announce(&format!(
                "live: kernel host {}: {bad} lines of {} are not events; skipped",
                k.name,
                path.display()
            ));
        }
    }
    out.sort_by_key(|r| r.t);
    out
}

/// The same topology and seed in virtual time (in memory, no files): what the live run is
/// compared with: the file's all-virtual twin if it has one, else the topology without its
/// kernel hosts.
fn virtual_reference(
    topo: &Topology,
    seed: u64,
    duration: Time,
) -> anyhow::Result<serde_json::Value> {
    let mut topo = match &topo.twin {
        Some(t) => (**t).clone(),
        None => topo.without_kernel_hosts(),
    };
    topo.seed = seed;
    topo.key_master = None;
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
