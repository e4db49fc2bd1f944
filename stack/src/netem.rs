//! Link emulation as plain data (in the manner of str0m's `netem` crate): delay, jitter, loss,
//! bandwidth and a queue limit, decided from a seeded RNG so that a run is a pure function of
//! its topology and seed.
//!
//! Every directed channel (sender -> receiver on a segment) has its own RNG, derived from the
//! run seed and the channel's identity, so traffic on one channel never changes the fate of
//! packets on another. Each packet draws exactly two random numbers (loss, jitter) whatever the
//! parameters, so changing the loss rate does not shift the jitter sequence.

use crate::Time;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::time::Duration;

/// Parameters of one direction of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Uniform jitter: each packet gets `delay + U(-jitter, +jitter)` (never below zero).
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a packet is lost.
    pub loss: f64,
    /// Bandwidth in bits per second; `None` means serialization takes no time.
    pub rate_bps: Option<u64>,
    /// Packets that may wait for serialization; one more is dropped (tail drop). Only
    /// meaningful with a rate.
    pub queue: usize,
    /// Let jitter reorder packets. Off by default: packets of a channel leave in the order
    /// they were sent (netem's reordering under jitter surprises its users).
    pub reorder: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue: 1000,
            reorder: false,
        }
    }
}

/// What happens to one packet sent into a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered at this time.
    Deliver(Time),
    /// Lost by the random loss process.
    Lost,
    /// Dropped because the queue was full.
    QueueFull,
}

/// One direction between two members of a segment.
#[derive(Debug)]
pub struct Channel {
    params: LinkParams,
    /// The channel's RNG, made on its first draw from `rng_seed`: most channels (every pair
    /// a broadcast reaches on a LAN without loss or jitter) never draw, and a ChaCha state
    /// with its buffer is most of a channel's memory.
    rng: Option<Box<ChaCha8Rng>>,
    rng_seed: u64,
    /// When the transmitter is free again (serialization of queued packets).
    next_free: Time,
    /// Serialization end times of packets still in the queue, oldest first.
    in_queue: VecDeque<Time>,
    /// Latest delivery time handed out, so that packets stay in order without `reorder`.
    last_delivery: Time,
    /// 32-bit words of the RNG stream owed by packets that needed no random number (no loss,
    /// no jitter): the stream is moved past them before the next draw, so every fate is the
    /// one drawing each time would give.
    skipped_words: u128,
}

/// RNG words one packet consumes: two `f64` draws of one `u64` (two words) each.
const WORDS_PER_PACKET: u128 = 4;

impl Channel {
    /// A channel whose RNG is derived from the run seed and a channel identity.
    pub fn new(params: LinkParams, seed: u64, id: u64) -> Self {
        Channel {
            params,
            rng: None,
            rng_seed: mix(seed, id),
            next_free: Time::ZERO,
            in_queue: VecDeque::new(),
            last_delivery: Time::ZERO,
            skipped_words: 0,
        }
    }

    /// The parameters of this channel.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Replaces the parameters (fault injection: `loss <link> 20%`); state is kept.
    pub fn set_params(&mut self, params: LinkParams) {
        self.params = params;
    }

    /// Decides the fate of a packet of `len` bytes handed to the channel at `now`.
    pub fn send(&mut self, now: Time, len: usize) -> Fate {
        // Without loss and jitter neither draw can matter: skip them (see `skipped_words`).
        let (loss_draw, jitter_draw): (f64, f64) =
            if self.params.loss > 0.0 || !self.params.jitter.is_zero() {
                let seed = self.rng_seed;
                let rng = self
                    .rng
                    .get_or_insert_with(|| Box::new(ChaCha8Rng::seed_from_u64(seed)));
                if self.skipped_words != 0 {
                    let pos = rng.get_word_pos();
                    rng.set_word_pos(pos + self.skipped_words);
                    self.skipped_words = 0;
                }
                (rng.random(), rng.random())
            } else {
                self.skipped_words += WORDS_PER_PACKET;
                (1.0, 0.0)
            };

        while self.in_queue.front().is_some_and(|&end| end <= now) {
            self.in_queue.pop_front();
        }
        let tx_end = match self.params.rate_bps {
            Some(rate) if rate > 0 => {
                if self.in_queue.len() >= self.params.queue {
                    return Fate::QueueFull;
                }
                let start = self.next_free.max(now);
                let bits = (len as u128) * 8;
                let nanos = bits * 1_000_000_000 / u128::from(rate);
                let end = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.next_free = end;
                self.in_queue.push_back(end);
                end
            }
            _ => now,
        };
        if loss_draw < self.params.loss {
            return Fate::Lost;
        }
        let mut at = tx_end + self.params.delay;
        if !self.params.jitter.is_zero() {
            let j = self.params.jitter.as_nanos() as f64;
            let offset = (jitter_draw * 2.0 - 1.0) * j;
            let base = at.as_nanos() as f64;
            let shifted = (base + offset).max(tx_end.as_nanos() as f64);
            at = Duration::from_nanos(shifted as u64);
        }
        if !self.params.reorder {
            at = at.max(self.last_delivery);
        }
        self.last_delivery = self.last_delivery.max(at);
        Fate::Deliver(at)
    }
}

/// SplitMix64 finaliser over seed and id: well-spread, distinct per-channel seeds.
fn mix(seed: u64, id: u64) -> u64 {
    let mut z = seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fixed_delay_is_exact() {
        let mut c = Channel::new(
            LinkParams {
                delay: ms(40),
                ..Default::default()
            },
            1,
            1,
        );
        assert_eq!(c.send(ms(5), 100), Fate::Deliver(ms(45)));
    }

    #[test]
    fn bandwidth_serializes_and_queue_drops() {
        // 8 kbit/s: a 100-byte packet takes 100 ms to serialize.
        let p = LinkParams {
            rate_bps: Some(8000),
            queue: 2,
            ..Default::default()
        };
        let mut c = Channel::new(p, 1, 1);
        assert_eq!(c.send(ms(0), 100), Fate::Deliver(ms(100)));
        assert_eq!(c.send(ms(0), 100), Fate::Deliver(ms(200)));
        assert_eq!(c.send(ms(0), 100), Fate::QueueFull);
        // After the first left the queue there is room again.
        assert_eq!(c.send(ms(100), 100), Fate::Deliver(ms(300)));
    }

    #[test]
    fn jitter_keeps_order_unless_reorder() {
        let p = LinkParams {
            delay: ms(50),
            jitter: ms(40),
            ..Default::default()
        };
        let mut c = Channel::new(p.clone(), 7, 3);
        let mut last = Duration::ZERO;
        let mut spread = std::collections::BTreeSet::new();
        for i in 0..500 {
            let Fate::Deliver(at) = c.send(ms(i), 100) else {
                panic!("no loss configured")
            };
            assert!(at >= last, "reordered without reorder");
            assert!(at >= ms(i) + ms(10) && at <= ms(i) + ms(90));
            spread.insert(at - ms(i));
            last = at;
        }
        assert!(spread.len() > 100, "jitter had no effect");

        let mut c = Channel::new(LinkParams { reorder: true, ..p }, 7, 3);
        let mut reordered = 0;
        let mut last = Duration::ZERO;
        for i in 0..500 {
            let Fate::Deliver(at) = c.send(ms(i), 100) else {
                panic!()
            };
            if at < last {
                reordered += 1;
            }
            last = at;
        }
        assert!(reordered > 10, "reorder flag had no effect");
    }

    #[test]
    fn skipped_draws_leave_the_fates_of_later_packets_unchanged() {
        // Reference: every packet draws. Lazy: the first packets need no draw, then loss and
        // jitter are switched on (a scenario's `loss` step). Both must give the same fates.
        let quiet = LinkParams {
            delay: ms(5),
            ..Default::default()
        };
        let noisy = LinkParams {
            delay: ms(5),
            jitter: ms(3),
            loss: 0.3,
            reorder: true,
            ..Default::default()
        };
        for skipped in [0u64, 1, 7, 8, 31, 32, 33, 200] {
            let mut lazy = Channel::new(quiet.clone(), 11, 5);
            let mut reference = ChaCha8Rng::seed_from_u64(mix(11, 5));
            for i in 0..skipped {
                assert_eq!(lazy.send(ms(i), 100), Fate::Deliver(ms(i + 5)));
                let _: f64 = reference.random();
                let _: f64 = reference.random();
            }
            lazy.set_params(noisy.clone());
            let mut expected = Channel::new(noisy.clone(), 11, 5);
            expected.rng = Some(Box::new(reference));
            for i in skipped..skipped + 300 {
                assert_eq!(
                    lazy.send(ms(i), 100),
                    expected.send(ms(i), 100),
                    "after {skipped}"
                );
            }
        }
    }

    #[test]
    fn loss_rate_is_close_to_configured_and_seeded() {
        let p = LinkParams {
            loss: 0.2,
            ..Default::default()
        };
        let run = |seed| {
            let mut c = Channel::new(p.clone(), seed, 9);
            (0..10_000)
                .map(|i| c.send(ms(i), 10) == Fate::Lost)
                .collect::<Vec<_>>()
        };
        let a = run(1);
        let lost = a.iter().filter(|&&l| l).count();
        assert!((1800..2200).contains(&lost), "lost {lost} of 10000 at 20%");
        assert_eq!(a, run(1), "same seed, same fates");
        assert_ne!(a, run(2), "different seed, different fates");
    }
}
