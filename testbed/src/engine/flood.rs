//! The `flood` scenario step in the virtual-time driver: the flood source is one extra
//! member of the target's segment that holds every spoofed address, sends one datagram per
//! scheduled tick and absorbs (counts) what comes back. Packets and counts: [`crate::flood`].

use super::{Network, RunError, Sender, What};
use crate::events::TestbedEvent;
use crate::flood::{FLOOD_NODE, FloodGen, FloodStats};
use crate::topology::flood_step::{self, FloodKind, FloodSpec};
use binfm_roles::Time;
use binfm_stack::fabric::Dest;
use std::io::Write;
use std::net::SocketAddrV4;

/// One flood step.
#[derive(Debug)]
pub(super) struct FloodRun {
    target: String,
    segment: usize,
    member: usize,
    dest: Dest,
    start: Time,
    next: u64,
    source: FloodGen,
    stats: FloodStats,
}

/// Every flood of a run, and the flood source member of each segment flooded.
#[derive(Debug, Default)]
pub(super) struct Floods {
    runs: Vec<FloodRun>,
    /// (segment, member) of flood sources.
    members: Vec<(usize, usize)>,
}

impl Floods {
    /// Link emulation dropped a datagram of flood `id`.
    pub(super) fn count_link_drop(&mut self, id: usize) {
        if let Some(r) = self.runs.get_mut(id) {
            r.stats.link_dropped += 1;
        }
    }

    fn run_of_member(&mut self, segment: usize, member: usize) -> Option<&mut FloodRun> {
        self.runs
            .iter_mut()
            .rev()
            .find(|r| r.segment == segment && r.member == member)
    }

    /// Whether `member` of `segment` is a flood source.
    #[inline]
    pub(super) fn is_member(&self, segment: usize, member: usize) -> bool {
        self.members.contains(&(segment, member))
    }

    /// A packet delivered to a flood source (an answer to a spoofed address): counted.
    pub(super) fn absorb(&mut self, segment: usize, member: usize, len: usize) {
        if let Some(r) = self.run_of_member(segment, member) {
            r.stats.replies += 1;
            r.stats.reply_bytes += len as u64;
        }
    }
}

impl<W: Write, B: super::Boundary> Network<W, B> {
    /// Starts the flood of scenario step `index` now.
    pub(super) fn start_flood(&mut self, index: usize, spec: &FloodSpec) -> Result<(), RunError> {
        let (segment, target_ip, sources) =
            flood_step::sources(&self.topo.segments, &self.topo.nodes, spec.target)
                .map_err(RunError::Flood)?;
        let member = match self
            .flood
            .members
            .iter()
            .find(|(s, _)| *s == segment)
            .map(|(_, m)| *m)
        {
            Some(m) => m,
            None => {
                let m = self.segments[segment].add_member(FLOOD_NODE, 0, None);
                self.flood.members.push((segment, m));
                m
            }
        };
        for &a in &sources {
            self.segments[segment].add_alias(member, a);
        }
        let seed = self.topo.seed ^ (index as u64 + 1).wrapping_mul(0xf100_d5ee_d000_0001);
        let target = SocketAddrV4::new(target_ip, binfm_stack::wire::ports::SN);
        let planned = spec.packets();
        let ev = TestbedEvent::Flood {
            target: self.topo.nodes[spec.target].name.clone(),
            rate: spec.rate,
            duration_s: spec.duration.as_secs_f64(),
            kind: spec.kind.as_str(),
            packets: planned,
            sources: sources.len(),
            segment: self.segments[segment].name.clone(),
        };
        self.events.push(self.now, "testbed", ev)?;
        let id = self.flood.runs.len();
        self.flood.runs.push(FloodRun {
            target: self.topo.nodes[spec.target].name.clone(),
            segment,
            member,
            dest: Dest::Unicast(target_ip),
            start: self.now,
            next: 0,
            source: FloodGen::new(spec.clone(), target, sources, seed),
            stats: FloodStats {
                planned,
                ..FloodStats::default()
            },
        });
        self.schedule(self.now, What::Flood { id });
        Ok(())
    }

    /// Sends the flood's next datagram and schedules the one after it (or reports the end).
    pub(super) fn flood_tick(&mut self, id: usize) -> Result<(), RunError> {
        let Some(run) = self.flood.runs.get_mut(id) else {
            return Ok(());
        };
        let k = run.next;
        run.next += 1;
        let (kind, packet) = run.source.packet(k);
        let (seg, member, dest) = (run.segment, run.member, run.dest);
        run.stats.sent += 1;
        run.stats.bytes += packet.len() as u64;
        match kind {
            FloodKind::UnsignedTx => run.stats.unsigned_tx += 1,
            FloodKind::UnsignedQuery => run.stats.unsigned_query += 1,
            _ => run.stats.malformed += 1,
        }
        let done = run.next >= run.stats.planned;
        let next_at = run.start + run.source.spec().offset(run.next);

        self.put_on_segment(seg, member, dest, packet, Sender::Flood(id))?;
        if !done {
            self.schedule(next_at, What::Flood { id });
        } else if let Some(r) = self.flood.runs.get(id) {
            let s = r.stats;
            let ev = TestbedEvent::FloodEnd {
                target: r.target.clone(),
                sent: s.sent,
                malformed: s.malformed,
                unsigned_tx: s.unsigned_tx,
                unsigned_query: s.unsigned_query,
                bytes: s.bytes,
                link_dropped: s.link_dropped,
                replies_so_far: s.replies,
            };
            self.events.push(self.now, "testbed", ev)?;
        }
        Ok(())
    }

    /// Every flood of the run so far: (target, step, counts).
    pub fn floods(&self) -> Vec<(String, FloodSpec, FloodStats)> {
        self.flood
            .runs
            .iter()
            .map(|r| (r.target.clone(), r.source.spec().clone(), r.stats))
            .collect()
    }
}
