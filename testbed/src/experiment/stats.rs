//! Summaries across runs: median and the 5th/95th percentiles (nearest rank), so a reader
//! sees the spread that jitter and loss cause, not only a mean.

use crate::results::nearest_rank;
use serde_json::{Value, json};

/// `{"median", "p5", "p95", "n"}` of the finite values in `v` (`null` fields when empty).
pub fn summary(v: &[f64]) -> Value {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return json!({"median": null, "p5": null, "p95": null, "n": 0});
    }
    s.sort_by(f64::total_cmp);
    json!({
        "median": nearest_rank(&s, 0.5),
        "p5": nearest_rank(&s, 0.05),
        "p95": nearest_rank(&s, 0.95),
        "n": s.len(),
    })
}

/// The median of a summary made by [`summary`].
pub fn median(summary: &Value) -> Option<f64> {
    summary.get("median").and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = summary(&v);
        assert_eq!(s["median"], 10.0);
        assert_eq!(s["p5"], 1.0);
        assert_eq!(s["p95"], 19.0);
        assert_eq!(s["n"], 20);
        assert_eq!(summary(&[f64::NAN])["n"], 0);
    }
}
