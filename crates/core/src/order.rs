//! Conflict-resolution orderings. Every rule here is a total order over facts carried by the
//! events themselves, so every instance picks the same winner from the same set of events.

/// The version of a value written by an event: `(origin_ts, event_id)`, encoded so that
/// byte-wise string comparison is the order (ts zero-padded to 15 digits, then the id).
/// Later timestamp wins; equal timestamps fall back to the larger event id.
pub fn version(origin_ts: i64, event_id: &str) -> String {
    format!("{:015}:{event_id}", origin_ts.max(0))
}

/// A candidate value of a state register (hive setting, membership, moderator, pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub event_id: String,
    /// The event id of the value the origin saw when writing (None: it saw none).
    pub prev: Option<String>,
    pub origin_instance_id: String,
    pub origin_ts: i64,
}

/// Owner-preferring last-writer-wins (design §3.8), over the *heads* of a register: the
/// candidates that no other candidate names as `prev`. A change made after seeing another
/// supersedes it; among concurrent changes (heads):
/// 1. a change from the hive owner's instance wins;
/// 2. then the later `origin_ts`;
/// 3. then the lexicographically smaller event id.
///
/// Returns the index of the winner in `candidates`, or None if there are none.
pub fn owner_preferring_winner(candidates: &[Candidate], owner_instance: &str) -> Option<usize> {
    let superseded: std::collections::HashSet<&str> = candidates
        .iter()
        .filter_map(|c| c.prev.as_deref())
        .collect();
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !superseded.contains(c.event_id.as_str()))
        .max_by(|(_, a), (_, b)| {
            let a_owner = a.origin_instance_id == owner_instance;
            let b_owner = b.origin_instance_id == owner_instance;
            a_owner
                .cmp(&b_owner)
                .then(a.origin_ts.cmp(&b.origin_ts))
                .then(b.event_id.cmp(&a.event_id))
        })
        .map(|(i, _)| i)
        // A cycle of prev references (only a buggy or hostile origin makes one) leaves no
        // head; fall back to the same order over all candidates so the result is still total.
        .or_else(|| {
            candidates
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    (a.origin_instance_id == owner_instance)
                        .cmp(&(b.origin_instance_id == owner_instance))
                        .then(a.origin_ts.cmp(&b.origin_ts))
                        .then(b.event_id.cmp(&a.event_id))
                })
                .map(|(i, _)| i)
        })
}

/// Owner succession (docs/PROTOCOL.md, "Owner succession"): the instance whose changes win
/// rule 1 of [`owner_preferring_winner`] (the *deciding* instance), from facts of the event
/// set only.
///
/// - `owner`: the origin of the hive's winning creation (None before it is known: no one
///   decides);
/// - `period_secs`: the hive's `owner_succession_secs` (0: succession is off);
/// - `activity`: per origin instance, the newest `origin_ts` among the hive's events.
///
/// The owner decides unless it is *gone*: the hive's newest event is more than the period
/// later than the owner's newest. Then the successor is the smallest instance id among the
/// other instances *active* within the period before the hive's newest event (never empty:
/// the instance of the newest event is one). A smallest id, not "the most active", so the
/// decider does not flip with every post while several instances keep writing.
pub fn deciding_instance(
    owner: Option<&str>,
    period_secs: i64,
    activity: &[(String, i64)],
) -> Option<String> {
    let owner = owner?;
    if period_secs <= 0 {
        return Some(owner.to_string());
    }
    let period_ms = period_secs.saturating_mul(1000);
    let Some(newest) = activity.iter().map(|(_, ts)| *ts).max() else {
        return Some(owner.to_string());
    };
    let owner_newest = activity
        .iter()
        .filter(|(i, _)| i == owner)
        .map(|(_, ts)| *ts)
        .max()
        .unwrap_or(i64::MIN);
    if newest.saturating_sub(owner_newest) <= period_ms {
        return Some(owner.to_string());
    }
    let since = newest.saturating_sub(period_ms);
    activity
        .iter()
        .filter(|(i, ts)| i != owner && *ts >= since)
        .map(|(i, _)| i)
        .min()
        .cloned()
        .or_else(|| Some(owner.to_string()))
}

/// Reddit-style hot rank: a function of score and creation time only, so it needs no
/// periodic recomputation and is identical on every instance.
pub fn hot_rank(score: i64, created_at_ms: i64) -> f64 {
    let order = (score.unsigned_abs().max(1) as f64).log10();
    let sign = score.signum() as f64;
    sign * order + (created_at_ms as f64 / 1000.0 - 1_134_028_003.0) / 45_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
        rows.iter().map(|(i, t)| (i.to_string(), *t)).collect()
    }

    #[test]
    fn the_owner_decides_until_it_is_silent_longer_than_the_period() {
        let a = act(&[("inst_o", 1_000), ("inst_b", 2_000), ("inst_c", 1_500)]);
        // Within the period (1 s): the owner.
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_o")
        );
        // Exactly the period is not past it.
        let a = act(&[("inst_o", 1_000), ("inst_b", 2_000)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_o")
        );
        let a = act(&[("inst_o", 1_000), ("inst_b", 2_001)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_b")
        );
        // Period 0: succession off, whatever the silence.
        let a = act(&[("inst_o", 0), ("inst_b", i64::MAX)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 0, &a).as_deref(),
            Some("inst_o")
        );
        // No owner known yet: no one decides.
        assert_eq!(deciding_instance(None, 1, &a), None);
        // No activity at all: the owner.
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &[]).as_deref(),
            Some("inst_o")
        );
    }

    #[test]
    fn the_successor_is_the_smallest_id_active_within_the_period() {
        // inst_a is smaller but silent for longer than the period: not a candidate.
        let a = act(&[
            ("inst_o", 0),
            ("inst_a", 5_000),
            ("inst_c", 9_500),
            ("inst_b", 10_000),
        ]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_b")
        );
        // Both active: the smaller id, not the most recent.
        let a = act(&[("inst_o", 0), ("inst_c", 10_000), ("inst_b", 9_000)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 2, &a).as_deref(),
            Some("inst_b")
        );
        // A longer period makes inst_a active again.
        let a = act(&[
            ("inst_o", 0),
            ("inst_a", 5_000),
            ("inst_c", 9_500),
            ("inst_b", 10_000),
        ]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 6, &a).as_deref(),
            Some("inst_a")
        );
        // The order of the rows does not matter.
        let mut r = a.clone();
        r.reverse();
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &r),
            deciding_instance(Some("inst_o"), 1, &a)
        );
        // The owner comes back: it decides again.
        let a = act(&[("inst_o", 10_001), ("inst_b", 10_000)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_o")
        );
    }

    #[test]
    fn succession_arithmetic_never_overflows() {
        let a = act(&[("inst_o", i64::MIN), ("inst_b", i64::MAX)]);
        assert_eq!(
            deciding_instance(Some("inst_o"), i64::MAX, &a).as_deref(),
            Some("inst_o")
        );
        assert_eq!(
            deciding_instance(Some("inst_o"), 1, &a).as_deref(),
            Some("inst_b")
        );
    }

    fn c(id: &str, prev: Option<&str>, inst: &str, ts: i64) -> Candidate {
        Candidate {
            event_id: id.into(),
            prev: prev.map(Into::into),
            origin_instance_id: inst.into(),
            origin_ts: ts,
        }
    }

    #[test]
    fn owner_wins_concurrent_changes_regardless_of_time() {
        let cs = [c("e1", None, "owner", 1000), c("e2", None, "other", 1001)];
        assert_eq!(owner_preferring_winner(&cs, "owner"), Some(0));
    }

    #[test]
    fn a_change_that_saw_the_owners_value_supersedes_it() {
        let cs = [
            c("e1", None, "owner", 1000),
            c("e2", Some("e1"), "other", 900),
        ];
        assert_eq!(owner_preferring_winner(&cs, "owner"), Some(1));
    }

    #[test]
    fn later_timestamp_then_smaller_id() {
        let cs = [
            c("b", None, "x", 5),
            c("a", None, "y", 5),
            c("c", None, "z", 4),
        ];
        assert_eq!(owner_preferring_winner(&cs, "owner"), Some(1));
        let cs = [c("b", None, "x", 6), c("a", None, "y", 5)];
        assert_eq!(owner_preferring_winner(&cs, "owner"), Some(0));
    }

    #[test]
    fn winner_is_independent_of_candidate_order() {
        let mut cs = vec![
            c("e1", None, "owner", 10),
            c("e2", Some("e1"), "b", 20),
            c("e3", Some("e1"), "c", 30),
            c("e4", None, "d", 40),
        ];
        let w = cs[owner_preferring_winner(&cs, "owner").unwrap()]
            .event_id
            .clone();
        cs.reverse();
        let w2 = cs[owner_preferring_winner(&cs, "owner").unwrap()]
            .event_id
            .clone();
        assert_eq!(w, w2);
        assert_eq!(w, "e4");
    }

    #[test]
    fn versions_order_by_time_then_id() {
        assert!(version(2, "a") > version(1, "z"));
        assert!(version(1, "b") > version(1, "a"));
        assert!(version(10, "a") > version(9, "a"));
    }

    #[test]
    fn hot_prefers_score_and_recency() {
        assert!(hot_rank(10, 1_000_000) > hot_rank(1, 1_000_000));
        assert!(hot_rank(1, 2_000_000_000_000) > hot_rank(1, 1_000_000_000_000));
        assert!(hot_rank(-5, 1_000_000) < hot_rank(0, 1_000_000));
    }

    proptest::proptest! {
        /// What lets the materializer skip recomputing the decider after an event of the
        /// owner (`registers::refresh_decider`): if the owner decides, a newer owner event
        /// (any time, earlier ones included) leaves it deciding.
        #[test]
        fn raising_the_owners_activity_keeps_it_deciding(
            others in proptest::collection::vec((0u8..5, 0i64..20_000), 0..6),
            owner_ts in proptest::option::of(0i64..20_000),
            period in 0i64..12,
            raised_to in 0i64..30_000,
        ) {
            let owner = "inst_o";
            let mut activity: Vec<(String, i64)> =
                others.iter().map(|(i, t)| (format!("inst_{i}"), *t)).collect();
            activity.extend(owner_ts.map(|t| (owner.to_string(), t)));
            proptest::prop_assume!(
                deciding_instance(Some(owner), period, &activity).as_deref() == Some(owner)
            );
            // The store keeps one row per instance with its newest time.
            let newest = owner_ts.map_or(raised_to, |t| t.max(raised_to));
            activity.retain(|(i, _)| i != owner);
            activity.push((owner.to_string(), newest));
            let after = deciding_instance(Some(owner), period, &activity);
            proptest::prop_assert_eq!(after.as_deref(), Some(owner));
        }
    }
}
