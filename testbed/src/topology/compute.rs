//! The `[compute]` table: what each expensive operation of a role costs in virtual time
//! (docs/topology.md, "Compute time"). Roles count their operations
//! ([`binfm_roles::Work`]); the engine charges `count x cost` before the outputs of the input
//! that did them leave.
//!
//! No `[compute]` table means zero for every operation: virtual time then charges nothing
//! for computation, the paper's model. A table charges each key it names and the measured
//! default ([`ComputeCosts::MEASURED`]) for each key it leaves out.

use super::units::parse_duration;
use binfm_roles::{Op, Work};
use std::time::Duration;

/// The cost of each operation, in [`Op::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComputeCosts([Duration; Op::ALL.len()]);

/// Nanoseconds as a `Duration` in a `const` context.
const fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

impl ComputeCosts {
    /// Nothing costs time (no `[compute]` table; `--compute zero`).
    pub const ZERO: ComputeCosts = ComputeCosts([Duration::ZERO; Op::ALL.len()]);

    /// The defaults: medians of `binfm calibrate` in a release build on the machine named in
    /// docs/topology.md ("Compute time"), in [`Op::ALL`] order (`--compute measured`).
    pub const MEASURED: ComputeCosts = ComputeCosts([
        ns(758_082), // dh_keygen
        ns(751_921), // dh_agree
        ns(23_183),  // sign
        ns(44_223),  // verify
        ns(14_818),  // query
        ns(4_248),   // block
    ]);

    /// The cost of one `op`.
    pub fn get(&self, op: Op) -> Duration {
        self.0[op as usize]
    }

    /// Sets the cost of `op`.
    pub fn set(&mut self, op: Op, cost: Duration) {
        self.0[op as usize] = cost;
    }

    /// Whether every operation is free.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(Duration::is_zero)
    }

    /// What `work` costs: the sum over operations of count x cost.
    pub fn cost(&self, work: &Work) -> Duration {
        work.iter()
            .map(|(op, n)| self.get(op).saturating_mul(n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// Parses a `[compute]` table: operation name -> duration string. Keys left out take
    /// [`ComputeCosts::MEASURED`]. Errors name the key.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ComputeCosts, String> {
        let mut c = ComputeCosts::MEASURED;
        for (key, value) in entries {
            let Some(op) = Op::from_name(key) else {
                return Err(format!(
                    "unknown [compute] key `{key}`; the keys are {}",
                    names()
                ));
            };
            let d = parse_duration(value).map_err(|e| format!("[compute] {key}: {e}"))?;
            c.set(op, d);
        }
        Ok(c)
    }

    /// Parses a file holding a `[compute]` table (what `binfm calibrate` prints).
    pub fn from_toml(text: &str) -> Result<ComputeCosts, String> {
        let doc: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        if let Some(k) = doc.keys().find(|k| *k != "compute") {
            return Err(format!(
                "unknown table or key `{k}`: the file must hold a [compute] table"
            ));
        }
        let Some(table) = doc.get("compute").and_then(toml::Value::as_table) else {
            return Err("no [compute] table".to_owned());
        };
        let mut entries = Vec::new();
        for (k, v) in table {
            let s = v
                .as_str()
                .ok_or_else(|| format!("[compute] {k}: write a duration string, e.g. \"1.2ms\""))?;
            entries.push((k.as_str(), s));
        }
        ComputeCosts::from_entries(entries)
    }

    /// `zero`, `measured`, or the path of a file with a `[compute]` table (`--compute`).
    pub fn from_arg(arg: &str) -> Result<ComputeCosts, String> {
        match arg {
            "zero" => Ok(ComputeCosts::ZERO),
            "measured" => Ok(ComputeCosts::MEASURED),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("--compute {path}: not `zero`, `measured` or a readable file ({e})")
                })?;
                ComputeCosts::from_toml(&text).map_err(|e| format!("{path}: {e}"))
            }
        }
    }

    /// The table as TOML (`[compute]` with one duration per operation, in ms).
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[compute]\n");
        for op in Op::ALL {
            s.push_str(&format!(
                "{} = \"{}\"\n",
                op.name(),
                format_ms(self.get(op))
            ));
        }
        s
    }

    /// Operation name -> cost in ms, for results.
    pub fn to_json(&self) -> serde_json::Value {
        Op::ALL
            .iter()
            .map(|&op| {
                (
                    op.name().to_owned(),
                    serde_json::json!(self.get(op).as_nanos() as f64 / 1e6),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// A duration in ms with up to 6 decimals (ns), trailing zeros cut: `1.2ms`, `0.0465ms`.
pub fn format_ms(d: Duration) -> String {
    let s = format!("{:.6}", d.as_nanos() as f64 / 1e6);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}ms")
}

/// The keys of a `[compute]` table, for messages.
fn names() -> String {
    Op::ALL
        .iter()
        .map(|o| format!("`{}`", o.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_charges_and_prints() {
        let c =
            ComputeCosts::from_toml("[compute]\ndh_agree = \"1.5ms\"\nquery = \"20us\"\n").unwrap();
        assert_eq!(c.get(Op::DhAgree), Duration::from_micros(1500));
        assert_eq!(c.get(Op::Query), Duration::from_micros(20));
        assert_eq!(c.get(Op::Sign), ComputeCosts::MEASURED.get(Op::Sign));
        let mut w = Work::NONE;
        w.add_n(Op::DhAgree, 3);
        w.add(Op::Query);
        assert_eq!(c.cost(&w), Duration::from_micros(4520));
        assert_eq!(ComputeCosts::from_toml(&c.to_toml()).unwrap(), c);
        assert!(ComputeCosts::from_toml("[compute]\nrsa = \"1ms\"\n").is_err());
        assert!(ComputeCosts::from_toml("[compute]\nsign = 3\n").is_err());
        assert!(ComputeCosts::ZERO.is_zero());
        assert_eq!(format_ms(Duration::from_micros(1200)), "1.2ms");
        assert_eq!(format_ms(Duration::from_nanos(46_500)), "0.0465ms");
    }
}
