//! What a run reports: one structure, printed as JSON (`--json`) or as tables.

use crate::cli::OpKind;
use crate::procfs::{self, Proc, Sample};
use crate::propagate::Propagation;
use crate::stats::{KindStats, Latency, Stats, StatsError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub config: ConfigReport,
    /// The load phase (absent with `-d 0`).
    pub load: Option<PhaseReport>,
    /// Server processes (`--pid`) over the load phase.
    pub processes: Vec<ProcReport>,
    /// The load generator itself over the load phase.
    pub bench: Option<ProcReport>,
    pub propagation: Option<PropagationReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub urls: Vec<String>,
    pub clients: usize,
    pub duration_s: Option<f64>,
    pub requests: Option<u64>,
    pub mix: String,
    /// Total operations per second (open loop), or `null` for as fast as possible.
    pub rate: Option<f64>,
    pub hive: String,
    pub agents_per_instance: usize,
    pub threads: usize,
    pub propagate_to: Option<String>,
    pub burst: Option<u64>,
    /// `--after`: seconds of load at `rate` right after the burst.
    pub after_s: Option<f64>,
    /// WebSocket subscribers on the other instance (end-to-end mode).
    pub subscribers: Option<usize>,
}

/// Counts, rates and latencies of one phase.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub elapsed_s: f64,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (any non-2xx status or transport error).
    pub errors: u64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Of successful operations, in milliseconds.
    pub latency_ms: Option<Latency>,
    pub kinds: Vec<KindReport>,
}

#[derive(Debug, Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub latency_ms: Option<Latency>,
}

fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl PhaseReport {
    /// The report of merged `stats` over `elapsed`; kinds with no operation are left out.
    pub fn new(stats: &Stats, elapsed: Duration) -> Result<PhaseReport, StatsError> {
        let kind = |name: &'static str, k: &KindStats| KindReport {
            kind: name,
            ops: k.ok,
            errors: k.error_count(),
            ops_per_sec: round(per_sec(k.ok, elapsed), 1),
            errors_by_status: k.errors.clone(),
            latency_ms: Latency::of(&k.hist),
        };
        let kinds = OpKind::ALL
            .iter()
            .filter_map(|k| stats.kind(*k).map(|s| (k, s)))
            .filter(|(_, s)| s.ok + s.error_count() > 0)
            .map(|(k, s)| kind(k.name(), s))
            .collect();
        let total = stats.total()?;
        Ok(PhaseReport {
            elapsed_s: round(elapsed.as_secs_f64(), 3),
            ops: total.ok,
            errors: total.error_count(),
            ops_per_sec: round(per_sec(total.ok, elapsed), 1),
            errors_by_status: total.errors.clone(),
            latency_ms: Latency::of(&total.hist),
            kinds,
        })
    }

    /// Completed requests (successful or not).
    pub fn requests(&self) -> u64 {
        self.ops + self.errors
    }
}

/// CPU and memory of one process over a phase.
#[derive(Debug, Serialize)]
pub struct ProcReport {
    pub pid: u32,
    pub name: String,
    pub cpu_s: f64,
    /// CPU time per completed request of the phase, in microseconds.
    pub cpu_us_per_op: Option<f64>,
    pub rss_start_mib: f64,
    pub rss_mib: f64,
    /// Peak RSS since the process started (VmHWM).
    pub peak_rss_mib: f64,
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

/// The processes watched: `--pid`s, then the load generator itself.
pub struct Watched {
    procs: Vec<(Proc, u32, String)>,
    ticks_per_sec: u64,
}

impl Watched {
    /// Checks that every pid can be read now.
    pub fn new(pids: &[u32]) -> anyhow::Result<Watched> {
        let ticks_per_sec = procfs::clock_ticks_per_sec();
        let mut procs = Vec::new();
        for &pid in pids {
            let p = Proc::Pid(pid);
            procfs::sample(p, ticks_per_sec).map_err(|e| anyhow::anyhow!("--pid {pid}: {e}"))?;
            let name = procfs::name(p).unwrap_or_else(|| "?".into());
            procs.push((p, pid, name));
        }
        procs.push((Proc::This, std::process::id(), "openhive-bench".into()));
        Ok(Watched {
            procs,
            ticks_per_sec,
        })
    }

    pub fn sample(&self) -> Vec<Option<Sample>> {
        self.procs
            .iter()
            .map(|(p, _, _)| procfs::sample(*p, self.ticks_per_sec).ok())
            .collect()
    }

    /// (servers, the load generator) between two samples; `requests` completed meanwhile.
    /// A process that could not be read at either end is left out with a warning.
    pub fn report(
        &self,
        before: &[Option<Sample>],
        after: &[Option<Sample>],
        requests: u64,
        warnings: &mut Vec<String>,
    ) -> (Vec<ProcReport>, Option<ProcReport>) {
        let mut servers = Vec::new();
        let mut this = None;
        for (i, (p, pid, name)) in self.procs.iter().enumerate() {
            let (Some(Some(b)), Some(Some(a))) = (before.get(i), after.get(i)) else {
                warnings.push(format!(
                    "pid {pid} ({name}) could not be read (has it exited?)"
                ));
                continue;
            };
            let cpu = a.cpu.saturating_sub(b.cpu);
            let r = ProcReport {
                pid: *pid,
                name: name.clone(),
                cpu_s: round(cpu.as_secs_f64(), 3),
                cpu_us_per_op: (requests > 0)
                    .then(|| round(cpu.as_secs_f64() * 1e6 / requests as f64, 1)),
                rss_start_mib: mib(b.rss_kib),
                rss_mib: mib(a.rss_kib),
                peak_rss_mib: mib(a.hwm_kib),
            };
            if *p == Proc::This {
                this = Some(r);
            } else {
                servers.push(r);
            }
        }
        (servers, this)
    }
}

#[derive(Debug, Serialize)]
pub struct PropagationReport {
    pub target: String,
    /// How arrival is observed.
    pub method: &'static str,
    /// Posts written during the load phase.
    pub load: Option<PropReport>,
    pub burst: Option<BurstReport>,
    /// The load again right after the burst's last write (`--after`).
    pub after: Option<AfterReport>,
    /// `new_post` messages received in all (by the timing subscriber).
    pub notices: u64,
    /// `new_post` messages the other `--subscribers` received, together.
    pub other_subscribers_notices: u64,
}

pub const PROPAGATION_METHOD: &str =
    "WebSocket new_post on the other instance, timed from the origin's 201 response";

/// Propagation of the posts of one phase.
#[derive(Debug, Serialize)]
pub struct PropReport {
    pub posts: u64,
    pub visible: u64,
    /// Not seen within --propagate-timeout.
    pub missing: u64,
    /// Of the missing, readable through `GET /api/v1/posts/:id` all the same (the
    /// notification was lost, not the post; checks at most 100).
    pub readable_without_notice: u64,
    /// Seen before the writer had the origin's response (counted as 0 ms).
    pub arrived_before_ack: u64,
    pub latency_ms: Option<Latency>,
}

impl PropReport {
    pub fn new(p: &Propagation, readable_without_notice: u64) -> PropReport {
        PropReport {
            posts: p.posts,
            visible: p.visible,
            missing: p.posts - p.visible.min(p.posts),
            readable_without_notice,
            arrived_before_ack: p.before_ack,
            latency_ms: p.latency,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BurstReport {
    pub posts: u64,
    /// The writes, as fast as possible.
    pub write: PhaseReport,
    /// From the first write sent until the last post arrived.
    pub all_visible_after_s: Option<f64>,
    /// From the last write acknowledged until the last post arrived.
    pub drain_after_last_write_s: Option<f64>,
    pub propagation: PropReport,
    /// Server processes from the first write until all arrived (or the timeout);
    /// `cpu_us_per_op` is per post of the burst.
    pub processes: Vec<ProcReport>,
    pub bench: Option<ProcReport>,
}

/// The phase right after the burst (`--after`): its writes and their propagation.
#[derive(Debug, Serialize)]
pub struct AfterReport {
    pub seconds: f64,
    pub write: PhaseReport,
    pub propagation: PropReport,
}

impl BurstReport {
    pub fn timings(p: &Propagation, start: Instant) -> (Option<f64>, Option<f64>) {
        if p.visible < p.posts {
            return (None, None);
        }
        let Some(last_seen) = p.last_seen else {
            return (None, None);
        };
        let all = round(last_seen.saturating_duration_since(start).as_secs_f64(), 3);
        let drain = p
            .last_ack
            .map(|a| round(last_seen.saturating_duration_since(a).as_secs_f64(), 3));
        (Some(all), drain)
    }
}

impl Report {
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The tables.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let instances = if c.urls.len() == 1 {
            "1 instance".to_string()
        } else {
            format!("{} instances", c.urls.len())
        };
        let _ = writeln!(
            o,
            "openhive-bench {}: {} ({instances}), hive {:?}, {} clients, {} agents/instance",
            self.version,
            c.urls.join(" "),
            c.hive,
            c.clients,
            c.agents_per_instance
        );
        let pace = match c.rate {
            Some(r) => format!("open loop at {r} ops/s"),
            None => "closed loop (as fast as possible)".into(),
        };
        let length = match (c.requests, c.duration_s) {
            (Some(n), _) => format!("{n} ops"),
            (None, Some(d)) if d > 0.0 => format!("{d} s"),
            _ => "no load phase".into(),
        };
        let _ = writeln!(
            o,
            "mix {}; {pace}; {length}; {} thread(s)",
            c.mix, c.threads
        );
        if let Some(load) = &self.load {
            let _ = writeln!(o);
            let _ = writeln!(o, "load phase: {:.2} s", load.elapsed_s);
            phase_table(&mut o, load);
            proc_table(&mut o, &self.processes, self.bench.as_ref(), "per op");
        }
        if let Some(p) = &self.propagation {
            let _ = writeln!(o);
            let _ = writeln!(o, "propagation to {} ({})", p.target, p.method);
            let _ = writeln!(
                o,
                "{:<8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
                "phase", "posts", "visible", "missing", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
            );
            let row = |o: &mut String, name: &str, r: &PropReport| {
                let l = r.latency_ms;
                let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    o,
                    "{:<8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
                    name,
                    r.posts,
                    r.visible,
                    r.missing,
                    f(l.map(|l| l.p50)),
                    f(l.map(|l| l.p99)),
                    f(l.map(|l| l.p999)),
                    f(l.map(|l| l.max)),
                );
            };
            if let Some(r) = &p.load {
                row(&mut o, "load", r);
            }
            if let Some(b) = &p.burst {
                row(&mut o, "burst", &b.propagation);
            }
            if let Some(a) = &p.after {
                row(&mut o, "after", &a.propagation);
            }
            for (name, r) in [
                ("load", p.load.as_ref()),
                ("burst", p.burst.as_ref().map(|b| &b.propagation)),
                ("after", p.after.as_ref().map(|a| &a.propagation)),
            ] {
                let Some(r) = r else { continue };
                if r.missing > 0 {
                    let _ = writeln!(
                        o,
                        "{name}: {} posts not seen in time; {} of those checked are readable \
                         (notification lost)",
                        r.missing, r.readable_without_notice
                    );
                }
                if r.arrived_before_ack > 0 {
                    let _ = writeln!(
                        o,
                        "{name}: {} posts arrived before the origin's response (counted as 0 ms)",
                        r.arrived_before_ack
                    );
                }
            }
            if let Some(b) = &p.burst {
                let _ = writeln!(o);
                let _ = writeln!(
                    o,
                    "burst: {} posts written in {:.2} s ({:.0} posts/s, {} errors); {}",
                    b.write.ops,
                    b.write.elapsed_s,
                    b.write.ops_per_sec,
                    b.write.errors,
                    match (b.all_visible_after_s, b.drain_after_last_write_s) {
                        (Some(all), Some(drain)) => format!(
                            "all visible {all:.2} s after the first write, {drain:.2} s after the last"
                        ),
                        _ => "not all visible".into(),
                    }
                );
                if let Some(l) = b.write.latency_ms {
                    let _ = writeln!(
                        o,
                        "burst write latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        l.p50, l.p99, l.max
                    );
                }
                proc_table(&mut o, &b.processes, b.bench.as_ref(), "per post");
            }
            if let Some(a) = &p.after {
                let _ = writeln!(o);
                let _ = writeln!(
                    o,
                    "after the burst: {} ops in {:.2} s ({:.0} ops/s, {} errors), from the burst's last write on",
                    a.write.ops, a.write.elapsed_s, a.write.ops_per_sec, a.write.errors
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        o
    }
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn phase_table(o: &mut String, p: &PhaseReport) {
    let _ = writeln!(
        o,
        "{:<8} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op", "ops", "ops/s", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let row = |o: &mut String, name: &str, ops: u64, rate: f64, errors: u64, l: Option<Latency>| {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            o,
            "{:<8} {:>9} {:>10.1} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            ops,
            rate,
            errors,
            f(l.map(|l| l.p50)),
            f(l.map(|l| l.p90)),
            f(l.map(|l| l.p99)),
            f(l.map(|l| l.p999)),
            f(l.map(|l| l.max)),
        );
    };
    for k in &p.kinds {
        row(o, k.kind, k.ops, k.ops_per_sec, k.errors, k.latency_ms);
        if !k.errors_by_status.is_empty() {
            let _ = writeln!(o, "         errors: {}", errors_text(&k.errors_by_status));
        }
    }
    if p.kinds.len() != 1 {
        row(o, "all", p.ops, p.ops_per_sec, p.errors, p.latency_ms);
    }
    if !p.errors_by_status.is_empty() {
        let _ = writeln!(o, "errors by status: {}", errors_text(&p.errors_by_status));
    }
}

fn proc_table(o: &mut String, servers: &[ProcReport], this: Option<&ProcReport>, per: &str) {
    if servers.is_empty() && this.is_none() {
        return;
    }
    let _ = writeln!(o);
    let per_col = format!("cpu µs {per}");
    let _ = writeln!(
        o,
        "{:<28} {:>8} {:>15} {:>9} {:>9} {:>9}",
        "process", "cpu s", per_col, "RSS MiB", "start", "peak"
    );
    let row = |o: &mut String, label: String, r: &ProcReport| {
        let _ = writeln!(
            o,
            "{:<28} {:>8.2} {:>15} {:>9.1} {:>9.1} {:>9.1}",
            label,
            r.cpu_s,
            r.cpu_us_per_op.map_or("-".into(), |v| format!("{v:.1}")),
            r.rss_mib,
            r.rss_start_mib,
            r.peak_rss_mib,
        );
    };
    for r in servers {
        row(o, format!("{} (pid {})", r.name, r.pid), r);
    }
    if let Some(r) = this {
        row(o, "openhive-bench (this client)".into(), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_reports_leave_out_idle_kinds_and_total_the_rest() {
        let mut s = Stats::new().unwrap();
        s.ok(OpKind::Post, Duration::from_millis(2)).unwrap();
        s.ok(OpKind::Post, Duration::from_millis(4)).unwrap();
        s.error(OpKind::Vote, "503").unwrap();
        let r = PhaseReport::new(&s, Duration::from_secs(2)).unwrap();
        assert_eq!((r.ops, r.errors, r.requests()), (2, 1, 3));
        assert_eq!(r.ops_per_sec, 1.0);
        assert_eq!(r.kinds.len(), 2);
        assert_eq!(r.kinds[1].kind, "vote");
        assert_eq!(r.errors_by_status["503"], 1);
        let mut text = String::new();
        phase_table(&mut text, &r);
        assert!(text.contains("503 x1"), "{text}");
    }
}
