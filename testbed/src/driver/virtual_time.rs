//! The virtual-time driver: runs the engine as fast as the CPU allows, deterministic for a
//! seed.

use super::{RunOptions, RunSummary, SETTLE, Scaffold};
use crate::engine::Closed;
use crate::topology::Topology;
use std::sync::atomic::AtomicBool;

/// Runs a topology in virtual time and writes `capture.pcapng`, `events.jsonl` and
/// `results.json` into the output folder. `stop` (set by Ctrl-C) ends the run early; the
/// files are then still complete up to that moment.
pub fn run_virtual(
    topo: &Topology,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> anyhow::Result<RunSummary> {
    topo.require_virtual().map_err(anyhow::Error::msg)?;
    let scaffold = Scaffold::new(topo, opts)?;
    let mut net = scaffold.network(topo, Closed)?;
    net.start()?;
    let mut interrupted = net.run_until(scaffold.duration, stop)?;
    if !interrupted {
        interrupted = net.settle(SETTLE, stop)?;
    }
    let packets = net.captured();
    net.finish()?;
    scaffold.complete(topo, net, packets, interrupted, |_| Ok(()))
}
