//! Live mode. The first tests need no privileges (the kernel member and the mirror, driven in
//! virtual time); the others create a network namespace and TUN devices and print
//! `SKIPPED: <reason>` without CAP_NET_ADMIN/CAP_SYS_ADMIN, /dev/net/tun or `ip`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use binfm_testbed::driver::live;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::topology::Topology;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// An ICMP echo request from `src` to `dst` (checksums filled in).
fn ping_packet(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let payload = [0x42u8; 32];
    let builder = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x1234, seq);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

fn live_topology() -> Topology {
    Topology::load(&common::root().join("topologies/live-kernel.toml")).unwrap()
}

#[test]
fn kernel_member_gets_ping_replies_through_the_mirror() {
    let topo = live_topology();
    let tap = live::Tap::new(topo.segments.len());
    let mut net: Network<Vec<u8>, live::Tap> =
        Network::with_boundary(&topo, 1, None, EventLog::create(None).unwrap(), None, tap).unwrap();
    live::attach_kernel(&mut net, &topo);
    net.start().unwrap();
    let public = topo.segment_index("public").unwrap();
    let kernel = Ipv4Addr::new(198, 51, 100, 250);
    let echo = Ipv4Addr::new(198, 51, 100, 10);
    net.run_until(Duration::from_millis(100), &AtomicBool::new(false))
        .unwrap();
    net.boundary_mut().drain();
    assert!(live::inject(&mut net, public, ping_packet(kernel, echo, 1)).unwrap());
    net.run_until(Duration::from_millis(200), &AtomicBool::new(false))
        .unwrap();
    let mirrored = net.boundary_mut().drain();
    let replies: Vec<_> = mirrored
        .iter()
        .filter(|(s, p)| {
            *s == public
                && etherparse::Ipv4HeaderSlice::from_slice(p)
                    .is_ok_and(|h| h.destination_addr() == kernel && h.protocol().0 == 1)
        })
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "one echo reply for the kernel: {mirrored:?}"
    );
}

// ---- Privileged tests: real namespace, real TUN devices, the `binfm` binary. ----

/// Privileged tests run one at a time: `binfm clean` removes every `binfm-*` namespace.
static PRIVILEGED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Why live tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let missing = binfm_testbed::netns::missing_prerequisites();
    (!missing.is_empty()).then(|| format!("live mode needs {}", missing.join(", ")))
}

macro_rules! require_live {
    () => {
        if let Some(reason) = skip_reason() {
            println!("SKIPPED: {reason}");
            return;
        }
    };
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    PRIVILEGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `topologies/live-kernel.toml` renamed to `name` (so each test has its own namespace),
/// written into `dir`.
fn topology_copy(dir: &std::path::Path, name: &str, duration: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::root().join("topologies/live-kernel.toml"))
        .unwrap()
        .replace("name = \"livek\"", &format!("name = \"{name}\""))
        .replace("duration = \"10s\"", &format!("duration = \"{duration}\""));
    assert!(text.contains(&format!("name = \"{name}\"")));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn namespaces() -> Vec<String> {
    binfm_testbed::netns::list().unwrap()
}

fn binfm() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_binfm"))
}

/// A `binfm` child that gets SIGTERM (then SIGKILL) if a test fails while it runs.
struct Live(std::process::Child);

impl std::ops::Deref for Live {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Live {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `binfm run --live` on `topo` into `out`.
fn spawn_live(topo: &std::path::Path, out: &std::path::Path) -> Live {
    let child = binfm()
        .args(["run", "--live"])
        .arg(topo)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    Live(child)
}

/// Waits (at most 10 s) until the namespace exists and its `public` TUN is up with the kernel
/// address; returns a UDP socket inside the namespace bound to it and connected to the echo
/// host.
fn kernel_socket(ns: &str) -> std::net::UdpSocket {
    let path = std::path::Path::new(binfm_testbed::netns::NETNS_DIR).join(ns);
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{path:?} never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // `ip netns add` creates the file before it mounts the namespace on it: retry.
        while let Err(e) = binfm_testbed::netns::enter(&path) {
            assert!(
                std::time::Instant::now() < deadline,
                "cannot enter {path:?}: {e:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let echo = std::net::SocketAddr::from((Ipv4Addr::new(198, 51, 100, 10), 7));
        loop {
            // Bound once the address exists; connected once the TUN is up (on-link route).
            let sock = std::net::UdpSocket::bind((Ipv4Addr::new(198, 51, 100, 250), 0))
                .and_then(|s| s.connect(echo).map(|()| s));
            match sock {
                Ok(s) => return s,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the kernel address never came up: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    });
    handle.join().unwrap()
}

/// Waits at most `limit` for the child; kills it after that.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("binfm did not end within {limit:?} (killed: {status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output_of(child: &mut std::process::Child) -> (String, String) {
    use std::io::Read;
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    (out, err)
}

#[test]
fn live_run_echoes_kernel_udp_answers_ping_and_removes_its_namespace() {
    require_live!();
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology_copy(dir.path(), "lt-udp", "3s");
    let out = dir.path().join("out");
    let before = namespaces();
    assert!(!before.contains(&"binfm-lt-udp".to_owned()));
    let mut child = spawn_live(&topo, &out);

    // A kernel UDP socket in the namespace exchanges datagrams with the virtual echo host.
    let sock = kernel_socket("binfm-lt-udp");
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let echo = std::net::SocketAddr::from((Ipv4Addr::new(198, 51, 100, 10), 7));
    let mut echoed = 0;
    for i in 0..3u8 {
        let msg = [b'k', b'e', b'r', b'n', b'e', b'l', i];
        sock.send(&msg).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(from, echo);
        assert_eq!(&buf[..n], &msg);
        echoed += 1;
    }
    assert_eq!(echoed, 3);
    drop(sock);

    // A kernel ping gets echo replies from the virtual host's smoltcp stack.
    if common::have("ping") || std::path::Path::new("/usr/bin/ping").exists() {
        let ping = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                "binfm-lt-udp",
                "ping",
                "-c",
                "2",
                "-W",
                "1",
            ])
            .arg("198.51.100.10")
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "ping failed: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        assert!(String::from_utf8_lossy(&ping.stdout).contains("2 received"));
    } else {
        println!("SKIPPED (ping part): `ping` is not installed (package iputils-ping)");
    }

    let status = wait_bounded(&mut child, Duration::from_secs(20));
    let (stdout, stderr) = output_of(&mut child);
    assert!(status.success(), "binfm failed: {stdout}\n{stderr}");
    assert!(stdout.contains("live: namespace binfm-lt-udp"), "{stdout}");

    // Its namespace is gone, and no other appeared.
    let after = namespaces();
    assert!(!after.contains(&"binfm-lt-udp".to_owned()), "{after:?}");
    assert!(after.iter().all(|n| before.contains(n)), "{after:?}");

    // The capture is complete and holds the kernel's packets and the echo host's answers.
    let packets = common::read_capture(&out.join("capture.pcapng"));
    let from_kernel = packets
        .iter()
        .filter(|p| p.segment == "public" && p.data.get(12..16) == Some(&[198, 51, 100, 250]))
        .count();
    let to_kernel = packets
        .iter()
        .filter(|p| p.segment == "public" && p.data.get(16..20) == Some(&[198, 51, 100, 250]))
        .count();
    assert!(from_kernel >= 3, "{from_kernel} packets from the kernel");
    assert!(to_kernel >= 3, "{to_kernel} packets to the kernel");
    assert!(packets.iter().all(|p| p.t < Duration::from_secs(10)));
    let results = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(results.contains("\"interrupted\": false"), "{results}");
}

#[test]
fn sigint_and_sigterm_end_a_live_run_cleanly() {
    require_live!();
    let _guard = lock();
    for (signal, name) in [("-INT", "lt-int"), ("-TERM", "lt-term")] {
        let dir = tempfile::tempdir().unwrap();
        let topo = topology_copy(dir.path(), name, "60s");
        let out = dir.path().join("out");
        let ns = format!("binfm-{name}");
        let mut child = spawn_live(&topo, &out);
        drop(kernel_socket(&ns));
        std::thread::sleep(Duration::from_millis(300));
        let kill = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(kill.success());
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        let (stdout, stderr) = output_of(&mut child);
        assert_eq!(status.code(), Some(130), "{signal}: {stdout}\n{stderr}");
        assert!(!namespaces().contains(&ns), "{signal} left {ns}");
        // Files are closed and valid.
        let packets = common::read_capture(&out.join("capture.pcapng"));
        assert!(!packets.is_empty());
        let events = common::read_events(&out.join("events.jsonl"));
        assert!(events.iter().any(|e| e.kind == "live.signal"), "{signal}");
        let results = std::fs::read_to_string(out.join("results.json")).unwrap();
        assert!(results.contains("\"interrupted\": true"), "{results}");
    }
}

#[test]
fn a_killed_run_leaves_its_namespace_and_binfm_clean_removes_it() {
    require_live!();
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology_copy(dir.path(), "lt-kill", "60s");
    let mut child = spawn_live(&topo, &dir.path().join("out"));
    drop(kernel_socket("binfm-lt-kill"));
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    let _ = wait_bounded(&mut child, Duration::from_secs(10));
    assert!(namespaces().contains(&"binfm-lt-kill".to_owned()));

    let out = binfm().arg("clean").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("removed network namespace binfm-lt-kill"),
        "{stdout}"
    );
    assert!(namespaces().is_empty(), "{:?}", namespaces());
    let again = binfm().arg("clean").output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("no binfm-* network namespace"));
}

#[test]
fn live_without_capabilities_names_what_is_missing() {
    require_live!();
    if !common::have("setpriv") && !std::path::Path::new("/usr/bin/setpriv").exists() {
        println!("SKIPPED: `setpriv` (util-linux) is not installed");
        return;
    }
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let topo = topology_copy(dir.path(), "lt-nocap", "3s");
    let out = std::process::Command::new("setpriv")
        .args([
            "--bounding-set",
            "-net_admin,-sys_admin",
            "--inh-caps",
            "-net_admin,-sys_admin",
        ])
        .arg(env!("CARGO_BIN_EXE_binfm"))
        .args(["run", "--live"])
        .arg(&topo)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    assert!(stderr.contains("`binfm run FILE`"), "{stderr}");
    assert!(!namespaces().contains(&"binfm-lt-nocap".to_owned()));
}

#[test]
fn a_panic_while_the_namespace_exists_still_removes_it() {
    require_live!();
    let _guard = lock();
    let name = "binfm-lt-panic";
    let r = std::panic::catch_unwind(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ns = binfm_testbed::netns::Netns::create(name).unwrap();
            let inside = ns.run_inside(|| Ok(())).is_ok();
            assert!(namespaces().contains(&name.to_owned()));
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("a role panicked (inside: {inside})");
        })
    });
    assert!(r.is_err());
    assert!(
        !namespaces().contains(&name.to_owned()),
        "{:?}",
        namespaces()
    );
}

#[test]
fn only_binfm_namespaces_are_touched() {
    // Needs no privileges: the name check comes before anything is run.
    for bad in ["", "binfm-", "other", "binfm-a/b", "binfm-../x"] {
        assert!(binfm_testbed::netns::Netns::create(bad).is_err(), "{bad}");
    }
    assert!(binfm_testbed::netns::enter(std::path::Path::new("/proc/self/ns/net")).is_err());
}

#[path = "live/kernel_hosts.rs"]
mod kernel_hosts;

#[path = "live/daemons.rs"]
mod daemons;

#[path = "live/daemons_topology.rs"]
mod daemons_topology;
