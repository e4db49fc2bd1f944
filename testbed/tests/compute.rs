//! Compute time in virtual time: `binfm run topologies/paper.toml --compute TABLE.toml` adds
//! exactly what the table charges on the critical path of each figure, and without the flag
//! the paper's figures stay exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixed table in whole microseconds, so the sums are exact in nanoseconds.
const TABLE: &str = "[compute]
dh_keygen = \"1.5ms\"
dh_agree = \"1.2ms\"
sign = \"0.1ms\"
verify = \"0.2ms\"
query = \"0.3ms\"
block = \"0.05ms\"
";

const KEYGEN: u64 = 1_500_000;
const AGREE: u64 = 1_200_000;
const SIGN: u64 = 100_000;
const VERIFY: u64 = 200_000;
const QUERY: u64 = 300_000;

/// Runs `binfm run topologies/paper.toml ARGS` into a temporary folder; its results.json.
fn run(args: &[&str]) -> Value {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_binfm"))
        .current_dir(root())
        .args(["run", "topologies/paper.toml", "--out"])
        .arg(out.path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "binfm run failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap()
}

/// A figure of results.json in whole nanoseconds.
fn ns(v: &Value) -> u64 {
    (v.as_f64().unwrap() * 1e6).round() as u64
}

#[test]
fn paper_pre_call_is_760_ms_plus_the_critical_path_of_the_compute_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("TABLE.toml");
    std::fs::write(&table, TABLE).unwrap();

    // The BINFM pre-call's critical path (docs/design.md, "Compute time"):
    // the caller's SN answers the caller's Query;
    let caller_sn = QUERY;
    // the caller verifies the Reply's Tx, makes two ephemerals and signs the Request;
    let caller_request = VERIFY + 2 * KEYGEN + SIGN;
    // the callee verifies the Request's signature before its own lookup;
    let callee_request = VERIFY;
    // the callee's SN answers the callee's Query;
    let callee_sn = QUERY;
    // the callee verifies the Reply's Tx, agrees three times, makes two ephemerals;
    let callee_response = VERIFY + 3 * AGREE + 2 * KEYGEN;
    // the caller agrees three times and sends its first frame at once.
    let caller_first_frame = 3 * AGREE;
    let path = caller_sn
        + caller_request
        + callee_request
        + callee_sn
        + callee_response
        + caller_first_frame;
    assert_eq!(
        path, 14_500_000,
        "2 query + 3 verify + sign + 4 keygen + 6 agree"
    );

    let charged = run(&["--compute", table.to_str().unwrap()]);
    let b = &charged["binfm"];
    assert_eq!(ns(&b["pre_call_ms"]), 760_000_000 + path, "{b}");
    // Rekey: the peer agrees once and makes its next ephemeral before it holds the new key.
    assert_eq!(ns(&b["rekey_ms"]), 200_000_000 + AGREE + KEYGEN);
    // Mid-call: the peer checks a MAC only.
    assert_eq!(ns(&b["mid_call_ms"]), 200_000_000);
    // What was charged is reported with the table.
    assert_eq!(charged["compute"]["table_ms"]["dh_agree"], 1.2);
    assert!(charged["compute"]["nodes"]["sn1"]["ops"]["query"].as_u64() >= Some(1));

    // The same critical path, as the experiment report computes it.
    let w = binfm_testbed::experiment::critical_path(
        binfm_testbed::topology::Model::Binfm,
        "pre_call_ms",
    )
    .unwrap();
    let costs = binfm_testbed::topology::compute::ComputeCosts::from_toml(TABLE).unwrap();
    assert_eq!(costs.cost(&w).as_nanos() as u64, path);

    // Vertical: the caller's keygen, the callee's keygen and agreement, the caller's
    // agreement.
    let v = run(&["--compute", table.to_str().unwrap(), "--model", "vertical"]);
    assert_eq!(
        ns(&v["vertical"]["pre_call_ms"]),
        1_440_000_000 + 2 * KEYGEN + 2 * AGREE
    );

    // Without the flag (no [compute] table in paper.toml): exact, and nothing is reported.
    let exact = run(&[]);
    assert_eq!(exact["binfm"]["pre_call_ms"], 760.0);
    assert_eq!(exact["binfm"]["mid_call_ms"], 200.0);
    assert_eq!(exact["binfm"]["rekey_ms"], 200.0);
    assert!(exact.get("compute").is_none());
}

#[test]
fn measured_table_charges_the_documented_defaults() {
    let r = run(&["--compute", "measured"]);
    let c = binfm_testbed::topology::compute::ComputeCosts::MEASURED;
    let w = binfm_testbed::experiment::critical_path(
        binfm_testbed::topology::Model::Binfm,
        "pre_call_ms",
    )
    .unwrap();
    assert_eq!(
        ns(&r["binfm"]["pre_call_ms"]),
        760_000_000 + c.cost(&w).as_nanos() as u64
    );
}
