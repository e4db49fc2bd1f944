//! Kernel hosts in live mode: each is its own network namespace `binfm-<topology>-<host>`
//! with one TUN device, [`TUN_NAME`], that the live driver attaches to a segment as a member
//! of the fabric. Real programs run inside: busybox `udhcpc` for a DHCP host, and the
//! programs of `exec` steps. Their output goes to `OUT/kernel/<host>/` and `OUT/exec/`.
//!
//! Processes: every program is started as `ip netns exec NS [setpriv --pdeathsig KILL --]
//! CMD...`, so it dies with binfm even on SIGKILL (when util-linux's `setpriv` is there); at
//! the end of a run the driver kills the ones still running (by their pid, they are its
//! children) and logs how each ended. Namespaces go with their [`Netns`] guards.

use crate::netns::{self, Netns};
use crate::topology::{KernelAddressing, KernelHostDef, Topology};
use anyhow::Context;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The TUN device of a kernel host, inside its namespace.
pub const TUN_NAME: &str = "tun0";

/// The namespace of kernel host `host` of topology `topology`.
pub fn namespace_name(topology: &str, host: &str) -> String {
    format!("{}{topology}-{host}", netns::PREFIX)
}

/// The DHCP client identifier (option 61) a kernel host's `udhcpc` sends: type 0 and
/// `binfm-<host>` (a TUN has no MAC, so the server tells clients apart by this).
pub fn client_id(host: &str) -> Vec<u8> {
    let mut id = vec![0u8];
    id.extend_from_slice(format!("binfm-{host}").as_bytes());
    id
}

/// The script `udhcpc` runs on each lease event: configures the TUN (address, default route
/// via the router option) and writes what it received, options 224 and 225 included (as
/// `opt224=<hex>`), to `lease.env` next to it.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Written by binfm. busybox udhcpc runs it with deconfig|bound|renew|nak|leasefail.
dir=$(dirname "$0")
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-$subnet}" dev "$interface"
    if [ -n "$router" ]; then
      set -- $router
      ip route replace default via "$1" dev "$interface" onlink
    fi
    env | grep -E '^(interface|ip|mask|subnet|router|serverid|lease|opt[0-9]+)=' | sort \
      > "$dir/lease.env.tmp" && mv "$dir/lease.env.tmp" "$dir/lease.env"
    ;;
esac
exit 0
"#;

/// How a program of the run ended.
#[derive(Debug)]
pub struct Exit {
    /// Kernel host index.
    pub host: usize,
    /// What ended: an `exec` step (its index) or the host's DHCP client.
    pub what: ProgramKind,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The run ended first and killed it.
    pub killed_at_end: bool,
}

/// Which program a [`Running`] entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// The program of scenario step `index`.
    Exec(usize),
    /// The host's `udhcpc`.
    Dhcp,
}

/// A program still running: asking `stop` kills it (the task then reports its [`Exit`]).
#[derive(Debug)]
struct Running {
    host: usize,
    what: ProgramKind,
    stop: Option<oneshot::Sender<()>>,
}

/// One kernel host's namespace and files.
#[derive(Debug)]
struct Host {
    def: KernelHostDef,
    ns: Netns,
    dir: PathBuf,
}

/// The kernel hosts of a live run and the programs running in them.
#[derive(Debug)]
pub struct KernelHosts {
    hosts: Vec<Host>,
    out_dir: PathBuf,
    running: Vec<Running>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits: mpsc::UnboundedReceiver<Exit>,
    pdeathsig: bool,
    /// The topology file's folder (for `{topology_dir}` in `exec` commands).
    topology_dir: PathBuf,
}

impl KernelHosts {
    /// No kernel hosts (a run without any, or a bench).
    pub fn none() -> KernelHosts {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        KernelHosts {
            hosts: Vec::new(),
            out_dir: PathBuf::new(),
            running: Vec::new(),
            exits_tx,
            exits,
            pdeathsig: false,
            topology_dir: PathBuf::new(),
        }
    }

    /// Creates every kernel host's namespace and TUN device (returned in host order); a
    /// static host gets its address and default route now.
    pub fn create(
        topo: &Topology,
        out_dir: &Path,
    ) -> anyhow::Result<(KernelHosts, Vec<tun_rs::SyncDevice>)> {
        let mut me = KernelHosts::none();
        me.out_dir = std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
        let dir = topo.path.parent().unwrap_or(Path::new("."));
        me.topology_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        me.pdeathsig = Path::new("/usr/bin/setpriv").exists() || Path::new("/bin/setpriv").exists();
        let mut devices = Vec::with_capacity(topo.kernel_hosts.len());
        for def in &topo.kernel_hosts {
            let ns = Netns::create(&namespace_name(&topo.name, &def.name))?;
            let prefix = topo.segments[def.segment].subnet.prefix_len();
            let addressing = def.addressing;
            let device = ns.run_inside(move || {
                let mut b = super::tun_builder(TUN_NAME);
                if let KernelAddressing::Static { address, .. } = addressing {
                    b = b.ipv4(address, prefix, None);
                }
                b.build_sync()
                    .with_context(|| format!("creating TUN device `{TUN_NAME}`"))
            })?;
            ns.exec(&["ip", "link", "set", "lo", "up"])?;
            ns.exec(&["ip", "link", "set", TUN_NAME, "up"])?;
            if let KernelAddressing::Static {
                gateway: Some(gw), ..
            } = def.addressing
            {
                let gw = gw.to_string();
                ns.exec(&["ip", "route", "add", "default", "via", &gw, "dev", TUN_NAME])?;
            }
            let dir = out_dir.join("kernel").join(&def.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            devices.push(device);
            me.hosts.push(Host {
                def: def.clone(),
                ns,
                dir,
            });
        }
        Ok((me, devices))
    }

    /// How many kernel hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Kernel host `k`'s namespace name.
    pub fn namespace(&self, k: usize) -> &str {
        self.hosts.get(k).map_or("", |h| h.ns.name())
    }

    /// Starts kernel host `k`'s DHCP client (after stopping one still running and removing
    /// the old address, as after a move). Returns its pid.
    pub fn start_dhcp(&mut self, k: usize) -> anyhow::Result<Option<u32>> {
        if k >= self.hosts.len() {
            return Ok(None);
        }
        self.stop(|r| r.host == k && r.what == ProgramKind::Dhcp);
        let host = &self.hosts[k];
        host.ns.exec(&["ip", "addr", "flush", "dev", TUN_NAME])?;
        let _ = host.ns.exec(&["ip", "route", "flush", "dev", TUN_NAME]);
        let script = host.dir.join("udhcpc.sh");
        write_executable(&script, UDHCPC_SCRIPT)?;
        let _ = std::fs::remove_file(host.dir.join("lease.env"));
        let id_hex: String = client_id(&host.def.name)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let argv = vec![
            "udhcpc".to_owned(),
            "-f".into(), // foreground: it stays our child
            "-i".into(),
            TUN_NAME.into(),
            "-s".into(),
            script.display().to_string(),
            "-x".into(),
            format!("0x3d:{id_hex}"),
            "-O".into(),
            "224".into(),
            "-O".into(),
            "225".into(),
            "-t".into(),
            "10".into(),
            "-T".into(),
            "1".into(),
        ];
        let log = host.dir.join("udhcpc.log");
        self.spawn(k, ProgramKind::Dhcp, &argv, &log, &log)
    }

    /// Starts the program of `exec` step `index` in kernel host `k`; its output goes to
    /// `OUT/exec/<line>-<host>.stdout` and `.stderr`. Returns the pid and the two paths.
    pub fn exec(
        &mut self,
        index: usize,
        line: usize,
        k: usize,
        argv: &[String],
    ) -> anyhow::Result<(Option<u32>, PathBuf, PathBuf)> {
        let name = self.hosts.get(k).map_or("?", |h| h.def.name.as_str());
        let dir = self.out_dir.join("exec");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stdout = dir.join(format!("{line}-{name}.stdout"));
        let stderr = dir.join(format!("{line}-{name}.stderr"));
        let argv = self.expand(k, argv);
        let pid = self.spawn(k, ProgramKind::Exec(index), &argv, &stdout, &stderr)?;
        Ok((pid, stdout, stderr))
    }

    /// An `exec` command as it runs: `binfm` as the program is this binary, and `{out}`,
    /// `{topology_dir}` and `{host}` in any word are the run's output folder, the topology
    /// file's folder (both absolute) and the kernel host's name.
    pub fn expand(&self, k: usize, argv: &[String]) -> Vec<String> {
        let name = self.hosts.get(k).map_or("", |h| h.def.name.as_str());
        let out = self.out_dir.display().to_string();
        let topo = self.topology_dir.display().to_string();
        argv.iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0
                    && w == "binfm"
                    && let Ok(exe) = std::env::current_exe()
                {
                    return exe.display().to_string();
                }
                w.replace("{out}", &out)
                    .replace("{topology_dir}", &topo)
                    .replace("{host}", name)
            })
            .collect()
    }

    fn spawn(
        &mut self,
        k: usize,
        what: ProgramKind,
        argv: &[String],
        stdout: &Path,
        stderr: &Path,
    ) -> anyhow::Result<Option<u32>> {
        let Some(host) = self.hosts.get(k) else {
            return Ok(None);
        };
        let out = std::fs::File::create(stdout)
            .with_context(|| format!("creating {}", stdout.display()))?;
        let err = if stderr == stdout {
            out.try_clone().context("sharing the log file")?
        } else {
            std::fs::File::create(stderr)
                .with_context(|| format!("creating {}", stderr.display()))?
        };
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", host.ns.name()]);
        if self.pdeathsig {
            cmd.args(["setpriv", "--pdeathsig", "KILL", "--"]);
        }
        cmd.args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting `{}` in {}", argv.join(" "), host.ns.name()))?;
        let pid = child.id();
        let (stop_tx, stop_rx) = oneshot::channel();
        let tx = self.exits_tx.clone();
        tokio::spawn(async move {
            let (status, killed_at_end) = tokio::select! {
                s = child.wait() => (s, false),
                _ = stop_rx => {
                    // SIGTERM first (a daemon flushes its files), SIGKILL after 2 s.
                    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                        Ok(s) => (s, true),
                        Err(_) => {
                            let _ = child.start_kill();
                            (child.wait().await, true)
                        }
                    }
                }
            };
            let (code, signal) = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal())
                }
                Err(_) => (None, None),
            };
            let _ = tx.send(Exit {
                host: k,
                what,
                code,
                signal,
                killed_at_end,
            });
        });
        self.running.push(Running {
            host: k,
            what,
            stop: Some(stop_tx),
        });
        Ok(pid)
    }

    /// Kills the running programs `which` selects (their exits are still reported).
    fn stop(&mut self, which: impl Fn(&Running) -> bool) {
        for r in self.running.iter_mut().filter(|r| which(r)) {
            if let Some(s) = r.stop.take() {
                let _ = s.send(());
            }
        }
    }

    /// The next program that ended (waits; pending forever when none runs).
    pub async fn next_exit(&mut self) -> Exit {
        loop {
            if let Some(e) = self.exits.recv().await {
                self.forget(&e);
                return e;
            }
        }
    }

    /// A program that ended, if one did (does not wait).
    pub fn try_exit(&mut self) -> Option<Exit> {
        let e = self.exits.try_recv().ok()?;
        self.forget(&e);
        Some(e)
    }

    /// Drops the oldest entry of the program that ended (a restarted DHCP client has the
    /// same kind; the stopped one was started first).
    fn forget(&mut self, e: &Exit) {
        if let Some(i) = self
            .running
            .iter()
            .position(|r| r.host == e.host && r.what == e.what)
        {
            self.running.remove(i);
        }
    }

    /// Stops every program still running (SIGTERM, then SIGKILL after 2 s) and collects how
    /// each ended (waiting at most `limit`).
    pub async fn stop_all(&mut self, limit: Duration) -> Vec<Exit> {
        self.stop(|_| true);
        let mut exits = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.exits.recv()).await {
                Ok(Some(e)) => {
                    self.forget(&e);
                    exits.push(e);
                }
                _ => break,
            }
        }
        exits
    }

    /// Deletes every namespace now, reporting the first failure.
    pub fn delete(self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for h in self.hosts {
            let r = h.ns.delete();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Kernel host `k`'s definition.
    pub fn def(&self, k: usize) -> Option<&KernelHostDef> {
        self.hosts.get(k).map(|h| &h.def)
    }
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// What a DHCP ACK delivered to a kernel host gives it: the leased address and the router,
/// when `packet` is an IPv4/UDP DHCP ACK to port 68 carrying client identifier `id`.
pub fn snoop_ack(packet: &[u8], id: &[u8]) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
    use dhcproto::{Decodable, Decoder, v4};
    let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != smoltcp::wire::IpProtocol::Udp {
        return None;
    }
    let udp = smoltcp::wire::UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 68 || udp.src_port() != 67 {
        return None;
    }
    let msg = v4::Message::decode(&mut Decoder::new(udp.payload())).ok()?;
    if msg.opts().msg_type() != Some(v4::MessageType::Ack) {
        return None;
    }
    match msg.opts().get(v4::OptionCode::ClientIdentifier) {
        Some(v4::DhcpOption::ClientIdentifier(got)) if got.as_slice() == id => {}
        _ => return None,
    }
    let router = match msg.opts().get(v4::OptionCode::Router) {
        Some(v4::DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    Some((msg.yiaddr(), router))
}
