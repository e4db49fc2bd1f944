//! What only the end-node daemon needs: its wallet key file, its address from the config or
//! from a DHCP client's lease file, and the received audio as WAV.

use anyhow::{Context, bail};
use binfm_roles::Role;
use binfm_roles::address::Lease;
use binfm_roles::wallet::Wallet;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads the 32-byte wallet key (64 hex digits) from `path`, or creates it from the OS's
/// entropy with mode 0600 when the file does not exist. Returns the key and whether it was
/// created.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<([u8; 32], bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = super::config::parse_hex32(text.trim()).with_context(|| {
                format!(
                    "{}: a wallet key file holds 64 hex digits (delete it to make a new identity)",
                    path.display()
                )
            })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::OpenOptionsExt;
            let key: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating wallet key file {}", path.display()))?;
            writeln!(f, "{}", binfm_roles::util::hex(&key))
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the end node's hash address (public) to `<key file>.pub`, so scripts and
/// `binfm ctl call FILE` can name it before they know it.
pub fn write_public(key_file: &Path, hash_addr: &[u8; 32]) -> anyhow::Result<PathBuf> {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".pub");
    let path = PathBuf::from(name);
    std::fs::write(&path, format!("{}\n", binfm_roles::util::hex(hash_addr)))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The wallet of a key: ed25519 identity and DH value, both from the key (as the testbed
/// derives an EN's wallet from its seed).
pub fn wallet(key: [u8; 32]) -> Wallet {
    let mut rng = ChaCha8Rng::from_seed(key);
    Wallet::from_seed(key, &mut rng)
}

/// A lease for an address given in the config (no DHCP): what the end node needs of it.
pub fn static_lease(
    address: Ipv4Addr,
    nat_public: Option<Ipv4Addr>,
    super_nodes: Vec<SocketAddrV4>,
) -> Lease {
    let forever = Duration::from_secs(u64::from(u32::MAX));
    Lease {
        address,
        prefix_len: 32,
        router: None,
        server: Ipv4Addr::UNSPECIFIED,
        lease_time: forever,
        t1: forever,
        t2: forever,
        obtained_at: Duration::ZERO,
        nat_public,
        super_nodes,
    }
}

/// Reads a udhcpc `lease.env` (`ip=`, `mask=`, `router=`, `opt224=<hex>`, `opt225=<hex>`, as
/// the script of a kernel host writes it). `None` while the file does not exist.
pub fn read_lease(path: &Path) -> anyhow::Result<Option<Lease>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse_lease(&text)
        .map(Some)
        .with_context(|| format!("{}: not a lease file", path.display()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 512 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses the `key=value` lines of a lease file.
pub fn parse_lease(text: &str) -> anyhow::Result<Lease> {
    let mut address = None;
    let mut nat = None;
    let mut sns = Vec::new();
    let mut prefix_len = 32;
    let mut router = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "ip" => address = v.parse::<Ipv4Addr>().ok(),
            "mask" => prefix_len = v.parse().unwrap_or(32).min(32),
            "router" => router = v.split_whitespace().next().and_then(|r| r.parse().ok()),
            "opt224" => match unhex(v).as_deref() {
                Some([a, b, c, d]) => nat = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                _ => bail!("opt224 `{v}` is not an IPv4 address in hex"),
            },
            "opt225" => match unhex(v) {
                Some(bytes) if !bytes.is_empty() && bytes.len().is_multiple_of(6) => {
                    sns = bytes
                        .chunks_exact(6)
                        .map(|c| {
                            SocketAddrV4::new(
                                Ipv4Addr::new(c[0], c[1], c[2], c[3]),
                                u16::from_be_bytes([c[4], c[5]]),
                            )
                        })
                        .collect();
                }
                _ => bail!("opt225 `{v}` is not a list of address:port in hex (6 bytes each)"),
            },
            _ => {}
        }
    }
    let Some(address) = address else {
        bail!("no `ip=` line");
    };
    let mut lease = static_lease(address, nat, sns);
    lease.prefix_len = prefix_len;
    lease.router = router;
    Ok(lease)
}

/// Writes what each call received as 8 kHz mono WAV: `path` for one call, `<stem>-<peer>.wav`
/// The end node's `audio_in` file as what its calls send, if it has one.
pub fn audio_source(
    common: &super::config::EnCommon,
) -> anyhow::Result<Option<binfm_roles::session::audio::AudioSource>> {
    use binfm_roles::session::audio::{AudioSource, MAX_WAV_BYTES, read_wav};
    let Some(path) = &common.audio_in else {
        return Ok(None);
    };
    let len = std::fs::metadata(path)
        .with_context(|| format!("audio_in {}", path.display()))?
        .len();
    if len > MAX_WAV_BYTES as u64 {
        bail!(
            "audio_in {}: {len} bytes, more than the {MAX_WAV_BYTES} taken",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let samples = read_wav(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "audio_in {}: {e} (convert with `sox IN -r 8000 -c 1 -b 16 OUT.wav`)",
            path.display()
        )
    })?;
    AudioSource::samples(&samples)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("audio_in {}: no samples", path.display()))
}

/// beside it for each of several. Returns the files written.
pub fn write_audio(role: &dyn Role, path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let calls = role.calls();
    let mut written = Vec::new();
    for c in &calls {
        let file = if calls.len() == 1 {
            path.to_path_buf()
        } else {
            let stem = path
                .file_stem()
                .map_or_else(|| "received".into(), |s| s.to_string_lossy().into_owned());
            path.with_file_name(format!(
                "{stem}-{}.wav",
                binfm_roles::util::short_hex(&c.peer)
            ))
        };
        binfm_roles::session::audio::write_wav(&file, &c.media.recording.samples())
            .with_context(|| format!("writing {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udhcpc_lease_file_gives_address_nat_and_super_nodes() {
        let l = parse_lease(
            "interface=tun0\nip=10.1.0.100\nmask=24\nopt224=c6336401\nopt225=c633640b1ce8c633640c1ce8\nrouter=10.1.0.1\n",
        )
        .unwrap();
        assert_eq!(l.address, Ipv4Addr::new(10, 1, 0, 100));
        assert_eq!(l.prefix_len, 24);
        assert_eq!(l.nat_public, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(
            l.super_nodes,
            vec![
                "198.51.100.11:7400".parse().unwrap(),
                "198.51.100.12:7400".parse().unwrap()
            ]
        );
        assert!(parse_lease("opt224=c6336401\n").is_err(), "no ip");
        assert!(parse_lease("ip=10.1.0.1\nopt225=c63364\n").is_err());
        assert!(parse_lease("ip=10.1.0.1\nopt224=zz\n").is_err());
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let (k1, created) = load_or_create_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) = load_or_create_key(&path).unwrap();
        assert!(!created);
        assert_eq!(k1, k2);
        assert_eq!(wallet(k1).hash_addr(), wallet(k2).hash_addr());
        std::fs::write(&path, "not a key").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }
}

/// Notices a new lease file at once: inotify on its folder (the kernel host's DHCP script
/// writes the file and renames it into place). A handover starts when the address changes,
/// so waking on a timer would add up to its period to the mid-call time.
#[derive(Debug)]
pub struct LeaseWatch {
    fd: Option<tokio::io::unix::AsyncFd<InotifyRaw>>,
    name: std::ffi::OsString,
}

/// An inotify instance tokio can wait on (it owns its fd for its whole life).
#[derive(Debug)]
struct InotifyRaw(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for InotifyRaw {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl LeaseWatch {
    /// Watches `path`'s folder; without inotify, [`LeaseWatch::changed`] never fires (the
    /// daemon still checks the file once a second).
    pub fn new(path: &Path) -> LeaseWatch {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let name = path.file_name().unwrap_or_default().to_owned();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| {
                i.add_watch(
                    &dir,
                    AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
                )
                .map(|_| i)
            })
            .map_err(|e| tracing::debug!("inotify on {}: {e}", dir.display()))
            .ok()
            .and_then(|i| {
                // `AsyncFd::register` is `unsafe` (forbidden here); `InotifyRaw` owns its fd
                // for its whole life, the condition it documents (as the live driver's timer).
                #[allow(deprecated)]
                tokio::io::unix::AsyncFd::new(InotifyRaw(i)).ok()
            });
        LeaseWatch { fd, name }
    }

    /// Waits until the lease file was written or renamed into place.
    pub async fn changed(&self) {
        let Some(fd) = &self.fd else {
            return std::future::pending().await;
        };
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return std::future::pending().await;
            };
            match guard.try_io(|f| f.get_ref().0.read_events().map_err(std::io::Error::from)) {
                Ok(Ok(events)) => {
                    if events
                        .iter()
                        .any(|e| e.name.as_deref() == Some(self.name.as_os_str()))
                    {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!("inotify: {e}");
                    return std::future::pending().await;
                }
                Err(_would_block) => {}
            }
        }
    }
}
