//! Recording operations into a Jepsen-style history as they happen.
//!
//! Each logical client gets its own process id, so that at most one of its operations is open at a time and the
//! checker can pair every invoke with its completion. Events are timestamped from one monotonic clock started
//! with the run. The log is bounded: past `EVENTS_MAX` events it stops recording and says so, rather than
//! growing without limit.

use crate::probe::{Probe, ProbeError};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;
use xregion_model::Version;
use xregion_model::history::{Event, EventType, OpFn};
use xregion_model::wire::Record;

/// Most events one run records (about 400 MB of JSON at the worst); a bound, not an expected size.
pub const EVENTS_MAX: usize = 2_000_000;

/// The history of one run.
#[derive(Debug)]
pub struct HistoryLog {
    /// Time zero of every event's `time_ns`.
    start: Instant,
    /// The events, in the order they happened.
    events: Mutex<Vec<Event>>,
    /// Next free process id.
    next_process: AtomicU32,
    /// Whether `EVENTS_MAX` was reached and events were dropped.
    overflowed: std::sync::atomic::AtomicBool,
}

/// What a completed operation returned, for recording.
pub struct Completion<'a> {
    /// Ok, fail or info.
    pub kind: EventType,
    /// The value read or written.
    pub value: Option<&'a str>,
    /// The version the deployment reported.
    pub version: Option<&'a Version>,
    /// Why it failed or is unknown.
    pub error: Option<String>,
}

impl HistoryLog {
    /// An empty history whose clock starts now.
    pub fn new(start: Instant) -> HistoryLog {
        HistoryLog {
            start,
            events: Mutex::new(Vec::new()),
            next_process: AtomicU32::new(0),
            overflowed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A fresh process id for a new logical client.
    pub fn new_process(&self) -> u32 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether events were dropped because the log was full.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        process: u32,
        kind: EventType,
        f: OpFn,
        region: &str,
        key: &str,
        value: Option<&str>,
        version: Option<&Version>,
        error: Option<String>,
    ) {
        let time_ns = self.start.elapsed().as_nanos() as u64;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= EVENTS_MAX {
            self.overflowed.store(true, Ordering::Relaxed);
            return;
        }
        let index = events.len() as u64;
        events.push(Event {
            index,
            process,
            kind,
            f,
            region: region.to_string(),
            key: key.to_string(),
            value: value.map(str::to_string),
            version: version.cloned(),
            time_ns,
            error,
        });
    }

    /// Records the invoke of an operation.
    pub fn invoke(&self, process: u32, f: OpFn, region: &str, key: &str, value: Option<&str>) {
        self.push(process, EventType::Invoke, f, region, key, value, None, None);
    }

    /// Records the completion of the process's open operation.
    pub fn complete(&self, process: u32, f: OpFn, region: &str, key: &str, c: Completion<'_>) {
        self.push(process, c.kind, f, region, key, c.value, c.version, c.error);
    }

    /// Calls `f` on every event recorded from index `from` on, and returns the index after the last one (the
    /// `from` of the next visit). Holds the log's lock meanwhile, so `f` must be quick.
    pub fn visit_since(&self, from: usize, mut f: impl FnMut(&Event)) -> usize {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for e in events.get(from..).unwrap_or_default().iter() {
            f(e);
        }
        events.len()
    }

    /// The events whose key starts with `prefix`, for one check's checker.
    pub fn events_with_prefix(&self, prefix: &str) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().filter(|e| e.key.starts_with(prefix)).cloned().collect()
    }

    /// Writes every event as one JSON line.
    pub fn write_jsonl(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = path.with_extension("jsonl.tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for e in events.iter() {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Writes `value` under `key` through `probe`, recording the operation.
    pub async fn put(&self, process: u32, probe: &Probe, key: &str, value: &str) -> Result<Record, ProbeError> {
        self.invoke(process, OpFn::Write, &probe.region, key, Some(value));
        let result = probe.put(key, value).await;
        self.record_result(process, OpFn::Write, probe, key, Some(value), &result);
        result
    }

    /// Deletes `key` through `probe`, recording the operation.
    pub async fn delete(&self, process: u32, probe: &Probe, key: &str) -> Result<Record, ProbeError> {
        self.invoke(process, OpFn::Delete, &probe.region, key, None);
        let result = probe.delete(key).await;
        self.record_result(process, OpFn::Delete, probe, key, None, &result);
        result
    }

    /// Reads `key` through `probe`, recording the operation with the value and version it returned (neither when
    /// the key is absent).
    pub async fn get(&self, process: u32, probe: &Probe, key: &str) -> Result<Option<Record>, ProbeError> {
        self.invoke(process, OpFn::Read, &probe.region, key, None);
        let result = probe.get(key).await;
        let c = match &result {
            Ok(r) => Completion {
                kind: EventType::Ok,
                value: r.as_ref().and_then(|r| r.value.as_deref()),
                version: r.as_ref().map(|r| &r.version),
                error: None,
            },
            Err(e) => Completion {
                kind: if e.is_definite_failure() { EventType::Fail } else { EventType::Info },
                value: None,
                version: None,
                error: Some(e.to_string()),
            },
        };
        self.complete(process, OpFn::Read, &probe.region, key, c);
        result
    }

    fn record_result(
        &self,
        process: u32,
        f: OpFn,
        probe: &Probe,
        key: &str,
        value: Option<&str>,
        result: &Result<Record, ProbeError>,
    ) {
        let c = match result {
            Ok(r) => Completion { kind: EventType::Ok, value, version: Some(&r.version), error: None },
            Err(e) => Completion {
                kind: if e.is_definite_failure() { EventType::Fail } else { EventType::Info },
                value,
                version: None,
                error: Some(e.to_string()),
            },
        };
        self.complete(process, f, &probe.region, key, c);
    }
}
