//! Bounded reassembly of blocks sent as [`BlockPart`]s (a block is bigger than a datagram).
//!
//! Peers are not trusted to be honest or finished: at most `max_blocks_in_flight` blocks are
//! held (the oldest is evicted for a new one), none over `max_block_bytes`, and a block not
//! complete within `timeout` of its first part is dropped. Every drop is counted in
//! [`ReassemblyStats`]. Recently completed hashes are remembered so that the same block
//! flooded by a second peer is not reassembled twice.
//!
//! Sans-IO: `now` comes with every call.

use std::collections::VecDeque;
use std::time::Duration;

use binfm_stack::wire::binfm::{BlockPart, MAX_PART_DATA};

use crate::Time;

/// Completed block hashes remembered to ignore late or duplicate parts.
pub const RECENT_COMPLETED: usize = 64;

/// What the reassembler did, cumulatively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Blocks completed and returned.
    pub completed: u64,
    /// Parts already held (same block, same index): ignored.
    pub duplicate_parts: u64,
    /// Parts of a block completed recently: ignored.
    pub late_parts: u64,
    /// Blocks dropped unfinished because `timeout` passed.
    pub expired: u64,
    /// Blocks dropped unfinished to make room for a newer one.
    pub evicted: u64,
    /// Blocks (or parts announcing them) refused for exceeding `max_block_bytes`.
    pub oversize: u64,
    /// Parts whose `parts` count disagrees with earlier parts of the same block: ignored.
    pub inconsistent: u64,
}

#[derive(Debug)]
struct Pending {
    hash: [u8; 32],
    first_seen: Time,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

/// Reassembles blocks from their parts, within fixed bounds.
#[derive(Debug)]
pub struct Reassembler {
    max_blocks: usize,
    max_block_bytes: usize,
    timeout: Duration,
    /// In order of first part, oldest first.
    pending: VecDeque<Pending>,
    recent: VecDeque<[u8; 32]>,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// `max_blocks_in_flight` is at least 1.
    pub fn new(max_blocks_in_flight: usize, max_block_bytes: usize, timeout: Duration) -> Self {
        Reassembler {
            max_blocks: max_blocks_in_flight.max(1),
            max_block_bytes,
            timeout,
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Blocks currently incomplete.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Most blocks held incomplete at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_blocks
    }

    /// Bytes of block data held in incomplete blocks (at most
    /// `max_in_flight × max_block_bytes`).
    pub fn bytes_held(&self) -> usize {
        self.pending.iter().map(|p| p.bytes).sum()
    }

    /// Largest block accepted, in bytes.
    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }

    /// When the oldest incomplete block expires, for the role's `poll_timeout`.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.pending.front().map(|p| p.first_seen + self.timeout)
    }

    /// Drops blocks whose timeout has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(front) = self.pending.front() {
            if now < front.first_seen + self.timeout {
                break;
            }
            self.pending.pop_front();
            self.stats.expired += 1;
        }
    }

    /// Takes one part; returns the whole block's bytes when this part completes it.
    pub fn push(&mut self, now: Time, part: &BlockPart) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        if self.recent.contains(&part.block_hash) {
            self.stats.late_parts += 1;
            return None;
        }
        let parts = usize::from(part.parts);
        let index = usize::from(part.part);
        // An honest sender fills every part but the last, so more parts than
        // max_block_bytes needs means an oversize block; refusing here also bounds the
        // per-block index vector.
        if index >= parts
            || parts > self.max_block_bytes.div_ceil(MAX_PART_DATA).max(1)
            || part.data.len() > MAX_PART_DATA
        {
            self.stats.oversize += 1;
            return None;
        }
        let pos = match self.pending.iter().position(|p| p.hash == part.block_hash) {
            Some(pos) => pos,
            None => {
                if self.pending.len() >= self.max_blocks {
                    self.pending.pop_front();
                    self.stats.evicted += 1;
                }
                self.pending.push_back(Pending {
                    hash: part.block_hash,
                    first_seen: now,
                    parts: vec![None; parts],
                    received: 0,
                    bytes: 0,
                });
                self.pending.len() - 1
            }
        };
        let entry = self.pending.get_mut(pos)?;
        if entry.parts.len() != parts {
            self.stats.inconsistent += 1;
            return None;
        }
        let slot = entry.parts.get_mut(index)?;
        if slot.is_some() {
            self.stats.duplicate_parts += 1;
            return None;
        }
        if entry.bytes + part.data.len() > self.max_block_bytes {
            self.pending.remove(pos);
            self.stats.oversize += 1;
            return None;
        }
        *slot = Some(part.data.clone());
        entry.received += 1;
        entry.bytes += part.data.len();
        if entry.received < parts {
            return None;
        }
        let done = self.pending.remove(pos)?;
        let mut block = Vec::with_capacity(done.bytes);
        for data in done.parts.into_iter().flatten() {
            block.extend_from_slice(&data);
        }
        if self.recent.len() >= RECENT_COMPLETED {
            self.recent.pop_front();
        }
        self.recent.push_back(done.hash);
        self.stats.completed += 1;
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binfm_stack::wire::binfm::{Message, split_block};

    fn parts_of(hash: u8, bytes: &[u8]) -> Vec<BlockPart> {
        split_block([hash; 32], bytes)
            .expect("fits")
            .into_iter()
            .filter_map(|m| match m {
                Message::BlockPart(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn block(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7) as u8).collect()
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        let mut r = Reassembler::new(4, 100_000, T);
        let bytes = block(3000);
        let mut parts = parts_of(1, &bytes);
        parts.reverse();
        let now = Duration::ZERO;
        assert_eq!(r.push(now, &parts[0]), None);
        assert_eq!(r.push(now, &parts[0]), None);
        assert_eq!(r.push(now, &parts[1]), None);
        assert_eq!(r.push(now, &parts[2]), Some(bytes));
        assert_eq!(r.in_flight(), 0);
        // The same block flooded again by another peer is not returned twice.
        assert_eq!(r.push(now, &parts[0]), None);
        let s = r.stats();
        assert_eq!((s.completed, s.duplicate_parts, s.late_parts), (1, 1, 1));
    }

    #[test]
    fn single_part_and_empty_blocks() {
        let mut r = Reassembler::new(4, 100_000, T);
        let one = parts_of(2, &block(10));
        assert_eq!(r.push(Duration::ZERO, &one[0]), Some(block(10)));
        let empty = parts_of(3, &[]);
        assert_eq!(r.push(Duration::ZERO, &empty[0]), Some(Vec::new()));
    }

    #[test]
    fn expires_unfinished_blocks() {
        let mut r = Reassembler::new(4, 100_000, T);
        let parts = parts_of(1, &block(2000));
        assert_eq!(r.push(Duration::ZERO, &parts[0]), None);
        assert_eq!(r.poll_timeout(), Some(T));
        r.handle_timeout(T);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.stats().expired, 1);
        // The second part alone now starts a new, incomplete block.
        assert_eq!(r.push(T, &parts[1]), None);
        assert_eq!(r.in_flight(), 1);
    }

    #[test]
    fn evicts_oldest_when_full() {
        let mut r = Reassembler::new(2, 100_000, T);
        let a = parts_of(1, &block(2000));
        let b = parts_of(2, &block(2000));
        let c = parts_of(3, &block(2000));
        let t = Duration::from_millis;
        r.push(t(0), &a[0]);
        r.push(t(1), &b[0]);
        r.push(t(2), &c[0]);
        assert_eq!(r.stats().evicted, 1);
        assert_eq!(r.push(t(3), &a[1]), None); // a was evicted
        assert_eq!(r.stats().evicted, 2); // and a's restart evicted b
        assert_eq!(r.push(t(4), &c[1]), Some(block(2000)));
    }

    #[test]
    fn refuses_oversize_and_inconsistent() {
        let mut r = Reassembler::new(4, 2000, T);
        let big = parts_of(1, &block(3000)); // 3 parts > ceil(2000/1200) = 2
        assert_eq!(r.push(Duration::ZERO, &big[0]), None);
        assert_eq!(r.stats().oversize, 1);
        assert_eq!(r.in_flight(), 0);
        // Two parts, but more bytes than allowed in total.
        let mut p0 = BlockPart {
            block_hash: [5; 32],
            part: 0,
            parts: 2,
            data: vec![0; 1200],
        };
        assert_eq!(r.push(Duration::ZERO, &p0), None);
        p0.part = 1;
        assert_eq!(r.push(Duration::ZERO, &p0), None);
        assert_eq!(r.stats().oversize, 2);
        assert_eq!(r.in_flight(), 0);
        // Disagreeing part counts.
        let q = BlockPart {
            block_hash: [6; 32],
            part: 0,
            parts: 2,
            data: vec![1],
        };
        r.push(Duration::ZERO, &q);
        let q2 = BlockPart { parts: 1, ..q };
        assert_eq!(r.push(Duration::ZERO, &q2), None);
        assert_eq!(r.stats().inconsistent, 1);
    }
}
