//! Fault injection from the scenario: with sn2 crashed for 30 s, the ENs whose nearest SN is
//! sn2 fail over to another SN from their DHCP list; registrations and calls still complete;
//! and nothing registered before the crash is lost once sn2 restarts from its data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_roles::sn::SuperNode;
use binfm_testbed::apps::wallet_for;
use binfm_testbed::driver::SETTLE;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::topology::Topology;
use common::root;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[test]
fn ens_fail_over_while_sn2_is_down_and_sn2_recovers_everything() {
    let data = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("topologies/paper.toml")).unwrap();
    let base = &text[..text.find("# The paper's story").unwrap()];
    let sn2_with_data = format!(
        "name = \"sn2\"\nsegment = \"public\"\naddress = \"198.51.100.12\"\nsuper_node = {{ data_dir = \"{}\" }}",
        data.path().display()
    );
    let base = base.replace(
        "name = \"sn2\"\nsegment = \"public\"\naddress = \"198.51.100.12\"\nsuper_node = {}",
        &sn2_with_data,
    );
    assert!(base.contains("data_dir"), "sn2 got its data directory");
    let steps = [
        ("2s", "crash sn2"),
        ("5s", "rekey b"),
        ("6s", "call a b"),
        ("32s", "restart sn2"),
    ];
    let mut t = base.to_owned();
    for (at, what) in steps {
        t.push_str(&format!("\n[[scenario]]\nat = \"{at}\"\ndo = \"{what}\"\n"));
    }
    let topo = Topology::from_str(&t, Path::new("failover.toml")).unwrap();
    let mut net: Network<std::io::Sink> = Network::new(
        &topo,
        topo.seed,
        None,
        EventLog::create(None).unwrap(),
        None,
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    net.run_until(Duration::from_secs(45), &stop).unwrap();
    net.settle(SETTLE, &stop).unwrap();
    let ev = &net.events.json_records();
    let sn2_addr = topo
        .sn_addr(topo.node_index("sn2").unwrap())
        .unwrap()
        .to_string();

    // B (nearest SN: sn2) moved on to another SN and its new registration was accepted there.
    assert!(
        ev.iter()
            .any(|e| e.host == "b" && e.kind == "en.sn_failover"),
        "B never failed over"
    );
    let reg = ev
        .iter()
        .rev()
        .find(|e| e.host == "b" && e.kind == "en.registered")
        .unwrap();
    assert_eq!(
        reg.fields["seq"],
        Value::from(2u64),
        "B's registration during the crash"
    );
    assert_ne!(
        reg.fields["sn"],
        Value::from(sn2_addr.clone()),
        "accepted by another SN"
    );
    assert!(
        reg.t > Duration::from_secs(5) && reg.t < Duration::from_secs(32),
        "while sn2 was down"
    );
    // The call still completed both ways. (A looked B up before B's renewed key was confirmed:
    // its first key confirmation fails, A looks B up again and the call goes on.)
    for host in ["a", "b"] {
        assert!(
            ev.iter()
                .any(|e| e.host == host && e.kind == "call.first_frame"),
            "{host} got no audio"
        );
    }
    // sn2 restarted from its block log and caught up: same tip as the others, and it knows
    // everything registered before the crash and during it.
    let idx = |n: &str| topo.node_index(n).unwrap();
    let tip = |n: &str| net.nodes[idx(n)].role::<SuperNode>().unwrap().chain().tip();
    assert!(
        ev.iter()
            .any(|e| e.host == "sn2" && e.kind == "sn.recovered")
    );
    assert_eq!(tip("sn2"), tip("sn1"));
    assert_eq!(tip("sn2"), tip("sn3"));
    let chain = net.nodes[idx("sn2")].role::<SuperNode>().unwrap().chain();
    for (en, seq) in [("a", 1), ("b", 2)] {
        let (tx, _) = chain
            .lookup(&wallet_for(topo.seed, en).hash_addr())
            .unwrap_or_else(|| panic!("sn2 lost {en}"));
        assert_eq!(tx.out.seq, seq, "{en}");
    }
}
