//! Drivers own time; roles never do. The virtual-time driver runs a topology as fast as the
//! CPU allows with deterministic results; the live driver runs the same network paced by the
//! real clock, with TUN devices in its own network namespace.

mod kernel_host;

/// MTU of every TUN device of a live run (the emulated segments carry packets up to this size).
pub const TUN_MTU: u16 = 1500;
/// Queue length of every TUN device of a live run (`txqueuelen`; Linux's default is 500):
/// packets the kernel sends into a TUN wait there until the driver reads them, and a burst
/// larger than the queue is dropped. Set on the device inside its namespace, at creation.
pub const TUN_TX_QUEUE_LEN: u32 = 8192;

/// How every TUN device of a live run is built (segment TUNs, kernel hosts' TUNs): named
/// `name`, [`TUN_MTU`], [`TUN_TX_QUEUE_LEN`], and offload on (`IFF_VNET_HDR`: the driver reads
/// and writes with a virtio-net header, so it can write a run of same-size datagrams of one
/// flow as one GSO packet; see `live::TunWriter`). Build it inside the device's namespace.
pub fn tun_builder(name: &str) -> tun_rs::DeviceBuilder {
    tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(TUN_MTU)
        .with(|b| {
            b.tx_queue_len(TUN_TX_QUEUE_LEN).offload(true);
        })
}
pub use kernel_host::{
    client_id as kernel_host_client_id, namespace_name as kernel_host_namespace,
};
pub mod live;
mod virtual_time;

use crate::engine::{Boundary, Network};
use crate::events::EventLog;
use crate::results;
use crate::topology::Topology;
use anyhow::Context;
use binfm_roles::Time;
use binfm_stack::capture::Capture;
pub use live::{LiveOptions, run_live, run_live_with};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
pub use virtual_time::run_virtual;

/// After the run's duration, SNs stop mining and the network gets this long to deliver the
/// blocks in flight, so that the final chain tips of all SNs can be compared.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// Overrides the topology's seed.
    pub seed: Option<u64>,
    /// Overrides the topology's duration.
    pub duration: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Output folder.
    pub out_dir: PathBuf,
    /// Seed used.
    pub seed: u64,
    /// Virtual time reached.
    pub virtual_time: Time,
    /// Wall-clock time taken.
    pub wall: Duration,
    /// Packets in the capture.
    pub packets: u64,
    /// Events written.
    pub events: usize,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// What `results.json` holds.
    pub results: serde_json::Value,
    /// Every event of the run, typed (what `events.jsonl` holds).
    pub records: Vec<crate::events::Record>,
}

/// Writes `timing.json` into a finished run's output folder: what the run cost this
/// machine, kept apart from the deterministic `results.json`: `wall_s` (the run's wall
/// time), `process_cpu_s` and `peak_resident_bytes` (this process's CPU time and peak RSS,
/// `VmHWM`, so far: everything `binfm run` did), with `virtual_s`, `packets`, `events` and
/// `interrupted` to say what that cost bought.
pub fn write_timing(s: &RunSummary) -> anyhow::Result<PathBuf> {
    let path = s.out_dir.join("timing.json");
    let v = serde_json::json!({
        "wall_s": s.wall.as_secs_f64(),
        "process_cpu_s": crate::procstat::cpu_seconds(),
        "peak_resident_bytes": crate::procstat::peak_resident_bytes(),
        "virtual_s": s.virtual_time.as_secs_f64(),
        "packets": s.packets,
        "events": s.events,
        "interrupted": s.interrupted,
    });
    crate::results::write_json(&path, &v)?;
    Ok(path)
}

/// The default output folder of a topology: `out/<name>/`.
pub fn default_out_dir(topo: &Topology) -> PathBuf {
    Path::new("out").join(&topo.name)
}

/// The writer of a run's capture file.
pub type CaptureFile = BufWriter<File>;

/// What both drivers set up before a run and write after it: the output folder, the capture,
/// the event log and the network; then results.json and the call audio.
#[derive(Debug)]
pub(crate) struct Scaffold {
    /// Output folder.
    pub out_dir: PathBuf,
    /// The run's seed (the file's, or the option's).
    pub seed: u64,
    /// Time to run.
    pub duration: Time,
    wall_start: Instant,
}

impl Scaffold {
    /// Creates the output folder.
    pub fn new(topo: &Topology, opts: &RunOptions) -> anyhow::Result<Scaffold> {
        let wall_start = Instant::now();
        std::fs::create_dir_all(&opts.out_dir)
            .with_context(|| format!("creating output folder {}", opts.out_dir.display()))?;
        Ok(Scaffold {
            out_dir: opts.out_dir.clone(),
            seed: opts.seed.unwrap_or(topo.seed),
            duration: opts.duration.unwrap_or(topo.duration),
            wall_start,
        })
    }

    /// The network, writing `capture.pcapng` and `events.jsonl` into the output folder.
    pub fn network<B: Boundary>(
        &self,
        topo: &Topology,
        boundary: B,
    ) -> anyhow::Result<Network<CaptureFile, B>> {
        let names: Vec<String> = topo.segments.iter().map(|s| s.name.clone()).collect();
        let capture = Capture::create(&self.out_dir.join("capture.pcapng"), &names)?;
        let events_path = self.out_dir.join("events.jsonl");
        let events = EventLog::create(Some(&events_path))
            .with_context(|| format!("creating {}", events_path.display()))?;
        Network::with_boundary(
            topo,
            self.seed,
            Some(capture),
            events,
            Some(&self.out_dir),
            boundary,
        )
    }

    /// Writes `results.json` (with what `extend` adds) and the call audio of a finished run
    /// whose capture and event log are closed. `packets` is what the capture holds.
    pub fn complete<B: Boundary>(
        &self,
        topo: &Topology,
        mut net: Network<CaptureFile, B>,
        packets: u64,
        interrupted: bool,
        extend: impl FnOnce(&mut serde_json::Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<RunSummary> {
        // Wallets (hence hash addresses) derive from the run's seed.
        let mut seeded = topo.clone();
        seeded.seed = self.seed;
        let view = net.view();
        let mut results = results::collect(&seeded, self.seed, &view, interrupted);
        extend(&mut results)?;
        results::write_call_audio(&seeded, &view, &self.out_dir)
            .with_context(|| format!("writing call audio into {}", self.out_dir.display()))?;
        results::write_json(&self.out_dir.join("results.json"), &results)?;
        drop(view);
        Ok(RunSummary {
            out_dir: self.out_dir.clone(),
            seed: self.seed,
            virtual_time: net.now(),
            wall: self.wall_start.elapsed(),
            packets,
            events: net.events.records.len(),
            interrupted,
            results,
            records: std::mem::take(&mut net.events.records),
        })
    }
}
