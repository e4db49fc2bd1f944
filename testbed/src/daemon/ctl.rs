//! `binfm ctl SOCKET COMMAND`: one line to a daemon's Unix control socket, one JSON line back.
//!
//! Commands: `call PEER`, `hangup PEER`, `rekey`, `status`. PEER is a hash address (64 hex
//! digits) or a name from the end node's `peers` table. The answer is `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`; `status` adds what the role reports.

use crate::daemon::config::parse_hex32;
use binfm_roles::en::EndNode;
use binfm_roles::sn::SuperNode;
use binfm_roles::vertical::en::VerticalNode;
use binfm_roles::{Command, Role, Time};
use serde_json::{Value, json};
use std::any::Any;
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The longest command line the daemon reads.
const MAX_LINE: usize = 512;

/// What a daemon's control socket answers with besides the role: names of peers.
#[derive(Debug, Default, Clone)]
pub struct CtlContext {
    /// Peer names for `call NAME`.
    pub peers: BTreeMap<String, [u8; 32]>,
}

/// Answers one connection: reads a command line, applies it, writes the JSON answer.
pub async fn serve_one(stream: UnixStream, role: &mut dyn Role, cx: &CtlContext, now: Time) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    let answer = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        reader.read_line(&mut line),
    )
    .await
    {
        Ok(Ok(_)) => apply(line.trim(), role, cx, now),
        Ok(Err(e)) => json!({"ok": false, "error": format!("reading the command: {e}")}),
        Err(_) => json!({"ok": false, "error": "no command within 2 s"}),
    };
    let mut text = answer.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

fn peer(word: &str, cx: &CtlContext) -> Result<[u8; 32], String> {
    cx.peers
        .get(word)
        .copied()
        .or_else(|| parse_hex32(word))
        .or_else(|| {
            // A file holding the hash address (an end node's `<key file>.pub`).
            let text = std::fs::read_to_string(word).ok()?;
            parse_hex32(text.trim())
        })
        .ok_or_else(|| {
            format!(
                "`{word}` is neither a peer name ({}), a hash address (64 hex digits) nor a file holding one",
                if cx.peers.is_empty() {
                    "none configured".to_owned()
                } else {
                    cx.peers.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })
}

/// Applies one command line to the role; the JSON answer.
pub fn apply(line: &str, role: &mut dyn Role, cx: &CtlContext, now: Time) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    let any = role as &dyn Any;
    let is_en =
        any.downcast_ref::<EndNode>().is_some() || any.downcast_ref::<VerticalNode>().is_some();
    let command = match words.as_slice() {
        ["status"] => return json!({"ok": true, "status": status(role)}),
        ["call" | "hangup", _] if !is_en => {
            return json!({"ok": false, "error": "only an end node places calls"});
        }
        ["call", p] => peer(p, cx).map(Command::Call),
        ["hangup", p] => peer(p, cx).map(Command::Hangup),
        ["rekey"] if is_en => Ok(Command::Rekey),
        ["rekey"] => Err("only an end node renews keys".to_owned()),
        _ => Err(format!(
            "unknown command `{line}`; use call PEER, hangup PEER, rekey or status"
        )),
    };
    match command {
        Ok(c) => {
            role.handle_command(now, &c);
            json!({"ok": true})
        }
        Err(e) => json!({"ok": false, "error": e}),
    }
}

/// What `status` reports: the role, its registration and calls (an end node), its chain
/// (a super node). Field names follow results.json where the value is the same.
pub fn status(role: &dyn Role) -> Value {
    let any = role as &dyn Any;
    let calls: Vec<Value> = role
        .calls()
        .iter()
        .map(|c| {
            let rx = c.media.rx_stats.summary();
            json!({
                "peer": binfm_roles::util::hex(&c.peer),
                "frames_sent": c.media.frames_sent,
                "frames_received": rx.received,
                "frames_lost": rx.lost,
                "jitter_ms": rx.jitter_ms,
                "delay_ms_median": rx.delay_ms_median,
            })
        })
        .collect();
    let mut v = json!({"port": role.port(), "calls": calls});
    if let Some(en) = any.downcast_ref::<EndNode>() {
        v["role"] = "end-node".into();
        v["hash_addr"] = binfm_roles::util::hex(&en.hash_addr()).into();
        v["super_node"] = en.super_node().map(|s| s.to_string()).into();
        v["registered"] = match en.registered() {
            Some(tx) => json!({
                "seq": tx.out.seq,
                "private": format!("{}:{}", tx.out.private_ip, tx.out.private_port),
                "public": format!("{}:{}", tx.out.nat_ip, tx.out.nat_port),
            }),
            None => Value::Null,
        };
    } else if let Some(en) = any.downcast_ref::<VerticalNode>() {
        v["role"] = "vertical-end-node".into();
        v["hash_addr"] = binfm_roles::util::hex(&en.id()).into();
        v["mapped"] = en.mapped().map(|a| a.to_string()).into();
        v["registered"] = match en.registered() {
            Some(contact) => json!({ "contact": contact.to_string() }),
            None => Value::Null,
        };
    } else if let Some(sn) = any.downcast_ref::<SuperNode>() {
        let (tip, height) = sn.chain().tip();
        v["role"] = "super-node".into();
        v["height"] = height.into();
        v["tip"] = binfm_roles::util::hex(&tip).into();
    }
    v
}

/// The client side: sends `command` to the daemon at `socket`, returns its answer line.
pub fn request(socket: &std::path::Path, command: &str) -> anyhow::Result<Value> {
    use anyhow::Context;
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is the daemon running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    writeln!(s, "{command}")?;
    let mut line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut line)
        .context("reading the daemon's answer")?;
    serde_json::from_str(&line).with_context(|| format!("the daemon answered `{}`", line.trim()))
}
