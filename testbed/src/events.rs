//! `OUT/events.jsonl`: one JSON object per protocol event, in the order they happened.
//!
//! `{"t_ns": <virtual time in ns>, "host": "<node>", "kind": "<role>.<what>", "fields": {...}}`
//!
//! In memory a run keeps typed events ([`Record`] holds a [`RunEvent`]: a role's
//! [`binfm_roles::event::Event`] or a [`TestbedEvent`]), so results match on variants and a
//! renamed event fails to compile. The line is written by [`JsonSink`], a
//! [`FieldSink`] over `serde_json`, so it prints exactly as the builder events did. Files
//! read back from disk are [`JsonRecord`]s (kind string and JSON fields).

use binfm_roles::Time;
use binfm_roles::event::{Event, FieldSink, TypedEvent};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;

binfm_roles::event_enum! {
    /// What the testbed itself reports: node plumbing, faults, scenario steps, run phases.
    pub enum TestbedEvent {
        /// A role's UDP port could not be bound.
        BindFailed = "node.bind_failed" { port: u16, error: String },
        /// The node's stack dropped a packet (`src` and `dst` when it is IPv4).
        NodeDrop = "node.drop" {
            reason: &'static str,
            src: Option<Ipv4Addr>,
            dst: Option<Ipv4Addr>,
        },
        /// A role's datagram could not be sent.
        SendFailed = "node.send_failed" { error: String },
        /// A node's roles kept producing output for `rounds` rounds in one step.
        PollLimit = "node.poll_limit" { rounds: usize },
        /// The host was attached to another network (segment names).
        Moved = "node.moved" { from: String, to: String },
        /// A super node's block could not be appended to its data directory.
        PersistFailed = "sn.persist_failed" { error: String },
        /// A super node restarted from its data directory at `height`.
        Recovered = "sn.recovered" { dir: String, height: u64, recovery: String },
        /// A segment dropped a packet (`next_hop` is the routing decision, debug-printed).
        FabricDrop = "fabric.drop" { segment: String, reason: &'static str, next_hop: String },
        /// The network split into `groups` (debug-printed node names).
        Partition = "fault.partition" { groups: String },
        /// The partition ended.
        Heal = "fault.heal" {},
        /// The node stopped (its state is lost).
        Crash = "fault.crash" {},
        /// The node started again from its configuration.
        Restart = "fault.restart" {},
        /// A segment's loss rate changed.
        Loss = "fault.loss" { segment: String, loss: f64 },
        /// A flood starts towards `target`.
        Flood = "fault.flood" {
            target: String,
            rate: u32,
            duration_s: f64,
            kind: &'static str,
            packets: u64,
            sources: usize,
            segment: String,
        },
        /// A flood ended (counts so far).
        FloodEnd = "fault.flood_end" {
            target: String,
            sent: u64,
            malformed: u64,
            unsigned_tx: u64,
            unsigned_query: u64,
            bytes: u64,
            link_dropped: u64,
            replies_so_far: u64,
        },
        /// An attack step starts: `actor` (the attacker host, or the lying super node) acts
        /// on `segment`.
        Attack = "fault.attack" { kind: &'static str, actor: String, segment: String },
        /// A scenario step applies (`action` debug-printed).
        ScenarioStep = "scenario.step" { line: usize, action: String },
        /// The run stops new work and lets in-flight work finish for `settle_ms`.
        Settle = "run.settle" { settle_ms: u64 },
        /// A live run starts in `namespace` with that many segments.
        LiveStart = "live.start" { namespace: String, segments: u64, unix_ns: u64 },
        /// A live run ends (TUN and kernel counters).
        LiveEnd = "live.end" {
            tun_written: u64,
            tun_write_errors: u64,
            kernel_injected: u64,
            kernel_ignored: u64,
        },
        /// A live run was interrupted by a signal.
        LiveSignal = "live.signal" {},
        /// A kernel host's DHCP client got a lease (seen in the ACK delivered to it).
        KernelLease = "kernel.lease" { address: Ipv4Addr, router: Option<Ipv4Addr>, segment: String },
        /// A kernel host's DHCP client was started (at start, and again after a move).
        KernelDhcp = "kernel.dhcp" { segment: String, pid: Option<i64> },
        /// An `exec` step started a program in a kernel host (`command` as written).
        ExecStart = "exec.start" { line: usize, command: String, pid: Option<i64> },
        /// A program of an `exec` step ended: its exit code, or the signal that ended it;
        /// `killed_at_end` when the run ended first and stopped it.
        ExecEnd = "exec.end" {
            line: usize,
            command: String,
            exit_code: Option<i64>,
            signal: Option<i64>,
            killed_at_end: bool,
            stdout: String,
            stderr: String,
        },
    }
}

/// Any event of a run: a role's or the testbed's.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Emitted by a role.
    Role(Event),
    /// Emitted by the testbed.
    Testbed(TestbedEvent),
}

impl RunEvent {
    /// The dotted kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Role(e) => e.kind(),
            RunEvent::Testbed(e) => e.kind(),
        }
    }

    /// The fields as the JSON object of `events.jsonl`.
    pub fn fields_json(&self) -> Map<String, Value> {
        let mut sink = JsonSink::default();
        match self {
            RunEvent::Role(e) => e.write_fields(&mut sink),
            RunEvent::Testbed(e) => e.write_fields(&mut sink),
        }
        sink.0
    }
}

impl From<Event> for RunEvent {
    fn from(e: Event) -> Self {
        RunEvent::Role(e)
    }
}

impl From<TestbedEvent> for RunEvent {
    fn from(e: TestbedEvent) -> Self {
        RunEvent::Testbed(e)
    }
}

/// Builds the `fields` object; one JSON type per sink method, as the builder events had.
#[derive(Debug, Default)]
pub struct JsonSink(pub Map<String, Value>);

impl FieldSink for JsonSink {
    fn u64(&mut self, key: &str, v: u64) {
        self.0.insert(key.to_owned(), Value::from(v));
    }
    fn i64(&mut self, key: &str, v: i64) {
        self.0.insert(key.to_owned(), Value::from(v));
    }
    fn f64(&mut self, key: &str, v: f64) {
        self.0.insert(key.to_owned(), Value::from(v));
    }
    fn bool(&mut self, key: &str, v: bool) {
        self.0.insert(key.to_owned(), Value::from(v));
    }
    fn str(&mut self, key: &str, v: &str) {
        self.0.insert(key.to_owned(), Value::from(v));
    }
    fn strs(&mut self, key: &str, v: &[String]) {
        self.0.insert(key.to_owned(), Value::from(v.to_vec()));
    }
    fn null(&mut self, key: &str) {
        self.0.insert(key.to_owned(), Value::Null);
    }
}

/// One event as recorded in memory, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Time since the run's start.
    pub t: Time,
    /// Node name.
    pub host: String,
    /// The event.
    pub event: RunEvent,
}

impl Record {
    /// The dotted kind.
    pub fn kind(&self) -> &'static str {
        self.event.kind()
    }

    /// The role event, if a role emitted it.
    pub fn role(&self) -> Option<&Event> {
        match &self.event {
            RunEvent::Role(e) => Some(e),
            RunEvent::Testbed(_) => None,
        }
    }

    /// The testbed event, if the testbed emitted it.
    pub fn testbed(&self) -> Option<&TestbedEvent> {
        match &self.event {
            RunEvent::Testbed(e) => Some(e),
            RunEvent::Role(_) => None,
        }
    }

    /// The role event as a value of family `E` (`r.role_event::<SnEvent>()`), if it is one.
    pub fn role_event<E: TypedEvent>(&self) -> Option<&E> {
        self.role().and_then(|e| e.downcast_ref::<E>())
    }

    /// The record as written to and read back from `events.jsonl`.
    pub fn to_json_record(&self) -> JsonRecord {
        JsonRecord {
            t: self.t,
            host: self.host.clone(),
            kind: self.kind().to_owned(),
            fields: self.event.fields_json(),
        }
    }
}

/// One line of `events.jsonl` as JSON (files read back from disk, tests).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRecord {
    /// Time since the run's start.
    pub t: Time,
    /// Node name.
    pub host: String,
    /// Kind.
    pub kind: String,
    /// Fields.
    pub fields: Map<String, Value>,
}

impl JsonRecord {
    /// The JSON line of this record.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert(
            "t_ns".into(),
            Value::from(u64::try_from(self.t.as_nanos()).unwrap_or(u64::MAX)),
        );
        o.insert("host".into(), Value::from(self.host.clone()));
        o.insert("kind".into(), Value::from(self.kind.clone()));
        o.insert("fields".into(), Value::Object(self.fields.clone()));
        Value::Object(o)
    }

    /// Parses a line of `events.jsonl` (for tests and reports).
    pub fn from_json(line: &str) -> Result<JsonRecord, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let t = v
            .get("t_ns")
            .and_then(Value::as_u64)
            .ok_or("missing t_ns")?;
        let host = v
            .get("host")
            .and_then(Value::as_str)
            .ok_or("missing host")?
            .to_owned();
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("missing kind")?
            .to_owned();
        let fields = v
            .get("fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(JsonRecord {
            t: Time::from_nanos(t),
            host,
            kind,
            fields,
        })
    }
}

/// Writes events as they happen and keeps per-kind counts.
#[derive(Debug)]
pub struct EventLog {
    out: Option<BufWriter<File>>,
    counts: BTreeMap<String, u64>,
    /// Every record, kept for the metrics at the end of the run.
    pub records: Vec<Record>,
    /// Records read from the event logs of programs in kernel hosts (a `binfm node` daemon),
    /// times in run time and hosts renamed to the kernel host: the results measure their
    /// calls like the run's own. `events.jsonl` holds only the run's own records.
    pub imported: Vec<JsonRecord>,
}

impl EventLog {
    /// A log writing to `path` (or only in memory with `None`).
    pub fn create(path: Option<&Path>) -> std::io::Result<Self> {
        let out = match path {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(EventLog {
            out,
            counts: BTreeMap::new(),
            records: Vec::new(),
            imported: Vec::new(),
        })
    }

    /// Records an event of `host` at `t`.
    pub fn push(&mut self, t: Time, host: &str, event: impl Into<RunEvent>) -> std::io::Result<()> {
        let rec = Record {
            t,
            host: host.to_owned(),
            event: event.into(),
        };
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &rec.to_json_record().to_json())?;
            out.write_all(b"\n")?;
        }
        *self.counts.entry(rec.kind().to_owned()).or_default() += 1;
        self.records.push(rec);
        Ok(())
    }

    /// Every record as its JSON line reads back (tests that check the file's view).
    pub fn json_records(&self) -> Vec<JsonRecord> {
        self.records.iter().map(Record::to_json_record).collect()
    }

    /// Events per kind.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Flushes the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}
