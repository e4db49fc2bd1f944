//! `topologies/daemons.toml` (privileged; skipped with the reason without root, `udhcpc` or
//! `nc`): end-node daemons in kernel hosts behind the emulated NATs, driven by `binfm ctl`
//! from `exec` steps, with the fabric's virtual super nodes.

use super::kernel_hosts::kernel_skip_reason;
use super::*;

#[test]
fn daemons_in_kernel_hosts_call_hand_over_rekey_and_hang_up() {
    if let Some(reason) = kernel_skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    // The paper's story, faster: call at 3 s, move at 6 s, rekey at 9 s, hang up at 12 s.
    let text = std::fs::read_to_string(common::root().join("topologies/daemons.toml"))
        .unwrap()
        .replace("name = \"daemons\"", "name = \"kt-daemons\"")
        .replace("duration = \"32s\"", "duration = \"14s\"")
        .replace("at = \"10s\"\ndo = \"move a", "at = \"6s\"\ndo = \"move a")
        .replace(
            "at = \"20s\"\ndo = \"exec a -- binfm ctl {out}/a.sock rekey",
            "at = \"9s\"\ndo = \"exec a -- binfm ctl {out}/a.sock rekey",
        )
        .replace(
            "at = \"28s\"\ndo = \"exec a -- binfm ctl {out}/a.sock hangup",
            "at = \"12s\"\ndo = \"exec a -- binfm ctl {out}/a.sock hangup",
        )
        .replace(
            "at = \"30s\"\ndo = \"exec b -- binfm ctl {out}/b.sock status",
            "at = \"12500ms\"\ndo = \"exec b -- binfm ctl {out}/b.sock status",
        )
        .replace(
            "{topology_dir}/daemons/en.toml",
            &format!("{}/topologies/daemons/en.toml", common::root().display()),
        );
    for (from, to) in [
        ("6s", "move a"),
        ("9s", "rekey"),
        ("12s", "hangup"),
        ("12500ms", "status"),
    ] {
        assert!(text.contains(&format!("at = \"{from}\"\ndo = \"")) && text.contains(to));
    }
    let path = dir.path().join("kt-daemons.toml");
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    let mut child = spawn_live(&path, &out);
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let (stdout, stderr) = output_of(&mut child);
    assert!(status.success(), "binfm failed: {stdout}\n{stderr}");

    // Every exec step (two daemons, four ctl commands) ended with 0, or was stopped at the end.
    let events = common::read_events(&out.join("events.jsonl"));
    let ends: Vec<_> = events.iter().filter(|e| e.kind == "exec.end").collect();
    assert_eq!(ends.len(), 6, "{ends:?}");
    for e in &ends {
        assert!(
            e.fields["exit_code"] == 0,
            "{}: {}",
            e.fields["command"],
            std::fs::read_to_string(out.join(e.fields["stderr"].as_str().unwrap()))
                .unwrap_or_default()
        );
    }

    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let a = read("a-events.jsonl");
    let b = read("b-events.jsonl");
    // A registered behind nat-a, called B, moved (a new Tx from lan-c), renewed its key.
    assert!(a.contains("\"kind\":\"call.active\""), "{a}");
    assert!(a.contains("\"kind\":\"call.handover_sent\""), "{a}");
    assert!(a.contains("\"private\":\"10.3.0.100:7401\""), "{a}");
    assert!(a.contains("\"kind\":\"call.rekey_complete\""), "{a}");
    assert!(a.contains("\"kind\":\"call.ended\""), "{a}");
    // B took the handover and the key renewal.
    assert!(b.contains("\"kind\":\"call.handover_accepted\""), "{b}");
    assert!(b.contains("\"new_addr\":\"198.51.100.3:"), "{b}");
    assert!(b.contains("\"kind\":\"call.rekey_accepted\""), "{b}");
    // B's status (from its exec step) shows audio from A.
    let status_out = std::fs::read_dir(out.join("exec"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .find(|t| t.contains("\"status\""))
        .expect("b's status");
    let v: serde_json::Value = serde_json::from_str(&status_out).unwrap();
    let received = v["status"]["calls"][0]["frames_received"].as_u64().unwrap();
    assert!(received > 300, "B received {received} frames: {status_out}");
    // Both daemons wrote audio both ways (SIGTERM at the end of the run).
    for n in ["a", "b"] {
        let len = std::fs::metadata(out.join(format!("{n}-received.wav")))
            .unwrap()
            .len();
        assert!(len > 44 + 2 * 8000 * 3, "{n}: {len} bytes of WAV");
    }
    assert!(
        !namespaces()
            .iter()
            .any(|n| n.starts_with("binfm-kt-daemons"))
    );
}
