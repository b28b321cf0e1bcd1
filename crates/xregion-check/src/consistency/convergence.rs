//! `check_convergence`: whether every region ended with the same (value, version) for every key, tombstones
//! included. It needs no history, only the final states.

use super::error::CheckError;
use super::model::{FinalStates, Held, validate_states};
use super::table::{bounded_table, show};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use xregion_model::report::Table;

/// A key the regions disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DivergentKey {
    /// The key.
    pub key: String,
    /// What every region holds; `None` when the key is absent there.
    pub holdings: BTreeMap<String, Option<Held>>,
}

/// Result of `check_convergence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Convergence {
    /// Distinct keys present in at least one region.
    pub keys_checked: u64,
    /// Regions compared.
    pub regions_checked: u64,
    /// Keys whose (value, version) differ between regions or that are missing in some; in key order.
    pub divergent: Vec<DivergentKey>,
}

impl Convergence {
    /// True when every region holds the same thing for every key.
    pub fn passed(&self) -> bool {
        self.divergent.is_empty()
    }

    /// Figures for the report, units in the names.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("keys_checked".into(), self.keys_checked as f64),
            ("regions_checked".into(), self.regions_checked as f64),
            ("divergent_keys".into(), self.divergent.len() as f64),
        ])
    }

    /// The divergent keys, one row per key with a column per region, at most `TABLE_ROWS_MAX` rows.
    pub fn to_table(&self) -> Table {
        let regions: BTreeSet<&String> = self.divergent.iter().flat_map(|d| d.holdings.keys()).collect();
        let mut columns = vec!["key".to_string()];
        columns.extend(regions.iter().map(|r| r.to_string()));
        let rows = self
            .divergent
            .iter()
            .map(|d| {
                let mut row = vec![d.key.clone()];
                row.extend(regions.iter().map(|r| show(d.holdings.get(*r).and_then(Option::as_ref))));
                row
            })
            .collect();
        bounded_table("Divergent keys", columns, rows)
    }
}

/// Compares the final states of all regions key by key.
pub fn check_convergence(final_states: &FinalStates) -> Result<Convergence, CheckError> {
    validate_states(final_states)?;
    let keys: BTreeSet<&String> = final_states.values().flat_map(|m| m.keys()).collect();
    let mut divergent = Vec::new();
    for key in &keys {
        let holdings: BTreeMap<String, Option<Held>> =
            final_states.iter().map(|(region, m)| (region.clone(), m.get(*key).map(Held::of))).collect();
        let mut distinct = holdings.values();
        let first = distinct.next();
        if distinct.any(|h| Some(h) != first) {
            divergent.push(DivergentKey { key: key.to_string(), holdings });
        }
    }
    Ok(Convergence { keys_checked: keys.len() as u64, regions_checked: final_states.len() as u64, divergent })
}
