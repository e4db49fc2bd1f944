//! Drivers own time; roles never do. The virtual-time driver runs a topology as fast as the
//! CPU allows with deterministic results; the live driver runs the same network paced by the
//! real clock, with TUN devices in its own network namespace.

pub mod live;
pub mod virtual_time;

use crate::events::EventLog;
use crate::results;
use crate::topology::Topology;
use anyhow::Context;
use binfm_roles::Time;
use binfm_stack::capture::Capture;
pub use live::run_live;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
pub use virtual_time::VirtualNet;

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
}

/// The default output folder of a topology: `out/<name>/`.
pub fn default_out_dir(topo: &Topology) -> PathBuf {
    Path::new("out").join(&topo.name)
}

/// Runs a topology in virtual time and writes `capture.pcapng`, `events.jsonl` and
/// `results.json` into the output folder. `stop` (set by Ctrl-C) ends the run early; the
/// files are then still complete up to that moment.
pub fn run_virtual(
    topo: &Topology,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> anyhow::Result<RunSummary> {
    let wall_start = Instant::now();
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating output folder {}", opts.out_dir.display()))?;
    let seed = opts.seed.unwrap_or(topo.seed);
    let duration = opts.duration.unwrap_or(topo.duration);
    let names: Vec<String> = topo.segments.iter().map(|s| s.name.clone()).collect();
    let capture = Capture::create(&opts.out_dir.join("capture.pcapng"), &names)?;
    let events_path = opts.out_dir.join("events.jsonl");
    let events = EventLog::create(Some(&events_path))
        .with_context(|| format!("creating {}", events_path.display()))?;
    let mut net = VirtualNet::new(topo, seed, Some(capture), events, Some(&opts.out_dir))?;
    net.start()?;
    let mut interrupted = net.run_until(duration, stop)?;
    if !interrupted {
        interrupted = net.settle(SETTLE, stop)?;
    }
    let packets = net.captured();
    net.finish()?;
    // Wallets (hence hash addresses) derive from the run's seed.
    let mut seeded = topo.clone();
    seeded.seed = seed;
    let results = results::collect(&seeded, seed, &net, interrupted);
    results::write_call_audio(&seeded, &net, &opts.out_dir)
        .with_context(|| format!("writing call audio into {}", opts.out_dir.display()))?;
    results::write_json(&opts.out_dir.join("results.json"), &results)?;
    Ok(RunSummary {
        out_dir: opts.out_dir.clone(),
        seed,
        virtual_time: net.now(),
        wall: wall_start.elapsed(),
        packets,
        events: net.events.records.len(),
        interrupted,
        results,
    })
}
