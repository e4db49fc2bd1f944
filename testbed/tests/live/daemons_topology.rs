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
    // The paper's story, faster: call at 5 s (the daemons start at 0.5 s: their Txs are in
    // a block by then unless proof of work is slow), move at 8 s, rekey at 11 s, hang up at
    // 14 s.
    let text = std::fs::read_to_string(common::root().join("topologies/daemons.toml"))
        .unwrap()
        .replace("name = \"daemons\"", "name = \"kt-daemons\"")
        .replace("duration = \"32s\"", "duration = \"16s\"")
        .replace(
            "at = \"3s\"\ndo = \"exec a -- binfm ctl {out}/a.sock call",
            "at = \"5s\"\ndo = \"exec a -- binfm ctl {out}/a.sock call",
        )
        .replace("at = \"10s\"\ndo = \"move a", "at = \"8s\"\ndo = \"move a")
        .replace(
            "at = \"20s\"\ndo = \"exec a -- binfm ctl {out}/a.sock rekey",
            "at = \"11s\"\ndo = \"exec a -- binfm ctl {out}/a.sock rekey",
        )
        .replace(
            "at = \"28s\"\ndo = \"exec a -- binfm ctl {out}/a.sock hangup",
            "at = \"14s\"\ndo = \"exec a -- binfm ctl {out}/a.sock hangup",
        )
        .replace(
            "at = \"30s\"\ndo = \"exec b -- binfm ctl {out}/b.sock status",
            "at = \"14500ms\"\ndo = \"exec b -- binfm ctl {out}/b.sock status",
        )
        .replace(
            "{topology_dir}/daemons/en.toml",
            &format!("{}/topologies/daemons/en.toml", common::root().display()),
        );
    for (from, to) in [
        ("5s", "call"),
        ("8s", "move a"),
        ("11s", "rekey"),
        ("14s", "hangup"),
        ("14500ms", "status"),
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

    // results.json measures the daemons' call from their event logs (`events` keys) and
    // compares it with the all-virtual twin (`twin` keys: A and B virtual end nodes).
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let call = &results["binfm"]["calls"][0];
    assert_eq!(
        (call["caller"].as_str(), call["callee"].as_str()),
        (Some("a"), Some("b"))
    );
    let handover = &call["handovers"][0];
    assert_eq!(handover["moved"], "a", "{call}");
    assert!(handover["dhcp_client_ms"].as_f64().is_some(), "{handover}");
    let cmp = &results["live_vs_virtual"];
    println!("daemons vs all-virtual twin: {cmp}");
    for (key, paper) in [
        ("pre_call_ms", 760.0),
        ("mid_call_ms", 200.0),
        ("rekey_ms", 200.0),
    ] {
        // The twin is exact; the daemons pay real scheduling, DH and syscalls on a shared
        // machine (the 5% comparison of record is in docs/node.md, not a timed assertion).
        assert_eq!(cmp[key]["virtual"].as_f64(), Some(paper), "{cmp}");
        let live = cmp[key]["live"].as_f64().unwrap_or(0.0);
        assert!(live >= paper * 0.99, "{key}: {cmp}");
        // A callee whose Tx no block holds yet is looked up again a second later (real proof
        // of work, unlike the twin's): then pre-call includes that wait, which is not the
        // scheme's signalling.
        let retried = key == "pre_call_ms" && a.contains("\"kind\":\"call.peer_not_found_yet\"");
        if retried {
            println!("{key}: {live} ms includes a lookup retry (B not yet in a block)");
        } else {
            assert!(live < paper * 1.5, "{key}: {cmp}");
        }
    }

    // tshark with the project's dissector decodes what the daemons sent, with no complaint.
    if !common::have("tshark") {
        println!("SKIPPED (dissector part): tshark is not installed");
        return;
    }
    let capture = out.join("capture.pcapng");
    let tshark = |filter: &str, fields: &[&str]| {
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-n")
            .arg("-X")
            .arg(format!(
                "lua_script:{}",
                common::root().join("scripts/wireshark/binfm.lua").display()
            ))
            .arg("-r")
            .arg(&capture)
            .args(["-Y", filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let sent = tshark(
        "binfm && (ip.src == 10.1.0.100 || ip.src == 10.2.0.100 || ip.src == 10.3.0.100)",
        &["binfm.type"],
    );
    let types: std::collections::BTreeSet<u32> =
        sent.lines().filter_map(|l| l.trim().parse().ok()).collect();
    // TxSubmit, Query, Session Request/Response, Handover, Key Renewal and its Reply.
    for t in [1, 3, 9, 10, 11, 12, 14] {
        assert!(
            types.contains(&t),
            "type {t} not decoded from the daemons: {types:?}"
        );
    }
    let problems = tshark(
        "_ws.lua.error || _ws.malformed || binfm.truncated || binfm.malformed || binfm.trailing || binfm.bad_value",
        &["frame.number"],
    );
    assert!(
        problems.trim().is_empty(),
        "frames with problems: {problems}"
    );
}
