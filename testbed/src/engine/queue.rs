//! The engine's event queue: events run in (time, order) order, `order` being the order in
//! which they were scheduled, so equal times run in insertion order.
//!
//! Two things keep it cheap with thousands of packets in flight:
//! - lanes: a channel hands out delivery times in sending order (unless its link reorders),
//!   so a channel's deliveries wait in a FIFO and only its front has a place in the heap;
//! - the heap holds small keys (time in nanoseconds and order packed into one `u128`, and
//!   where the event waits), not the events themselves.

use crate::timed::Timed;
use binfm_roles::Time;
use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

/// Where an event in the heap waits.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// In `parked[i]`.
    Parked(u32),
    /// At the front of `lanes[segment][channel]`.
    Lane { segment: u32, channel: u32 },
}

/// A heap entry. `key` is (time in ns << 64 | order); the heap is a max-heap, so the order is
/// reversed to take the earliest first.
#[derive(Debug)]
struct Due {
    key: u128,
    slot: Slot,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// The heap key of an event at `at` scheduled `order`-th. Nanoseconds fit in 64 bits for
/// 584 years of virtual time; beyond that times saturate (and tie by order).
fn key(at: Time, order: u64) -> u128 {
    (u128::from(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)) << 64) | u128::from(order)
}

/// Events in (time, order) order.
#[derive(Debug)]
pub(super) struct EventQueue<T> {
    heap: BinaryHeap<Due>,
    /// Per segment, per channel: deliveries in (time, order) order.
    lanes: Vec<Vec<VecDeque<Timed<T>>>>,
    /// Events that are not in a lane, by slot; `free` lists the empty slots.
    parked: Vec<Option<Timed<T>>>,
    free: Vec<u32>,
    /// The order of the last scheduled event.
    seq: u64,
}

impl<T> EventQueue<T> {
    /// An empty queue for `segments` segments.
    pub(super) fn new(segments: usize) -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            lanes: (0..segments).map(|_| Vec::new()).collect(),
            parked: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// Schedules `item` at `at`.
    pub(super) fn push(&mut self, at: Time, item: T) {
        self.seq += 1;
        let order = self.seq;
        let ev = Timed { at, order, item };
        let i = match self.free.pop() {
            Some(i) => {
                self.parked[i as usize] = Some(ev);
                i
            }
            None => {
                self.parked.push(Some(ev));
                u32::try_from(self.parked.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push(Due {
            key: key(at, order),
            slot: Slot::Parked(i),
        });
    }

    /// Schedules `item`, which `channel` of `segment` carried, at `at`: appended to the
    /// channel's lane unless it is earlier than the lane's last event (a reordering link),
    /// then it is scheduled by itself.
    pub(super) fn push_lane(&mut self, at: Time, segment: usize, channel: usize, item: T) {
        let (Ok(seg32), Ok(ch32)) = (u32::try_from(segment), u32::try_from(channel)) else {
            return self.push(at, item);
        };
        let Some(lanes) = self.lanes.get_mut(segment) else {
            return self.push(at, item);
        };
        if lanes.len() <= channel {
            lanes.resize_with(channel + 1, VecDeque::new);
        }
        let lane = &mut lanes[channel];
        if lane.back().is_some_and(|last| last.at > at) {
            return self.push(at, item);
        }
        self.seq += 1;
        let order = self.seq;
        if lane.is_empty() {
            self.heap.push(Due {
                key: key(at, order),
                slot: Slot::Lane {
                    segment: seg32,
                    channel: ch32,
                },
            });
        }
        lane.push_back(Timed { at, order, item });
    }

    /// Time of the earliest event, if any.
    pub(super) fn next_at(&self) -> Option<Time> {
        let due = self.heap.peek()?;
        match due.slot {
            Slot::Parked(i) => self.parked.get(i as usize)?.as_ref().map(|e| e.at),
            Slot::Lane { segment, channel } => self
                .lanes
                .get(segment as usize)?
                .get(channel as usize)?
                .front()
                .map(|e| e.at),
        }
    }

    /// Takes the earliest event if it is due by `end`.
    pub(super) fn pop_due(&mut self, end: Time) -> Option<Timed<T>> {
        let top = self.heap.peek()?;
        let at_ns = (top.key >> 64) as u64;
        let due = if at_ns < u64::MAX {
            u128::from(at_ns) <= end.as_nanos()
        } else {
            self.next_at().is_some_and(|at| at <= end) // a saturated key: compare the time
        };
        if !due {
            return None;
        }
        let mut top = self.heap.peek_mut()?;
        match top.slot {
            Slot::Parked(i) => {
                PeekMut::pop(top);
                let ev = self.parked.get_mut(i as usize)?.take();
                self.free.push(i);
                ev
            }
            Slot::Lane { segment, channel } => {
                let lane = self
                    .lanes
                    .get_mut(segment as usize)?
                    .get_mut(channel as usize)?;
                let ev = lane.pop_front();
                match lane.front() {
                    // The lane's next event takes its place in the heap (sifted on drop).
                    Some(next) => top.key = key(next.at, next.order),
                    None => {
                        PeekMut::pop(top);
                    }
                }
                ev
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_then_insertion_order_across_lanes_and_parked_events() {
        let ms = Time::from_millis;
        let mut q = EventQueue::new(2);
        q.push_lane(ms(5), 0, 0, 'a');
        q.push(ms(5), 'b');
        q.push_lane(ms(1), 1, 3, 'c');
        q.push_lane(ms(5), 0, 0, 'd');
        q.push_lane(ms(2), 0, 0, 'e'); // earlier than its lane's last: scheduled by itself
        q.push(ms(1), 'f');
        q.push_lane(ms(9), 1, 3, 'g');
        assert_eq!(q.next_at(), Some(ms(1)));
        assert!(q.pop_due(ms(0)).is_none());
        let mut got = Vec::new();
        while let Some(e) = q.pop_due(ms(5)) {
            got.push((e.at, e.item));
        }
        assert_eq!(
            got,
            vec![
                (ms(1), 'c'),
                (ms(1), 'f'),
                (ms(2), 'e'),
                (ms(5), 'a'),
                (ms(5), 'b'),
                (ms(5), 'd')
            ]
        );
        assert_eq!(q.next_at(), Some(ms(9)));
        assert_eq!(q.pop_due(ms(9)).map(|e| e.item), Some('g'));
        assert_eq!(q.next_at(), None);
    }

    #[test]
    fn same_result_as_one_binary_heap_of_every_event() {
        // A reference heap of Timed items against the queue, on a pseudo-random schedule.
        let mut reference = BinaryHeap::new();
        let mut q = EventQueue::new(3);
        let mut x: u64 = 0x1234_5678;
        let mut last = [[0u64; 4]; 3];
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let mut now = 0u64;
        for (order, i) in (1..).zip(0..5000u32) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (seg, ch) = ((x % 3) as usize, ((x >> 8) % 4) as usize);
            // Mostly in-order lane times, sometimes earlier (reordering).
            let at = if x.is_multiple_of(11) {
                now + (x >> 20) % 5
            } else {
                last[seg][ch].max(now) + (x >> 24) % 3
            };
            last[seg][ch] = last[seg][ch].max(at);
            reference.push(Timed {
                at: Time::from_micros(at),
                order,
                item: i,
            });
            if x.is_multiple_of(5) {
                q.push(Time::from_micros(at), i);
            } else {
                q.push_lane(Time::from_micros(at), seg, ch, i);
            }
            if x.is_multiple_of(3) {
                now += 1;
                let end = Time::from_micros(now);
                while reference.peek().is_some_and(|t| t.at <= end) {
                    want.extend(reference.pop().map(|t| t.item));
                }
                while let Some(e) = q.pop_due(end) {
                    got.push(e.item);
                }
            }
        }
        want.extend(std::iter::from_fn(|| reference.pop().map(|t| t.item)));
        got.extend(std::iter::from_fn(|| q.pop_due(Time::MAX).map(|e| e.item)));
        assert_eq!(got, want);
    }
}
