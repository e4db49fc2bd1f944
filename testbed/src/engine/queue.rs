//! The engine's event queue: events run in (time, order) order, `order` being the order in
//! which they were scheduled, so equal times run in insertion order.
//!
//! Two things keep it cheap with thousands of packets in flight:
//! - lanes: a channel hands out delivery times in sending order (unless its link reorders),
//!   so a channel's deliveries wait in a FIFO and only its front has a place in the heap; a
//!   lane entry is just the time, the order and the payload (the channel says who receives);
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

/// The heap key of an event at `at_ns` scheduled `order`-th.
#[inline]
fn key(at_ns: u64, order: u64) -> u128 {
    (u128::from(at_ns) << 64) | u128::from(order)
}

/// Nanoseconds of `at`, if they fit in 64 bits (584 years of virtual time); later times
/// saturate (and tie by order).
#[inline]
fn nanos(at: Time) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

/// A delivery waiting in a lane.
#[derive(Debug)]
struct LaneEntry<P> {
    at_ns: u64,
    order: u64,
    item: P,
}

/// What [`EventQueue::pop_due`] took.
#[derive(Debug)]
pub(super) enum Popped<T, P> {
    /// A scheduled event.
    Event(Timed<T>),
    /// A delivery that `channel` of `segment` carried.
    Lane {
        at: Time,
        segment: usize,
        channel: usize,
        item: P,
    },
}

/// Events (`T`) and per-channel deliveries (`P`) in (time, order) order.
#[derive(Debug)]
pub(super) struct EventQueue<T, P> {
    heap: BinaryHeap<Due>,
    /// Per segment, per channel: deliveries in (time, order) order.
    lanes: Vec<Vec<VecDeque<LaneEntry<P>>>>,
    /// Events that are not in a lane, by slot; `free` lists the empty slots.
    parked: Vec<Option<Timed<T>>>,
    free: Vec<u32>,
    /// The order of the last scheduled event.
    seq: u64,
}

impl<T, P> EventQueue<T, P> {
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
            key: key(nanos(at), order),
            slot: Slot::Parked(i),
        });
    }

    /// Schedules `item`, which `channel` of `segment` carried, at `at`: appended to the
    /// channel's lane. Gives `item` back when it cannot wait there (it is earlier than the
    /// lane's last entry: a reordering link; a time beyond 584 years; a segment the queue was
    /// not made for; an index beyond 32 bits): the caller then schedules it by itself with
    /// [`EventQueue::push`].
    #[inline]
    pub(super) fn push_lane(
        &mut self,
        at: Time,
        segment: usize,
        channel: usize,
        item: P,
    ) -> Result<(), P> {
        let at_ns = nanos(at);
        let (Ok(seg32), Ok(ch32), true) = (
            u32::try_from(segment),
            u32::try_from(channel),
            at_ns < u64::MAX,
        ) else {
            return Err(item);
        };
        let Some(lanes) = self.lanes.get_mut(segment) else {
            return Err(item);
        };
        if lanes.len() <= channel {
            lanes.resize_with(channel + 1, VecDeque::new);
        }
        let lane = &mut lanes[channel];
        match lane.back() {
            Some(last) if last.at_ns > at_ns => return Err(item),
            Some(_) => {}
            None => self.heap.push(Due {
                key: key(at_ns, self.seq + 1),
                slot: Slot::Lane {
                    segment: seg32,
                    channel: ch32,
                },
            }),
        }
        self.seq += 1;
        lane.push_back(LaneEntry {
            at_ns,
            order: self.seq,
            item,
        });
        Ok(())
    }

    /// Time of the earliest event, if any.
    pub(super) fn next_at(&self) -> Option<Time> {
        let due = self.heap.peek()?;
        match due.slot {
            Slot::Parked(i) => self.parked.get(i as usize)?.as_ref().map(|e| e.at),
            Slot::Lane { .. } => Some(Time::from_nanos((due.key >> 64) as u64)),
        }
    }

    /// Takes the earliest event if it is due by `end`.
    #[inline]
    pub(super) fn pop_due(&mut self, end: Time) -> Option<Popped<T, P>> {
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
                ev.map(Popped::Event)
            }
            Slot::Lane { segment, channel } => {
                let lane = self
                    .lanes
                    .get_mut(segment as usize)?
                    .get_mut(channel as usize)?;
                let entry = lane.pop_front();
                match lane.front() {
                    // The lane's next entry takes its place in the heap (sifted on drop).
                    Some(next) => top.key = key(next.at_ns, next.order),
                    None => {
                        PeekMut::pop(top);
                    }
                }
                entry.map(|e| Popped::Lane {
                    at: Time::from_nanos(e.at_ns),
                    segment: segment as usize,
                    channel: channel as usize,
                    item: e.item,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes into a lane, or by itself when the lane refuses.
    fn lane(q: &mut EventQueue<char, char>, at: Time, seg: usize, ch: usize, item: char) {
        if let Err(item) = q.push_lane(at, seg, ch, item) {
            q.push(at, item);
        }
    }

    fn item<T>(p: Popped<T, T>) -> (Time, T) {
        match p {
            Popped::Event(e) => (e.at, e.item),
            Popped::Lane { at, item, .. } => (at, item),
        }
    }

    #[test]
    fn time_then_insertion_order_across_lanes_and_parked_events() {
        let ms = Time::from_millis;
        let mut q = EventQueue::new(2);
        lane(&mut q, ms(5), 0, 0, 'a');
        q.push(ms(5), 'b');
        lane(&mut q, ms(1), 1, 3, 'c');
        lane(&mut q, ms(5), 0, 0, 'd');
        assert_eq!(
            q.push_lane(ms(2), 0, 0, 'e'),
            Err('e'),
            "earlier than its lane's last"
        );
        q.push(ms(2), 'e');
        q.push(ms(1), 'f');
        lane(&mut q, ms(9), 1, 3, 'g');
        assert_eq!(q.next_at(), Some(ms(1)));
        assert!(q.pop_due(ms(0)).is_none());
        let mut got = Vec::new();
        while let Some(e) = q.pop_due(ms(5)) {
            got.push(item(e));
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
        assert_eq!(q.pop_due(ms(9)).map(|e| item(e).1), Some('g'));
        assert_eq!(q.next_at(), None);
    }

    #[test]
    fn same_result_as_one_binary_heap_of_every_event() {
        // A reference heap of Timed items against the queue, on a pseudo-random schedule.
        let mut reference = BinaryHeap::new();
        let mut q: EventQueue<u32, u32> = EventQueue::new(3);
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
                if let Err(i) = q.push_lane(Time::from_micros(at), seg, ch, i) {
                    q.push(Time::from_micros(at), i);
                }
            }
            if x.is_multiple_of(3) {
                now += 1;
                let end = Time::from_micros(now);
                while reference.peek().is_some_and(|t| t.at <= end) {
                    want.extend(reference.pop().map(|t| t.item));
                }
                while let Some(e) = q.pop_due(end) {
                    got.push(item(e).1);
                }
            }
        }
        want.extend(std::iter::from_fn(|| reference.pop().map(|t| t.item)));
        got.extend(std::iter::from_fn(|| {
            q.pop_due(Time::MAX).map(|e| item(e).1)
        }));
        assert_eq!(got, want);
    }
}
