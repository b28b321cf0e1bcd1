//! How write-replicate's observers look for the writes they await: one read per key, or one ordered scan per origin
//! (`checks.write-replicate.observe`).

use super::POLL_IN_FLIGHT_MAX;
use crate::probe::{Probe, ProbeError};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Instant;

/// What one poll learned of one key: the key, when the request was sent, when it was answered, and whether the key
/// was visible. A failed request is `Err(Some(error))` for one of its keys and `Err(None)` for the others, so that
/// each failed request counts once.
pub(super) type PollResult = (String, Instant, Instant, Result<bool, Option<ProbeError>>);

/// Polls `keys` (origin index, key) with one read each.
pub(super) async fn poll_by_read(probe: &Probe, keys: Vec<(usize, String)>) -> Vec<PollResult> {
    futures::stream::iter(keys.into_iter().map(|(_, key)| async move {
        let sent = Instant::now();
        let r = probe.get(&key).await;
        (key, sent, Instant::now(), r.map(|v| v.is_some()).map_err(Some))
    }))
    .buffer_unordered(POLL_IN_FLIGHT_MAX)
    .collect()
    .await
}

/// Polls `keys` (origin index, key) with one scan per origin, of the keys under the origin's prefix from the least
/// key still awaited. Probe keys sort in write order, so the page holds the awaited keys and the few written after
/// them.
pub(super) async fn poll_by_scan(
    probe: &Probe,
    origin_prefixes: &[String],
    keys: Vec<(usize, String)>,
) -> Vec<PollResult> {
    let mut by_origin: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (origin, key) in keys {
        by_origin.entry(origin).or_default().push(key);
    }
    let scans = by_origin.into_iter().map(|(origin, keys)| async move {
        let least = keys.iter().min().cloned().unwrap_or_default();
        let after = key_before(&least);
        let sent = Instant::now();
        let r = probe.scan_after(&origin_prefixes[origin], after.as_deref()).await;
        let received = Instant::now();
        match r {
            Ok(records) => {
                let visible: std::collections::HashSet<&str> =
                    records.iter().filter(|r| r.value.is_some()).map(|r| r.key.as_str()).collect();
                keys.iter().map(|k| (k.clone(), sent, received, Ok(visible.contains(k.as_str())))).collect::<Vec<_>>()
            }
            Err(e) => {
                let mut e = Some(e);
                keys.into_iter().map(|k| (k, sent, received, Err(e.take()))).collect()
            }
        }
    });
    futures::future::join_all(scans).await.into_iter().flatten().collect()
}

/// The key written just before `key` by the same origin: the same key with its trailing write number one less (probe
/// keys end in zero-padded write numbers), so that a scan after it starts at `key`; `None` for the first write, whose
/// scan starts at the origin's prefix.
fn key_before(key: &str) -> Option<String> {
    let (head, digits) = key.split_at(key.trim_end_matches(|c: char| c.is_ascii_digit()).len());
    let n: u64 = digits.parse().ok()?;
    let prev = n.checked_sub(1)?;
    Some(format!("{head}{prev:0width$}", width = digits.len()))
}

#[cfg(test)]
mod tests {
    use super::key_before;

    /// Goal: a scan for an origin's awaited writes starts exactly at the least one: after the previous write number,
    /// at the same width; the first write scans from the prefix.
    #[test]
    fn key_before_is_the_previous_write_of_the_origin() {
        assert_eq!(key_before("run/wr/us-east-1/000000120").as_deref(), Some("run/wr/us-east-1/000000119"));
        assert_eq!(key_before("run/wr/us-east-1/000001000").as_deref(), Some("run/wr/us-east-1/000000999"));
        assert_eq!(key_before("run/wr/us-east-1/000000000"), None);
        assert_eq!(key_before("no-number"), None);
    }
}
