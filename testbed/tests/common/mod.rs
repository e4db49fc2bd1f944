//! Helpers shared by the integration tests: run a topology into a temporary folder and read
//! back what it wrote (capture, events, results) with independent parsers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use binfm_testbed::driver::{RunOptions, RunSummary, run_virtual};
use binfm_testbed::events::JsonRecord as Record;
use binfm_testbed::topology::Topology;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The workspace root (tests run with the crate folder as working directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `topologies/<file>` into a fresh temporary folder.
pub fn run(
    file: &str,
    seed: Option<u64>,
    duration: Option<Duration>,
) -> (tempfile::TempDir, RunSummary) {
    let topo = Topology::load(&root().join("topologies").join(file)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: dir.path().to_path_buf(),
        seed,
        duration,
    };
    let summary = run_virtual(&topo, &opts, &AtomicBool::new(false)).unwrap();
    (dir, summary)
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Captured {
    pub segment: String,
    pub t: Duration,
    pub data: Vec<u8>,
}

/// Reads a pcapng written by a run, checking link type 228 and nanosecond resolution.
pub fn read_capture(path: &Path) -> Vec<Captured> {
    let bytes = std::fs::read(path).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).unwrap();
    let mut names = Vec::new();
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::InterfaceDescription(idb) => {
                assert_eq!(u32::from(idb.linktype), 228, "LINKTYPE_IPV4");
                assert!(
                    idb.options
                        .contains(&InterfaceDescriptionOption::IfTsResol(9))
                );
                let name = idb.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                });
                names.push(name.expect("interface has a name"));
            }
            Block::EnhancedPacket(p) => out.push(Captured {
                segment: names[p.interface_id as usize].clone(),
                t: p.timestamp,
                data: p.data.into_owned(),
            }),
            _ => {}
        }
    }
    out
}

/// Reads `events.jsonl`.
pub fn read_events(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| Record::from_json(l).unwrap())
        .collect()
}

/// Whether a command exists on this machine.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok()
}

/// `topologies/paper.toml` without its story, plus `steps` (TOML `[[scenario]]` tables).
pub fn paper_with(steps: &str) -> binfm_testbed::topology::Topology {
    let text = std::fs::read_to_string(root().join("topologies/paper.toml")).unwrap();
    let base = &text[..text.find("# The paper's story").unwrap()];
    Topology::from_str(&format!("{base}\n{steps}"), Path::new("paper-with.toml")).unwrap()
}

/// A virtual network of `topo` with its own seed, no capture and events in memory only.
pub fn memory_net(topo: &Topology) -> binfm_testbed::engine::Network<std::io::Sink> {
    binfm_testbed::engine::Network::new(
        topo,
        topo.seed,
        None,
        binfm_testbed::events::EventLog::create(None).unwrap(),
        None,
    )
    .unwrap()
}
