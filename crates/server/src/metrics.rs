//! Metrics plumbing independent of HTTP: the Prometheus text encoder (exposition format
//! 0.0.4), the in-memory HTTP request registry, and the lag-alert memory (which links are
//! lagging now, so each starts-lagging is logged once).
//!
//! The text format is written by hand rather than through `prometheus-client`: what we
//! expose is a handful of gauges and counters read from the store at scrape time plus one
//! histogram family kept here, the format is a few lines of rules (HELP/TYPE lines,
//! `name{label="value"} number`, three escapes), and owning it keeps the dependency graph
//! and its licences unchanged. The rules are unit-tested below.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kind of a metric family (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the text exposition format. Call [`Encoder::family`] once per family, then its
/// samples; families must not be interleaved.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    /// `# HELP` and `# TYPE` lines of a family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample with an integer value.
    pub fn int(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.line(name, labels, &value.to_string());
    }

    /// One sample with a float value.
    pub fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.line(name, labels, &format_float(value));
    }

    /// The samples of one histogram series: a cumulative `_bucket` per upper bound of
    /// `bounds` (`per_bound[i]` counts the observations in bucket `i` alone), `+Inf` equal
    /// to `count` (which includes those above the last bound), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        per_bound: &[u64],
        count: u64,
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (le, n) in bounds.iter().zip(per_bound) {
            cumulative += n;
            let le = format_float(*le);
            let mut with_le = labels.to_vec();
            with_le.push(("le", le.as_str()));
            self.int(&bucket, &with_le, clamp(cumulative));
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        self.int(&bucket, &inf, clamp(count));
        self.float(&format!("{name}_sum"), labels, sum);
        self.int(&format!("{name}_count"), labels, clamp(count));
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Upper bounds (seconds) of the request latency histogram (Prometheus' default buckets).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Route label of requests no route matched (404s of the fallback): raw paths are never
/// labels, so the number of series stays bounded by the number of routes.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HttpKey {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS`] (the `+Inf` rest is
    /// `count - sum(buckets)`).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// HTTP requests by route template, method and status class: a count and a latency
/// histogram per series. Every label takes values from a closed set (route templates of
/// the router, seven methods + `OTHER`, five status classes).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<HttpKey, Histogram>>,
}

pub const HTTP_REQUESTS: &str = "openhive_http_requests_total";
pub const HTTP_DURATION: &str = "openhive_http_request_duration_seconds";

impl HttpMetrics {
    /// Records one answered request. `route` is the matched route template (or
    /// [`UNMATCHED_ROUTE`]), never the raw path.
    pub fn observe(&self, route: &str, method: &str, status: u16, secs: f64) {
        let key = HttpKey {
            route: route.to_string(),
            method: method_label(method),
            status: status_class(status),
        };
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let h = series.entry(key).or_default();
        h.count += 1;
        h.sum += secs;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[i] += 1;
        }
    }

    /// Writes both families.
    pub fn encode(&self, enc: &mut Encoder) {
        let series: Vec<(HttpKey, Histogram)> = {
            let s = self.series.lock().unwrap_or_else(|p| p.into_inner());
            s.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        enc.family(
            HTTP_REQUESTS,
            Kind::Counter,
            "HTTP requests answered, by route template, method and status class.",
        );
        for (k, h) in &series {
            let labels = [
                ("route", k.route.as_str()),
                ("method", k.method),
                ("status", k.status),
            ];
            enc.int(HTTP_REQUESTS, &labels, clamp(h.count));
        }
        enc.family(
            HTTP_DURATION,
            Kind::Histogram,
            "Time to answer an HTTP request (to the response head), in seconds.",
        );
        for (k, h) in &series {
            let labels = [
                ("route", k.route.as_str()),
                ("method", k.method),
                ("status", k.status),
            ];
            enc.histogram(
                HTTP_DURATION,
                &labels,
                &LATENCY_BUCKETS,
                &h.buckets,
                h.count,
                h.sum,
            );
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(s: u16) -> &'static str {
    match s {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A sync link: (peer id, hive name).
pub type LinkKey = (String, String);

/// The links lagging at the last check, so that a link that starts lagging is logged once
/// (and once more when it recovers), not at every check.
#[derive(Debug, Default)]
pub struct LagWatch {
    lagging: HashSet<LinkKey>,
}

impl LagWatch {
    /// Replaces the set of lagging (peer id, hive) links; returns the links that started
    /// lagging and those that stopped since the previous call.
    pub fn update(&mut self, now: HashSet<LinkKey>) -> (Vec<LinkKey>, Vec<LinkKey>) {
        let mut started: Vec<_> = now.difference(&self.lagging).cloned().collect();
        let mut stopped: Vec<_> = self.lagging.difference(&now).cloned().collect();
        started.sort();
        stopped.sort();
        self.lagging = now;
        (started, stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_families_labels_and_escapes() {
        let mut e = Encoder::new();
        e.family("x_total", Kind::Counter, "Help with \\ and\nnewline.");
        e.int("x_total", &[], 3);
        e.int("x_total", &[("a", "q\"b\\c\nd"), ("b", "")], -1);
        e.family("y", Kind::Gauge, "A gauge.");
        e.float("y", &[("k", "v")], 0.25);
        e.float("y", &[], f64::INFINITY);
        e.float("y", &[], f64::NAN);
        e.float("y", &[], 2.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n\
             # TYPE x_total counter\n\
             x_total 3\n\
             x_total{a=\"q\\\"b\\\\c\\nd\",b=\"\"} -1\n\
             # HELP y A gauge.\n\
             # TYPE y gauge\n\
             y{k=\"v\"} 0.25\n\
             y +Inf\n\
             y NaN\n\
             y 2\n"
        );
    }

    #[test]
    fn histogram_is_cumulative_with_inf_sum_and_count() {
        let m = HttpMetrics::default();
        m.observe("/api/v1/posts/{id}", "GET", 200, 0.00390625);
        m.observe("/api/v1/posts/{id}", "GET", 204, 0.25);
        m.observe("/api/v1/posts/{id}", "GET", 200, 30.0);
        m.observe(UNMATCHED_ROUTE, "BREW", 404, 0.001);
        let mut e = Encoder::new();
        m.encode(&mut e);
        let text = e.finish();
        let l = "route=\"/api/v1/posts/{id}\",method=\"GET\",status=\"2xx\"";
        for want in [
            format!("openhive_http_requests_total{{{l}}} 3"),
            format!("openhive_http_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1"),
            format!("openhive_http_request_duration_seconds_bucket{{{l},le=\"0.1\"}} 1"),
            format!("openhive_http_request_duration_seconds_bucket{{{l},le=\"0.25\"}} 2"),
            format!("openhive_http_request_duration_seconds_bucket{{{l},le=\"10\"}} 2"),
            format!("openhive_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3"),
            format!("openhive_http_request_duration_seconds_sum{{{l}}} 30.25390625"),
            format!("openhive_http_request_duration_seconds_count{{{l}}} 3"),
            "openhive_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"4xx\"} 1"
                .to_string(),
        ] {
            assert!(text.lines().any(|x| x == want), "missing {want}\n{text}");
        }
        assert_eq!(text.matches("# TYPE").count(), 2);
    }

    #[test]
    fn status_classes_and_methods_are_closed_sets() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(302), "3xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(999), "5xx");
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("get"), "OTHER");
    }

    #[test]
    fn lag_watch_reports_transitions_once() {
        let k = |p: &str| (p.to_string(), "h".to_string());
        let mut w = LagWatch::default();
        let (s, t) = w.update([k("a")].into());
        assert_eq!((s, t), (vec![k("a")], vec![]));
        let (s, t) = w.update([k("a")].into());
        assert!(
            s.is_empty() && t.is_empty(),
            "no repeat while still lagging"
        );
        let (s, t) = w.update([k("b")].into());
        assert_eq!((s, t), (vec![k("b")], vec![k("a")]));
        let (s, t) = w.update(HashSet::new());
        assert_eq!((s, t), (vec![], vec![k("b")]));
    }
}
