//! Live forwarding benchmark: a UDP flow between two kernel sockets on two segments through
//! the virtual fabric (`s1` -- virtual router -- `s2`, zero link delay, paced by the live
//! driver), beside the kernel's own veth path between two namespaces, measured in the same run.
//!
//! Not a criterion bench: criterion times a closure many times and models its cost, while this
//! is a rate and latency test across threads, namespaces and the real clock. It is a
//! `harness = false` bench with its own bounded loops and a printed report:
//!
//! ```sh
//! sudo cargo bench -p binfm-testbed --bench live_forward
//! ```
//!
//! For each path, in this order (veth first, then the fabric, for each measurement):
//! - Latency: [`PINGS`] ping-pongs with a reflector in B; reports one-way = RTT/2, median and
//!   p99, and for the fabric path the added one-way latency over veth, per segment hop.
//! - Unpaced: [`FLOOD`] datagrams of [`PAYLOAD`] bytes sent as fast as the sender can from A
//!   to B; reports delivered packets/s (first to last arrival) and loss.
//! - Paced: [`PACED`] datagrams at [`PACED_RATE`] per second (datagram `i` is due at
//!   `i / PACED_RATE` s; the sender sleeps [`PACE_SLEEP`] between bursts and then sends every
//!   datagram that is due); reports loss.
//!
//! The receiving sockets of both paths get a [`RCVBUF`]-byte receive buffer (`SO_RCVBUFFORCE`,
//! set on the socket, no sysctl), so a receiver that is scheduled late does not drop what the
//! path delivered. Each flow's loss is split by where the kernel counted it: the TUN's queue
//! (`tx_dropped` of TUN `s1`: the driver did not read in time), the receiving socket
//! (`RcvbufErrors` in B's namespace), the sender (`send` errors), or elsewhere.
//!
//! The two kernel ends of the fabric path sit in different namespaces (`binfm-lfwd` holds TUN
//! `s1`, `binfm-lfpeer` holds TUN `s2`; each TUN is created directly in its namespace by a
//! thread that entered it), otherwise the kernel would deliver between two local addresses
//! over loopback. Every namespace is `binfm-*` and deleted on every exit path (the
//! [`Netns`] guards; a watchdog deletes them and exits if the run passes [`HARD_LIMIT`]).
//! Without the privileges it prints `SKIPPED: <reason>` and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Context;
use binfm_testbed::driver::live;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::netns::{self, Netns};
use binfm_testbed::topology::Topology;
use nix::sys::socket::{setsockopt, sockopt};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = r#"
name = "lfwd"
duration = "60s"
[[segment]]
name = "s1"
subnet = "10.61.0.0/24"
kernel_address = "10.61.0.250"
[[segment]]
name = "s2"
subnet = "10.62.0.0/24"
kernel_address = "10.62.0.250"
[[router]]
name = "r"
ports = [{ segment = "s1", address = "10.61.0.1" }, { segment = "s2", address = "10.62.0.1" }]
"#;

/// Datagrams in the unpaced run.
const FLOOD: usize = 20_000;
/// Datagrams in the paced run, and their rate (one second of traffic).
const PACED: usize = 50_000;
const PACED_RATE: f64 = 50_000.0;
/// The paced sender's sleep between bursts.
const PACE_SLEEP: Duration = Duration::from_micros(100);
/// Receive buffer of the receiving sockets (bytes).
const RCVBUF: usize = 8 << 20;
/// UDP payload bytes.
const PAYLOAD: usize = 160;
/// Ping-pong round trips in the latency run (after [`WARMUP`] unmeasured ones).
const PINGS: usize = 1_000;
const WARMUP: usize = 20;
/// The whole run ends (namespaces deleted) by then, whatever happens.
const HARD_LIMIT: Duration = Duration::from_secs(60);
const PORT: u16 = 5000;
const NAMES: [&str; 4] = ["binfm-lfwd", "binfm-lfpeer", "binfm-lfva", "binfm-lfvb"];

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "`ip {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs `f` on a new thread inside namespace `path`.
fn spawn_in<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    std::thread::spawn(move || {
        netns::enter(&path)?;
        f()
    })
}

fn join<T>(h: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    h.join()
        .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
}

struct Path2 {
    name: &'static str,
    a: PathBuf,
    b: PathBuf,
    /// B's namespace name.
    b_name: &'static str,
    a_addr: Ipv4Addr,
    b_addr: Ipv4Addr,
}

struct Latency {
    median_us: f64,
    p99_us: f64,
    lost: usize,
}

/// One flow A -> B: what was sent and delivered, and where the kernel counted losses.
struct Flow {
    sent: usize,
    send_errors: usize,
    sent_pps: f64,
    delivered: usize,
    /// Delivered packets/s between the first and the last arrival.
    pps: f64,
    /// Dropped at TUN `s1`'s queue (fabric only).
    tun_dropped: u64,
    /// Dropped at the receiving socket (`RcvbufErrors`).
    socket_dropped: u64,
}

impl Flow {
    fn lost(&self) -> usize {
        self.sent.saturating_sub(self.delivered)
    }

    fn loss_pct(&self) -> f64 {
        100.0 * self.lost() as f64 / self.sent.max(1) as f64
    }

    /// Losses no counter accounts for.
    fn elsewhere(&self) -> u64 {
        (self.lost() as u64)
            .saturating_sub(self.send_errors as u64)
            .saturating_sub(self.tun_dropped)
            .saturating_sub(self.socket_dropped)
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Ping-pong: reflector in B, client in A; one-way = RTT / 2.
fn latency(p: &Path2, deadline: Instant) -> anyhow::Result<Latency> {
    let b_addr = p.b_addr;
    let ready = Arc::new(AtomicBool::new(false));
    let r2 = ready.clone();
    let reflector = spawn_in(p.b.clone(), move || {
        let s = UdpSocket::bind((b_addr, PORT))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        r2.store(true, Ordering::SeqCst);
        let mut buf = [0u8; 2048];
        let mut idle = 0;
        while idle < 4 && Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    idle = 0;
                    s.send_to(&buf[..n], from)?;
                }
                Err(_) => idle += 1,
            }
        }
        Ok(())
    });
    while !ready.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a_addr, to) = (p.a_addr, SocketAddr::from((b_addr, PORT)));
    let client = spawn_in(p.a.clone(), move || {
        let s = UdpSocket::bind((a_addr, 0))?;
        s.connect(to)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut rtts = Vec::with_capacity(PINGS);
        let mut lost = 0;
        let mut buf = [0u8; 2048];
        for i in 0..(WARMUP + PINGS) {
            if Instant::now() >= deadline {
                lost += WARMUP + PINGS - i;
                break;
            }
            let mut msg = [0u8; PAYLOAD];
            msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let t = Instant::now();
            s.send(&msg)?;
            loop {
                match s.recv(&mut buf) {
                    Ok(n) if n >= 8 && buf[..8] == msg[..8] => {
                        if i >= WARMUP {
                            rtts.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        break;
                    }
                    Ok(_) => continue, // a late answer to a lost ping
                    Err(_) => {
                        lost += usize::from(i >= WARMUP);
                        break;
                    }
                }
            }
        }
        Ok((rtts, lost))
    });
    let (mut rtts, lost) = join(client)?;
    join(reflector)?;
    let mut one_way: Vec<f64> = rtts.drain(..).map(|r| r / 2.0).collect();
    one_way.sort_by(f64::total_cmp);
    Ok(Latency {
        median_us: percentile(&one_way, 0.5),
        p99_us: percentile(&one_way, 0.99),
        lost,
    })
}

/// `RcvbufErrors` of namespace `ns` (`/proc/net/snmp`, read inside it).
fn rcvbuf_errors(ns: &str) -> anyhow::Result<u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        anyhow::bail!("no Udp lines in {ns}'s /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .context("RcvbufErrors")
}

/// `tx_dropped` of device `dev` in namespace `ns` (packets the kernel could not queue into it).
fn tx_dropped(ns: &str, dev: &str) -> anyhow::Result<u64> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-s", "-n", ns, "link", "show", "dev", dev])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v[0]["stats64"]["tx"]["dropped"]
        .as_u64()
        .with_context(|| format!("tx dropped of {dev} in {ns}"))
}

/// A flow of `count` datagrams A -> B: unpaced (`rate` None) or paced at `rate` datagrams/s.
/// `tun` names the namespace and TUN whose queue the flow enters (fabric path).
fn flow(
    p: &Path2,
    deadline: Instant,
    count: usize,
    rate: Option<f64>,
    tun: Option<(&str, &str)>,
) -> anyhow::Result<Flow> {
    let b_addr = p.b_addr;
    let tun_before = tun.map(|(ns, dev)| tx_dropped(ns, dev)).transpose()?;
    let sock_before = rcvbuf_errors(p.b_name)?;
    let ready = Arc::new(AtomicBool::new(false));
    let r2 = ready.clone();
    let receiver = spawn_in(p.b.clone(), move || {
        let s = UdpSocket::bind((b_addr, PORT + 1))?;
        setsockopt(&s, sockopt::RcvBufForce, &RCVBUF)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        r2.store(true, Ordering::SeqCst);
        let mut buf = [0u8; 2048];
        let (mut n, mut first, mut last) = (0usize, None, None);
        while Instant::now() < deadline && n < count {
            match s.recv(&mut buf) {
                Ok(_) => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                    n += 1;
                }
                Err(_) if first.is_some() => break, // 500 ms of silence: the flow is over
                Err(_) => {}
            }
        }
        let span = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        };
        Ok((n, span))
    });
    while !ready.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a_addr, to) = (p.a_addr, SocketAddr::from((b_addr, PORT + 1)));
    let sender = spawn_in(p.a.clone(), move || {
        let s = UdpSocket::bind((a_addr, 0))?;
        s.connect(to)?;
        let msg = [0x5au8; PAYLOAD];
        let mut errors = 0;
        let t = Instant::now();
        let mut sent = 0;
        while sent < count && Instant::now() < deadline {
            let due = match rate {
                None => count,
                Some(r) => (((t.elapsed().as_secs_f64() * r) as usize) + 1).min(count),
            };
            while sent < due {
                // ENOBUFS and the like count as loss, like a drop further on.
                if s.send(&msg).is_err() {
                    errors += 1;
                }
                sent += 1;
            }
            if sent < count {
                std::thread::sleep(PACE_SLEEP);
            }
        }
        Ok((sent, errors, t.elapsed().as_secs_f64()))
    });
    let (sent, send_errors, send_secs) = join(sender)?;
    let (delivered, span) = join(receiver)?;
    let tun_dropped = match (tun, tun_before) {
        (Some((ns, dev)), Some(before)) => tx_dropped(ns, dev)?.saturating_sub(before),
        _ => 0,
    };
    let socket_dropped = rcvbuf_errors(p.b_name)?.saturating_sub(sock_before);
    Ok(Flow {
        sent,
        send_errors,
        sent_pps: sent as f64 / send_secs.max(1e-9),
        delivered,
        pps: if span > 0.0 {
            (delivered.saturating_sub(1)) as f64 / span
        } else {
            f64::NAN
        },
        tun_dropped,
        socket_dropped,
    })
}

fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    let deadline = start + HARD_LIMIT - Duration::from_secs(5);
    // Namespaces (guards dropped on every return, and while unwinding from a panic).
    let fab_a = Netns::create(NAMES[0])?;
    let fab_b = Netns::create(NAMES[1])?;
    let veth_a = Netns::create(NAMES[2])?;
    let veth_b = Netns::create(NAMES[3])?;
    for ns in [&fab_a, &fab_b, &veth_a, &veth_b] {
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
    }

    // Reference path: veth pair made inside the namespaces, never in the root namespace.
    ip(&[
        "-n",
        veth_a.name(),
        "link",
        "add",
        "va",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        veth_b.name(),
    ])?;
    veth_a.exec(&["ip", "addr", "add", "10.63.0.1/24", "dev", "va"])?;
    veth_b.exec(&["ip", "addr", "add", "10.63.0.2/24", "dev", "vb"])?;
    veth_a.exec(&["ip", "link", "set", "va", "up"])?;
    veth_b.exec(&["ip", "link", "set", "vb", "up"])?;

    // Fabric path: TUN s1 in binfm-lfwd, TUN s2 in binfm-lfpeer, each made in its namespace.
    let topo = Topology::from_str(TOPOLOGY, Path::new("live_forward.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut devices = Vec::new();
    for (ns, s) in [(&fab_a, &topo.segments[0]), (&fab_b, &topo.segments[1])] {
        let (name, addr, len) = (
            s.name.clone(),
            s.kernel_address.context("kernel_address")?,
            s.subnet.prefix_len(),
        );
        devices.push(ns.run_inside(move || {
            live::tun_builder(&name)
                .ipv4(addr, len, None)
                .build_sync()
                .with_context(|| format!("creating TUN {name}"))
        })?);
    }
    fab_a.exec(&[
        "ip",
        "route",
        "add",
        "10.62.0.0/24",
        "via",
        "10.61.0.1",
        "dev",
        "s1",
    ])?;
    fab_b.exec(&[
        "ip",
        "route",
        "add",
        "10.61.0.0/24",
        "via",
        "10.62.0.1",
        "dev",
        "s2",
    ])?;

    // The live driver on its own thread, until the measurements are done.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let topo2 = topo.clone();
    let driver = std::thread::spawn(move || -> anyhow::Result<live::LiveCounters> {
        let tap = live::Tap::new(topo2.segments.len());
        let mut net: Network<std::io::Sink, live::Tap> =
            Network::with_boundary(&topo2, 1, None, EventLog::create(None)?, None, tap)?;
        live::attach_kernel(&mut net, &topo2);
        let tap = net.boundary_mut();
        tap.set_kernel_gateway(0, Ipv4Addr::new(10, 61, 0, 1));
        tap.set_kernel_gateway(1, Ipv4Addr::new(10, 62, 0, 1));
        let (counters, _) = live::pace(&mut net, devices, HARD_LIMIT, &stop2)?;
        Ok(counters)
    });

    let fabric = Path2 {
        name: "fabric (TUN s1 -> router -> TUN s2)",
        a: fab_a.path(),
        b: fab_b.path(),
        b_name: NAMES[1],
        a_addr: Ipv4Addr::new(10, 61, 0, 250),
        b_addr: Ipv4Addr::new(10, 62, 0, 250),
    };
    let veth = Path2 {
        name: "kernel veth",
        a: veth_a.path(),
        b: veth_b.path(),
        b_name: NAMES[3],
        a_addr: Ipv4Addr::new(10, 63, 0, 1),
        b_addr: Ipv4Addr::new(10, 63, 0, 2),
    };
    let s1 = Some((NAMES[0], "s1"));
    let measured = (|| -> anyhow::Result<_> {
        let lat_v = latency(&veth, deadline)?;
        let lat_f = latency(&fabric, deadline)?;
        let thr_v = flow(&veth, deadline, FLOOD, None, None)?;
        let thr_f = flow(&fabric, deadline, FLOOD, None, s1)?;
        let paced_v = flow(&veth, deadline, PACED, Some(PACED_RATE), None)?;
        let paced_f = flow(&fabric, deadline, PACED, Some(PACED_RATE), s1)?;
        Ok((lat_v, lat_f, thr_v, thr_f, paced_v, paced_f))
    })();
    stop.store(true, Ordering::SeqCst);
    let counters = join(driver)?;
    let (lat_v, lat_f, thr_v, thr_f, paced_v, paced_f) = measured?;

    println!(
        "live_forward: {PAYLOAD}-byte UDP payloads, {} cores",
        cores()
    );
    for (p, l, t, q) in [
        (&veth, &lat_v, &thr_v, &paced_v),
        (&fabric, &lat_f, &thr_f, &paced_f),
    ] {
        println!("{}:", p.name);
        println!(
            "  unpaced: {} sent ({:.0} pkt/s offered), {} delivered ({:.1}% loss; {}), {:.0} pkt/s delivered",
            t.sent,
            t.sent_pps,
            t.delivered,
            t.loss_pct(),
            where_lost(t),
            t.pps
        );
        println!(
            "  paced: {} sent at {:.0} pkt/s, {} delivered, {} lost ({:.2}%; {})",
            q.sent,
            q.sent_pps,
            q.delivered,
            q.lost(),
            q.loss_pct(),
            where_lost(q)
        );
        println!(
            "  latency: {PINGS} ping-pongs, one-way (RTT/2) median {:.1} us, p99 {:.1} us, {} lost",
            l.median_us, l.p99_us, l.lost
        );
    }
    let (dm, dp) = (
        lat_f.median_us - lat_v.median_us,
        lat_f.p99_us - lat_v.p99_us,
    );
    println!(
        "fabric / veth, unpaced delivered pkt/s: {:.2}",
        thr_f.pps / thr_v.pps
    );
    println!(
        "fabric over veth, one-way: +{dm:.1} us median, +{dp:.1} us p99; per segment hop (2 hops, 1 virtual router): +{:.1} us median, +{:.1} us p99",
        dm / 2.0,
        dp / 2.0
    );
    println!(
        "live driver: {} written into TUNs, {} write errors, {} read from TUNs, {} ignored; {:.1} s total",
        counters.tun_written,
        counters.tun_write_errors,
        counters.kernel_injected,
        counters.kernel_ignored,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn where_lost(f: &Flow) -> String {
    format!(
        "send errors {}, TUN queue {}, receiving socket {}, elsewhere {}",
        f.send_errors,
        f.tun_dropped,
        f.socket_dropped,
        f.elsewhere()
    )
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let missing = netns::missing_prerequisites();
    if !missing.is_empty() {
        println!("SKIPPED: live_forward needs {}", missing.join(", "));
        return;
    }
    if let Ok(existing) = netns::list()
        && let Some(n) = existing.iter().find(|n| NAMES.contains(&n.as_str()))
    {
        println!("SKIPPED: namespace {n} exists already (another run, or `binfm clean`)");
        return;
    }
    // Last resort past the hard limit: delete our namespaces and leave.
    std::thread::spawn(|| {
        std::thread::sleep(HARD_LIMIT + Duration::from_secs(5));
        eprintln!("live_forward: hard time limit passed; deleting its namespaces");
        for n in NAMES {
            let _ = ip(&["netns", "delete", n]);
        }
        std::process::exit(2);
    });
    if let Err(e) = run() {
        eprintln!("live_forward failed: {e:#}");
        std::process::exit(1);
    }
}
