//! `check_lww`: whether every region holds the last-write-wins winner of every key, the highest-versioned write the
//! history knows (acked, or unknown but observed), by the rules in the parent module's doc.

use super::error::CheckError;
use super::model::{
    Counts, FinalStates, Held, KeyWrites, acked_version, collect_from_ops, counts, keys_in_scope, pair, validate_states,
};
use super::table::{bounded_table, show};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use xregion_model::history::{Event, EventType, OpFn};
use xregion_model::report::Table;

/// What is wrong with a region's final record under last-write-wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LwwViolationKind {
    /// The key is absent although a write of it is known.
    Missing,
    /// A known write has a higher version than the final: the wrong write won.
    Stale,
    /// The final has the winner's version but another value.
    ValueMismatch,
    /// The final has a higher version than every known write: no write of the history explains it.
    Unexplained,
}

/// One region holding the wrong winner for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LwwViolation {
    /// The key.
    pub key: String,
    /// The region.
    pub region: String,
    /// What is wrong.
    pub kind: LwwViolationKind,
    /// The expected winner: the known write with the highest version; `None` when no write is known.
    pub expected: Option<Held>,
    /// What the region holds; `None` when the key is absent.
    pub actual: Option<Held>,
}

/// Result of `check_lww`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LwwCheck {
    /// What was looked at.
    pub counts: Counts,
    /// Unknown-outcome writes that were observed (in a final state or an ok read) and so were candidates.
    pub unknown_observed: u64,
    /// (key, region) pairs holding the expected winner.
    pub correct: u64,
    /// Regions holding the wrong winner; findings.
    pub violations: Vec<LwwViolation>,
}

impl LwwCheck {
    /// True when every region holds the highest-versioned known write of every key.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        self.counts.metrics(&mut m);
        m.insert("unknown_observed".into(), self.unknown_observed as f64);
        m.insert("correct_winners".into(), self.correct as f64);
        m.insert("wrong_winners".into(), self.violations.len() as f64);
        m
    }

    /// Every violation, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let rows = self
            .violations
            .iter()
            .map(|v| {
                let kind = match v.kind {
                    LwwViolationKind::Missing => "missing",
                    LwwViolationKind::Stale => "stale",
                    LwwViolationKind::ValueMismatch => "value-mismatch",
                    LwwViolationKind::Unexplained => "unexplained",
                };
                let expected = v.expected.as_ref().map_or_else(|| "no known write".to_string(), Held::to_string);
                vec![kind.into(), v.key.clone(), v.region.clone(), expected, show(v.actual.as_ref())]
            })
            .collect();
        let columns = ["violation", "key", "region", "expected winner", "region holds"].map(String::from).to_vec();
        bounded_table("Wrong LWW winners", columns, rows)
    }
}

/// Checks that every region holds the highest-versioned known write of every key; see the module doc.
pub fn check_lww(history: &[Event], final_states: &FinalStates) -> Result<LwwCheck, CheckError> {
    validate_states(final_states)?;
    let ops = pair(history)?;
    let writes = collect_from_ops(&ops)?;
    let keys = keys_in_scope(&writes, final_states);
    let mut out = LwwCheck { counts: counts(&writes, &keys, final_states), ..LwwCheck::default() };

    // Where a value of a key was seen, with its version: final states and ok reads.
    let mut seen: BTreeMap<&str, BTreeSet<Held>> = BTreeMap::new();
    for state in final_states.values() {
        for (key, r) in state {
            seen.entry(key.as_str()).or_default().insert(Held::of(r));
        }
    }
    for op in &ops {
        if let (OpFn::Read, Some(c)) = (op.invoke.f, &op.completion)
            && c.kind == EventType::Ok
            && let Some(version) = &c.version
        {
            seen.entry(op.invoke.key.as_str())
                .or_default()
                .insert(Held { value: c.value.clone(), version: version.clone() });
        }
    }

    let empty = KeyWrites::default();
    for key in &keys {
        let kw = writes.get(*key).unwrap_or(&empty);
        let mut candidates: Vec<Held> =
            kw.acked.iter().map(|w| Held { value: w.value.clone(), version: acked_version(w).clone() }).collect();
        for w in &kw.unknown {
            let observed: Vec<&Held> = seen.get(key.as_str()).into_iter().flatten().filter(|h| w.matches(h)).collect();
            if !observed.is_empty() {
                out.unknown_observed += 1;
            }
            candidates.extend(observed.into_iter().cloned());
        }
        // Highest version wins; on a tie of versions with different values (a version conflict, which
        // check_writes reports), the smallest value is taken so the choice is deterministic.
        let expected = candidates.into_iter().max_by(|a, b| a.version.cmp(&b.version).then(b.value.cmp(&a.value)));
        for (region, state) in final_states {
            let actual = state.get(*key).map(Held::of);
            let kind = match (&expected, &actual) {
                (None, None) => None,
                (None, Some(_)) => Some(LwwViolationKind::Unexplained),
                (Some(_), None) => Some(LwwViolationKind::Missing),
                (Some(e), Some(a)) if a.version < e.version => Some(LwwViolationKind::Stale),
                (Some(e), Some(a)) if a.version > e.version => Some(LwwViolationKind::Unexplained),
                (Some(e), Some(a)) if a.value != e.value => Some(LwwViolationKind::ValueMismatch),
                (Some(_), Some(_)) => None,
            };
            match kind {
                None if expected.is_some() => out.correct += 1,
                None => {}
                Some(kind) => out.violations.push(LwwViolation {
                    key: key.to_string(),
                    region: region.clone(),
                    kind,
                    expected: expected.clone(),
                    actual,
                }),
            }
        }
    }
    Ok(out)
}
