//! The live mode's network namespace: `binfm-<topology name>`, created with `ip netns add` (so
//! `ip netns exec` works), entered by one short-lived thread with `setns` to create the TUN
//! devices, and deleted on every exit path by [`Netns`]'s `Drop`.
//!
//! Safety rules: only names starting with [`PREFIX`] are ever created, entered or deleted; the
//! thread that creates devices checks that it really is inside the namespace (same nsfs inode
//! as the namespace's file) before it creates anything, so nothing can land in the root
//! namespace; nothing here adds a route.

use anyhow::{Context, bail};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every namespace the testbed creates is named `binfm-<topology name>`.
pub const PREFIX: &str = "binfm-";

/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// The namespace name of a topology.
pub fn namespace_name(topology: &str) -> String {
    format!("{PREFIX}{topology}")
}

/// Whether this process has capability `bit` in its effective set (from /proc/self/status).
pub fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| bit < 64 && caps & (1u64 << bit) != 0)
}

/// Whether `ip` (iproute2) can be run.
pub fn have_ip() -> bool {
    Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What live mode needs and this process lacks (empty when everything is there).
pub fn missing_prerequisites() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !has_capability(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN (to create TUN devices and set their addresses)");
    }
    if !has_capability(CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN (to create and enter a network namespace)");
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (the TUN driver's device file)");
    }
    if !have_ip() {
        missing.push("the `ip` command (package iproute2)");
    }
    if proc_sys_read_only() {
        missing.push(
            "a writable /proc/sys (live mode sets sysctls in its namespace; podman mounts it \
             read-only unless given --security-opt systempaths=unconfined)",
        );
    }
    missing
}

/// Whether /proc/sys is mounted read-only (as in a container by default), from
/// /proc/self/mounts.
pub fn proc_sys_read_only() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"/proc/sys")
                && f.get(3).is_some_and(|o| o.split(',').any(|x| x == "ro"))
        })
    })
}

/// Fails with one message naming everything live mode lacks here.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "live mode cannot run here: missing {}. Live mode creates its own network namespace \
         with one TUN device per segment, so it needs root (in a container: --cap-add NET_ADMIN \
         --cap-add SYS_ADMIN --device /dev/net/tun --security-opt systempaths=unconfined). The virtual mode (`binfm run FILE`) needs \
         none of this.",
        missing.join(", ")
    )
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `ip {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let rest = name.strip_prefix(PREFIX).unwrap_or("");
    if rest.is_empty()
        || name.len() > 64
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!(
            "refusing to touch network namespace `{name}`: binfm only uses names `{PREFIX}<topology name>`"
        );
    }
    Ok(())
}

/// The `binfm-*` namespaces that exist now (from `ip netns list`).
pub fn list() -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running `ip netns list`")?;
    if !out.status.success() {
        bail!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX) && check_name(n).is_ok())
        .map(str::to_owned)
        .collect())
}

/// The processes running in namespace `name` (from `ip netns pids`).
pub fn pids(name: &str) -> anyhow::Result<Vec<i32>> {
    check_name(name)?;
    let out = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .context("running `ip netns pids`")?;
    if !out.status.success() {
        bail!(
            "`ip netns pids {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Deletes every `binfm-*` namespace (leftovers of killed runs); returns the names removed.
/// Programs still running in one (a kernel host's DHCP client or `exec` program whose run was
/// killed) are killed first: binfm started them there. A namespace still used by a running
/// `binfm run --live` loses its name too (the run goes on unseen; its devices vanish when it
/// ends).
pub fn clean() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list()? {
        for pid in pids(&name).unwrap_or_default() {
            if pid > 1 && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        ip(&["netns", "delete", &name])?;
        removed.push(name);
    }
    Ok(removed)
}

/// A namespace this process created; deleted when dropped (normal end, error, panic unwind).
#[derive(Debug)]
pub struct Netns {
    name: String,
    deleted: bool,
}

impl Netns {
    /// Creates namespace `name` (must be `binfm-...`) with IPv6 and IPv4 forwarding off. Fails if it
    /// exists already (another run of the topology, or a leftover: `binfm clean`).
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        check_name(name)?;
        if Path::new(NETNS_DIR).join(name).exists() || list()?.iter().any(|n| n == name) {
            bail!(
                "network namespace `{name}` exists already: another live run of this topology \
                 is going on, or a killed run left it behind (`binfm clean` removes it)"
            );
        }
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
            deleted: false,
        };
        // IPv6 off: otherwise the kernel sends router solicitations and MLD into every TUN.
        // Forwarding off: a new namespace may inherit it from the root namespace, and the
        // kernel must never route a mirrored packet from one TUN into another.
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.ip_forward=0",
            "net.ipv4.conf.default.forwarding=0",
        ] {
            ns.exec(&["sysctl", "-q", "-w", key])?;
        }
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file (what `setns` opens): under `/run/netns`, or `/var/run/netns` where
    /// that is not the same folder.
    pub fn path(&self) -> PathBuf {
        let run = Path::new(NETNS_DIR).join(&self.name);
        let var = Path::new("/var/run/netns").join(&self.name);
        if !run.exists() && var.exists() {
            var
        } else {
            run
        }
    }

    /// Runs a command inside the namespace (`ip netns exec NAME ...`); fails if it fails.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a new thread that has entered the namespace (and checked that it has).
    /// Sockets and TUN devices `f` opens belong to the namespace for their whole life.
    pub fn run_inside<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let path = self.path();
        let name = self.name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || -> anyhow::Result<T> {
                enter(&path)?;
                f()
            })
            .context("starting the namespace thread")?;
        match handle.join() {
            Ok(r) => r,
            Err(_) => bail!("the thread working in namespace `{}` panicked", self.name),
        }
    }

    /// Deletes the namespace now, reporting a failure (`Drop` does it silently).
    pub fn delete(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        ip(&["netns", "delete", &self.name])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.deleted {
            self.deleted = true;
            if let Err(e) = ip(&["netns", "delete", &self.name]) {
                eprintln!("warning: {e:#}; `binfm clean` removes it");
            }
        }
    }
}

/// Moves the calling thread into the network namespace at `path` and checks it got there.
pub fn enter(path: &Path) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    check_name(name)?;
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening namespace file {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {}", path.display()))?;
    let want = file.metadata().context("reading the namespace file")?;
    let have = std::fs::metadata("/proc/thread-self/ns/net")
        .context("reading /proc/thread-self/ns/net")?;
    if (want.dev(), want.ino()) != (have.dev(), have.ino()) {
        bail!(
            "setns did not move this thread into {}; stopping before anything is created",
            path.display()
        );
    }
    Ok(())
}
