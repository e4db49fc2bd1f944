//! Kernel hosts (privileged; skipped with the reason without root, `udhcpc` or `nc`): real
//! network namespaces on the fabric that get leases from the segments' DHCP servers with
//! busybox udhcpc and cross the emulated H16 NATs.

use super::*;
use binfm_roles::util::hex;
use binfm_testbed::topology::Topology;
use std::path::{Path, PathBuf};

/// Why kernel-host tests cannot run here, if they cannot.
pub(crate) fn kernel_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    for (cmd, package) in [("udhcpc", "udhcpc"), ("nc", "netcat-openbsd")] {
        if !common::have(cmd)
            && !Path::new("/usr/sbin").join(cmd).exists()
            && !Path::new("/sbin").join(cmd).exists()
        {
            return Some(format!("kernel hosts need `{cmd}` (package {package})"));
        }
    }
    None
}

macro_rules! require_kernel_hosts {
    () => {
        if let Some(reason) = kernel_skip_reason() {
            println!("SKIPPED: {reason}");
            return;
        }
    };
}

/// `topologies/kernel-hosts.toml` named `name` with `duration`, `extra` appended (more hosts,
/// steps) and its scenario replaced by `steps` when given; returns its path.
fn kernel_topology(
    dir: &Path,
    name: &str,
    duration: &str,
    steps: Option<&str>,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let mut text = std::fs::read_to_string(common::root().join("topologies/kernel-hosts.toml"))
        .unwrap()
        .replace("name = \"kernel\"", &format!("name = \"{name}\""))
        .replace("duration = \"10s\"", &format!("duration = \"{duration}\""));
    if let Some(steps) = steps {
        let cut = text.find("[[scenario]]").unwrap();
        text.truncate(cut);
        text.push_str(steps);
    }
    let text = edit(text);
    assert!(text.contains(&format!("name = \"{name}\"")));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Parses `lease.env` (`key=value` lines) written by the udhcpc script.
fn lease_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

use std::collections::HashMap;

/// Waits (at most `limit`) for `path` to exist.
fn wait_for_file(path: &Path, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One UDP datagram as tshark shows it: (interface, src, sport, dst, dport).
type Flow = (String, String, u16, String, u16);

/// tshark's view of the UDP datagrams of a capture.
fn udp_flows(capture: &Path) -> Option<Vec<Flow>> {
    if !common::have("tshark") {
        return None;
    }
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args([
            "-Y",
            "udp && !dhcp",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.to_string(),
                    f.get(4)?.parse().ok()?,
                ))
            })
            .collect(),
    )
}

#[test]
fn a_kernel_host_gets_a_lease_by_udhcpc_crosses_the_nat_runs_exec_steps_and_moves() {
    require_kernel_hosts!();
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let steps = r#"
[[scenario]]
at = "1500ms"
do = "exec k1 -- sh -c 'echo hello from k1 | nc -u -w 1 -p 5000 198.51.100.10 7'"

[[scenario]]
at = "1500ms"
do = "exec k2 -- ping -c 2 -i 0.2 198.51.100.10"

[[scenario]]
at = "4s"
do = "move k1 to lan-c"

[[scenario]]
at = "5500ms"
do = "exec k1 -- ip -4 -o addr show dev tun0"

[[scenario]]
at = "5600ms"
do = "exec k2 -- sh -c 'exit 3'"

[[scenario]]
at = "5700ms"
do = "exec k2 -- sleep 60"
"#;
    // A path on lan-b between k2 and nat-b: 30 ms instead of the segment's 1 ms.
    let path = kernel_topology(dir.path(), "kt-main", "7s", Some(steps), |t| {
        t.replace(
            "dhcp = { server = \"nat-b\", pool = \"10.2.0.100-10.2.0.199\", super_nodes = [\"sn1\"] }",
            "dhcp = { server = \"nat-b\", pool = \"10.2.0.100-10.2.0.199\", super_nodes = [\"sn1\"] }\n\n[[segment.path]]\nbetween = [\"k2\", \"nat-b\"]\ndelay = \"30ms\"",
        )
    });
    let topo = Topology::load(&path).unwrap();
    let out = dir.path().join("out");
    let before = namespaces();
    let mut child = spawn_live(&path, &out);

    // `binfm exec` reaches k1 while the run goes on: its lease address is on tun0.
    wait_for_file(&out.join("kernel/k1/lease.env"), Duration::from_secs(10));
    let exec = binfm()
        .arg("exec")
        .arg(&path)
        .args(["k1", "--", "ip", "-4", "-o", "addr", "show", "dev", "tun0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&exec.stdout);
    assert!(exec.status.success(), "binfm exec: {shown} {:?}", exec);
    assert!(shown.contains("inet 10.1.0.100/24"), "{shown}");
    let no_such = binfm()
        .arg("exec")
        .arg(&path)
        .args(["nope", "--", "true"])
        .output()
        .unwrap();
    assert!(!no_such.status.success());
    assert!(
        String::from_utf8_lossy(&no_such.stderr).contains("`nope` is not a kernel host"),
        "{no_such:?}"
    );

    let status = wait_bounded(&mut child, Duration::from_secs(40));
    let (stdout, stderr) = output_of(&mut child);
    assert!(status.success(), "binfm failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("kernel host k1 is namespace binfm-kt-main-k1"),
        "{stdout}"
    );

    // 1. The lease on lan-a: what the script received for options 224 and 225 is the NAT's
    //    public address and the super nodes' addresses (first lease; the move's is below).
    let lan_a = topo.segment_index("lan-a").unwrap();
    let dhcp = topo.segments[lan_a].dhcp.as_ref().unwrap();
    let events = common::read_events(&out.join("events.jsonl"));
    let leases: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "kernel.lease" && e.host == "k1")
        .collect();
    assert_eq!(leases.len(), 2, "a lease on lan-a, another on lan-c");
    assert_eq!(leases[0].fields["address"], "10.1.0.100");
    assert_eq!(leases[0].fields["segment"], "lan-a");
    assert_eq!(leases[1].fields["segment"], "lan-c");
    let k2 = lease_env(&out.join("kernel/k2/lease.env"));
    let lan_b = topo.segment_index("lan-b").unwrap();
    let dhcp_b = topo.segments[lan_b].dhcp.as_ref().unwrap();
    assert_eq!(k2["ip"], "10.2.0.100");
    assert_eq!(k2["router"], "10.2.0.1");
    assert_eq!(
        k2["opt224"],
        hex(&dhcp_b.nat_public.unwrap().octets()),
        "option 224 = nat-b's public address"
    );
    let sns: Vec<u8> = dhcp_b
        .super_nodes
        .iter()
        .flat_map(|sa| {
            let mut b = sa.ip().octets().to_vec();
            b.extend_from_slice(&sa.port().to_be_bytes());
            b
        })
        .collect();
    assert_eq!(k2["opt225"], hex(&sns), "option 225 = the super nodes");
    assert_eq!(
        k2["opt61"],
        hex(&binfm_testbed::driver::kernel_host_client_id("k2"))
    );
    let _ = dhcp;

    // 4. After the move, k1's lease is on lan-c (its script wrote the new one), and the
    //    program run after the move saw the new address.
    let k1 = lease_env(&out.join("kernel/k1/lease.env"));
    assert_eq!(k1["ip"], "10.3.0.100");
    assert_eq!(
        k1["opt224"], "c6336403",
        "nat-c's public address 198.51.100.3"
    );
    let after_move = std::fs::read_dir(out.join("exec"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("-k1.stdout"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .find(|t| t.contains("tun0"))
        .expect("the `ip addr` step's output");
    assert!(after_move.contains("inet 10.3.0.100/24"), "{after_move}");

    // The path applies to the kernel host: k2's pings cross 30 ms + 10 ms each way.
    let ping = std::fs::read_dir(out.join("exec"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .find(|t| t.contains("rtt min/avg/max"))
        .expect("k2's ping output");
    let min: f64 = ping
        .split("rtt min/avg/max/mdev = ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|m| m.parse().ok())
        .unwrap();
    assert!((80.0..95.0).contains(&min), "min RTT {min} ms: {ping}");

    // The exec steps' exit codes are in events.jsonl; the one still running at the end was
    // killed and says so.
    let ends: Vec<_> = events.iter().filter(|e| e.kind == "exec.end").collect();
    assert_eq!(ends.len(), 5, "{ends:?}");
    let code = |needle: &str| {
        ends.iter()
            .find(|e| {
                e.fields["command"]
                    .as_str()
                    .is_some_and(|c| c.contains(needle))
            })
            .map(|e| e.fields.clone())
            .unwrap_or_else(|| panic!("no exec.end for {needle}"))
    };
    assert_eq!(code("hello from k1")["exit_code"], 0);
    assert_eq!(code("exit 3")["exit_code"], 3);
    assert_eq!(code("sleep 60")["killed_at_end"], true);

    // 2. The UDP program's datagram came back ...
    let echoed = std::fs::read_dir(out.join("exec"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .any(|t| t.contains("hello from k1"));
    assert!(echoed, "nc printed the echo");
    // ... and tshark shows it leaving nat-a from port H16(10.1.0.100, 5000), and the reply
    // delivered back to k1 on lan-a.
    if let Some(flows) = udp_flows(&out.join("capture.pcapng")) {
        let port = binfm_roles::nat::h16(Ipv4Addr::new(10, 1, 0, 100), 5000);
        let has = |i: &str, s: &str, sp: u16, d: &str, dp: u16| {
            flows.contains(&(i.into(), s.into(), sp, d.into(), dp))
        };
        assert!(
            has("lan-a", "10.1.0.100", 5000, "198.51.100.10", 7),
            "{flows:?}"
        );
        assert!(
            has("public", "198.51.100.1", port, "198.51.100.10", 7),
            "source port H16 = {port}: {flows:?}"
        );
        assert!(
            has("public", "198.51.100.10", 7, "198.51.100.1", port),
            "{flows:?}"
        );
        assert!(
            has("lan-a", "198.51.100.10", 7, "10.1.0.100", 5000),
            "{flows:?}"
        );
    } else {
        println!("SKIPPED (capture part): tshark is not installed");
    }

    // 8. Nothing left behind.
    let after = namespaces();
    assert!(after.iter().all(|n| before.contains(n)), "{after:?}");
}

/// Under `filtering`, k1 sends a datagram to the endpoint nat-b mapped for k2: how many
/// reach k2 on lan-b (from the capture).
fn unsolicited_delivered(filtering: &str, name: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mapped = binfm_roles::nat::h16(Ipv4Addr::new(10, 2, 0, 100), 6000);
    let steps = format!(
        r#"
[[scenario]]
at = "1s"
do = "exec k2 -- sh -c 'echo open | nc -u -w 3 -p 6000 198.51.100.10 7'"

[[scenario]]
at = "2s"
do = "exec k1 -- sh -c 'echo knock | nc -u -w 1 -p 5001 198.51.100.2 {mapped}'"
"#
    );
    let path = kernel_topology(dir.path(), name, "4s", Some(&steps), |t| {
        t.replace(
            "outside = { segment = \"public\", address = \"198.51.100.2\" }",
            &format!(
                "outside = {{ segment = \"public\", address = \"198.51.100.2\" }}\nfiltering = \"{filtering}\""
            ),
        )
    });
    let out = dir.path().join("out");
    let mut child = spawn_live(&path, &out);
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let (stdout, stderr) = output_of(&mut child);
    assert!(status.success(), "binfm failed: {stdout}\n{stderr}");
    let k2 = lease_env(&out.join("kernel/k2/lease.env"));
    assert_eq!(k2["ip"], "10.2.0.100");
    let flows = udp_flows(&out.join("capture.pcapng")).unwrap_or_default();
    // The knock left nat-a and reached nat-b's public address in both cases.
    assert!(
        flows
            .iter()
            .any(|f| f.0 == "public" && f.3 == "198.51.100.2" && f.4 == mapped),
        "{flows:?}"
    );
    let events = common::read_events(&out.join("events.jsonl"));
    let filtered = events
        .iter()
        .filter(|e| {
            e.host == "nat-b"
                && e.kind == "nat.drop"
                && e.fields["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("filter"))
        })
        .count();
    let delivered = flows
        .iter()
        .filter(|f| f.0 == "lan-b" && f.1 == "198.51.100.1" && f.3 == "10.2.0.100" && f.4 == 6000)
        .count();
    println!("{filtering}: delivered {delivered}, nat-b filter events {filtered}");
    if delivered == 0 {
        assert!(filtered >= 1, "a dropped knock is a filtering event");
    }
    delivered
}

#[test]
fn unsolicited_datagrams_between_kernel_hosts_follow_the_nat_filtering() {
    require_kernel_hosts!();
    if !common::have("tshark") {
        println!("SKIPPED: tshark is not installed (the capture decides)");
        return;
    }
    let _guard = lock();
    assert_eq!(unsolicited_delivered("address-dependent", "kt-adf"), 0);
    assert_eq!(unsolicited_delivered("endpoint-independent", "kt-eif"), 1);
}

#[test]
fn kill_9_of_a_run_with_three_kernel_hosts_then_binfm_clean_leaves_nothing() {
    require_kernel_hosts!();
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let steps = r#"
[[scenario]]
at = "100ms"
do = "exec k3 -- sleep 120"
"#;
    let path = kernel_topology(dir.path(), "kt-kill", "60s", Some(steps), |t| {
        t.replace(
            "[[host]]\nname = \"k2\"",
            "[[host]]\nname = \"k3\"\nsegment = \"lan-c\"\nkernel = { dhcp = true }\n\n[[host]]\nname = \"k2\"",
        )
    });
    let out = dir.path().join("out");
    let mut child = spawn_live(&path, &out);
    for k in ["k1", "k2", "k3"] {
        wait_for_file(
            &out.join(format!("kernel/{k}/lease.env")),
            Duration::from_secs(10),
        );
    }
    wait_for_file(&out.join("exec"), Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let ours: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with("binfm-kt-kill"))
        .collect();
    assert_eq!(
        ours.len(),
        4,
        "the run's namespace and three hosts: {ours:?}"
    );
    let sleepers = binfm_testbed::netns::pids("binfm-kt-kill-k3").unwrap();
    assert!(!sleepers.is_empty(), "sleep runs in k3");
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    let _ = wait_bounded(&mut child, Duration::from_secs(10));
    let out = binfm().arg("clean").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for n in &ours {
        assert!(
            stdout.contains(&format!("removed network namespace {n}")),
            "{stdout}"
        );
    }
    assert!(namespaces().is_empty(), "{:?}", namespaces());
    for pid in sleepers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .is_ok_and(|s| s.contains("State:\tZ")),
            "process {pid} of k3 still runs"
        );
    }
}

#[test]
fn kernel_hosts_are_refused_in_virtual_mode_with_their_line() {
    // Needs no privileges.
    let dir = tempfile::tempdir().unwrap();
    let path = kernel_topology(dir.path(), "kt-virt", "5s", None, |t| t);
    let out = binfm()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("kt-virt.toml:72: host `k1` is a kernel host"),
        "{stderr}"
    );
    assert!(stderr.contains("binfm run --live"), "{stderr}");
    let check = binfm().arg("check").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success());
    assert!(
        said.contains("kt-virt.toml:72: note: `k1` is a kernel host"),
        "{said}"
    );
}
