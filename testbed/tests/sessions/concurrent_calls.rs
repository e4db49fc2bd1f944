//! Results attribute every event to its own call: one EN in two calls, moving and renewing
//! its key while both run, in both models.

use super::common;

use binfm_testbed::driver::{RunOptions, run_virtual};
use binfm_testbed::topology::Model;
use serde_json::Value;
use std::sync::atomic::AtomicBool;

/// paper.toml plus `c` behind nat-b; A calls B and C, moves to lan-c at 10 s and renews its
/// key at 20 s while both calls run.
fn two_calls(model: Model) -> Value {
    let mut topo = common::paper_with(
        r#"
[[host]]
name = "c"
segment = "lan-b"
end_node = {}

[[scenario]]
at = "3s"
do = "call a b"

[[scenario]]
at = "4s"
do = "call a c"

[[scenario]]
at = "10s"
do = "move a to lan-c"

[[scenario]]
at = "20s"
do = "rekey a"

[[scenario]]
at = "28s"
do = "hangup a b"

[[scenario]]
at = "28s"
do = "hangup a c"
"#,
    );
    topo.model = model;
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: dir.path().to_path_buf(),
        seed: None,
        duration: None,
    };
    let summary = run_virtual(&topo, &opts, &AtomicBool::new(false)).unwrap();
    summary.results[model.as_str()].clone()
}

fn check(model: Model, mid_call_ms: f64, rekey_ms: f64) {
    let r = two_calls(model);
    let calls = r["calls"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["caller"].as_str().unwrap(), c["callee"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("a", "b"), ("a", "c")], "{model:?}");
    for c in calls {
        let callee = c["callee"].as_str().unwrap();
        // One move of A, accepted by this call's peer only.
        let handovers = c["handovers"].as_array().unwrap();
        assert_eq!(handovers.len(), 1, "{model:?} a-{callee}: {handovers:?}");
        assert_eq!(handovers[0]["moved"], "a");
        assert_eq!(
            handovers[0]["mid_call_ms"].as_f64(),
            Some(mid_call_ms),
            "{model:?} a-{callee}"
        );
        // One rekey by A in this call: the renewal of the other call is not listed here.
        let rekeys = c["rekeys"].as_array().unwrap();
        assert_eq!(rekeys.len(), 1, "{model:?} a-{callee}: {rekeys:?}");
        assert_eq!(rekeys[0]["by"], "a");
        assert_eq!(
            rekeys[0]["rekey_ms"].as_f64(),
            Some(rekey_ms),
            "{model:?} a-{callee}"
        );
        // Audio both ways, measured on this call's own state.
        for dir in [format!("a->{callee}"), format!("{callee}->a")] {
            let a = &c["audio"][&dir];
            let sent = a["frames_sent"].as_u64().unwrap();
            let received = a["received"].as_u64().unwrap();
            assert!(sent > 500, "{model:?} {dir}: sent {sent}");
            assert!(
                received > sent * 9 / 10 && received <= sent,
                "{model:?} {dir}: received {received} of {sent}"
            );
        }
    }
}

#[test]
fn binfm_results_attribute_handovers_and_rekeys_to_their_own_call() {
    check(Model::Binfm, 200.0, 200.0);
}

#[test]
fn vertical_results_attribute_handovers_and_rekeys_to_their_own_call() {
    check(Model::Vertical, 280.0, 400.0);
}
