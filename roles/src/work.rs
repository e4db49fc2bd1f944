//! CPU work a role did: a tally of its expensive operations, by kind.
//!
//! A role never reads a clock, so it cannot say how long its work took; it counts what it did
//! (a DH modexp, an ed25519 signature, a Query answered, ...) and the driver turns the counts
//! into time ([`crate::role::Role::take_work`]). In virtual time the engine charges each kind
//! its cost from the topology's `[compute]` table and delays the input's outputs by the sum;
//! in live time and in the daemons the work costs real time already, so the tally is
//! dropped. Work a role does without being asked (mining) is not counted: proof of work is
//! modelled by the hash rate.

/// An expensive operation a role counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// A group-14 DH key generation (one 2048-bit modexp with a 256-bit exponent).
    DhKeygen,
    /// A group-14 DH agreement (one modexp).
    DhAgree,
    /// An ed25519 signature.
    Sign,
    /// An ed25519 verification (of a ToALL Tx with its checks, or of a Session Request).
    Verify,
    /// A super node answering a Query (its Tx Search Table lookup and proof), or a location
    /// server answering a lookup.
    Query,
    /// A super node validating a received block, without its Txs' signatures (each counts as
    /// [`Op::Verify`]).
    Block,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 6] = [
        Op::DhKeygen,
        Op::DhAgree,
        Op::Sign,
        Op::Verify,
        Op::Query,
        Op::Block,
    ];

    /// The operation's key in a `[compute]` table.
    pub fn name(self) -> &'static str {
        match self {
            Op::DhKeygen => "dh_keygen",
            Op::DhAgree => "dh_agree",
            Op::Sign => "sign",
            Op::Verify => "verify",
            Op::Query => "query",
            Op::Block => "block",
        }
    }

    /// The operation called `name` in a `[compute]` table.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// How many operations of each kind a role performed since the tally was last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work([u32; Op::ALL.len()]);

impl Work {
    /// No work.
    pub const NONE: Work = Work([0; Op::ALL.len()]);

    /// Counts one `op`.
    pub fn add(&mut self, op: Op) {
        self.add_n(op, 1);
    }

    /// Counts `n` of `op`.
    pub fn add_n(&mut self, op: Op, n: u32) {
        let c = &mut self.0[op as usize];
        *c = c.saturating_add(n);
    }

    /// How many `op` were counted.
    pub fn count(&self, op: Op) -> u32 {
        self.0[op as usize]
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&c| c == 0)
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: Work) {
        for op in Op::ALL {
            self.add_n(op, other.count(op));
        }
    }

    /// The tally, leaving zero behind.
    pub fn take(&mut self) -> Work {
        std::mem::take(self)
    }

    /// The non-zero counts, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (Op, u32)> + '_ {
        Op::ALL
            .into_iter()
            .map(|o| (o, self.count(o)))
            .filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_adds_merges_and_takes() {
        let mut w = Work::default();
        assert!(w.is_empty());
        w.add(Op::DhAgree);
        w.add_n(Op::Verify, 3);
        let mut v = Work::NONE;
        v.add(Op::DhAgree);
        w.merge(v);
        assert_eq!(w.count(Op::DhAgree), 2);
        assert_eq!(
            w.iter().collect::<Vec<_>>(),
            [(Op::DhAgree, 2), (Op::Verify, 3)]
        );
        let t = w.take();
        assert!(w.is_empty());
        assert_eq!(t.count(Op::Verify), 3);
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
    }
}
