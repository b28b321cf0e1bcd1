//! Hand-written histories for the consistency checkers, including ones that must fail.

use super::*;
use std::collections::BTreeMap;
use xregion_model::Version;
use xregion_model::history::{EventType, OpFn};
use xregion_model::wire::Record;

fn v(wall_ms: u64, origin: &str) -> Version {
    Version { wall_ms, logical: 0, origin: origin.to_string() }
}

fn ev(process: u32, kind: EventType, f: OpFn, region: &str, key: &str, value: Option<&str>) -> Event {
    Event {
        index: 0,
        process,
        kind,
        f,
        region: region.to_string(),
        key: key.to_string(),
        value: value.map(str::to_string),
        version: None,
        time_ns: 0,
        error: None,
    }
}

fn with_version(mut e: Event, version: Version) -> Event {
    e.version = Some(version);
    e
}

/// An acknowledged write of `value` that the deployment stamped `version`.
fn write_ok(p: u32, region: &str, key: &str, value: &str, version: Version) -> Vec<Event> {
    vec![
        ev(p, EventType::Invoke, OpFn::Write, region, key, Some(value)),
        with_version(ev(p, EventType::Ok, OpFn::Write, region, key, Some(value)), version),
    ]
}

/// A write that timed out (`info`).
fn write_info(p: u32, region: &str, key: &str, value: &str) -> Vec<Event> {
    vec![
        ev(p, EventType::Invoke, OpFn::Write, region, key, Some(value)),
        ev(p, EventType::Info, OpFn::Write, region, key, Some(value)),
    ]
}

/// A write whose completion was never recorded (the history ended).
fn write_open(p: u32, region: &str, key: &str, value: &str) -> Vec<Event> {
    vec![ev(p, EventType::Invoke, OpFn::Write, region, key, Some(value))]
}

fn write_fail(p: u32, region: &str, key: &str, value: &str) -> Vec<Event> {
    vec![
        ev(p, EventType::Invoke, OpFn::Write, region, key, Some(value)),
        ev(p, EventType::Fail, OpFn::Write, region, key, Some(value)),
    ]
}

fn delete_ok(p: u32, region: &str, key: &str, version: Version) -> Vec<Event> {
    vec![
        ev(p, EventType::Invoke, OpFn::Delete, region, key, None),
        with_version(ev(p, EventType::Ok, OpFn::Delete, region, key, None), version),
    ]
}

fn read_ok(p: u32, region: &str, key: &str, value: &str, version: Version) -> Vec<Event> {
    vec![
        ev(p, EventType::Invoke, OpFn::Read, region, key, None),
        with_version(ev(p, EventType::Ok, OpFn::Read, region, key, Some(value)), version),
    ]
}

/// Concatenates operations in order and numbers the events.
fn history(ops: Vec<Vec<Event>>) -> Vec<Event> {
    let mut events: Vec<Event> = ops.into_iter().flatten().collect();
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
        e.time_ns = i as u64 * 1000;
    }
    events
}

/// Final states of `regions`, each holding the listed `(region, key, value, version)` records.
fn states(regions: &[&str], records: &[(&str, &str, Option<&str>, Version)]) -> FinalStates {
    let mut s: FinalStates = regions.iter().map(|r| (r.to_string(), BTreeMap::new())).collect();
    for (region, key, value, version) in records {
        let rec = Record {
            key: key.to_string(),
            value: value.map(str::to_string),
            version: version.clone(),
            region: region.to_string(),
            residency: None,
        };
        s.get_mut(*region).expect("region listed").insert(key.to_string(), rec);
    }
    s
}

/// Both regions hold the same records.
fn everywhere(records: &[(&str, Option<&str>, Version)]) -> FinalStates {
    let mut all = Vec::new();
    for r in ["us", "eu"] {
        for (k, val, ver) in records {
            all.push((r, *k, *val, ver.clone()));
        }
    }
    states(&["us", "eu"], &all)
}

fn all_checks(h: &[Event], s: &FinalStates) -> (Convergence, WriteCheck, LwwCheck) {
    (check_convergence(s).unwrap(), check_writes(h, s).unwrap(), check_lww(h, s).unwrap())
}

/// Goal: a correct run passes every checker and counts what it saw. Method: writes from two regions, the later
/// version held everywhere.
#[test]
fn clean_history_passes() {
    let h = history(vec![
        write_ok(0, "us", "k1", "a", v(1, "us")),
        write_ok(1, "eu", "k1", "b", v(2, "eu")),
        write_ok(0, "us", "k2", "c", v(3, "us")),
        read_ok(1, "eu", "k2", "c", v(3, "us")),
    ]);
    let s = everywhere(&[("k1", Some("b"), v(2, "eu")), ("k2", Some("c"), v(3, "us"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed() && w.passed() && l.passed(), "{c:?}\n{w:?}\n{l:?}");
    assert_eq!(
        w.counts,
        Counts { acked_writes: 3, unknown_writes: 0, failed_writes: 0, keys_checked: 2, regions_checked: 2 }
    );
    assert_eq!((w.survived, w.superseded), (4, 2));
    assert_eq!(l.correct, 4);
    assert_eq!(c.keys_checked, 2);
    assert_eq!(w.metrics()["lost_writes"], 0.0);
}

/// Goal: an acked write a region never got is lost there. Method: `eu` still holds the older write.
#[test]
fn lost_write_is_reported() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), write_ok(0, "us", "k", "b", v(2, "us"))]);
    let s = states(&["us", "eu"], &[("us", "k", Some("b"), v(2, "us")), ("eu", "k", Some("a"), v(1, "us"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert_eq!(w.lost.len(), 1);
    assert_eq!(w.lost[0].region, "eu");
    assert_eq!(w.lost[0].write.value.as_deref(), Some("b"));
    assert_eq!(w.lost[0].actual.as_ref().unwrap().value.as_deref(), Some("a"));
    assert_eq!(l.violations.len(), 1);
    assert_eq!(l.violations[0].kind, LwwViolationKind::Stale);
    assert!(!c.passed());
    assert_eq!(w.to_table().rows.len(), 1);
}

/// Goal: a key present in one region and absent in another is divergent, and the acked write is lost where it
/// is absent. Method: `eu` lacks the key entirely.
#[test]
fn divergent_regions_are_listed() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    let s = states(&["us", "eu", "ap"], &[("us", "k", Some("a"), v(1, "us")), ("ap", "k", Some("a"), v(1, "us"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert_eq!(c.divergent.len(), 1);
    let d = &c.divergent[0];
    assert_eq!(d.key, "k");
    assert_eq!(d.holdings["eu"], None);
    assert_eq!(d.holdings["us"].as_ref().unwrap().value.as_deref(), Some("a"));
    assert_eq!(d.holdings.len(), 3);
    assert_eq!(c.to_table().columns, vec!["key", "ap", "eu", "us"]);
    assert_eq!(w.lost.len(), 1);
    assert!(w.lost[0].actual.is_none());
    assert_eq!(l.violations[0].kind, LwwViolationKind::Missing);
}

/// Goal: regions that agree on the wrong winner still fail. Method: both regions hold the lower-versioned of two
/// concurrent writes, as a deployment that resolves by arrival order would.
#[test]
fn wrong_lww_winner_is_reported() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(5, "us")), write_ok(1, "eu", "k", "b", v(3, "eu"))]);
    let s = everywhere(&[("k", Some("b"), v(3, "eu"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed(), "the regions agree");
    assert_eq!(w.lost.len(), 2, "a is lost in both regions");
    assert_eq!(w.lost_writes(), 1, "one write, lost in two regions");
    assert_eq!(w.metrics()["lost_writes"], 1.0);
    assert_eq!(l.violations.len(), 2);
    for viol in &l.violations {
        assert_eq!(viol.kind, LwwViolationKind::Stale);
        assert_eq!(viol.expected, Some(Held { value: Some("a".into()), version: v(5, "us") }));
        assert_eq!(viol.actual, Some(Held { value: Some("b".into()), version: v(3, "eu") }));
    }
}

/// Goal: unknown-outcome writes are fine whether or not they took effect. Method: one timed-out write is the
/// final value, one never-completed write is not.
#[test]
fn unknown_outcome_writes_are_fine_either_way() {
    let h = history(vec![
        write_ok(0, "us", "k", "a", v(1, "us")),
        write_info(1, "eu", "k", "x"),
        write_ok(0, "us", "j", "c", v(3, "us")),
        write_open(2, "us", "j", "y"),
    ]);
    let s = everywhere(&[("k", Some("x"), v(2, "eu")), ("j", Some("c"), v(3, "us"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed() && w.passed() && l.passed(), "{w:?}\n{l:?}");
    assert_eq!(w.counts.unknown_writes, 2);
    assert_eq!(w.unknown_applied, 2, "x is the final of k in both regions");
    assert_eq!(w.superseded, 2, "a is superseded by x in both regions");
    assert_eq!(l.unknown_observed, 1);
}

/// Goal: an unknown-outcome write that one region shows becomes the expected winner everywhere. Method: `us`
/// holds the timed-out write, `eu` the older acked one.
#[test]
fn observed_unknown_write_must_win_everywhere() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), write_info(1, "us", "k", "x")]);
    let s = states(&["us", "eu"], &[("us", "k", Some("x"), v(2, "us")), ("eu", "k", Some("a"), v(1, "us"))]);
    let (_, w, l) = all_checks(&h, &s);
    assert!(w.passed(), "no acked write is lost: {w:?}");
    assert_eq!(l.violations.len(), 1);
    assert_eq!(l.violations[0].region, "eu");
    assert_eq!(l.violations[0].kind, LwwViolationKind::Stale);
}

/// Goal: an unknown-outcome write observed only by a read is still a candidate. Method: a read saw `x` at a
/// higher version than anything the regions hold.
#[test]
fn unknown_write_observed_by_read() {
    let h = history(vec![
        write_ok(0, "us", "k", "a", v(1, "us")),
        write_info(1, "us", "k", "x"),
        read_ok(2, "us", "k", "x", v(2, "us")),
    ]);
    let s = everywhere(&[("k", Some("a"), v(1, "us"))]);
    let l = check_lww(&h, &s).unwrap();
    assert_eq!(l.unknown_observed, 1);
    assert_eq!(l.violations.len(), 2);
}

/// Goal: a failed write must never be the final value. Method: both regions hold the value of a failed write.
#[test]
fn failed_write_that_shows_is_flagged() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), write_fail(1, "eu", "k", "z")]);
    let s = everywhere(&[("k", Some("z"), v(7, "eu"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed());
    assert_eq!(w.failed_visible.len(), 2);
    assert_eq!(w.failed_visible[0].write.as_ref().unwrap().value.as_deref(), Some("z"));
    assert!(w.phantoms.is_empty() && w.lost.is_empty());
    assert_eq!(w.counts.failed_writes, 1);
    assert!(l.violations.iter().all(|x| x.kind == LwwViolationKind::Unexplained));
}

/// Goal: a value no write produced is a phantom, and the writes it hides are not double-counted as lost.
/// Method: both regions hold a value nobody wrote, at a higher version.
#[test]
fn phantom_value_is_flagged() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    let s = everywhere(&[("k", Some("ghost"), v(8, "us")), ("other", Some("boo"), v(1, "eu"))]);
    let (_, w, l) = all_checks(&h, &s);
    assert_eq!(w.phantoms.len(), 4, "k and other, in two regions");
    assert!(w.phantoms.iter().all(|p| p.write.is_none()));
    assert!(w.lost.is_empty());
    assert_eq!(w.superseded, 2);
    assert_eq!(w.counts.keys_checked, 2);
    assert_eq!(l.violations.len(), 4);
    assert!(l.violations.iter().all(|x| x.kind == LwwViolationKind::Unexplained));
}

/// Goal: a final with an acked write's version but another value is corrupt. Method: the value changed in `eu`.
#[test]
fn corrupt_value_is_flagged() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    let s = states(&["us", "eu"], &[("us", "k", Some("a"), v(1, "us")), ("eu", "k", Some("A"), v(1, "us"))]);
    let (_, w, l) = all_checks(&h, &s);
    assert_eq!(w.corrupt.len(), 1);
    assert_eq!(w.corrupt[0].region, "eu");
    assert!(w.lost.is_empty() && w.phantoms.is_empty());
    assert_eq!(l.violations[0].kind, LwwViolationKind::ValueMismatch);
}

/// Goal: a delete is a write of a tombstone and can supersede a write. Method: write, then delete at a higher
/// version; every region holds the tombstone.
#[test]
fn delete_supersedes_write() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), delete_ok(1, "eu", "k", v(2, "eu"))]);
    let s = everywhere(&[("k", None, v(2, "eu"))]);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed() && w.passed() && l.passed(), "{w:?}\n{l:?}");
    assert_eq!((w.survived, w.superseded), (2, 2));

    // The write resurrected over the tombstone in one region: the delete is lost there.
    let s = states(&["us", "eu"], &[("us", "k", None, v(2, "eu")), ("eu", "k", Some("a"), v(1, "us"))]);
    let w = check_writes(&h, &s).unwrap();
    assert_eq!(w.lost.len(), 1);
    assert_eq!(w.lost[0].write.value, None);
}

/// Goal: two acked writes with one version make LWW ambiguous and are reported. Method: same version, two values.
#[test]
fn version_conflict_is_flagged() {
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), write_ok(1, "us", "k", "b", v(1, "us"))]);
    let s = everywhere(&[("k", Some("b"), v(1, "us"))]);
    let w = check_writes(&h, &s).unwrap();
    assert_eq!(w.version_conflicts.len(), 1);
    assert_eq!(w.version_conflicts[0].writes.len(), 2);
}

/// Goal: a malformed history is an error, not a pass. Method: a completion with no invoke; a double invoke.
#[test]
fn malformed_history_is_an_error() {
    let s = everywhere(&[]);
    let mut h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    h.remove(0);
    assert!(matches!(check_writes(&h, &s), Err(CheckError::MalformedHistory(_))));
    assert!(matches!(check_lww(&h, &s), Err(CheckError::MalformedHistory(_))));

    let h = history(vec![write_open(0, "us", "k", "a"), write_open(0, "us", "k", "b")]);
    let e = check_writes(&h, &s).unwrap_err();
    assert!(e.to_string().contains("still open"), "{e}");
}

/// Goal: histories and states that cannot be judged are errors with a clear cause. Method: an ack without a
/// version, a write without a value, no regions at all, a record filed under another key.
#[test]
fn unjudgeable_inputs_are_errors() {
    let s = everywhere(&[]);
    let mut h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    h[1].version = None;
    assert!(matches!(check_writes(&h, &s), Err(CheckError::AckWithoutVersion { index: 1, .. })));

    let mut h = history(vec![write_info(0, "us", "k", "a")]);
    h[0].value = None;
    assert!(matches!(check_lww(&h, &s), Err(CheckError::WriteWithoutValue { index: 0, .. })));

    let mut h = history(vec![write_info(0, "us", "k", "a")]);
    h[1].key = "j".into();
    assert!(matches!(check_writes(&h, &s), Err(CheckError::CompletionMismatch { .. })));

    assert_eq!(check_convergence(&FinalStates::new()), Err(CheckError::NoRegions));
    assert_eq!(check_writes(&[], &FinalStates::new()), Err(CheckError::NoRegions));

    let mut s = everywhere(&[("k", Some("a"), v(1, "us"))]);
    s.get_mut("us").unwrap().get_mut("k").unwrap().key = "other".into();
    assert!(matches!(check_convergence(&s), Err(CheckError::StateKeyMismatch { .. })));
}

/// Goal: finding tables stay bounded for a badly broken run. Method: 120 phantoms, table capped plus one row.
#[test]
fn tables_are_bounded() {
    let recs: Vec<(String, Version)> = (0..60).map(|i| (format!("k{i}"), v(i, "us"))).collect();
    let recs: Vec<(&str, Option<&str>, Version)> =
        recs.iter().map(|(k, ver)| (k.as_str(), Some("x"), ver.clone())).collect();
    let w = check_writes(&[], &everywhere(&recs)).unwrap();
    assert_eq!(w.phantoms.len(), 120);
    let t = w.to_table();
    assert_eq!(t.rows.len(), TABLE_ROWS_MAX + 1);
    assert!(t.rows.last().unwrap()[0].contains("70 more"));
}

/// Goal: a store that keeps no tombstones (etcd) is judged like one that does: an absent key is the latest
/// delete, and a write acknowledged after that delete is still lost. Method: the same histories with absent keys.
#[test]
fn absent_key_is_the_latest_delete_where_no_tombstones_are_kept() {
    // Written, then deleted: absent everywhere is right.
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us")), delete_ok(1, "eu", "k", v(2, "eu"))]);
    let mut s = states(&["us", "eu"], &[]);
    assert_eq!(absent_as_latest_delete(&h, &mut s).unwrap(), 2);
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed() && w.passed() && l.passed(), "{w:?}\n{l:?}");

    // Deleted, then written and acknowledged: absent means the write is lost, in both regions.
    let h = history(vec![delete_ok(1, "eu", "k", v(1, "eu")), write_ok(0, "us", "k", "a", v(2, "us"))]);
    let mut s = states(&["us", "eu"], &[("us", "k", Some("a"), v(2, "us"))]);
    absent_as_latest_delete(&h, &mut s).unwrap();
    let w = check_writes(&h, &s).unwrap();
    assert_eq!(w.lost.len(), 1, "{w:?}");
    assert_eq!((w.lost[0].region.as_str(), w.lost[0].write.value.as_deref()), ("eu", Some("a")));

    // A delete of unknown outcome may have been applied last: it explains the absence.
    let mut h = vec![write_ok(0, "us", "k", "a", v(2, "us"))];
    h.push(vec![
        ev(1, EventType::Invoke, OpFn::Delete, "eu", "k", None),
        ev(1, EventType::Info, OpFn::Delete, "eu", "k", None),
    ]);
    let h = history(h);
    let mut s = states(&["us", "eu"], &[]);
    absent_as_latest_delete(&h, &mut s).unwrap();
    let (c, w, l) = all_checks(&h, &s);
    assert!(c.passed() && w.passed() && l.passed(), "{w:?}\n{l:?}");

    // No delete at all: an absent key stays absent, and the acked write is lost.
    let h = history(vec![write_ok(0, "us", "k", "a", v(1, "us"))]);
    let mut s = states(&["us", "eu"], &[]);
    assert_eq!(absent_as_latest_delete(&h, &mut s).unwrap(), 0);
    assert_eq!(check_writes(&h, &s).unwrap().lost.len(), 2);
}
