//! Parsers of outside input never panic: topology text, and arbitrary packets arriving at
//! every node of a running network (hosts, NATs on both sides).

mod common;

use binfm_roles::echo::EchoClient;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::node::Output;
use binfm_testbed::topology::Topology;
use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn topology_parser_never_panics(text in "\\PC{0,400}") {
        let _ = Topology::from_str(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn topology_parser_never_panics_on_near_valid_files(
        cut in 0usize..2000,
        junk in "[\\[\\]={}\"a-z0-9./:, \n-]{0,40}",
    ) {
        let base = std::fs::read_to_string(common::root().join("topologies/lan-nat.toml")).unwrap();
        let cut = base.char_indices().map(|(i, _)| i).find(|&i| i >= cut.min(base.len())).unwrap_or(base.len());
        let text = format!("{}{}{}", &base[..cut], junk, &base[cut..]);
        let _ = Topology::from_str(&text, Path::new("fuzz.toml"));
    }
}

#[test]
fn arbitrary_packets_into_every_node_never_panic() {
    let topo = Topology::load(&common::root().join("topologies/lan-nat.toml")).unwrap();
    let mut net: Network<std::io::Sink> =
        Network::new(&topo, 1, None, EventLog::create(None).unwrap(), None).unwrap();
    net.start().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    net.run_until(Duration::from_secs(5), &stop).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
    let strategy = (
        0usize..64,
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    );
    let cell = std::cell::RefCell::new(net);
    runner
        .run(&strategy, |(which, mut bytes, make_ipv4)| {
            let mut net = cell.borrow_mut();
            let n = which % net.nodes.len();
            let port = which % net.nodes[n].ports.len();
            if make_ipv4 && bytes.len() >= 20 {
                // Mostly valid IPv4 headers get further into the code.
                bytes[0] = 0x45;
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[9] = [17, 1, 6][which % 3];
                bytes[10..12].copy_from_slice(&[0, 0]);
                let c = binfm_stack::checksum::checksum(&bytes[..20]);
                bytes[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let mut out: Vec<Output> = Vec::new();
            let now = net.now();
            net.nodes[n].receive(now, port, bytes, &mut out);
            net.nodes[n].poll(now, &mut out);
            Ok(())
        })
        .unwrap();
    let mut net = cell.into_inner();
    // And the network still works afterwards.
    net.run_until(Duration::from_secs(10), &stop).unwrap();
    let a = topo.node_index("a").unwrap();
    let (sent, received) = net.nodes[a]
        .role::<EchoClient>()
        .map(EchoClient::counts)
        .unwrap();
    assert!(
        sent >= 9 && received >= 8,
        "echo after the garbage: sent {sent}, received {received}"
    );
}
