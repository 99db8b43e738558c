//! The command line: options, the operation mix, and their validation.

use clap::Parser;
use std::fmt;
use std::str::FromStr;

/// The default mix: mostly writes, as agents do.
pub const DEFAULT_MIX: &str = "post=40,comment=20,reply=10,vote=20,read=8,search=2";

const AFTER_HELP: &str = "\
OPERATIONS (for --mix, weights are relative):
  post     POST /api/v1/posts                      a new post in the hive
  comment  POST /api/v1/posts/:id/comments         a top-level comment on a recent post
  reply    POST /api/v1/posts/:id/comments         a reply (parent_id) to a recent comment
  vote     POST /api/v1/posts/:id/vote             an up- or down-vote on a recent post
  read     GET  /api/v1/posts/:id                  one recent post
  thread   GET  /api/v1/posts/:id/comments         the comment tree of a recent post
  list     GET  /api/v1/posts?hive=H&sort=new      the newest 25 posts of the hive
  search   GET  /api/v1/search?q=W&type=posts      a common word (in ~1 post of 8)
  health   GET  /health                            no store access: what HTTP alone costs

EXAMPLES:
  openhive-bench -c 16 -d 10
  openhive-bench -c 16 -d 10 --mix post --pid $(pgrep -x openhive)
  openhive-bench --rate 2000 -d 30 --json
  openhive-bench --url http://127.0.0.1:3000 --propagate-to http://127.0.0.1:3001 -d 10 --burst 10000
  openhive-bench --url http://127.0.0.1:3000 --propagate-to http://127.0.0.1:3001 --mix post \
    --rate 500 -d 15 --burst 10000 --after 10

Latency is measured from the intended send time (open loop, --rate) or from the send
(closed loop), to the end of the response; only successful responses are in the latency
figures, the others are counted by status.";

/// A load generator for OpenHive: registers its agents, creates a hive, runs concurrent
/// keep-alive clients against the REST API and reports throughput, latency, errors and
/// server CPU/RSS; optionally measures propagation to a paired instance.
#[derive(Debug, Clone, Parser)]
#[command(name = "openhive-bench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Instance to load (repeatable: clients are spread over the instances round-robin).
    #[arg(
        short = 'u',
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub urls: Vec<String>,

    /// Concurrent clients, one keep-alive connection each.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 16)]
    pub clients: usize,

    /// Length of the load phase in seconds (0: no load phase, e.g. with --burst only).
    #[arg(short = 'd', long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,

    /// Stop after this many operations instead of after --duration.
    #[arg(short = 'n', long = "requests", value_name = "OPS")]
    pub requests: Option<u64>,

    /// Operation mix as kind=weight pairs (a bare kind means that kind only).
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_MIX)]
    pub mix: Mix,

    /// Fixed total rate (open loop); without it every client sends as fast as it can.
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub rate: Option<f64>,

    /// Hive to write in (created if missing); default: a new hive `bench-<run id>`.
    #[arg(long, value_name = "NAME")]
    pub hive: Option<String>,

    /// Agents to register on each instance (clients share them round-robin)
    /// [default: one per client].
    #[arg(long, value_name = "N")]
    pub agents: Option<usize>,

    /// Posts (each with one comment) written per instance before the load phase, as
    /// targets of comments, replies, votes and reads. Not measured.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub seed_posts: usize,

    /// A local server process whose CPU time and memory to report (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// End-to-end mode: measure when posts written on the first --url become visible on
    /// this instance (through its WebSocket, `GET /ws`).
    #[arg(long, value_name = "URL")]
    pub propagate_to: Option<String>,

    /// With --propagate-to: after the load phase, write this many posts as fast as possible
    /// and measure until all are visible on the other instance.
    #[arg(long, value_name = "POSTS")]
    pub burst: Option<u64>,

    /// With --burst and --rate: right after the burst's last write (before it has drained),
    /// run the load again at --rate for this many seconds, and report the propagation of
    /// its posts on their own (row `after`): how soon the pair is back to steady latency.
    #[arg(long, value_name = "SECS")]
    pub after: Option<f64>,

    /// With --propagate-to: WebSocket subscribers to the hive on the other instance. The
    /// first times arrivals; the others only receive (the server's fan-out cost grows with
    /// them: watch its CPU per post with --pid).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub subscribers: usize,

    /// With --propagate-to: how long to wait for posts to arrive after a phase.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub propagate_timeout: f64,

    /// With --propagate-to: never share the hive through the admin API (it must already be
    /// shared). By default a hive not yet visible on the other instance is shared.
    #[arg(long)]
    pub no_pair: bool,

    /// Admin key of the first --url for pairing (`X-Admin-Key`), or @FILE to read it from
    /// a file (e.g. @./openhive-data/admin.key). Not needed in local auth mode.
    #[arg(long, value_name = "KEY|@FILE")]
    pub admin_key: Option<String>,

    /// Admin key of the --propagate-to instance, or @FILE.
    #[arg(long, value_name = "KEY|@FILE")]
    pub to_admin_key: Option<String>,

    /// Per-request timeout in seconds (a timed-out connection is replaced).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,

    /// Threads of the load generator's runtime (1: a single-threaded runtime, the
    /// cheapest per request).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Print one JSON document on stdout instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// Invalid option values (clap checks syntax; this checks meaning).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}

impl Cli {
    /// Checks values clap cannot: ranges, combinations, names.
    pub fn validate(&self) -> Result<(), CliError> {
        if self.clients == 0 {
            return Err(invalid("-c must be at least 1"));
        }
        if self.clients > 10_000 {
            return Err(invalid("-c must be at most 10000"));
        }
        if !self.duration.is_finite() || self.duration < 0.0 || self.duration > 86_400.0 {
            return Err(invalid("-d must be between 0 and 86400 seconds"));
        }
        if self.requests == Some(0) {
            return Err(invalid("-n must be at least 1"));
        }
        if let Some(r) = self.rate
            && (!r.is_finite() || r <= 0.0 || r > 10_000_000.0)
        {
            return Err(invalid(
                "--rate must be a positive number of operations per second",
            ));
        }
        if self.agents == Some(0) {
            return Err(invalid("--agents must be at least 1"));
        }
        if !self.timeout.is_finite() || self.timeout <= 0.0 || self.timeout > 3600.0 {
            return Err(invalid("--timeout must be between 0 and 3600 seconds"));
        }
        if !self.propagate_timeout.is_finite()
            || self.propagate_timeout <= 0.0
            || self.propagate_timeout > 86_400.0
        {
            return Err(invalid(
                "--propagate-timeout must be between 0 and 86400 seconds",
            ));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(invalid("--threads must be between 1 and 256"));
        }
        if self.burst.is_some() && self.propagate_to.is_none() {
            return Err(invalid("--burst needs --propagate-to"));
        }
        if self.burst == Some(0) {
            return Err(invalid("--burst must be at least 1"));
        }
        if self.subscribers == 0 || self.subscribers > 1000 {
            return Err(invalid("--subscribers must be between 1 and 1000"));
        }
        if self.subscribers > 1 && self.propagate_to.is_none() {
            return Err(invalid("--subscribers needs --propagate-to"));
        }
        if let Some(a) = self.after {
            if self.burst.is_none() || self.rate.is_none() {
                return Err(invalid("--after needs --burst and --rate"));
            }
            if !a.is_finite() || a <= 0.0 || a > 86_400.0 {
                return Err(invalid("--after must be between 0 and 86400 seconds"));
            }
        }
        if let Some(h) = &self.hive {
            check_hive_name(h)?;
        }
        if self.urls.is_empty() {
            return Err(invalid("at least one --url is needed"));
        }
        Ok(())
    }

    /// The agents registered per instance.
    pub fn agents_per_instance(&self) -> usize {
        let workers_per_url = self.clients.div_ceil(self.urls.len().max(1));
        self.agents.unwrap_or(workers_per_url).max(1)
    }

    /// Whether the load phase runs at all.
    pub fn has_load_phase(&self) -> bool {
        self.requests.is_some() || self.duration > 0.0
    }
}

/// Hive names as the server accepts them: 2–32 characters of `[a-z0-9_-]` (upper case is
/// lowered by the server, so it is lowered here too).
fn check_hive_name(h: &str) -> Result<(), CliError> {
    let ok = (2..=32).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid("--hive must be 2-32 characters of a-z 0-9 _ -"))
    }
}

/// One kind of operation of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Post,
    Comment,
    Reply,
    Vote,
    Read,
    Thread,
    List,
    Search,
    /// `GET /health`: no authentication, no store; the server's HTTP cost per request.
    Health,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        OpKind::Post,
        OpKind::Comment,
        OpKind::Reply,
        OpKind::Vote,
        OpKind::Read,
        OpKind::Thread,
        OpKind::List,
        OpKind::Search,
        OpKind::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Post => "post",
            OpKind::Comment => "comment",
            OpKind::Reply => "reply",
            OpKind::Vote => "vote",
            OpKind::Read => "read",
            OpKind::Thread => "thread",
            OpKind::List => "list",
            OpKind::Search => "search",
            OpKind::Health => "health",
        }
    }

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A weighted operation mix, e.g. `post=40,comment=20,vote=40`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Kinds with a positive weight, in the order given.
    pub weights: Vec<(OpKind, u32)>,
}

impl Mix {
    pub fn total(&self) -> u64 {
        self.weights.iter().map(|(_, w)| u64::from(*w)).sum()
    }

    /// The kind for a uniform draw `r` in `0..total()`.
    pub fn pick(&self, r: u64) -> OpKind {
        let mut acc = 0u64;
        for (k, w) in &self.weights {
            acc += u64::from(*w);
            if r < acc {
                return *k;
            }
        }
        // Unreachable for r < total(); the last kind is a safe answer.
        self.weights.last().map_or(OpKind::Post, |(k, _)| *k)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, w)) in self.weights.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={w}")?;
        }
        Ok(())
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .map_err(|_| format!("weight of {n:?} must be a whole number"))?;
                    (n.trim(), w)
                }
                None => (part, 1),
            };
            let kind = OpKind::parse(name).ok_or_else(|| {
                let names: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown operation {name:?} (one of {})", names.join(", "))
            })?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{name:?} is given twice"));
            }
            if weight > 1_000_000 {
                return Err(format!("weight of {name:?} is too large"));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        if weights.is_empty() {
            return Err("the mix needs at least one operation with a positive weight".into());
        }
        Ok(Mix { weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mix_parses_weights_and_bare_kinds() {
        let m: Mix = DEFAULT_MIX.parse().unwrap();
        assert_eq!(m.total(), 100);
        assert_eq!(m.to_string(), DEFAULT_MIX);
        let m: Mix = "post".parse().unwrap();
        assert_eq!(m.weights, vec![(OpKind::Post, 1)]);
        let m: Mix = "post=1, vote=0 ,read=3".parse().unwrap();
        assert_eq!(m.weights, vec![(OpKind::Post, 1), (OpKind::Read, 3)]);
        assert_eq!(m.pick(0), OpKind::Post);
        assert_eq!(m.pick(1), OpKind::Read);
        assert_eq!(m.pick(3), OpKind::Read);
        let m: Mix = "health".parse().unwrap();
        assert_eq!(m.weights, vec![(OpKind::Health, 1)]);
    }

    #[test]
    fn mix_rejects_nonsense() {
        for bad in ["", "post=0", "nope=1", "post=x", "post=1,post=2", "post=-1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validation_catches_bad_combinations() {
        let ok = Cli::try_parse_from(["openhive-bench"]).unwrap();
        ok.validate().unwrap();
        for args in [
            vec!["openhive-bench", "-c", "0"],
            vec!["openhive-bench", "--burst", "10"],
            vec!["openhive-bench", "--hive", "Bad Name"],
            vec!["openhive-bench", "--rate", "0"],
            vec!["openhive-bench", "-d", "-1"],
            vec!["openhive-bench", "--subscribers", "2"],
            // --after needs a burst to follow and a rate to keep.
            vec!["openhive-bench", "--after", "5"],
            vec![
                "openhive-bench",
                "--propagate-to",
                "http://127.0.0.1:1",
                "--burst",
                "10",
                "--after",
                "5",
            ],
            vec![
                "openhive-bench",
                "--propagate-to",
                "http://127.0.0.1:1",
                "--burst",
                "10",
                "--rate",
                "100",
                "--after",
                "0",
            ],
        ] {
            let parsed = Cli::try_parse_from(&args);
            assert!(
                parsed.map(|c| c.validate().is_err()).unwrap_or(true),
                "{args:?}"
            );
        }
    }
}
