//! The smallest role, added by name: a discard server (RFC 863) on a host takes an echo
//! client's probes through a NAT and answers none.

use super::common;

use binfm_roles::discard::Discard;
use binfm_roles::echo::EchoClient;
use binfm_testbed::topology::Topology;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const TOPOLOGY: &str = r#"
name = "discard"
seed = 1
duration = "10s"

[[segment]]
name = "lan-a"
subnet = "10.1.0.0/24"
delay = "1ms"
dhcp = { server = "nat-a", pool = "10.1.0.100-10.1.0.199" }

[[segment]]
name = "public"
subnet = "198.51.100.0/24"
delay = "10ms"

[[nat]]
name = "nat-a"
inside = { segment = "lan-a", address = "10.1.0.1" }
outside = { segment = "public", address = "198.51.100.1" }

[[host]]
name = "sink"
segment = "public"
address = "198.51.100.9"
roles = ["discard"]

[[host]]
name = "a"
segment = "lan-a"
echo_client = { to = "sink:9", port = 40000, interval = "1s", count = 5, size = 100 }
"#;

#[test]
fn a_named_discard_role_counts_probes_and_answers_none() {
    let topo = Topology::from_str(TOPOLOGY, Path::new("discard.toml")).unwrap();
    let mut net = common::memory_net(&topo);
    net.start().unwrap();
    net.run_until(Duration::from_secs(10), &AtomicBool::new(false))
        .unwrap();
    let sink = &net.nodes[topo.node_index("sink").unwrap()];
    let (datagrams, bytes) = sink.role::<Discard>().unwrap().counts();
    assert_eq!((datagrams, bytes), (5, 500));
    let a = &net.nodes[topo.node_index("a").unwrap()];
    assert_eq!(a.role::<EchoClient>().unwrap().counts(), (5, 0));
}

#[test]
fn an_unknown_role_name_is_refused_with_its_line() {
    let text = TOPOLOGY.replace(r#"roles = ["discard"]"#, r#"roles = ["chargen"]"#);
    let err = Topology::from_str(&text, Path::new("discard.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("discard.toml:") && err.contains("unknown role `chargen` (known: discard)"),
        "{err}"
    );
    let line = TOPOLOGY
        .lines()
        .position(|l| l.starts_with("roles"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!(":{line}:")), "{err}");
}
