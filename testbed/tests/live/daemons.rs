//! `binfm node` daemons on loopback (no privileges needed): a super node and end nodes, each
//! its own process on a kernel UDP socket, driven with `binfm ctl`.

use super::*;
use serde_json::Value;
use std::path::Path;

/// A free UDP port on 127.0.0.1 (bound and released; good enough for a test).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_node(dir: &Path, role: &str, name: &str) -> Live {
    let child = binfm()
        .args(["node", role, "--config"])
        .arg(dir.join(format!("{name}.toml")))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .spawn()
        .unwrap();
    Live(child)
}

fn ctl(dir: &Path, name: &str, command: &str) -> Value {
    try_ctl(dir, name, command).unwrap_or_else(|e| panic!("ctl {name} {command}: {e}"))
}

/// `binfm ctl`, or why it gave no JSON (e.g. the stale socket of a killed daemon).
fn try_ctl(dir: &Path, name: &str, command: &str) -> Result<Value, String> {
    let sock = dir.join(format!("{name}.sock"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{sock:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = binfm()
        .arg("ctl")
        .arg(&sock)
        .args(command.split_whitespace())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Polls `status` of `name` until `ok` says yes (at most 10 s).
fn wait_status(dir: &Path, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = try_ctl(dir, name, "status").unwrap_or(Value::Null);
        if ok(&s["status"]) {
            return s["status"].clone();
        }
        if std::time::Instant::now() >= deadline {
            let mut logs = String::new();
            for n in ["sn1", "a", "b", "c"] {
                let out = std::fs::read_to_string(dir.join(format!("{n}.out"))).unwrap_or_default();
                logs.push_str(&format!("--- {n}.out:\n{out}"));
                let t = std::fs::read_to_string(dir.join(format!("{n}.jsonl"))).unwrap_or_default();
                for l in t.lines().filter(|l| !l.contains("block_mined")) {
                    logs.push_str(l);
                    logs.push('\n');
                }
            }
            panic!("{name}: {what} never happened: {s}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_sn(dir: &Path, port: u16) {
    std::fs::write(
        dir.join("sn1.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ncontrol = \"sn1.sock\"\nevents = \"sn1.jsonl\"\n\n[super_node]\nhash_rate = 4000\nblock_interval = \"300ms\"\ndata_dir = \"sn1-blocks\"\n"
        ),
    )
    .unwrap();
}

fn write_en(dir: &Path, name: &str, ip: &str, port: u16, sn: u16) {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "listen = \"{ip}:{port}\"\ncontrol = \"{name}.sock\"\nevents = \"{name}.jsonl\"\n\n[end_node]\nkey_file = \"{name}.key\"\nnat_address = \"{ip}\"\nsuper_nodes = [\"127.0.0.1:{sn}\"]\naudio_out = \"{name}-received.wav\"\nnetwork_hash_rate = 4000\nblock_interval = \"300ms\"\n"
        ),
    )
    .unwrap();
}

fn registered(s: &Value) -> bool {
    s["registered"]["seq"].as_u64().is_some_and(|q| q >= 1)
}

#[test]
fn daemons_register_call_with_audio_both_ways_rekey_and_a_killed_super_node_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sn_port, en_port) = (free_port(), free_port());
    write_sn(d, sn_port);
    write_en(d, "a", "127.0.0.2", en_port, sn_port);
    write_en(d, "b", "127.0.0.3", en_port, sn_port);
    write_en(d, "c", "127.0.0.4", en_port, sn_port);

    let mut sn = spawn_node(d, "super-node", "sn1");
    let a = spawn_node(d, "end-node", "a");
    let b = spawn_node(d, "end-node", "b");
    let a_status = wait_status(d, "a", "registration", registered);
    let b_status = wait_status(d, "b", "registration", registered);
    let b_addr = b_status["hash_addr"].as_str().unwrap().to_owned();
    let a_addr = a_status["hash_addr"].as_str().unwrap().to_owned();
    // The key files are private.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A calls B: audio both ways.
    assert_eq!(ctl(d, "a", &format!("call {b_addr}"))["ok"], true);
    let frames = |s: &Value, key: &str| s["calls"][0][key].as_u64().unwrap_or(0);
    let s = wait_status(d, "a", "audio both ways", |s| {
        frames(s, "frames_sent") > 50 && frames(s, "frames_received") > 50
    });
    assert_eq!(s["calls"][0]["peer"], b_addr.as_str());
    assert_eq!(ctl(d, "a", "rekey")["ok"], true);
    let bad = ctl(d, "a", "call nobody");
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("`nobody`"), "{bad}");
    assert_eq!(
        ctl(d, "sn1", "rekey")["ok"],
        false,
        "only an end node renews keys"
    );

    // SIGTERM: the call is hung up, the audio written.
    drop(a);
    drop(b);
    for n in ["a", "b"] {
        let wav = std::fs::metadata(d.join(format!("{n}-received.wav"))).unwrap_or_else(|e| {
            let out = std::fs::read_to_string(d.join(format!("{n}.out"))).unwrap_or_default();
            let ev = std::fs::read_to_string(d.join(format!("{n}.jsonl"))).unwrap_or_default();
            let tail: Vec<&str> = ev.lines().rev().take(8).collect();
            panic!("{n}-received.wav: {e}\n{out}\n{tail:#?}")
        });
        assert!(wav.len() > 44 + 2 * 8000, "{n}: {} bytes of WAV", wav.len());
    }
    let a_events = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    assert!(a_events.contains("\"kind\":\"call.rekey_complete\""));
    assert!(a_events.contains("\"kind\":\"call.ended\""));

    // kill -9 of the super node once the registrations are in a block; it restarts from its
    // block log at the same tip or later, and still answers Queries for A and B.
    wait_status(d, "sn1", "a few blocks", |s| {
        s["height"].as_u64() >= Some(3)
    });
    std::thread::sleep(Duration::from_millis(700));
    let before = ctl(d, "sn1", "status")["status"]["height"]
        .as_u64()
        .unwrap();
    sn.kill().unwrap();
    let _ = sn.wait();
    let mut sn = spawn_node(d, "super-node", "sn1");
    let after = wait_status(d, "sn1", "recovery", |s| s["height"].as_u64().is_some());
    assert!(
        after["height"].as_u64().unwrap() >= before,
        "{after} vs {before}"
    );
    let out = std::fs::read_to_string(d.join("sn1.out")).unwrap();
    assert!(out.contains("chain recovered from"), "{out}");

    // A new EN, C, finds B in the recovered chain (B, restarted, keeps its identity; it did
    // not renew its key, so the Y on the chain is still its own): C's call gets audio.
    let c = spawn_node(d, "end-node", "c");
    wait_status(d, "c", "registration", registered);
    let _b = spawn_node(d, "end-node", "b");
    let b_seq = b_status["registered"]["seq"].as_u64().unwrap();
    // Restarted, B learns its latest seq from the chain and registers with the next one.
    let b_again = wait_status(d, "b", "registration after the restart", |s| {
        s["registered"]["seq"].as_u64().is_some_and(|q| q > b_seq)
    });
    assert_eq!(
        b_again["hash_addr"],
        b_addr.as_str(),
        "same identity after a restart"
    );
    assert_ne!(a_addr, b_addr);
    assert_eq!(ctl(d, "c", &format!("call {b_addr}"))["ok"], true);
    wait_status(d, "c", "a call to B with audio", |s| {
        frames(s, "frames_received") > 10
    });
    drop(c);
    let _ = sn.kill();
}

/// The vertical model as daemons: a STUN server, two location servers (domains d1 and d2,
/// peered) and two vertical end nodes homed in different domains. A calls B (A's location
/// server resolves B through d2), audio both ways, A renews the key, hangs up.
#[test]
fn vertical_daemons_stun_register_call_rekey_and_hang_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (stun, l1, l2, en) = (free_port(), free_port(), free_port(), free_port());
    let write =
        |name: &str, text: String| std::fs::write(d.join(format!("{name}.toml")), text).unwrap();
    write(
        "stun",
        format!("listen = \"127.0.0.1:{stun}\"\nevents = \"stun.jsonl\"\n\n[stun]\n"),
    );
    for (name, port, domain, other, other_port) in
        [("l1", l1, "d1", "d2", l2), ("l2", l2, "d2", "d1", l1)]
    {
        write(
            name,
            format!(
                "listen = \"127.0.0.1:{port}\"\nevents = \"{name}.jsonl\"\n\n[location]\ndomain = \"{domain}\"\npeers = {{ {other} = \"127.0.0.1:{other_port}\" }}\n"
            ),
        );
    }
    // B sends a WAV file (1 kHz, 0.5 s, looped) instead of its 440 Hz tone.
    let pcm: Vec<i16> = (0..4000)
        .map(|n| (8000.0 * (std::f64::consts::TAU * 1000.0 * f64::from(n) / 8000.0).sin()) as i16)
        .collect();
    binfm_roles::session::audio::write_wav(&d.join("b-source.wav"), &pcm).unwrap();
    for (name, ip, loc, extra) in [
        ("a", "127.0.0.2", l1, ""),
        ("b", "127.0.0.3", l2, "audio_in = \"b-source.wav\"\n"),
    ] {
        write(
            name,
            format!(
                "listen = \"{ip}:{en}\"\ncontrol = \"{name}.sock\"\nevents = \"{name}.jsonl\"\n\n[vertical_end_node]\nkey_file = \"{name}.key\"\nlocation = \"127.0.0.1:{loc}\"\nstun = \"127.0.0.1:{stun}\"\naudio_out = \"{name}-received.wav\"\n{extra}"
            ),
        );
    }
    let _stun = spawn_node(d, "stun", "stun");
    let _l1 = spawn_node(d, "location", "l1");
    let _l2 = spawn_node(d, "location", "l2");
    let a = spawn_node(d, "vertical-end-node", "a");
    let b = spawn_node(d, "vertical-end-node", "b");
    let contact = |s: &Value| s["registered"]["contact"].as_str().is_some();
    let a_status = wait_status(d, "a", "registration", contact);
    let b_status = wait_status(d, "b", "registration", contact);
    assert_eq!(a_status["role"], "vertical-end-node");
    // On loopback the STUN server sees the EN's own address.
    assert_eq!(
        b_status["registered"]["contact"],
        format!("127.0.0.3:{en}").as_str()
    );
    let b_addr = b_status["hash_addr"].as_str().unwrap().to_owned();

    assert_eq!(ctl(d, "a", &format!("call {b_addr}"))["ok"], true);
    let frames = |s: &Value, key: &str| s["calls"][0][key].as_u64().unwrap_or(0);
    wait_status(d, "a", "audio both ways", |s| {
        frames(s, "frames_sent") > 50 && frames(s, "frames_received") > 50
    });
    assert_eq!(ctl(d, "a", "rekey")["ok"], true);
    wait_status(d, "b", "more audio after the rekey", |s| {
        frames(s, "frames_received") > 100
    });
    assert_eq!(ctl(d, "a", &format!("hangup {b_addr}"))["ok"], true);
    std::thread::sleep(Duration::from_millis(300));
    drop(a);
    drop(b);
    let a_events = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    for kind in ["vertical.active", "vertical.rekey_done", "vertical.ended"] {
        assert!(
            a_events.contains(&format!("\"kind\":\"{kind}\"")),
            "{kind}: {a_events}"
        );
    }
    let l1_events = std::fs::read_to_string(d.join("l1.jsonl")).unwrap();
    assert!(l1_events.contains("\"kind\":\"location."), "{l1_events}");
    // What each received is the other's source: B's 1 kHz file at A, A's 440 Hz tone at B
    // (zero crossings per second of the decoded audio, silence of lost frames aside).
    for (n, hz) in [("a", 1000.0), ("b", 440.0)] {
        let bytes = std::fs::read(d.join(format!("{n}-received.wav"))).unwrap_or_default();
        let samples = binfm_roles::session::audio::read_wav(&bytes).unwrap_or_default();
        assert!(samples.len() > 8000, "{n}: {} samples", samples.len());
        // Frames of silence (lost frames) out; sign changes between non-zero samples.
        let voiced: Vec<&[i16]> = samples
            .chunks_exact(160)
            .filter(|f| f.iter().any(|s| *s != 0))
            .collect();
        let mut last = 0i16;
        let mut crossings = 0usize;
        for &s in voiced.iter().flat_map(|f| f.iter()).filter(|s| **s != 0) {
            if last != 0 && (last < 0) != (s < 0) {
                crossings += 1;
            }
            last = s;
        }
        let measured = crossings as f64 / 2.0 / (voiced.len() as f64 * 0.02);
        assert!(
            (measured - hz).abs() < hz * 0.05,
            "{n} received {measured:.0} Hz, wanted {hz}"
        );
    }
}
