//! Merging the results of load generators that ran at the same time against one target (shards of one run): the
//! union of their requests, exactly where it is judged.
//!
//! Counts add up and every latency histogram (per request name, per phase) is the sum of the shards' histograms,
//! so the merged percentiles are those of one histogram holding every request, within HDR precision. Chart windows
//! are merged by index (the shards started together): their counts and throughputs add up, and their
//! percentiles, which the windows keep only as figures, are the shards' largest: an upper bound, shown in charts
//! and never judged. Thresholds are not merged (each shard judged its own); peak VUs add up, which is exact when the
//! shards' peaks coincide and an upper bound otherwise.

use crate::result::{LoadResult, Window};

/// Adds histogram `b` into `a`; both have the crate's bounds, so this cannot fail.
fn add(a: &mut crate::result::Latency, b: &crate::result::Latency) {
    a.0.add(&b.0).expect("latency histograms share bounds");
}

impl LoadResult {
    /// The union of `parts`, which ran at the same time; an error names what differs when they cannot be merged
    /// (another model, or another window width).
    pub fn merge(parts: &[LoadResult]) -> Result<LoadResult, String> {
        let Some(first) = parts.first() else {
            return Err("no results to merge".into());
        };
        let mut m = LoadResult {
            model: first.model.clone(),
            seed: first.seed,
            window_ms: first.window_ms,
            ..LoadResult::default()
        };
        for (i, p) in parts.iter().enumerate() {
            if p.model != m.model {
                return Err(format!("part {i} ran the {} model, part 0 the {}", p.model, m.model));
            }
            if p.window_ms != m.window_ms {
                return Err(format!("part {i} has {} ms windows, part 0 {} ms", p.window_ms, m.window_ms));
            }
            m.duration_s = m.duration_s.max(p.duration_s);
            m.workers += p.workers;
            m.requests += p.requests;
            m.requests_per_s.ok += p.requests_per_s.ok;
            m.requests_per_s.total += p.requests_per_s.total;
            m.errors.add(&p.errors);
            for (code, n) in &p.statuses {
                *m.statuses.entry(*code).or_default() += n;
            }
            for (name, s) in &p.per_request {
                let t = m.per_request.entry(name.clone()).or_default();
                t.count += s.count;
                t.errors += s.errors;
                add(&mut t.latency, &s.latency);
                add(&mut t.latency_uncorrected, &s.latency_uncorrected);
                add(&mut t.latency_errors, &s.latency_errors);
                for (header, values) in &s.header_counts {
                    let h = t.header_counts.entry(header.clone()).or_default();
                    for (value, n) in values {
                        *h.entry(value.clone()).or_default() += n;
                    }
                }
            }
            for (i, w) in p.windows.iter().enumerate() {
                match m.windows.get_mut(i) {
                    Some(t) => merge_window(t, w),
                    None => m.windows.push(w.clone()),
                }
            }
            m.vus_max += p.vus_max;
            m.late += p.late;
            m.late_lag_ms_max = m.late_lag_ms_max.max(p.late_lag_ms_max);
            m.dropped += p.dropped;
            m.interrupted += p.interrupted;
            m.reconnects += p.reconnects;
            m.connections_opened += p.connections_opened;
            m.rss_bytes_peak = match (m.rss_bytes_peak, p.rss_bytes_peak) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            for (name, s) in &p.phases {
                let t = m.phases.entry(name.clone()).or_default();
                t.requests += s.requests;
                t.errors += s.errors;
                add(&mut t.latency, &s.latency);
            }
        }
        Ok(m)
    }
}

fn merge_window(t: &mut Window, w: &Window) {
    t.requests += w.requests;
    t.errors += w.errors;
    t.throughput_per_s += w.throughput_per_s;
    t.latency_ms_p50 = t.latency_ms_p50.max(w.latency_ms_p50);
    t.latency_ms_p95 = t.latency_ms_p95.max(w.latency_ms_p95);
    t.latency_ms_p99 = t.latency_ms_p99.max(w.latency_ms_p99);
    t.active_max += w.active_max;
    t.rate_scheduled_per_s = match (t.rate_scheduled_per_s, w.rate_scheduled_per_s) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Percentiles, PhaseStats, RequestStats};

    /// A result holding `latencies_us` under one request name and one phase.
    fn part(latencies_us: &[u64]) -> LoadResult {
        let mut s = RequestStats::default();
        let mut phase = PhaseStats::default();
        for &v in latencies_us {
            s.latency.0.record(v).unwrap();
            s.latency_uncorrected.0.record(v).unwrap();
            phase.latency.0.record(v).unwrap();
        }
        s.count = latencies_us.len() as u64;
        phase.requests = s.count;
        LoadResult {
            model: "closed".into(),
            requests: s.count,
            per_request: [("get".to_string(), s)].into(),
            phases: [("sustained".to_string(), phase)].into(),
            ..LoadResult::default()
        }
    }

    /// Goal: merging shards' recorded data gives the percentiles of one run over the union of their requests,
    /// within HDR precision (here exactly: the histograms add). Method: four shards of different sizes and
    /// latency shapes (one with a slow tail), against one histogram of every sample.
    #[test]
    fn merged_percentiles_are_those_of_the_union() {
        // xorshift64: deterministic samples without a dependency.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        };
        let shards: Vec<Vec<u64>> =
            (0..4u64).map(|i| (0..(1000 + 700 * i)).map(|_| 500 + next(5_000 * (i + 1))).collect()).collect();
        let merged = LoadResult::merge(&shards.iter().map(|s| part(s)).collect::<Vec<_>>()).unwrap();
        let union = part(&shards.concat());
        assert_eq!(merged.requests, union.requests);
        for q in [50.0, 90.0, 95.0, 99.0, 99.9] {
            let (m, u) = (merged.latency_all(), union.latency_all());
            assert_eq!(m.value_at_percentile(q), u.value_at_percentile(q), "P{q}");
        }
        assert_eq!(
            Percentiles::of(&merged.phases["sustained"].latency.0),
            Percentiles::of(&union.phases["sustained"].latency.0)
        );
        // Not the average of the shards' percentiles, which is what merging reports would give.
        let mean_p99: f64 =
            shards.iter().map(|s| part(s).latency_all().value_at_percentile(99.0) as f64).sum::<f64>() / 4.0;
        assert_ne!(merged.latency_all().value_at_percentile(99.0) as f64, mean_p99);
    }

    /// Goal: results of another model cannot be merged, and the error says so.
    #[test]
    fn mismatched_parts_are_refused() {
        let mut open = part(&[1000]);
        open.model = "open".into();
        let e = LoadResult::merge(&[part(&[1000]), open]).unwrap_err();
        assert!(e.contains("open") && e.contains("closed"), "{e}");
    }
}
