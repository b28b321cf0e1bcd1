//! Invariants over what business journeys did: pure judges of the journeys' outcomes and of what every region
//! answered when read afterwards.
//!
//! A journey file names a variable (`per`: an order id, an e-mail, a SKU); every value it took is one [`Subject`].
//! For each subject the runner counts how the judged step ended in the journeys that had that value (succeeded,
//! refused, or of unknown outcome: a timeout or a 5xx after the request was sent) and reads the same resource in
//! every region. Each judge checks a safety side and a liveness side, so that an application that refuses
//! everything cannot pass:
//!
//! - **exactly-once** (one charge per paid order): every region counts exactly 1 where the step succeeded, at most
//!   1 where its outcome is unknown, and 0 where it was refused or failed for certain.
//! - **uniqueness** (one account per e-mail): of the concurrent attempts with one value, exactly one succeeds
//!   (more is a duplicate, none is a liveness failure unless an outcome is unknown), and every region counts at
//!   most 1 (exactly 1 where one succeeded).
//! - **convergence**: every region answers the same value.
//! - **conservation** (stock): with `initial` units read before the journeys and `sold` successful steps,
//!   every region ends with the same stock, never below 0, with `initial - sold - unknown <= final <= initial -
//!   sold`; and no step was refused while units remained (an application may refuse only when stock really is
//!   exhausted), except while a fault was in force, when units may be out of reach.
//!
//! A region whose read failed is listed as unreadable, and the subject is judged on the other regions.

use std::collections::BTreeMap;

/// What one region answered to an invariant's read.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The number of items at the read's pointer (an array's length).
    Count(u64),
    /// The value at the read's pointer, as canonical JSON text (numbers as numbers).
    Value(String),
    /// The read failed; why.
    Error(String),
}

impl Read {
    /// The value as a number, if it is one.
    fn number(&self) -> Option<f64> {
        match self {
            Read::Count(n) => Some(*n as f64),
            Read::Value(v) => v.parse::<f64>().ok().filter(|x| x.is_finite()),
            Read::Error(_) => None,
        }
    }

    /// For tables.
    pub fn show(&self) -> String {
        match self {
            Read::Count(n) => n.to_string(),
            Read::Value(v) => v.clone(),
            Read::Error(e) => format!("error: {e}"),
        }
    }
}

/// One value of the invariant's variable, what the journeys did with it, and what the regions hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subject {
    /// The value (an order id, an e-mail).
    pub key: String,
    /// The journeys that had it, as `journey#instance`.
    pub journeys: Vec<String>,
    /// Journeys whose judged step succeeded.
    pub ok: u64,
    /// Journeys whose judged step has an unknown outcome.
    pub unknown: u64,
    /// Journeys whose judged step was refused (an expected non-2xx status).
    pub refused: u64,
    /// Of those, the ones refused while a fault was in force (a partition may strand units out of reach:
    /// refusing then is allowed).
    pub refused_in_fault: u64,
    /// Conservation: each region's read before the journeys.
    pub before: BTreeMap<String, Read>,
    /// Each region's read after the journeys (the last of the polls).
    pub after: BTreeMap<String, Read>,
}

/// A subject that breaks the invariant.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The value.
    pub key: String,
    /// What is wrong, in one sentence, with the regions' figures.
    pub what: String,
    /// The journeys involved.
    pub journeys: Vec<String>,
    /// A liveness violation (the application refused what it should have done), not a safety one.
    pub liveness: bool,
}

/// The judgement of one invariant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judged {
    /// Subjects judged.
    pub subjects: usize,
    /// Subjects read in at least one region.
    pub readable: usize,
    /// Violations, in key order.
    pub violations: Vec<Violation>,
    /// `(key, region, why)` for every failed read.
    pub unreadable: Vec<(String, String, String)>,
}

impl Judged {
    /// Whether it holds.
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The kinds of invariant, as journey files name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ExactlyOnce,
    Uniqueness,
    Convergence,
    Conservation,
}

impl Kind {
    /// The name in journey files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ExactlyOnce => "exactly-once",
            Kind::Uniqueness => "uniqueness",
            Kind::Convergence => "convergence",
            Kind::Conservation => "conservation",
        }
    }

    /// Whether the read must be a count (an array at the pointer) rather than a value.
    pub fn counts(self) -> bool {
        matches!(self, Kind::ExactlyOnce | Kind::Uniqueness)
    }

    /// Judges `subjects`.
    pub fn judge(self, subjects: &[Subject]) -> Judged {
        let mut j = Judged { subjects: subjects.len(), ..Judged::default() };
        for s in subjects {
            for (region, r) in s.before.iter().chain(&s.after) {
                if let Read::Error(e) = r {
                    j.unreadable.push((s.key.clone(), region.clone(), e.clone()));
                }
            }
            let read: BTreeMap<&str, &Read> =
                s.after.iter().filter(|(_, r)| !matches!(r, Read::Error(_))).map(|(k, v)| (k.as_str(), v)).collect();
            if !read.is_empty() {
                j.readable += 1;
            }
            let mut found = |what: String, liveness: bool| {
                j.violations.push(Violation { key: s.key.clone(), what, journeys: s.journeys.clone(), liveness })
            };
            match self {
                Kind::ExactlyOnce => exactly_once(s, &read, &mut found),
                Kind::Uniqueness => uniqueness(s, &read, &mut found),
                Kind::Convergence => {
                    if let Some(what) = diverged(&read) {
                        found(what, false);
                    }
                }
                Kind::Conservation => conservation(s, &read, &mut found),
            }
        }
        j
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        [Kind::ExactlyOnce, Kind::Uniqueness, Kind::Convergence, Kind::Conservation]
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown invariant kind {s:?}; expected exactly-once, uniqueness, convergence or conservation")
            })
    }
}

/// `us-east-1 2, eu-west-1 1`.
fn per_region(read: &BTreeMap<&str, &Read>) -> String {
    read.iter().map(|(r, v)| format!("{r} {}", v.show())).collect::<Vec<_>>().join(", ")
}

/// Why the regions disagree, if they do.
fn diverged(read: &BTreeMap<&str, &Read>) -> Option<String> {
    let first = read.values().next()?;
    read.values().any(|v| v != first).then(|| format!("the regions disagree: {}", per_region(read)))
}

fn exactly_once(s: &Subject, read: &BTreeMap<&str, &Read>, found: &mut impl FnMut(String, bool)) {
    for (region, r) in read {
        let Some(n) = r.number() else {
            found(format!("{region} answered {} where a count was expected", r.show()), false);
            continue;
        };
        if n > 1.0 {
            found(format!("done {n} times in {region} ({})", per_region(read)), false);
        } else if n < 1.0 && s.ok > 0 {
            found(format!("{} journeys succeeded, yet {region} shows it 0 times ({})", s.ok, per_region(read)), true);
        } else if n >= 1.0 && s.ok == 0 && s.unknown == 0 {
            found(
                format!(
                    "no journey succeeded (refused {}), yet {region} shows it once ({})",
                    s.refused,
                    per_region(read)
                ),
                false,
            );
        }
    }
}

fn uniqueness(s: &Subject, read: &BTreeMap<&str, &Read>, found: &mut impl FnMut(String, bool)) {
    let attempts = s.ok + s.unknown + s.refused;
    if s.ok > 1 {
        found(format!("{} of {attempts} concurrent attempts succeeded; at most one may", s.ok), false);
    } else if s.ok == 0 && s.unknown == 0 && attempts > 0 {
        found(format!("none of {attempts} concurrent attempts succeeded; exactly one must"), true);
    }
    for (region, r) in read {
        match r.number() {
            Some(n) if n > 1.0 => found(format!("{region} holds {n} ({})", per_region(read)), false),
            Some(n) if n < 1.0 && s.ok > 0 => {
                found(format!("one attempt succeeded, yet {region} holds none ({})", per_region(read)), true)
            }
            Some(_) => {}
            None => found(format!("{region} answered {} where a count was expected", r.show()), false),
        }
    }
}

fn conservation(s: &Subject, read: &BTreeMap<&str, &Read>, found: &mut impl FnMut(String, bool)) {
    let initial: Vec<f64> = s.before.values().filter_map(Read::number).collect();
    let Some(&initial) = initial.first() else {
        found("the stock could not be read in any region before the journeys".into(), false);
        return;
    };
    if s.before.values().filter_map(Read::number).any(|v| v != initial) {
        let before: BTreeMap<&str, &Read> = s.before.iter().map(|(k, v)| (k.as_str(), v)).collect();
        found(format!("the regions disagreed on the stock before the journeys: {}", per_region(&before)), false);
        return;
    }
    if let Some(what) = diverged(read) {
        found(format!("{what} after the journeys"), false);
    }
    let sold = s.ok as f64;
    let unknown = s.unknown as f64;
    if sold > initial {
        found(format!("{sold} sold from a stock of {initial}: oversold by {}", sold - initial), false);
    }
    for (region, r) in read {
        let Some(now) = r.number() else {
            found(format!("{region} answered {} where a number was expected", r.show()), false);
            continue;
        };
        if now < 0.0 {
            found(format!("{region}'s stock is {now}, below 0"), false);
        } else if now > initial - sold || now < initial - sold - unknown {
            let range = if unknown > 0.0 {
                format!("between {} and {}", initial - sold - unknown, initial - sold)
            } else {
                format!("{}", initial - sold)
            };
            found(format!("{region} holds {now}; {initial} - {sold} sold must leave {range}"), false);
        }
    }
    let refused = s.refused.saturating_sub(s.refused_in_fault);
    if refused > 0 {
        let left: Vec<f64> = read.values().filter_map(|r| r.number()).collect();
        if let Some(most) = left.iter().copied().reduce(f64::max)
            && most > 0.0
        {
            found(format!("{refused} refused while {most} units remained"), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(ok: u64, unknown: u64, refused: u64, after: &[(&str, Read)]) -> Subject {
        Subject {
            key: "k".into(),
            journeys: vec!["j#0".into()],
            ok,
            unknown,
            refused,
            refused_in_fault: 0,
            before: BTreeMap::new(),
            after: after.iter().map(|(r, v)| (r.to_string(), v.clone())).collect(),
        }
    }

    /// Goal: exactly-once fails a double charge in any region and a paid order charged nowhere, allows 0 or 1 when
    /// the outcome is unknown, and fails a charge nothing asked for.
    #[test]
    fn exactly_once_both_sides() {
        let k = Kind::ExactlyOnce;
        assert!(k.judge(&[subject(1, 0, 0, &[("a", Read::Count(1)), ("b", Read::Count(1))])]).holds());
        let double = k.judge(&[subject(1, 0, 0, &[("a", Read::Count(1)), ("b", Read::Count(2))])]);
        assert_eq!(double.violations.len(), 1);
        assert!(double.violations[0].what.contains("done 2 times in b"), "{double:?}");
        let none = k.judge(&[subject(1, 0, 0, &[("a", Read::Count(0))])]);
        assert!(none.violations[0].liveness);
        assert!(k.judge(&[subject(0, 1, 0, &[("a", Read::Count(0)), ("b", Read::Count(1))])]).holds());
        assert!(!k.judge(&[subject(0, 0, 1, &[("a", Read::Count(1))])]).holds());
    }

    /// Goal: uniqueness fails two successes and no success, and a region holding two; an unreadable region is
    /// listed and the others still judged.
    #[test]
    fn uniqueness_both_sides() {
        let k = Kind::Uniqueness;
        assert!(k.judge(&[subject(1, 0, 1, &[("a", Read::Count(1)), ("b", Read::Count(1))])]).holds());
        let two = k.judge(&[subject(2, 0, 0, &[("a", Read::Count(2))])]);
        assert!(two.violations.iter().any(|v| v.what.contains("2 of 2 concurrent attempts succeeded")), "{two:?}");
        assert!(two.violations.iter().any(|v| v.what.contains("a holds 2")), "{two:?}");
        let none = k.judge(&[subject(0, 0, 2, &[("a", Read::Count(0))])]);
        assert!(none.violations[0].liveness && none.violations[0].what.contains("none of 2"), "{none:?}");
        let part = k.judge(&[subject(1, 0, 1, &[("a", Read::Count(1)), ("b", Read::Error("timed out".into()))])]);
        assert!(part.holds());
        assert_eq!(part.unreadable, vec![("k".into(), "b".into(), "timed out".into())]);
    }

    /// Goal: conservation: final = initial - sold everywhere; oversold, negative, disagreeing and
    /// refused-while-stocked all fail; unknown outcomes widen the range.
    #[test]
    fn conservation_both_sides() {
        let k = Kind::Conservation;
        let with_before = |mut s: Subject, initial: &str| {
            s.before =
                [("a".to_string(), Read::Value(initial.into())), ("b".to_string(), Read::Value(initial.into()))].into();
            s
        };
        let v = |x: &str| Read::Value(x.into());
        assert!(k.judge(&[with_before(subject(3, 0, 2, &[("a", v("0")), ("b", v("0"))]), "3")]).holds());
        let over = k.judge(&[with_before(subject(4, 0, 0, &[("a", v("-1")), ("b", v("-1"))]), "3")]);
        assert!(over.violations.iter().any(|x| x.what.contains("oversold by 1")), "{over:?}");
        assert!(over.violations.iter().any(|x| x.what.contains("below 0")), "{over:?}");
        let split = k.judge(&[with_before(subject(2, 0, 0, &[("a", v("1")), ("b", v("2"))]), "3")]);
        assert!(split.violations.iter().any(|x| x.what.contains("disagree")), "{split:?}");
        let lazy = k.judge(&[with_before(subject(1, 0, 2, &[("a", v("2")), ("b", v("2"))]), "3")]);
        assert!(lazy.violations.iter().any(|x| x.liveness && x.what.contains("2 refused while 2 units")), "{lazy:?}");
        let mut cut_off = with_before(subject(1, 0, 2, &[("a", v("2")), ("b", v("2"))]), "3");
        cut_off.refused_in_fault = 2;
        assert!(k.judge(std::slice::from_ref(&cut_off)).holds(), "refused only while a partition held the units");
        cut_off.refused_in_fault = 1;
        assert!(k.judge(&[cut_off]).violations.iter().any(|x| x.what.contains("1 refused while")));
        assert!(k.judge(&[with_before(subject(1, 1, 0, &[("a", v("1")), ("b", v("1"))]), "3")]).holds());
        assert!(!k.judge(&[with_before(subject(1, 1, 0, &[("a", v("0")), ("b", v("0"))]), "3")]).holds());
    }

    /// Goal: convergence fails when two regions answer differently, and names both answers.
    #[test]
    fn convergence_names_the_answers() {
        let k = Kind::Convergence;
        let v = |x: &str| Read::Value(x.into());
        assert!(k.judge(&[subject(1, 0, 0, &[("a", v("\"paid\"")), ("b", v("\"paid\""))])]).holds());
        let j = k.judge(&[subject(1, 0, 0, &[("a", v("\"paid\"")), ("b", v("\"open\""))])]);
        assert!(j.violations[0].what.contains("a \"paid\", b \"open\""), "{j:?}");
    }
}
