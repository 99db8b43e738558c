//! One run: setup (agents, hive, seed content, sharing), the load phase, the propagation
//! measurements, and the report.

use crate::api::{self, Auth};
use crate::cli::{Cli, Mix, OpKind};
use crate::http::{self, Conn, Target};
use crate::propagate::{Phase, Subscriber, Tracker};
use crate::report::{
    AfterReport, BurstReport, ConfigReport, PROPAGATION_METHOD, PhaseReport, PropReport,
    PropagationReport, Report, Watched,
};
use crate::stats::Stats;
use crate::workload::{self, Client, PhaseSpec, Shared, Until};
use anyhow::Context as _;
use hyper::header::HeaderValue;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Progress and setup notes go to stderr, and only without --json.
struct Say {
    quiet: bool,
}

impl Say {
    fn line(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// Eight hex digits, different for every run: names of this run's agents and hive.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = workload::Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    format!("{:08x}", rng.next_u64() as u32)
}

/// An admin key given as KEY or @FILE.
fn admin_key(arg: Option<&str>) -> anyhow::Result<Option<HeaderValue>> {
    let Some(arg) = arg else { return Ok(None) };
    let key = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin key from {path}"))?,
        None => arg.to_string(),
    };
    let v = HeaderValue::from_str(key.trim()).context("the admin key is not a valid header")?;
    Ok(Some(v))
}

/// Prints completed operations once a second on a terminal.
fn progress(
    shared: &Arc<Shared>,
    say: &Say,
    label: &'static str,
) -> Option<tokio::task::JoinHandle<()>> {
    if say.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let shared = Arc::clone(shared);
    Some(tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0;
        loop {
            tick.tick().await;
            let n = shared.completed.load(Ordering::Relaxed);
            eprint!(
                "\r{label}: {:>6.1} s {:>10} ops {:>9} ops/s   ",
                start.elapsed().as_secs_f64(),
                n,
                n - last.min(n)
            );
            last = n;
        }
    }))
}

fn end_progress(h: Option<tokio::task::JoinHandle<()>>) {
    if let Some(h) = h {
        h.abort();
        eprintln!();
    }
}

/// Merges the statistics of every client (and resets them).
fn take_stats(clients: &mut [Client]) -> anyhow::Result<Stats> {
    let mut all = Stats::new()?;
    for c in clients.iter_mut() {
        all.merge(&c.take_stats()?)?;
    }
    Ok(all)
}

/// After a phase: waits for its posts on the other instance, then checks (at most 100 of)
/// those that did not arrive through the API directly.
async fn settle(
    tracker: &Tracker,
    phase: Phase,
    timeout: Duration,
    to: &mut Conn,
    say: &Say,
) -> anyhow::Result<(bool, u64)> {
    let (written, _) = tracker.progress(phase);
    say.line(format!(
        "waiting for {written} posts to arrive on {}",
        to.target().url
    ));
    if tracker.wait_all_seen(phase, timeout).await {
        return Ok((true, 0));
    }
    let mut readable = 0;
    for id in tracker.missing(phase, 100) {
        if api::post_visible(to, &id).await? {
            readable += 1;
        }
    }
    Ok((false, readable))
}

pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    let say = Say { quiet: cli.json };
    let timeout = Duration::from_secs_f64(cli.timeout);
    let prop_timeout = Duration::from_secs_f64(cli.propagate_timeout);
    let mut warnings = Vec::new();
    let watched = Watched::new(&cli.pids)?;

    let mut targets = Vec::new();
    for u in &cli.urls {
        targets.push(Arc::new(Target::resolve(u).await?));
    }
    let to_target = match &cli.propagate_to {
        Some(u) => Some(Arc::new(Target::resolve(u).await?)),
        None => None,
    };
    let run = run_id();
    let hive: Arc<str> = match &cli.hive {
        Some(h) => h.to_ascii_lowercase().into(),
        None => format!("bench-{run}").into(),
    };

    // Agents: `per` on each instance; an agent's key is valid only where it registered.
    let per = cli.agents_per_instance();
    let mut setup: Vec<Conn> = targets
        .iter()
        .map(|t| Conn::new(Arc::clone(t), timeout))
        .collect();
    let mut keys: Vec<Vec<HeaderValue>> = Vec::new();
    for (i, conn) in setup.iter_mut().enumerate() {
        say.line(format!("registering {per} agents on {}", conn.target().url));
        let mut ks = Vec::with_capacity(per);
        for a in 0..per {
            let key = api::register_agent(conn, &format!("b{run}-{i}-{a}")).await?;
            ks.push(http::bearer(&key)?);
        }
        keys.push(ks);
    }

    let tracker = to_target.as_ref().map(|_| Arc::new(Tracker::default()));
    let shared = Arc::new(Shared::new(targets.len(), tracker.clone()));
    for (i, conn) in setup.iter_mut().enumerate() {
        let Some(key) = keys.get(i).and_then(|k| k.first()) else {
            continue;
        };
        let auth = Auth::Bearer(key);
        if api::ensure_hive(conn, auth, &hive).await? {
            say.line(format!("created hive {hive:?} on {}", conn.target().url));
        }
        let mut rng = workload::Rng::new(i as u64);
        for s in 0..cli.seed_posts {
            let content = workload::words(&mut rng, 12);
            let post = api::create_post(conn, auth, &hive, &format!("seed {s}"), &content).await?;
            let comment = api::create_comment(conn, auth, &post, &content).await?;
            if let Some(pool) = shared.pools.get(i) {
                pool.add_post(&post);
                pool.add_comment(&post, &comment);
            }
        }
    }

    // End-to-end mode: the hive must be readable on the other instance, and subscribed.
    let mut subscriber = None;
    let mut listeners = Vec::new();
    let mut to_conn = None;
    if let (Some(to), Some(tracker)) = (&to_target, &tracker) {
        let mut b = Conn::new(Arc::clone(to), timeout);
        if !api::hive_exists(&mut b, Auth::None, &hive).await? && !cli.no_pair {
            let (a_admin, b_admin) = (
                admin_key(cli.admin_key.as_deref())?,
                admin_key(cli.to_admin_key.as_deref())?,
            );
            let a = setup.first_mut().context("at least one --url is needed")?;
            say.line(format!(
                "sharing hive {hive:?} between {} and {}",
                a.target().url,
                to.url
            ));
            api::share_hive(a, a_admin.as_ref(), &mut b, b_admin.as_ref(), &hive).await?;
        }
        api::wait_for_hive(&mut b, &hive, prop_timeout).await?;
        subscriber = Some(Subscriber::start(to, &hive, Arc::clone(tracker)).await?);
        // The other subscribers only receive: their arrivals are not timed.
        for _ in 1..cli.subscribers {
            let t = Arc::new(Tracker::default());
            listeners.push((Subscriber::start(to, &hive, Arc::clone(&t)).await?, t));
        }
        to_conn = Some(b);
    }

    // Clients, connected before anything is measured.
    let seed = run_id_seed(&run);
    let mut clients = Vec::with_capacity(cli.clients);
    for c in 0..cli.clients {
        let inst = c % targets.len();
        let target = targets.get(inst).context("no instance")?;
        let key = keys
            .get(inst)
            .and_then(|k| k.get((c / targets.len()) % per))
            .context("no agent")?;
        let mut client = Client::new(
            c,
            inst,
            Conn::new(Arc::clone(target), timeout),
            key.clone(),
            Arc::clone(&hive),
            seed,
        )?;
        client.connect().await?;
        clients.push(client);
    }

    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        config: ConfigReport {
            urls: targets.iter().map(|t| t.url.clone()).collect(),
            clients: cli.clients,
            duration_s: cli.requests.is_none().then_some(cli.duration),
            requests: cli.requests,
            mix: cli.mix.to_string(),
            rate: cli.rate,
            hive: hive.to_string(),
            agents_per_instance: per,
            threads: cli.threads,
            propagate_to: to_target.as_ref().map(|t| t.url.clone()),
            burst: cli.burst,
            after_s: cli.after,
            subscribers: cli.propagate_to.is_some().then_some(cli.subscribers),
        },
        load: None,
        processes: Vec::new(),
        bench: None,
        propagation: None,
        warnings: Vec::new(),
    };

    // The load phase.
    if cli.has_load_phase() {
        let until = match cli.requests {
            Some(n) => Until::Count(n),
            None => Until::Deadline(Instant::now() + Duration::from_secs_f64(cli.duration)),
        };
        let spec = Arc::new(PhaseSpec {
            mix: cli.mix.clone(),
            until,
            rate: cli.rate,
            phase: Phase::Load,
        });
        say.line(format!(
            "load phase: {} clients, mix {}",
            cli.clients, cli.mix
        ));
        let before = watched.sample();
        let bar = progress(&shared, &say, "load");
        let (mut done, elapsed) = workload::run_phase(clients, &shared, &spec).await?;
        let after = watched.sample();
        end_progress(bar);
        let stats = take_stats(&mut done)?;
        let phase = PhaseReport::new(&stats, elapsed)?;
        let (servers, this) = watched.report(&before, &after, phase.requests(), &mut warnings);
        report.processes = servers;
        report.bench = this;
        report.load = Some(phase);
        clients = done;
    }

    // Propagation of the load phase's posts, then the burst.
    if let (Some(tracker), Some(to)) = (&tracker, to_conn.as_mut()) {
        let load = if cli.has_load_phase() {
            let (_, readable) = settle(tracker, Phase::Load, prop_timeout, to, &say).await?;
            Some(PropReport::new(&tracker.result(Phase::Load)?, readable))
        } else {
            None
        };
        let after = match (cli.after, cli.rate) {
            (Some(secs), Some(rate)) => Some(AfterSpec {
                secs,
                spec: PhaseSpec {
                    mix: cli.mix.clone(),
                    until: Until::Deadline(Instant::now()), // set when the phase starts
                    rate: Some(rate),
                    phase: Phase::After,
                },
            }),
            _ => None,
        };
        let (burst, after) = match cli.burst {
            Some(n) => {
                let (b, a) = burst(
                    n,
                    after,
                    &mut clients,
                    &shared,
                    tracker,
                    &watched,
                    prop_timeout,
                    to,
                    &say,
                    &mut warnings,
                )
                .await?;
                (Some(b), a)
            }
            None => (None, None),
        };
        report.propagation = Some(PropagationReport {
            target: to.target().url.clone(),
            method: PROPAGATION_METHOD,
            load,
            burst,
            after,
            notices: tracker.notices.load(Ordering::Relaxed),
            other_subscribers_notices: 0,
        });
    }
    if let Some(mut s) = subscriber {
        if s.disconnected.load(Ordering::Relaxed) {
            warnings.push("the WebSocket connection to the other instance ended early".into());
        }
        s.stop();
    }
    // The other subscribers get the same messages a moment later or sooner: give them up to
    // 5 s to have received what the timing one did, so their count is complete.
    if let Some(t) = &tracker {
        let want = t.notices.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && listeners
                .iter()
                .any(|(_, lt)| lt.notices.load(Ordering::Relaxed) < want)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let dropped = listeners
        .iter()
        .filter(|(l, _)| l.disconnected.load(Ordering::Relaxed))
        .count();
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} of the other WebSocket subscribers were disconnected early"
        ));
    }
    for (mut l, t) in listeners {
        l.stop();
        if let Some(p) = report.propagation.as_mut() {
            p.other_subscribers_notices += t.notices.load(Ordering::Relaxed);
        }
    }
    report.warnings = warnings;
    Ok(report)
}

fn run_id_seed(run: &str) -> u64 {
    u64::from_str_radix(run, 16).unwrap_or(1)
}

/// The phase `--after` runs right after the burst's last write.
struct AfterSpec {
    secs: f64,
    spec: PhaseSpec,
}

/// Writes `n` posts as fast as possible from the clients of the first instance, then (with
/// `after`) runs the load again at a fixed rate at once, then waits until all are visible on
/// the other instance.
#[allow(clippy::too_many_arguments)]
async fn burst(
    n: u64,
    after: Option<AfterSpec>,
    clients: &mut Vec<Client>,
    shared: &Arc<Shared>,
    tracker: &Tracker,
    watched: &Watched,
    timeout: Duration,
    to: &mut Conn,
    say: &Say,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(BurstReport, Option<AfterReport>)> {
    let all = std::mem::take(clients);
    let (writers, others): (Vec<Client>, Vec<Client>) =
        all.into_iter().partition(|c| c.instance == 0);
    let spec = Arc::new(PhaseSpec {
        mix: Mix {
            weights: vec![(OpKind::Post, 1)],
        },
        until: Until::Count(n),
        rate: None,
        phase: Phase::Burst,
    });
    say.line(format!("burst: {n} posts from {} clients", writers.len()));
    let before = watched.sample();
    let start = Instant::now();
    let bar = progress(shared, say, "burst");
    let (mut writers, elapsed) = workload::run_phase(writers, shared, &spec).await?;
    end_progress(bar);
    let write = PhaseReport::new(&take_stats(&mut writers)?, elapsed)?;
    writers.extend(others);
    writers.sort_by_key(|c| c.index);

    // With --after, the burst's CPU covers its writes only: its drain overlaps the next phase.
    let mut burst_end = None;
    let mut after_write = None;
    if let Some(mut a) = after {
        burst_end = Some(watched.sample());
        a.spec.until = Until::Deadline(Instant::now() + Duration::from_secs_f64(a.secs));
        say.line(format!(
            "after the burst: {} clients, mix {}, {} ops/s for {} s",
            writers.len(),
            a.spec.mix,
            a.spec.rate.unwrap_or_default(),
            a.secs
        ));
        let bar = progress(shared, say, "after");
        let (mut done, elapsed) = workload::run_phase(writers, shared, &Arc::new(a.spec)).await?;
        end_progress(bar);
        after_write = Some((a.secs, PhaseReport::new(&take_stats(&mut done)?, elapsed)?));
        writers = done;
    }
    *clients = writers;

    let (_, readable) = settle(tracker, Phase::Burst, timeout, to, say).await?;
    let end = burst_end.unwrap_or_else(|| watched.sample());
    let prop = tracker.result(Phase::Burst)?;
    let (all_visible, drain) = BurstReport::timings(&prop, start);
    let (processes, bench) = watched.report(&before, &end, write.ops, warnings);
    let after = match after_write {
        Some((seconds, write)) => {
            let (_, readable) = settle(tracker, Phase::After, timeout, to, say).await?;
            Some(AfterReport {
                seconds,
                write,
                propagation: PropReport::new(&tracker.result(Phase::After)?, readable),
            })
        }
        None => None,
    };
    Ok((
        BurstReport {
            posts: n,
            write,
            all_visible_after_s: all_visible,
            drain_after_last_write_s: drain,
            propagation: PropReport::new(&prop, readable),
            processes,
            bench,
        },
        after,
    ))
}
