//! `OUT/events.jsonl`: one JSON object per protocol event, in the order they happened.
//!
//! `{"t_ns": <virtual time in ns>, "host": "<node>", "kind": "<role>.<what>", "fields": {...}}`

use binfm_roles::{Event, Time};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// One event as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Time since the run's start.
    pub t: Time,
    /// Node name.
    pub host: String,
    /// Kind.
    pub kind: String,
    /// Fields.
    pub fields: Map<String, Value>,
}

impl Record {
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
    pub fn from_json(line: &str) -> Result<Record, String> {
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
        Ok(Record {
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
        })
    }

    /// Records an event of `host` at `t`.
    pub fn push(&mut self, t: Time, host: &str, event: Event) -> std::io::Result<()> {
        let rec = Record {
            t,
            host: host.to_owned(),
            kind: event.kind.to_owned(),
            fields: event.fields,
        };
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &rec.to_json())?;
            out.write_all(b"\n")?;
        }
        *self.counts.entry(rec.kind.clone()).or_default() += 1;
        self.records.push(rec);
        Ok(())
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
