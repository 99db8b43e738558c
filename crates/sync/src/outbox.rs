//! The outbox: delivers a hive's log to one of its consumers, in log order, after the
//! consumer's cursor.
//!
//! Generic over the [`Sink`], the place the events go: a peer link's push is one; pull
//! subscriptions and federation delivery are further sinks over the same loop. One
//! [`step`] reads up to a batch of entries after the cursor, leaves out those the sink does
//! not want (they still count as covered: a peer is never sent its own events back), hands
//! the rest to the sink, and only once the sink reports them acknowledged moves the cursor
//! over everything covered, in one transaction with the sink's own bookkeeping.
//!
//! Invariants:
//! - the cursor moves only after the acknowledgement, and only over entries read from the
//!   committed log: never past durable data, never past an entry not yet delivered;
//! - a step delivers at most one batch; when the next step runs is the scheduler's business
//!   ([`crate::scheduler`]);
//! - the outbox never talks to a peer itself: delivery is the sink's;
//! - a range of only skipped entries is not covered on its own ([`hold_skipped`]): the
//!   next batch with events covers it, so every batch starts right after the last one the
//!   receiver saw (no gap for it to repair by pulling what it was just sent); a held
//!   range is remembered ([`Held`]) so each step reads only what came after it, not the
//!   whole held range again;
//! - a run of entries the sink skips by origin ([`Sink::skips_known_to`]: a replica's
//!   events from the peer it pushes to) is covered from two columns of the log, its events
//!   never read: what a step delivers or holds is the same as when every entry is asked.

use openhive_core::Event;
use openhive_core::time::now_ms;
use openhive_store::consumers::{self, ConsumerId};
use openhive_store::engine::Conn;
use openhive_store::log::{self, LoggedEvent};
use openhive_store::{Store, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// The bookkeeping a sink commits with a cursor move: `(tx, covered_through, now)`.
pub(crate) type OnAcked = Box<dyn FnOnce(&Conn<'_>, i64, i64) -> Result<(), StoreError> + Send>;

/// Where a consumer's events go.
pub(crate) trait Sink: Sync {
    type Error: Send;

    /// The consumer whose cursor this sink's deliveries move, and the hive it reads.
    fn consumer(&self) -> (&ConsumerId, &str);

    /// False for entries this consumer must not receive (they are skipped, yet covered).
    fn wants(&self, entry: &LoggedEvent) -> bool;

    /// The instance whose entries [`Sink::wants`] rejects, when it rejects exactly those
    /// that instance originated or relayed to us and nothing else: a step then passes over a
    /// run of them reading two columns of the log ([`log::run_known_to`]) instead of the
    /// events. `None` (the default): every entry is read and asked.
    fn skips_known_to(&self) -> Option<&str> {
        None
    }

    /// Delivers one batch; `Ok` means the receiver acknowledged it.
    fn deliver(&self, batch: Batch) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// What to commit with the cursor move after a delivery (`delivered` false: only
    /// skipped entries were covered).
    fn on_acked(&self, delivered: bool) -> Option<OnAcked>;

    /// Wraps a storage failure of the outbox in the sink's error type.
    fn store_error(op: &'static str, e: StoreError) -> Self::Error;
}

/// One delivery: the events, and the log range `first_seq..=last_seq` they cover (events
/// the sink did not want fall inside the range but are not in `events`).
#[derive(Debug)]
pub(crate) struct Batch {
    pub events: Vec<Event>,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// How much one step may read and send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub events: i64,
    /// Approximate cap of one batch's encoded size.
    pub bytes: usize,
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The cursor is at the log's head: nothing to deliver.
    UpToDate,
    /// A batch was delivered and acknowledged; the cursor moved to `through`.
    Delivered { events: usize, through: i64 },
}

/// Ranges of only skipped entries that steps left held ([`hold_skipped`]), per consumer and
/// hive: `(cursor, through)`, the cursor the range starts after and its last seq. The next
/// step of that consumer reads from `through` on instead of reading the range again: a
/// replica's push cursor towards the peer it receives from sits before every event that
/// peer sent since our last own event, and without this each step re-read them all (up
/// to `push_batch` entries per step: the replica's largest cost per event at a steady
/// 500 writes/s).
///
/// In memory only (a restart reads the range once more). A hint is used only while the
/// consumer's cursor is still the one it starts after; the entries it covers are committed
/// log entries, which never change, so what the sink's `wants` said of them still holds.
#[derive(Default)]
pub(crate) struct Held {
    ranges: Mutex<HashMap<(ConsumerId, String), (i64, i64)>>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ConsumerId, String), (i64, i64)>> {
        // Only hints behind this lock: a panic elsewhere leaves nothing to repair.
        self.ranges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The held range of the consumer, if any: `(cursor, through)`.
    pub(crate) fn get(&self, id: &ConsumerId, hive: &str) -> Option<(i64, i64)> {
        self.lock().get(&(id.clone(), hive.to_string())).copied()
    }

    /// The consumer, with its cursor at `after`, holds `after + 1 ..= through`.
    pub(crate) fn hold(&self, id: &ConsumerId, hive: &str, after: i64, through: i64) {
        self.lock()
            .insert((id.clone(), hive.to_string()), (after, through));
    }

    /// The consumer's cursor moved: its hint is void.
    pub(crate) fn forget(&self, id: &ConsumerId, hive: &str) {
        self.lock().remove(&(id.clone(), hive.to_string()));
    }

    /// Hints held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What one read for a consumer asks: the cursor's entries up to `limit` seqs after it
/// (capped at the head), so one batch covers at most `limit` seqs even where compaction left
/// gaps. With a `hint` for that cursor the held range is not read again (it is covered, and
/// all skipped); with `known_to` ([`Sink::skips_known_to`]) a run of that instance's entries
/// at the start is covered without reading its events either. At most `cap` seqs of events
/// are read.
struct Query<'a> {
    id: &'a ConsumerId,
    hive: &'a str,
    limit: i64,
    cap: i64,
    hint: Option<(i64, i64)>,
    known_to: Option<&'a str>,
}

/// Reads what `q` asks. The flag is true when the read covers all that `limit` would have
/// (the head, or `limit` seqs), false when `cap` stopped it short.
fn read_pending(c: &Conn<'_>, q: &Query<'_>) -> Result<(Pending, bool), StoreError> {
    let after = consumers::cursor(c, q.id, q.hive)?;
    let end = after.saturating_add(q.limit.max(1));
    let mut start = match q.hint {
        Some((cursor, through))
            if cursor == after && through > after && through <= log::head(c, q.hive)? =>
        {
            through.min(end - 1)
        }
        _ => after,
    };
    if let Some(instance) = q.known_to.filter(|i| !i.is_empty()) {
        start = log::run_known_to(c, q.hive, start, instance, end - start)?;
    }
    let span = end - start;
    let cap = q.cap.max(1);
    let (raw, covered) = log::covering(c, q.hive, start, span.min(cap))?;
    let complete = span <= cap || covered < start.saturating_add(cap);
    Ok((
        Pending {
            after,
            raw,
            covered: covered.max(start),
        },
        complete,
    ))
}

/// Seqs of events a step first reads where it runs ([`Store::read_point`]): under a steady
/// load a step finds one or a few entries (or only a run its sink skips, which costs no
/// event read). A read that reaches this many may stop short of the head, and the step then
/// reads the whole batch on a blocking thread.
const POINT_READ_SEQS: i64 = 8;

async fn pending(
    store: &Store,
    id: &ConsumerId,
    hive: &str,
    limit: i64,
    hint: Option<(i64, i64)>,
    known_to: Option<&str>,
) -> Result<Pending, StoreError> {
    let (id, hive, known_to) = (id.clone(), hive.to_string(), known_to.map(str::to_string));
    if limit > POINT_READ_SEQS {
        let (i, h, k) = (id.clone(), hive.clone(), known_to.clone());
        let (few, complete) = store
            .read_point(move |c| {
                read_pending(
                    c,
                    &Query {
                        id: &i,
                        hive: &h,
                        limit,
                        cap: POINT_READ_SEQS,
                        hint,
                        known_to: k.as_deref(),
                    },
                )
            })
            .await?;
        if complete {
            return Ok(few);
        }
    }
    store
        .read(move |c| {
            read_pending(
                c,
                &Query {
                    id: &id,
                    hive: &hive,
                    limit,
                    cap: limit,
                    hint,
                    known_to: known_to.as_deref(),
                },
            )
        })
        .await
        .map(|(p, _)| p)
}

/// Splits what was read into the batch to deliver: stops before the byte cap, skips what
/// the sink does not want (covering it). Without the byte cap the batch covers everything
/// read, up to `covered` (seqs compaction dropped included).
pub(crate) fn select<S: Sink>(sink: &S, read: Pending, max_bytes: usize) -> Batch {
    let Pending {
        after,
        raw,
        covered,
    } = read;
    let mut batch = Batch {
        events: Vec::new(),
        first_seq: after + 1,
        last_seq: covered.max(after),
    };
    let mut bytes = 0usize;
    for e in raw {
        if bytes > max_bytes {
            // Cut by the byte cap: covered only through the last entry taken.
            break;
        }
        batch.last_seq = e.seq;
        if !sink.wants(&e) {
            continue;
        }
        bytes += e.event.payload.len() + e.event.signature.len() + 256;
        batch.events.push(e.event);
    }
    if bytes <= max_bytes {
        batch.last_seq = covered.max(after);
    }
    batch
}

/// What was read for one sink: its cursor `after`, the entries after it, and the last seq
/// the read covers (`after` when the cursor is at the head).
#[derive(Debug)]
pub(crate) struct Pending {
    pub after: i64,
    pub raw: Vec<LoggedEvent>,
    pub covered: i64,
}

/// [`pending`] for many sinks in one read (a step covering many links of one peer).
pub(crate) async fn read_many<S: Sink>(
    store: &Store,
    held: &Held,
    sinks: &[S],
    limit: i64,
) -> Result<Vec<Pending>, StoreError> {
    type Wanted = (ConsumerId, String, Option<(i64, i64)>, Option<String>);
    let wanted: Vec<Wanted> = sinks
        .iter()
        .map(|s| {
            let (id, hive) = s.consumer();
            let known_to = s.skips_known_to().map(str::to_string);
            (id.clone(), hive.to_string(), held.get(id, hive), known_to)
        })
        .collect();
    store
        .read(move |c| -> Result<_, StoreError> {
            wanted
                .iter()
                .map(|(id, hive, hint, known_to)| {
                    let q = Query {
                        id,
                        hive,
                        limit,
                        cap: limit,
                        hint: *hint,
                        known_to: known_to.as_deref(),
                    };
                    read_pending(c, &q).map(|(p, _)| p)
                })
                .collect()
        })
        .await
}

/// True if `batch` (only entries the consumer must not get) is left where it is: the cursor
/// stays before it, without a call, and the next batch with events covers it. Moving the
/// cursor over it without telling the receiver would make that next batch start after a
/// range the receiver never saw: a gap, which it repairs by pulling from its cursor, and
/// that pull fetches again the events the batch just delivered (every event it originated
/// or relayed to us, echoed back in our log, did this). A full page (`limit` seqs) is
/// delivered as an empty batch instead, so a long run of skipped entries cannot hold the
/// cursor back for good.
pub(crate) fn hold_skipped(batch: &Batch, limit: i64) -> bool {
    batch.events.is_empty() && batch.last_seq - batch.first_seq + 1 < limit.max(1)
}

/// One acknowledged (or only skipped) range of one consumer: the cursor move and the sink's
/// bookkeeping, committed by [`ack_many`].
pub(crate) struct Ack {
    pub consumer: ConsumerId,
    pub hive_id: String,
    pub through: i64,
    pub then: Option<OnAcked>,
}

/// Moves many cursors (each over what its consumer acknowledged or skipped) in one
/// transaction, with each sink's bookkeeping.
pub(crate) async fn ack_many(store: &Store, acks: Vec<Ack>) -> Result<(), StoreError> {
    if acks.is_empty() {
        return Ok(());
    }
    store
        .write(move |tx| -> Result<(), StoreError> {
            let now = now_ms();
            for a in acks {
                consumers::advance(tx, &a.consumer, &a.hive_id, a.through, now)?;
                if let Some(f) = a.then {
                    f(tx, a.through, now)?;
                }
            }
            Ok(())
        })
        .await
}

/// One outbox step for `sink`'s consumer: see the module documentation.
pub(crate) async fn step<S: Sink>(
    store: &Store,
    held: &Held,
    sink: &S,
    limits: Limits,
) -> Result<Progress, S::Error> {
    let (id, hive) = sink.consumer();
    let hint = held.get(id, hive);
    let read = pending(store, id, hive, limits.events, hint, sink.skips_known_to())
        .await
        .map_err(|e| S::store_error("reading the outbox", e))?;
    let after = read.after;
    let batch = select(sink, read, limits.bytes);
    let through = batch.last_seq;
    if through == after {
        return Ok(Progress::UpToDate);
    }
    let n = batch.events.len();
    if n == 0 && hold_skipped(&batch, limits.events) {
        held.hold(id, hive, after, through);
        return Ok(Progress::UpToDate);
    }
    held.forget(id, hive);
    // (A full page of skipped entries goes as an empty batch: the receiver's cursor follows.)
    sink.deliver(batch).await?;
    let then = sink.on_acked(n > 0);
    let (id, hive) = (id.clone(), hive.to_string());
    store
        .write(move |tx| -> Result<(), StoreError> {
            let now = now_ms();
            consumers::advance(tx, &id, &hive, through, now)?;
            match then {
                Some(f) => f(tx, through, now),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| S::store_error("moving the outbox cursor", e))?;
    Ok(Progress::Delivered { events: n, through })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A sink that does not want one origin's events (only [`select`] is exercised here;
    /// delivery through a real store is covered by the sync black-box tests). With
    /// `relayed_too` it has a peer link's rule: not the entries `skip_origin` originated or
    /// relayed to us, and with `declare` it says so ([`Sink::skips_known_to`]).
    struct SkipOrigin {
        id: ConsumerId,
        hive: String,
        skip_origin: String,
        relayed_too: bool,
        declare: bool,
    }

    impl SkipOrigin {
        fn new(hive: &str, skip_origin: &str) -> SkipOrigin {
            SkipOrigin {
                id: ConsumerId::peer("p"),
                hive: hive.into(),
                skip_origin: skip_origin.into(),
                relayed_too: false,
                declare: false,
            }
        }
    }

    impl Sink for SkipOrigin {
        type Error = String;
        fn consumer(&self) -> (&ConsumerId, &str) {
            (&self.id, &self.hive)
        }
        fn wants(&self, e: &LoggedEvent) -> bool {
            e.event.origin_instance_id != self.skip_origin
                && !(self.relayed_too
                    && e.received_from.as_deref() == Some(self.skip_origin.as_str()))
        }
        fn skips_known_to(&self) -> Option<&str> {
            (self.relayed_too && self.declare).then_some(self.skip_origin.as_str())
        }
        async fn deliver(&self, _b: Batch) -> Result<(), String> {
            Ok(())
        }
        fn on_acked(&self, _delivered: bool) -> Option<OnAcked> {
            None
        }
        fn store_error(op: &'static str, e: StoreError) -> String {
            format!("{op}: {e}")
        }
    }

    #[test]
    fn select_covers_unwanted_entries_and_caps_bytes() {
        let sink = SkipOrigin::new("h", "them");
        let entry = |seq: i64, origin: &str, size: usize| LoggedEvent {
            seq,
            event: Event {
                id: format!("e{seq}"),
                hive: "h".into(),
                event_type: openhive_core::EventType::PostCreated,
                origin_instance_id: origin.into(),
                origin_ts: 0,
                payload: "x".repeat(size),
                signature: String::new(),
            },
            received_from: None,
            received_at: 0,
        };
        let read = |after: i64, raw: Vec<LoggedEvent>, covered: i64| Pending {
            after,
            raw,
            covered,
        };
        let raw = vec![entry(4, "us", 10), entry(5, "them", 10), entry(6, "us", 10)];
        let b = select(&sink, read(3, raw, 6), 1 << 20);
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (4, 6, 2));
        // Only unwanted entries: covered, nothing to send.
        let b = select(&sink, read(4, vec![entry(5, "them", 10)], 5), 1 << 20);
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (5, 5, 0));
        // Below a compaction point: the seqs of dropped events are covered too.
        let b = select(&sink, read(0, vec![entry(3, "us", 10)], 500), 1 << 20);
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (1, 500, 1));
        let b = select(&sink, read(0, Vec::new(), 500), 1 << 20);
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (1, 500, 0));
        // The byte cap stops the batch after the entry that crossed it.
        let raw = vec![
            entry(1, "us", 600),
            entry(2, "us", 600),
            entry(3, "us", 600),
        ];
        let b = select(&sink, read(0, raw, 3), 500);
        assert_eq!((b.last_seq, b.events.len()), (1, 1));
    }

    /// A step reads a few entries where it runs first; when they may not be all, it reads
    /// the whole batch: what it gets is the same either way, up to its limit.
    #[test]
    fn a_step_reads_up_to_its_limit_whether_few_or_many_are_pending() {
        let (_dir, store) = crate::temp_store();
        let id = ConsumerId::peer("p");
        store
            .write_blocking(|tx| log::create(tx, "hive_h"))
            .unwrap();
        let append = |range: std::ops::RangeInclusive<i64>| {
            store
                .write_blocking(move |tx| -> Result<(), StoreError> {
                    for n in range {
                        let ev = Event {
                            id: format!("evt_{n}"),
                            hive: "h".into(),
                            event_type: openhive_core::EventType::PostCreated,
                            origin_instance_id: "us".into(),
                            origin_ts: n,
                            payload: "{}".into(),
                            signature: String::new(),
                        };
                        log::append(tx, "hive_h", &ev, None, 1)?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let read = |limit| {
            let r = rt
                .block_on(pending(&store, &id, "hive_h", limit, None, None))
                .unwrap();
            (r.after, r.raw.len(), r.covered)
        };
        append(1..=3);
        assert_eq!(read(500), (0, 3, 3), "a few: all of them");
        append(4..=(3 + POINT_READ_SEQS));
        let n = 3 + POINT_READ_SEQS;
        assert_eq!(read(500), (0, n as usize, n), "more than a point read's");
        assert_eq!(read(10), (0, 10, 10), "up to the limit");
        let small = POINT_READ_SEQS;
        assert_eq!(read(small), (0, small as usize, small), "a small limit");
    }

    /// A step that held a range of skipped entries makes the next step read only what came
    /// after it, while its batch still covers the range (it starts right after the cursor);
    /// once the cursor moves, the hint is not used. Before, every step read the held range
    /// again: a replica's push step re-read every event of the peer it receives from.
    #[test]
    fn a_held_range_is_not_read_again() {
        let (_dir, store) = crate::temp_store();
        let sink = SkipOrigin::new("hive_h", "them");
        let ev = |n: i64, origin: &str| Event {
            id: format!("evt_{n}"),
            hive: "h".into(),
            event_type: openhive_core::EventType::PostCreated,
            origin_instance_id: origin.into(),
            origin_ts: n,
            payload: "{}".into(),
            signature: String::new(),
        };
        let append = |range: std::ops::RangeInclusive<i64>, origin: &'static str| {
            store
                .write_blocking(move |tx| -> Result<(), StoreError> {
                    for n in range {
                        log::append(tx, "hive_h", &ev(n, origin), None, 1)?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        store
            .write_blocking(|tx| log::create(tx, "hive_h"))
            .unwrap();
        let read_limit = |hint, limit| {
            store
                .read_blocking(|c| {
                    let q = Query {
                        id: &sink.id,
                        hive: "hive_h",
                        limit,
                        cap: limit,
                        hint,
                        known_to: None,
                    };
                    read_pending(c, &q)
                })
                .unwrap()
                .0
        };
        let read = |hint| read_limit(hint, 500);
        let held = Held::default();
        append(1..=40, "them");
        // The first step reads all 40, holds them.
        let r = read(held.get(&sink.id, "hive_h"));
        assert_eq!((r.after, r.raw.len(), r.covered), (0, 40, 40));
        let b = select(&sink, r, usize::MAX);
        assert!(hold_skipped(&b, 500));
        held.hold(&sink.id, "hive_h", 0, b.last_seq);
        // Two more of theirs and one of ours: the next read starts after the held range...
        append(41..=42, "them");
        append(43..=43, "us");
        let r = read(held.get(&sink.id, "hive_h"));
        assert_eq!(
            r.raw.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![41, 42, 43]
        );
        // ...and the batch still covers everything after the cursor, with our event only.
        let b = select(&sink, r, usize::MAX);
        assert!(!hold_skipped(&b, 500));
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (1, 43, 1));
        // A page still covers at most `limit` seqs from the cursor.
        let r = read_limit(held.get(&sink.id, "hive_h"), 42);
        assert_eq!(
            (
                r.after,
                r.raw.iter().map(|e| e.seq).collect::<Vec<_>>(),
                r.covered
            ),
            (0, vec![41, 42], 42)
        );
        // A hint for another cursor position, or past the head, is not used.
        for (cursor, through) in [(7, 40), (0, 499)] {
            held.hold(&sink.id, "hive_h", cursor, through);
            let r = read(held.get(&sink.id, "hive_h"));
            assert_eq!((r.after, r.raw.len(), r.covered), (0, 43, 43));
        }
        held.forget(&sink.id, "hive_h");
        assert_eq!(held.len(), 0);
    }

    /// Passing over the peer's run without reading its events changes nothing a step
    /// delivers or holds: over logs mixing the peer's events (originated or relayed), ours
    /// and a third instance's, at every cursor, limit and held range, the batch is the same
    /// as when every entry is read and asked; and the run itself is not read.
    #[test]
    fn a_run_of_the_peers_entries_is_covered_without_reading_it() {
        let (_dir, store) = crate::temp_store();
        store
            .write_blocking(|tx| log::create(tx, "hive_h"))
            .unwrap();
        // A fixed pseudo-random log of 120 entries: (origin, received_from).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let kinds: Vec<(&str, Option<&str>)> = (0..120)
            .map(|n| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Long runs of the peer's, as a replica's log has.
                if (n / 20) % 2 == 0 && !x.is_multiple_of(5) {
                    return ("peer", Some("peer"));
                }
                match x % 6 {
                    0 => ("us", None),
                    1 => ("third", Some("peer")),
                    2 => ("peer", Some("third")),
                    3 => ("third", Some("third")),
                    _ => ("peer", Some("peer")),
                }
            })
            .collect();
        store
            .write_blocking(move |tx| -> Result<(), StoreError> {
                for (n, (origin, from)) in kinds.into_iter().enumerate() {
                    let ev = Event {
                        id: format!("evt_{n}"),
                        hive: "h".into(),
                        event_type: openhive_core::EventType::PostCreated,
                        origin_instance_id: origin.into(),
                        origin_ts: n as i64,
                        payload: "{}".into(),
                        signature: String::new(),
                    };
                    log::append(tx, "hive_h", &ev, from, 1)?;
                }
                Ok(())
            })
            .unwrap();
        let sink = |declare| SkipOrigin {
            relayed_too: true,
            declare,
            ..SkipOrigin::new("hive_h", "peer")
        };
        let (reads_all, skips) = (sink(false), sink(true));
        let batch_of = |sink: &SkipOrigin, cursor: i64, limit: i64, cap, hint| {
            store
                .write_blocking(move |tx| {
                    consumers::advance(tx, &ConsumerId::peer("p"), "hive_h", cursor, 1)
                })
                .unwrap();
            let q = Query {
                id: &sink.id,
                hive: "hive_h",
                limit,
                cap,
                hint,
                known_to: sink.skips_known_to(),
            };
            let (read, complete) = store.read_blocking(|c| read_pending(c, &q)).unwrap();
            let read_seqs: Vec<i64> = read.raw.iter().map(|e| e.seq).collect();
            let b = select(sink, read, usize::MAX);
            let ids: Vec<String> = b.events.iter().map(|e| e.id.clone()).collect();
            (
                (b.first_seq, b.last_seq, ids, hold_skipped(&b, limit)),
                read_seqs,
                complete,
            )
        };
        let mut passed_over = 0;
        for cursor in 0..120 {
            for limit in [1, 3, 8, 25, 500] {
                let hints = [None, Some((cursor, (cursor + 5).min(120)))];
                for hint in hints.into_iter().filter(|h| h.is_none_or(|(c, t)| t > c)) {
                    let (want, read_all, _) = batch_of(&reads_all, cursor, limit, limit, hint);
                    let (got, read_some, complete) = batch_of(&skips, cursor, limit, limit, hint);
                    assert_eq!(got, want, "cursor {cursor}, limit {limit}, hint {hint:?}");
                    assert!(complete);
                    // What it read: nothing before the first entry the peer lacks.
                    let first_wanted = read_all
                        .iter()
                        .find(|s| want.2.contains(&format!("evt_{}", *s - 1)));
                    if let Some(first) = first_wanted {
                        assert_eq!(read_some.first(), Some(first));
                    } else {
                        assert!(read_some.is_empty(), "read {read_some:?} to skip it");
                    }
                    passed_over += read_all.len() - read_some.len();
                    // A point read (few events) that reports itself complete has it all.
                    let (few, _, complete) = batch_of(&skips, cursor, limit, POINT_READ_SEQS, hint);
                    if complete {
                        assert_eq!(few, want, "point read, cursor {cursor}, limit {limit}");
                    }
                }
            }
        }
        assert!(passed_over > 1000, "the runs were read: {passed_over}");
    }

    #[test]
    fn a_range_of_only_skipped_entries_waits_for_the_next_batch_unless_it_is_a_full_page() {
        let sink = SkipOrigin::new("h", "them");
        let entry = |seq: i64, origin: &str| LoggedEvent {
            seq,
            event: Event {
                id: format!("e{seq}"),
                hive: "h".into(),
                event_type: openhive_core::EventType::PostCreated,
                origin_instance_id: origin.into(),
                origin_ts: 0,
                payload: "x".into(),
                signature: String::new(),
            },
            received_from: None,
            received_at: 0,
        };
        let theirs = |seq| entry(seq, "them");
        let ours = |seq| entry(seq, "us");
        // Seqs 4-5 are the peer's own: no call, the cursor stays at 3...
        let read = Pending {
            after: 3,
            raw: vec![theirs(4), theirs(5)],
            covered: 5,
        };
        let b = select(&sink, read, usize::MAX);
        assert!(hold_skipped(&b, 500));
        // ...so the next batch starts right after what the receiver saw: no gap.
        let read = Pending {
            after: 3,
            raw: vec![theirs(4), theirs(5), ours(6)],
            covered: 6,
        };
        let b = select(&sink, read, usize::MAX);
        assert!(!hold_skipped(&b, 500));
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (4, 6, 1));
        // A full page of skipped entries goes (empty) so the cursor cannot be held for good.
        let read = Pending {
            after: 0,
            raw: (1..=500).map(theirs).collect(),
            covered: 500,
        };
        let b = select(&sink, read, usize::MAX);
        assert!(!hold_skipped(&b, 500));
        assert_eq!((b.first_seq, b.last_seq, b.events.len()), (1, 500, 0));
    }
}
