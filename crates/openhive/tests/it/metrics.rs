//! `GET /metrics`: Prometheus text that parses, request counters by route template, the
//! writer's transactions by duration, access control (`[metrics] access`), and lag (and the
//! `lagging` flag) for a stopped peer.

use crate::harness::{Opts, assert_error, client, json, spawn};
use crate::sync_util::*;
use openhive_server::config::MetricsAccess;
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One sample of the exposition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        v => v
            .parse::<f64>()
            .map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

/// A strict parser of the text format 0.0.4 (what we emit: no timestamps): every sample
/// belongs to a family declared by a `# TYPE` line before it (`_bucket`, `_sum`, `_count`
/// for histograms), names are valid, label values are quoted with the three escapes, each
/// family is declared once.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            let name = parts.next().ok_or_else(|| err("no metric name".into()))?;
            if !valid_name(name) {
                return Err(err("invalid metric name".into()));
            }
            if kw == "TYPE" {
                let t = parts.next().unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                    return Err(err(format!("unknown type {t}")));
                }
                if types.insert(name.to_string(), t.to_string()).is_some() {
                    return Err(err("family declared twice".into()));
                }
            } else if kw != "HELP" {
                return Err(err("unknown comment keyword".into()));
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(err("no value".into())),
        };
        if !valid_name(name) {
            return Err(err("invalid sample name".into()));
        }
        let mut labels = BTreeMap::new();
        let value_text = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let Some(&(i, c)) = chars.peek() else {
                    return Err(err("unterminated labels".into()));
                };
                if c == '}' {
                    end = i;
                    break;
                }
                if c == ',' {
                    chars.next();
                    continue;
                }
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if !valid_name(&key) {
                    return Err(err(format!("invalid label name {key:?}")));
                }
                chars.next(); // '='
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(err("label value not quoted".into()));
                }
                let mut val = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            other => return Err(err(format!("bad escape {other:?}"))),
                        },
                        Some('"') => break,
                        Some(c) => val.push(c),
                        None => return Err(err("unterminated label value".into())),
                    }
                }
                if labels.insert(key, val).is_some() {
                    return Err(err("duplicate label".into()));
                }
            }
            body[end + 1..].to_string()
        } else {
            rest.to_string()
        };
        let value_text = value_text
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value".into()))?;
        if value_text.contains(' ') {
            return Err(err("unexpected timestamp or trailing text".into()));
        }
        let value = parse_value(value_text).map_err(err)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(err("sample before its # TYPE line".into()));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

pub(crate) fn find<'a>(
    samples: &'a [Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
    })
}

async fn scrape(base: &str, admin_key: Option<&str>) -> (StatusCode, String, String) {
    let mut req = client().get(format!("{base}/metrics"));
    if let Some(k) = admin_key {
        req = req.header("X-Admin-Key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, resp.text().await.unwrap())
}

pub(crate) async fn metrics_of(base: &str) -> Vec<Sample> {
    let (st, ct, text) = scrape(base, None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_test_parser_is_strict() {
    assert!(parse("# TYPE a counter\na 1\n").is_ok());
    assert!(parse("a 1\n").is_err(), "no TYPE");
    assert!(
        parse("# TYPE a gauge\na{x=\"1} 1\n").is_err(),
        "unterminated"
    );
    assert!(parse("# TYPE a gauge\na{x=1} 1\n").is_err(), "unquoted");
    assert!(parse("# TYPE a gauge\na one\n").is_err(), "bad value");
    let s = parse("# TYPE h histogram\nh_bucket{le=\"+Inf\",q=\"a\\\"b\"} 2\nh_sum 1.5\n").unwrap();
    assert_eq!(s[0].labels["q"], "a\"b");
    assert_eq!(s[1].value, 1.5);
}

#[tokio::test]
async fn metrics_parse_and_count_requests_by_route_template() {
    // Token mode: a loopback caller without any header still reads metrics (access local).
    let s = spawn(Opts::token()).await;
    let http = client();
    for _ in 0..3 {
        let r = http.get(s.api("/hives")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = http
        .get(s.api("/hives/no-such-hive-xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.get(s.url("/no/such/route/abc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (st, _, text) = scrape(&s.base_url, None).await;
    assert_eq!(st, StatusCode::OK);
    let m = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hives_ok = find(
        &m,
        "openhive_http_requests_total",
        &[
            ("route", "/api/v1/hives"),
            ("method", "GET"),
            ("status", "2xx"),
        ],
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!(hives_ok.value >= 3.0, "{text}");
    let one = find(
        &m,
        "openhive_http_requests_total",
        &[("route", "/api/v1/hives/{name}"), ("status", "4xx")],
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(one.value, 1.0);
    assert!(
        find(
            &m,
            "openhive_http_requests_total",
            &[("route", "unmatched")]
        )
        .is_some()
    );
    // Raw paths never become labels.
    assert!(!text.contains("no-such-hive-xyz") && !text.contains("/no/such/route"));
    let inf = find(
        &m,
        "openhive_http_request_duration_seconds_bucket",
        &[("route", "/api/v1/hives"), ("le", "+Inf")],
    )
    .unwrap();
    assert!(inf.value >= 3.0);
    assert_eq!(
        find(&m, "openhive_store_write_queue_capacity", &[])
            .unwrap()
            .value,
        4096.0
    );
    for name in [
        "openhive_store_write_queue_depth",
        "openhive_store_write_refused_total",
        "openhive_events_rejected_total",
        "openhive_events_waiting",
        "openhive_sync_scheduler_links",
        "openhive_sync_heartbeat_groups_sent_total",
        "openhive_metrics_hives_truncated",
    ] {
        assert!(find(&m, name, &[]).is_some(), "missing {name}\n{text}");
    }
    // A second scrape sees the first one counted under its own template.
    let m = metrics_of(&s.base_url).await;
    assert!(find(&m, "openhive_http_requests_total", &[("route", "/metrics")]).is_some());
}

/// The writer's transactions by duration: a histogram whose buckets are cumulative and
/// whose count is every committed transaction (`openhive_store_write_transactions_total`).
#[tokio::test]
async fn metrics_time_every_committed_write_transaction() {
    let s = spawn(Opts::token()).await;
    crate::harness::register(&client(), &s, "timed-writer").await;
    const H: &str = "openhive_store_write_transaction_seconds";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics_of(&s.base_url).await;
        let value = |name: &str, labels: &[(&str, &str)]| {
            find(&m, name, labels)
                .unwrap_or_else(|| panic!("missing {name} {labels:?}"))
                .value
        };
        let count = value(&format!("{H}_count"), &[]);
        let committed = value("openhive_store_write_transactions_total", &[]);
        let buckets: Vec<f64> = m
            .iter()
            .filter(|s| s.name == format!("{H}_bucket"))
            .map(|s| s.value)
            .collect();
        assert_eq!(buckets.len(), 11, "ten bounds and +Inf");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(value(&format!("{H}_bucket"), &[("le", "+Inf")]), count);
        assert!(count >= 1.0, "the registration committed");
        assert!(value(&format!("{H}_sum"), &[]) > 0.0);
        // A transaction committing between the two figures' reads (a background write)
        // may part them for one scrape.
        if count == committed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} timed, {committed} committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_access_admin_refuses_without_admin_rights() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| c.metrics.access = MetricsAccess::Admin)),
        ..Opts::token()
    })
    .await;
    // Loopback is not enough with access = "admin" (token mode: no header, no caller).
    let resp = client().get(s.url("/metrics")).send().await.unwrap();
    let (st, body) = json(resp).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    // A wrong admin key is a 401, the right one reads the metrics.
    let (st, _, _) = scrape(&s.base_url, Some("not-the-key")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let key = s.admin_key();
    let (st, ct, text) = scrape(&s.base_url, Some(&key)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(ct.starts_with("text/plain"));
    parse(&text).unwrap();
    // A registered, non-admin agent is refused too.
    let api_key = crate::harness::register(&client(), &s, "metrics-reader").await;
    let resp = client()
        .get(s.url("/metrics"))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    let (st, body) = json(resp).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn metrics_access_public_needs_nothing() {
    let s = spawn(Opts {
        configure: Some(Box::new(|c| c.metrics.access = MetricsAccess::Public)),
        ..Opts::token()
    })
    .await;
    metrics_of(&s.base_url).await;
}

#[tokio::test]
async fn metrics_show_lag_and_lagging_for_a_stopped_peer() {
    let a = instance_with(|c| c.sync.lag_alert_events = 2).await;
    let b = instance().await;
    create_hive(&a, "lagged").await;
    enable_group(&a, "lagged").await;
    add_peer(&b, "A", &a, &["lagged"]).await;
    add_peer(&a, "B", &b, &["lagged"]).await;
    new_post(&a, "lagged", "first").await;
    wait_for(Duration::from_secs(60), "B has the first post", || async {
        (post_total(&b, "lagged").await == 1).then_some(())
    })
    .await;
    let link = [("peer", "B"), ("hive", "lagged")];
    let m = metrics_of(&a.base_url).await;
    let lag = find(&m, "openhive_sync_link_lag_events", &link).expect("link series");
    assert!(lag.value >= 0.0);

    b.running.shutdown().await.unwrap();
    for i in 0..4 {
        new_post(&a, "lagged", &format!("while B is down {i}")).await;
    }
    let m = wait_for(Duration::from_secs(60), "lag shows in metrics", || async {
        let m = metrics_of(&a.base_url).await;
        let lagging = find(&m, "openhive_sync_link_lagging", &link).map(|s| s.value);
        let lag = find(&m, "openhive_sync_link_lag_events", &link).map(|s| s.value);
        (lag.is_some_and(|l| l > 2.0) && lagging == Some(1.0)).then_some(m)
    })
    .await;
    let lag = find(&m, "openhive_sync_link_lag_events", &link).unwrap();
    assert!(lag.value >= 4.0, "{lag:?}");
    assert!(find(&m, "openhive_sync_link_lag_seconds", &link).is_some());
    assert!(find(&m, "openhive_sync_peer_failures", &[("peer", "B")]).is_some());
    assert!(
        find(&m, "openhive_hive_events_total", &[("hive", "lagged")])
            .unwrap()
            .value
            >= 5.0
    );

    // Sync status shows the same flag.
    let st = get(&a, "/sync/status").await;
    let group = st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["hive"] == "lagged")
        .unwrap();
    let peer = &group["peers"][0];
    assert_eq!(peer["lagging"], true, "{st}");
    assert!(peer["lag"].as_i64().unwrap() >= 4, "{st}");
}
