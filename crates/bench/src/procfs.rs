//! CPU time and memory of local processes from `/proc` (Linux): `utime + stime` from
//! `/proc/PID/stat`, `VmRSS` and `VmHWM` from `/proc/PID/status`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected contents of {path}")]
    Parse { path: PathBuf },
}

/// A process to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// The load generator itself.
    This,
    Pid(u32),
}

impl Proc {
    fn dir(self) -> PathBuf {
        match self {
            Proc::This => PathBuf::from("/proc/self"),
            Proc::Pid(p) => PathBuf::from(format!("/proc/{p}")),
        }
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started, in KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`; 100 if the
/// call fails).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn read(path: PathBuf) -> Result<(String, PathBuf), ProcError> {
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok((s, path)),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// `utime + stime` in clock ticks from the contents of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may contain spaces and parentheses: fields are counted
/// from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value in KiB of a `Key:   1234 kB` line of `/proc/PID/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// The command name of `p` (`/proc/PID/comm`), if readable.
pub fn name(p: Proc) -> Option<String> {
    let s = std::fs::read_to_string(p.dir().join("comm")).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Reads the CPU time and memory of `p`.
pub fn sample(p: Proc, ticks_per_sec: u64) -> Result<Sample, ProcError> {
    let dir = p.dir();
    let (stat, path) = read(dir.join("stat"))?;
    let ticks = parse_stat_ticks(&stat).ok_or(ProcError::Parse { path })?;
    let (status, path) = read(dir.join("status"))?;
    let rss_kib =
        parse_status_kib(&status, "VmRSS").ok_or(ProcError::Parse { path: path.clone() })?;
    let hwm_kib = parse_status_kib(&status, "VmHWM").ok_or(ProcError::Parse { path })?;
    let tps = ticks_per_sec.max(1);
    let cpu = Duration::from_secs(ticks / tps)
        + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps);
    Ok(Sample {
        cpu,
        rss_kib,
        hwm_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "1234 (open hive) (x)) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 \
                    9 0 100 200000000 13000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\topenhive\nVmHWM:\t   61000 kB\nVmRSS:\t   52000 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(52000));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(61000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(Proc::This, clock_ticks_per_sec()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(sample(Proc::Pid(u32::MAX), 100).is_err());
    }
}
