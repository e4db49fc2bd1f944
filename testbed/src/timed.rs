//! A min-heap entry for discrete-event loops: earliest time first, then the order in which
//! things were scheduled, so equal times run in insertion order and runs are deterministic.

use binfm_roles::Time;
use std::cmp::Ordering;

/// `item` due at `at`; `order` breaks ties (insertion order).
#[derive(Debug)]
pub struct Timed<T> {
    /// When.
    pub at: Time,
    /// Tie-breaker: a counter of the scheduler.
    pub order: u64,
    /// What happens then.
    pub item: T,
}

impl<T> PartialEq for Timed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for Timed<T> {}
impl<T> PartialOrd for Timed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timed<T> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut h = BinaryHeap::new();
        for (order, (ms, item)) in [(5, 'a'), (1, 'b'), (5, 'c'), (1, 'd')]
            .into_iter()
            .enumerate()
        {
            h.push(Timed {
                at: Time::from_millis(ms),
                order: order as u64,
                item,
            });
        }
        let got: Vec<char> = std::iter::from_fn(|| h.pop().map(|t| t.item)).collect();
        assert_eq!(got, vec!['b', 'd', 'a', 'c']);
    }
}
