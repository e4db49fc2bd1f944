//! Per-source token buckets in a bounded table: the super node's per-sender limits on
//! `TxSubmit` and `Query` (see `docs/security.md`, attacks 12 and 13).
//!
//! Each source IPv4 address has a bucket of `burst` tokens refilled at `rate_per_s`; a
//! datagram takes one token or is refused. The table holds at most `max_sources` buckets.
//! **Eviction rule** when a new source arrives at a full table: every bucket that has refilled
//! completely is dropped first (a full bucket carries no information: a missing entry means a
//! full bucket); if that frees fewer than a quarter of the table, the whole table is cleared
//! (counted in [`SourceLimiter::resets`]). Forgetting rate state only ever gives a source a
//! fresh burst; growing without bound is never allowed. Each clearing or sweep costs
//! `O(max_sources)` and frees at least a quarter of the table, so the cost per datagram stays
//! constant on average even when a flood rotates through more sources than the table holds.
//!
//! Sans-IO: `now_ms` comes with every call. Integer arithmetic only (milli-tokens), so runs
//! are deterministic.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;

/// Limits of one [`SourceLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Tokens added per second to each source's bucket.
    pub rate_per_s: u32,
    /// Bucket size: datagrams a source may send at once after being quiet.
    pub burst: u32,
    /// Most sources tracked at once (see the module's eviction rule).
    pub max_sources: usize,
}

/// Bytes one tracked source holds (key and bucket), for memory reports.
pub const SOURCE_ENTRY_BYTES: usize =
    std::mem::size_of::<Ipv4Addr>() + std::mem::size_of::<Bucket>();

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token.
    milli_tokens: u64,
    /// Last refill, ms.
    last_ms: u64,
}

/// Token buckets per source address, bounded (see the module docs). The key is a source IPv4
/// address unless said otherwise (the end node also limits per caller hash address).
#[derive(Debug, Clone)]
pub struct SourceLimiter<K = Ipv4Addr> {
    config: RateLimitConfig,
    buckets: HashMap<K, Bucket>,
    resets: u64,
}

impl<K: Hash + Eq + Copy> SourceLimiter<K> {
    /// An empty limiter.
    pub fn new(config: RateLimitConfig) -> Self {
        SourceLimiter {
            config,
            buckets: HashMap::new(),
            resets: 0,
        }
    }

    /// The limits.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Sources tracked now (at most `max_sources`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Times the table was cleared because it was full of active sources.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn cap(&self) -> u64 {
        u64::from(self.config.burst).saturating_mul(1000)
    }

    fn refilled(&self, b: &Bucket, now_ms: u64) -> u64 {
        let add = now_ms
            .saturating_sub(b.last_ms)
            .saturating_mul(u64::from(self.config.rate_per_s));
        b.milli_tokens.saturating_add(add).min(self.cap())
    }

    /// Takes one token of `src` at `now_ms`; false when its bucket is empty (refuse).
    pub fn allow(&mut self, src: K, now_ms: u64) -> bool {
        if self.config.burst == 0 || self.config.max_sources == 0 {
            return false;
        }
        if let Some(b) = self.buckets.get(&src).copied() {
            let tokens = self.refilled(&b, now_ms);
            let ok = tokens >= 1000;
            let left = if ok { tokens - 1000 } else { tokens };
            self.buckets.insert(
                src,
                Bucket {
                    milli_tokens: left,
                    last_ms: now_ms.max(b.last_ms),
                },
            );
            return ok;
        }
        if self.buckets.len() >= self.config.max_sources {
            self.make_room(now_ms);
        }
        self.buckets.insert(
            src,
            Bucket {
                milli_tokens: self.cap() - 1000,
                last_ms: now_ms,
            },
        );
        true
    }

    fn make_room(&mut self, now_ms: u64) {
        let before = self.buckets.len();
        let cap = self.cap();
        let rate = u64::from(self.config.rate_per_s);
        self.buckets.retain(|_, b| {
            let add = now_ms.saturating_sub(b.last_ms).saturating_mul(rate);
            b.milli_tokens.saturating_add(add) < cap
        });
        let freed = before - self.buckets.len();
        if freed < self.config.max_sources.div_ceil(4) {
            self.buckets.clear();
            self.resets += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xc633_6400 + n)
    }

    #[test]
    fn burst_then_rate() {
        let mut l = SourceLimiter::new(RateLimitConfig {
            rate_per_s: 10,
            burst: 5,
            max_sources: 16,
        });
        let allowed = (0..20).filter(|_| l.allow(ip(1), 0)).count();
        assert_eq!(allowed, 5, "the burst");
        // 100 ms later one token has come back, not two.
        assert!(l.allow(ip(1), 100));
        assert!(!l.allow(ip(1), 100));
        // Another source has its own bucket.
        assert!(l.allow(ip(2), 100));
        // After a quiet second the bucket is full again, never fuller.
        let allowed = (0..20).filter(|_| l.allow(ip(1), 5_000)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn table_is_bounded_idle_sources_go_first_then_everything() {
        let cfg = RateLimitConfig {
            rate_per_s: 1,
            burst: 2,
            max_sources: 8,
        };
        let mut l = SourceLimiter::new(cfg);
        for n in 0..8 {
            assert!(l.allow(ip(n), 0));
        }
        assert_eq!(l.len(), 8);
        // 10 s later every bucket has refilled: they are all dropped to make room.
        assert!(l.allow(ip(100), 10_000));
        assert_eq!(l.len(), 1);
        assert_eq!(l.resets(), 0);
        // A flood of fresh sources, all active: never more than 8 entries, cleared when full.
        for n in 0..1000 {
            l.allow(ip(1000 + n), 10_000);
            assert!(l.len() <= 8);
        }
        assert!(l.resets() > 0);
    }

    #[test]
    fn zero_burst_refuses_everything() {
        let mut l = SourceLimiter::new(RateLimitConfig {
            rate_per_s: 100,
            burst: 0,
            max_sources: 8,
        });
        assert!(!l.allow(ip(1), 0));
        assert!(l.is_empty());
    }
}
