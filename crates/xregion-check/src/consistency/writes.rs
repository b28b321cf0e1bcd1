//! `check_writes`: every acknowledged write against every region's final state (lost, corrupt, survived,
//! superseded), and every final record attributed to the write it comes from (failed-visible, phantom), by the
//! rules in the parent module's doc.

use super::error::CheckError;
use super::model::{
    Counts, FinalStates, Held, KeyWrites, Write, WriteRef, acked_version, collect_writes, counts, keys_in_scope,
    validate_states,
};
use super::table::{bounded_table, show};
use serde::Serialize;
use std::collections::BTreeMap;
use xregion_model::Version;
use xregion_model::history::Event;
use xregion_model::report::Table;

/// An acked write a region does not hold, nor anything newer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The key.
    pub key: String,
    /// The region that lost it.
    pub region: String,
    /// The acked write.
    pub write: WriteRef,
    /// What the region holds instead; `None` when the key is absent.
    pub actual: Option<Held>,
}

/// A final record that is not explained by an acked or unknown write: a phantom, a failed write that shows, or
/// a record with an acked write's version but another value (corrupt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadFinal {
    /// The key.
    pub key: String,
    /// The region holding it.
    pub region: String,
    /// What the region holds.
    pub actual: Held,
    /// The write it was matched to: the acked write whose version it has (corrupt) or the failed write whose
    /// value it has (failed-visible); `None` for a phantom.
    pub write: Option<WriteRef>,
}

/// Two acked writes of one key that the deployment gave the same version, which makes LWW ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionConflict {
    /// The key.
    pub key: String,
    /// The shared version.
    pub version: Version,
    /// The writes that share it.
    pub writes: Vec<WriteRef>,
}

/// Result of `check_writes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteCheck {
    /// What was looked at.
    pub counts: Counts,
    /// (acked write, region) pairs where the region holds that write.
    pub survived: u64,
    /// (acked write, region) pairs where the region holds something newer.
    pub superseded: u64,
    /// (key, region) pairs whose final is an unknown-outcome write, which did take effect.
    pub unknown_applied: u64,
    /// Acked writes a region lost; findings.
    pub lost: Vec<LostWrite>,
    /// Finals with an acked write's version but another value; findings.
    pub corrupt: Vec<BadFinal>,
    /// Finals that are a failed write; findings.
    pub failed_visible: Vec<BadFinal>,
    /// Finals no write of the history produced; findings.
    pub phantoms: Vec<BadFinal>,
    /// Acked writes sharing a version; findings.
    pub version_conflicts: Vec<VersionConflict>,
}

impl WriteCheck {
    /// Number of findings of every kind.
    pub fn findings(&self) -> usize {
        self.lost.len()
            + self.corrupt.len()
            + self.failed_visible.len()
            + self.phantoms.len()
            + self.version_conflicts.len()
    }

    /// Distinct acknowledged writes lost in at least one region (`lost` has one entry per region that lost one).
    pub fn lost_writes(&self) -> usize {
        self.lost.iter().map(|l| (&l.key, l.write.to_string())).collect::<std::collections::BTreeSet<_>>().len()
    }

    /// True when nothing was lost, corrupted, invented or shown despite failing.
    pub fn passed(&self) -> bool {
        self.findings() == 0
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        self.counts.metrics(&mut m);
        m.insert("survived".into(), self.survived as f64);
        m.insert("superseded".into(), self.superseded as f64);
        m.insert("unknown_applied".into(), self.unknown_applied as f64);
        m.insert("lost_writes".into(), self.lost_writes() as f64);
        m.insert("lost_region_copies".into(), self.lost.len() as f64);
        m.insert("corrupt_finals".into(), self.corrupt.len() as f64);
        m.insert("failed_visible".into(), self.failed_visible.len() as f64);
        m.insert("phantoms".into(), self.phantoms.len() as f64);
        m.insert("version_conflicts".into(), self.version_conflicts.len() as f64);
        m
    }

    /// Every finding, one row each, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let mut rows = Vec::new();
        for l in &self.lost {
            rows.push(vec![
                "lost".into(),
                l.key.clone(),
                l.region.clone(),
                l.write.to_string(),
                show(l.actual.as_ref()),
            ]);
        }
        for (kind, list) in
            [("corrupt", &self.corrupt), ("failed-visible", &self.failed_visible), ("phantom", &self.phantoms)]
        {
            for b in list {
                let write = b.write.as_ref().map_or_else(|| "none".to_string(), WriteRef::to_string);
                rows.push(vec![kind.into(), b.key.clone(), b.region.clone(), write, b.actual.to_string()]);
            }
        }
        for c in &self.version_conflicts {
            let writes = c.writes.iter().map(WriteRef::to_string).collect::<Vec<_>>().join("; ");
            rows.push(vec!["version-conflict".into(), c.key.clone(), "-".into(), writes, c.version.to_string()]);
        }
        let columns = ["finding", "key", "region", "write", "region holds"].map(String::from).to_vec();
        bounded_table("Write findings", columns, rows)
    }
}

/// Checks every acknowledged write against every region's final state; see the module doc for the rules.
pub fn check_writes(history: &[Event], final_states: &FinalStates) -> Result<WriteCheck, CheckError> {
    validate_states(final_states)?;
    let writes = collect_writes(history)?;
    let keys = keys_in_scope(&writes, final_states);
    let mut out = WriteCheck { counts: counts(&writes, &keys, final_states), ..WriteCheck::default() };

    for (key, kw) in &writes {
        let mut by_version: BTreeMap<&Version, Vec<&Write>> = BTreeMap::new();
        for w in &kw.acked {
            by_version.entry(acked_version(w)).or_default().push(w);
        }
        for (version, ws) in by_version {
            if ws.iter().any(|w| w.value != ws[0].value) {
                out.version_conflicts.push(VersionConflict {
                    key: key.clone(),
                    version: version.clone(),
                    writes: ws.iter().map(|w| w.to_ref()).collect(),
                });
            }
        }
    }

    let empty = KeyWrites::default();
    for key in &keys {
        let kw = writes.get(*key).unwrap_or(&empty);
        for (region, state) in final_states {
            let fin = state.get(*key).map(Held::of);
            for w in &kw.acked {
                let wv = acked_version(w);
                match &fin {
                    Some(f) if f.version > *wv => out.superseded += 1,
                    Some(f) if f.version == *wv && f.value == w.value => out.survived += 1,
                    // Same version, other value: reported once as corrupt when the final is attributed below.
                    Some(f) if f.version == *wv => {}
                    _ => out.lost.push(LostWrite {
                        key: key.to_string(),
                        region: region.clone(),
                        write: w.to_ref(),
                        actual: fin.clone(),
                    }),
                }
            }
            let Some(f) = fin else { continue };
            let bad = |write: Option<&Write>| BadFinal {
                key: key.to_string(),
                region: region.clone(),
                actual: f.clone(),
                write: write.map(Write::to_ref),
            };
            match attribute(kw, &f) {
                Attribution::Acked => {}
                Attribution::Corrupt(w) => out.corrupt.push(bad(Some(w))),
                Attribution::Unknown => out.unknown_applied += 1,
                Attribution::Failed(w) => out.failed_visible.push(bad(Some(w))),
                Attribution::Phantom => out.phantoms.push(bad(None)),
            }
        }
    }
    Ok(out)
}

/// Where a final record comes from; see `attribute`.
enum Attribution<'a> {
    Acked,
    Corrupt(&'a Write),
    Unknown,
    Failed(&'a Write),
    Phantom,
}

/// Which write of the history a final record comes from, in the order the parent module's doc gives.
fn attribute<'a>(kw: &'a KeyWrites, f: &Held) -> Attribution<'a> {
    let same_version: Vec<&Write> = kw.acked.iter().filter(|w| *acked_version(w) == f.version).collect();
    if same_version.iter().any(|w| w.value == f.value) {
        return Attribution::Acked;
    }
    if let Some(w) = same_version.first() {
        return Attribution::Corrupt(w);
    }
    if kw.unknown.iter().any(|w| w.matches(f)) {
        return Attribution::Unknown;
    }
    if let Some(w) = kw.failed.iter().find(|w| w.matches(f)) {
        return Attribution::Failed(w);
    }
    Attribution::Phantom
}
