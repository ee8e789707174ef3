//! The operator dashboard, `dashboards/smsgate.json`, against the metrics smsgate really
//! exports. Every metric a panel or a template variable reads must be a family a running
//! daemon exposes on /metrics (so renaming a metric fails here, not on an operator's screen),
//! used the way its type allows (counters and histogram series through `rate()`, gauges
//! never), with labels the family has. The JSON must also be a dashboard Grafana imports.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, body::Bytes, extract::Query, routing::get, routing::post};
use common::*;
use serde_json::{Value, json};
use smsgate::sim::{MoMessage, SimConfig, Simulator};
use tokio::net::TcpListener;

const DASHBOARD: &str = include_str!("../dashboards/smsgate.json");

/// The datasource every panel reads through: the dashboard's datasource variable.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";
const CARRIER_VARIABLE_QUERY: &str = "label_values(smsgate_binds_up, carrier)";

const PATIENT: &str = "+19175551234";
/// Destinations the simulated carrier refuses with ESME_RINVDSTADR.
const REFUSED_PREFIX: &str = "1646555";
const REFUSED: &str = "+16465551111";
const TRIGGER_TOKEN: &str = "dash0123456789abcdefghijklmnopqrstuvwxyzAB";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ---------------------------------------------------------------------------------------------
// The dashboard JSON.

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("dashboards/smsgate.json is JSON")
}

/// Every panel, rows included, with the panels of collapsed rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn variables(dash: &Value) -> &[Value] {
    dash["templating"]["list"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// A PromQL expression from the dashboard and where it came from.
struct Source {
    place: String,
    expr: String,
    legend: String,
    /// A template variable query (`label_values(...)`), not a panel query.
    variable: bool,
}

fn sources(dash: &Value) -> Vec<Source> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Source {
                place: format!(
                    "panel {} {:?} target {}",
                    p["id"],
                    p["title"].as_str().unwrap_or_default(),
                    t["refId"].as_str().unwrap_or_default()
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                variable: false,
            });
        }
    }
    for v in variables(dash).iter().filter(|v| v["type"] == "query") {
        let query = v["query"]["query"].as_str().or(v["query"].as_str());
        out.push(Source {
            place: format!("variable {}", v["name"].as_str().unwrap_or_default()),
            expr: query.unwrap_or_default().to_owned(),
            legend: String::new(),
            variable: true,
        });
    }
    out
}

/// Grafana variables referenced as `$name`, `${name}` or `${name:format}`.
fn referenced_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name: String = if let Some(braced) = rest.strip_prefix('{') {
            braced
                .split(['}', ':'])
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            rest.chars().take_while(|c| is_ident_char(*c)).collect()
        };
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// Problems with the dashboard as a Grafana dashboard, independent of any daemon.
fn shape_problems(dash: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    check(
        dash["title"].as_str().is_some_and(|t| !t.is_empty()),
        "the dashboard has no title".into(),
    );
    check(
        dash["uid"].as_str().is_some_and(|t| !t.is_empty()),
        "the dashboard has no uid".into(),
    );
    check(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        format!("schemaVersion {} (want >= 36)", dash["schemaVersion"]),
    );

    let vars = variables(dash);
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    check(
        var("DS_PROMETHEUS")
            .is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "no `DS_PROMETHEUS` datasource variable of type prometheus".into(),
    );
    check(
        var("carrier").is_some_and(|v| {
            v["type"] == "query"
                && v["query"]["query"].as_str().or(v["query"].as_str())
                    == Some(CARRIER_VARIABLE_QUERY)
        }),
        format!("no `carrier` query variable reading {CARRIER_VARIABLE_QUERY}"),
    );
    let defined: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();

    let panels = all_panels(dash);
    check(
        panels.iter().any(|p| !is_row(p)),
        "the dashboard has no panels".into(),
    );
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        let name = format!("panel {} {title:?}", p["id"]);
        check(!title.is_empty(), format!("{name}: no title"));
        match p["id"].as_u64() {
            Some(id) => check(ids.insert(id), format!("{name}: duplicate id")),
            None => check(false, format!("{name}: no integer id")),
        }
        let g = &p["gridPos"];
        let pos = ["x", "y", "w", "h"].map(|k| g[k].as_u64());
        if let [Some(x), Some(y), Some(w), Some(h)] = pos {
            check(
                w > 0 && h > 0 && x + w <= 24,
                format!("{name}: gridPos {g}"),
            );
            if let Some((other, _)) = boxes.iter().find(|(_, [ox, oy, ow, oh])| {
                x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h
            }) {
                check(false, format!("{name} overlaps {other}"));
            }
            boxes.push((name.clone(), [x, y, w, h]));
        } else {
            check(false, format!("{name}: gridPos needs x, y, w, h: {g}"));
        }
        if is_row(p) {
            check(
                p.get("targets").is_none(),
                format!("{name}: a row has no queries"),
            );
            continue;
        }
        check(
            titles.insert(title),
            format!("{name}: another panel has this title"),
        );
        check(
            p["description"].as_str().is_some_and(|d| d.len() > 20),
            format!("{name}: no description"),
        );
        check(
            p["datasource"]["uid"] == DATASOURCE_UID,
            format!("{name}: datasource is not {DATASOURCE_UID}"),
        );
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        check(!targets.is_empty(), format!("{name}: no targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().unwrap_or_default();
            check(
                !r.is_empty() && refs.insert(r),
                format!("{name}: missing or duplicate refId {r:?}"),
            );
            check(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                format!("{name} target {r}: no expr"),
            );
            check(
                t.get("datasource")
                    .is_none_or(|d| d["uid"] == DATASOURCE_UID),
                format!("{name} target {r}: datasource is not {DATASOURCE_UID}"),
            );
        }
    }
    // Every variable used is defined (Grafana's own, `$__rate_interval` and the like, aside).
    let texts = sources(dash)
        .into_iter()
        .map(|s| (s.place, s.expr))
        .chain(panels.iter().map(|p| {
            (
                format!("panel {}", p["id"]),
                p["datasource"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }));
    for (place, text) in texts {
        for v in referenced_variables(&text) {
            check(
                v.starts_with("__") || defined.contains(v.as_str()),
                format!("{place}: variable ${v} is not defined"),
            );
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// PromQL: just enough of it to find the metrics an expression reads and how.

#[derive(Debug, Default)]
struct Parsed {
    selectors: Vec<Selector>,
    /// Labels named in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`, and the
    /// label of a `label_values()` variable query.
    labels: Vec<String>,
}

#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
    /// The functions and aggregations this selector is inside, outermost first.
    within: Vec<String>,
}

#[derive(Debug)]
struct Matcher {
    label: String,
    op: &'static str,
    value: String,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
const RATE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_space(s: &[char], mut i: usize) -> usize {
    while s.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

fn ident(s: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while s.get(i).is_some_and(|c| is_ident_char(*c)) {
        i += 1;
    }
    (s[start..i].iter().collect(), i)
}

/// The string literal opening at `s[i]` and the index after it.
fn string(s: &[char], i: usize) -> Result<(String, usize), String> {
    let quote = s[i];
    let mut out = String::new();
    let mut j = i + 1;
    while let Some(&c) = s.get(j) {
        match c {
            '\\' if quote != '`' => {
                out.extend(s.get(j + 1));
                j += 2;
            }
            c if c == quote => return Ok((out, j + 1)),
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    Err(format!("unterminated string at {i}"))
}

fn closing(s: &[char], i: usize, close: char) -> Result<usize, String> {
    (i..s.len())
        .find(|&j| s[j] == close)
        .ok_or_else(|| format!("no {close:?} after {i}"))
}

/// The `{...}` matchers opening at `s[i]` and the index after them.
fn matchers(s: &[char], i: usize) -> Result<(Vec<Matcher>, usize), String> {
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_space(s, j);
        match s.get(j) {
            None => return Err(format!("unterminated {{ at {i}")),
            Some('}') => return Ok((out, j + 1)),
            Some(',') => {
                j += 1;
                continue;
            }
            _ => {}
        }
        let (label, after) = ident(s, j);
        if label.is_empty() {
            return Err(format!("bad label matcher at {j}"));
        }
        j = skip_space(s, after);
        let rest: String = s[j..s.len().min(j + 2)].iter().collect();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("no matcher operator after {label}"))?;
        j = skip_space(s, j + op.len());
        if !s.get(j).is_some_and(|c| matches!(c, '"' | '\'' | '`')) {
            return Err(format!("matcher on {label} has no string value"));
        }
        let (value, after) = string(s, j)?;
        out.push(Matcher { label, op, value });
        j = after;
    }
}

fn parse_promql(expr: &str) -> Result<Parsed, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut parsed = Parsed::default();
    // One entry per open parenthesis: the function or aggregation it belongs to, or "".
    let mut open: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            c if c.is_whitespace() => i += 1,
            '"' | '\'' | '`' => i = string(&s, i)?.1,
            // Ranges, subqueries: `[5m]`, `[$__rate_interval]`, `[1h:5m]`.
            '[' => i = closing(&s, i, ']')? + 1,
            '$' => {
                i += 1;
                if s.get(i) == Some(&'{') {
                    i = closing(&s, i, '}')? + 1;
                } else {
                    i = ident(&s, i).1;
                }
            }
            '(' => {
                open.push(pending.take().unwrap_or_default());
                i += 1;
            }
            ')' => {
                open.pop().ok_or_else(|| format!("unbalanced ) at {i}"))?;
                i += 1;
            }
            '{' => {
                let (m, after) = matchers(&s, i)?;
                let Some(name) = m.iter().find(|m| m.label == "__name__" && m.op == "=") else {
                    return Err(format!("selector without a metric name at {i}"));
                };
                parsed.selectors.push(Selector {
                    metric: name.value.clone(),
                    within: open.iter().filter(|f| !f.is_empty()).cloned().collect(),
                    matchers: m,
                });
                i = after;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while s.get(i).is_some_and(|c| is_ident_char(*c) || *c == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let (word, after) = ident(&s, i);
                let next = skip_space(&s, after);
                let lower = word.to_ascii_lowercase();
                i = after;
                if GROUPING.contains(&lower.as_str()) {
                    if s.get(next) == Some(&'(') {
                        let end = closing(&s, next, ')')?;
                        let list: String = s[next + 1..end].iter().collect();
                        parsed.labels.extend(
                            list.split(',')
                                .map(str::trim)
                                .filter(|l| !l.is_empty())
                                .map(str::to_owned),
                        );
                        i = end + 1;
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                } else if s.get(next) == Some(&'(') || AGGREGATIONS.contains(&lower.as_str()) {
                    pending = Some(word);
                } else {
                    let mut sel = Selector {
                        metric: word,
                        matchers: Vec::new(),
                        within: open.iter().filter(|f| !f.is_empty()).cloned().collect(),
                    };
                    if s.get(next) == Some(&'{') {
                        let (m, after) = matchers(&s, next)?;
                        sel.matchers = m;
                        i = after;
                    }
                    parsed.selectors.push(sel);
                }
            }
            _ => i += 1,
        }
    }
    if !open.is_empty() {
        return Err("unbalanced (".into());
    }
    Ok(parsed)
}

/// A template variable's query: `label_values(metric, label)` or `query_result(expr)`.
fn parse_variable_query(query: &str) -> Result<Parsed, String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (selector, label) = inner.rsplit_once(',').ok_or(
            "label_values(label) reads every metric: name an smsgate metric, \
             label_values(metric, label)",
        )?;
        let mut parsed = parse_promql(selector)?;
        parsed.labels.push(label.trim().to_owned());
        return Ok(parsed);
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return parse_promql(inner);
    }
    Err(format!("unsupported variable query {q:?}"))
}

// ---------------------------------------------------------------------------------------------
// The scrape.

#[derive(Debug, Default)]
struct Scrape {
    /// Family -> its `# TYPE` (counter, gauge, histogram, summary, untyped).
    types: BTreeMap<String, String>,
    /// Family -> label -> values seen on its samples (`le` included for histograms).
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
            }
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let s: Vec<char> = line.chars().collect();
            let (name, after) = ident(&s, 0);
            let Some((family, _, _)) = scrape.resolve(&name) else {
                continue;
            };
            let family = family.to_owned();
            let entry = scrape.labels.entry(family).or_default();
            if s.get(after) == Some(&'{')
                && let Ok((pairs, _)) = matchers(&s, after)
            {
                for m in pairs {
                    entry.entry(m.label).or_default().insert(m.value);
                }
            }
        }
        scrape
    }

    /// The family a series name belongs to, its type, and the histogram/summary suffix used.
    fn resolve(&self, name: &str) -> Option<(&str, &str, Option<&'static str>)> {
        if let Some((family, kind)) = self.types.get_key_value(name) {
            return Some((family, kind, None));
        }
        ["_bucket", "_sum", "_count"]
            .into_iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                let (family, kind) = self.types.get_key_value(base)?;
                let fits = match suffix {
                    "_bucket" => kind == "histogram",
                    _ => kind == "histogram" || kind == "summary",
                };
                fits.then_some((family.as_str(), kind.as_str(), Some(suffix)))
            })
    }

    fn family_labels(&self, family: &str) -> BTreeSet<&str> {
        self.labels
            .get(family)
            .into_iter()
            .flat_map(|l| l.keys().map(String::as_str))
            .collect()
    }
}

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Problems with the metrics the dashboard reads, against what a daemon exported.
fn metric_problems(dash: &Value, scrape: &Scrape) -> Vec<String> {
    let mut problems = Vec::new();
    for src in sources(dash) {
        let Source {
            place,
            expr,
            legend,
            variable,
        } = &src;
        let parsed = if *variable {
            parse_variable_query(expr)
        } else {
            parse_promql(expr)
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{place}: cannot parse {expr:?}: {e}"));
                continue;
            }
        };
        if parsed.selectors.is_empty() {
            problems.push(format!("{place}: {expr:?} reads no metric"));
        }
        let mut available: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
        for sel in &parsed.selectors {
            let m = &sel.metric;
            let Some((family, kind, suffix)) = scrape.resolve(m) else {
                problems.push(format!(
                    "{place}: `{m}` is not exported by smsgate (no `# TYPE {m}` in /metrics)"
                ));
                continue;
            };
            let labels = scrape.family_labels(family);
            available.extend(labels.iter().copied());
            let inside = |f: &[&str]| sel.within.iter().any(|w| f.contains(&w.as_str()));
            let rated = inside(RATE_FUNCTIONS);
            if !*variable {
                let misuse = match (kind, suffix) {
                    ("counter", _) if !rated => Some("a counter needs rate() or increase()"),
                    ("gauge", _) if rated => Some("a gauge must not go through rate()"),
                    ("histogram", None) => Some("a histogram is read as _bucket, _sum or _count"),
                    ("histogram", Some("_bucket"))
                        if !rated || !inside(&["histogram_quantile"]) =>
                    {
                        Some("_bucket goes through rate() inside histogram_quantile()")
                    }
                    ("histogram" | "summary", Some(_)) if !rated => {
                        Some("_sum and _count need rate() or increase()")
                    }
                    _ => None,
                };
                if let Some(why) = misuse {
                    problems.push(format!("{place}: `{m}` ({kind}): {why}"));
                }
            }
            for mt in &sel.matchers {
                if mt.label == "__name__" {
                    continue;
                }
                let label_ok = labels.contains(mt.label.as_str())
                    || TARGET_LABELS.contains(&mt.label.as_str());
                if !label_ok {
                    problems.push(format!(
                        "{place}: `{m}` has no label `{}` (it has {labels:?})",
                        mt.label
                    ));
                } else if mt.value.contains('$') {
                    // Multi-value and "All" variables expand to a regex.
                    if !matches!(mt.op, "=~" | "!~") {
                        problems.push(format!(
                            "{place}: `{m}{{{}{}\"{}\"}}`: match a variable with =~",
                            mt.label, mt.op, mt.value
                        ));
                    }
                } else if mt.op == "=" && !TARGET_LABELS.contains(&mt.label.as_str()) {
                    let seen = scrape.labels.get(family).and_then(|l| l.get(&mt.label));
                    if !seen.is_some_and(|v| v.contains(&mt.value)) {
                        problems.push(format!(
                            "{place}: `{m}` never has {}=\"{}\" (seen: {seen:?})",
                            mt.label, mt.value
                        ));
                    }
                }
            }
        }
        for l in &parsed.labels {
            if !available.contains(l.as_str()) {
                problems.push(format!(
                    "{place}: label `{l}` is on none of the metrics of {expr:?}"
                ));
            }
        }
        for l in legend
            .split("{{")
            .skip(1)
            .filter_map(|r| r.split_once("}}"))
        {
            let l = l.0.trim();
            if !available.contains(l) {
                problems.push(format!("{place}: legend {{{{{l}}}}} is not a label here"));
            }
        }
    }
    problems
}

/// Every metric family the dashboard reads.
fn families_used(dash: &Value, scrape: &Scrape) -> BTreeSet<String> {
    sources(dash)
        .iter()
        .filter_map(|s| {
            if s.variable {
                parse_variable_query(&s.expr).ok()
            } else {
                parse_promql(&s.expr).ok()
            }
        })
        .flat_map(|p| p.selectors)
        .map(|sel| {
            scrape
                .resolve(&sel.metric)
                .map_or(sel.metric.clone(), |(f, _, _)| f.to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_described_panels_and_unique_ids() {
    let dash = dashboard();
    let problems = shape_problems(&dash);
    assert!(problems.is_empty(), "{problems:#?}");
    // Every query parses and reads an smsgate metric.
    for s in sources(&dash) {
        let parsed = if s.variable {
            parse_variable_query(&s.expr)
        } else {
            parse_promql(&s.expr)
        };
        let parsed = parsed.unwrap_or_else(|e| panic!("{}: {:?}: {e}", s.place, s.expr));
        assert!(!parsed.selectors.is_empty(), "{}: {:?}", s.place, s.expr);
        for sel in parsed.selectors {
            assert!(sel.metric.starts_with("smsgate_"), "{}: {sel:?}", s.place);
        }
    }
}

#[test]
fn the_promql_reader_finds_metrics_labels_and_enclosing_functions() {
    let p = parse_promql(
        r#"histogram_quantile(0.99, sum by (carrier, le) (rate(smsgate_x_bucket{carrier=~"$carrier", result!="a,b}"}[$__rate_interval])))
           / on (carrier) group_left sum(smsgate_y) or vector(0)"#,
    )
    .unwrap();
    let names: Vec<&str> = p.selectors.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["smsgate_x_bucket", "smsgate_y"]);
    assert_eq!(p.labels, ["carrier", "le", "carrier"]);
    assert_eq!(p.selectors[0].within, ["histogram_quantile", "sum", "rate"]);
    assert_eq!(p.selectors[1].within, ["sum"]);
    let m = &p.selectors[0].matchers;
    assert_eq!((m[0].label.as_str(), m[0].op), ("carrier", "=~"));
    assert_eq!(
        (m[1].label.as_str(), m[1].value.as_str()),
        ("result", "a,b}")
    );

    let v =
        parse_variable_query("label_values(smsgate_binds_up{carrier!=\"x\"}, carrier)").unwrap();
    assert_eq!(v.selectors[0].metric, "smsgate_binds_up");
    assert_eq!(v.labels, ["carrier"]);
    assert!(parse_variable_query("label_values(carrier)").is_err());
    assert!(parse_promql("sum(rate(smsgate_x[5m])").is_err());
}

#[test]
fn misused_metrics_and_labels_are_reported() {
    let scrape = Scrape::parse(
        "# TYPE smsgate_c_total counter\nsmsgate_c_total{carrier=\"sim\"} 1\n\
         # TYPE smsgate_g gauge\nsmsgate_g{carrier=\"sim\"} 1\n\
         # TYPE smsgate_h_seconds histogram\nsmsgate_h_seconds_bucket{le=\"+Inf\"} 1\n\
         smsgate_h_seconds_sum 1\nsmsgate_h_seconds_count 1\n",
    );
    let panel = |expr: &str| json!({"panels": [{"id": 1, "title": "t", "targets": [{"refId": "A", "expr": expr}]}]});
    let fine = [
        "sum by (carrier) (rate(smsgate_c_total{carrier=~\"$carrier\"}[5m]))",
        "max by (carrier) (smsgate_g{carrier=\"sim\"})",
        "histogram_quantile(0.9, sum by (le) (rate(smsgate_h_seconds_bucket[5m])))",
        "rate(smsgate_h_seconds_sum[5m]) / rate(smsgate_h_seconds_count[5m])",
    ];
    for expr in fine {
        let p = metric_problems(&panel(expr), &scrape);
        assert!(p.is_empty(), "{expr}: {p:?}");
    }
    let wrong = [
        ("rate(smsgate_renamed_total[5m])", "not exported"),
        ("smsgate_c_total", "needs rate()"),
        ("rate(smsgate_g[5m])", "gauge"),
        ("smsgate_h_seconds", "histogram"),
        (
            "sum(rate(smsgate_h_seconds_bucket[5m]))",
            "histogram_quantile",
        ),
        ("rate(smsgate_c_total{app=~\".*\"}[5m])", "no label `app`"),
        ("rate(smsgate_c_total{carrier=\"$carrier\"}[5m])", "=~"),
        ("rate(smsgate_c_total{carrier=\"other\"}[5m])", "never has"),
        (
            "sum by (state) (rate(smsgate_c_total[5m]))",
            "label `state`",
        ),
    ];
    for (expr, want) in wrong {
        let p = metric_problems(&panel(expr), &scrape);
        assert!(p.iter().any(|p| p.contains(want)), "{expr}: {p:?}");
    }
}

/// The app's webhook endpoint: answers 200 to everything and keeps the event types.
async fn webhook_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |body: Bytes| {
            let s = s.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                s.lock()
                    .unwrap()
                    .push(v["type"].as_str().unwrap_or_default().to_owned());
                "ok"
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, seen)
}

/// A line-type lookup provider that says every number is a mobile.
async fn lookup_stub() -> u16 {
    let app = Router::new().route(
        "/lookup",
        get(|Query(_): Query<BTreeMap<String, String>>| async {
            Json(json!({"carrier": {"type": "mobile"}}))
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    port
}

fn scenario_config(db: &std::path::Path, carrier: u16, hook: u16, lookup: u16) -> String {
    let base = config_text(db, carrier, "").replacen(
        &format!("api_keys = [\"{CLINIC_KEY}\"]"),
        &format!(
            "api_keys = [\"{CLINIC_KEY}\"]\nwebhook_url = \"http://127.0.0.1:{hook}/hooks\"\n\
             webhook_secrets = [\"{WEBHOOK_SECRET}\"]"
        ),
        1,
    );
    format!(
        r#"{base}
[webhooks]
initial_backoff = "50ms"
max_backoff = "200ms"

[numbers]
lookup_url = "http://127.0.0.1:{lookup}/lookup?number={{number}}"
lookup_timeout = "1s"
line_type_field = "carrier.type"

[[triggers]]
id = "ctt"
token = "{TRIGGER_TOKEN}"
kind = "call_to_text"
line = "{CLINIC_LINE}"
template = "Sorry for the hold, how can we help?"
"#
    )
}

/// Scrapes until `needle` is in /metrics.
async fn until_scraped(d: &Daemon, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = d.metrics().await;
        if m.contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle} never appeared in /metrics:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn accepted(c: &reqwest::Client, d: &Daemon, to: &str, body: &str) -> Value {
    let (status, b) = send(
        c,
        d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": to, "body": body}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    b
}

#[tokio::test]
async fn every_metric_on_the_dashboard_is_exported_by_a_running_smsgate() {
    let dash = dashboard();
    let dir = tempfile::tempdir().unwrap();
    let (hook, events) = webhook_sink().await;
    let lookup = lookup_stub().await;
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            error_prefixes: vec![(REFUSED_PREFIX.into(), 0x0B)],
            ..Default::default()
        },
    )
    .await;
    let cfg = scenario_config(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        hook,
        lookup,
    );
    let d = Daemon::start(&cfg).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    assert!(s.wait_for_receivers(1, Duration::from_secs(10)).await);
    let c = reqwest::Client::new();
    let wait = Duration::from_secs(20);

    // Outbound: one part, three parts, one refused at the API, one refused by the carrier.
    let one = accepted(&c, &d, PATIENT, "Your appointment is tomorrow at 9:00.").await;
    let long = accepted(
        &c,
        &d,
        PATIENT,
        &"Please bring your insurance card. ".repeat(12),
    )
    .await;
    assert!(long["segments"].as_u64() > Some(1), "{long}");
    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+1212555", "body": "x"}),
    )
    .await;
    assert_eq!(
        (status, &b["error"]["code"]),
        (422, &json!("invalid_number"))
    );
    let refused = accepted(&c, &d, REFUSED, "Your results are ready.").await;
    for (m, want) in [
        (&one, "delivered"),
        (&long, "delivered"),
        (&refused, "failed"),
    ] {
        let id = m["id"].as_str().unwrap();
        let got = wait_status(&c, &d, CLINIC_KEY, id, want, wait).await;
        assert_eq!(got["status"], want, "{got}");
    }

    // Inbound: a text and an opt-out.
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "Can I come at 10?"))
        .await
        .unwrap();
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "STOP"))
        .await
        .unwrap();

    // A call-center trigger.
    let r = c
        .post(d.url(&format!(
            "/v1/triggers/{TRIGGER_TOKEN}?CALLER_ID_NUMBER=9175552345"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // A receipt that arrives before its submit_sm_resp is held (unmatched).
    s.set_config(|c| c.receipt_before_response = true);
    accepted(&c, &d, "+19175553456", "Receipt first").await;
    until_scraped(&d, "smsgate_receipts_unmatched_total{").await;
    s.set_config(|c| c.receipt_before_response = false);

    // The connection drops with a submit in flight: it is sent again.
    s.set_config(|c| c.response_delay = Duration::from_secs(2));
    let before = s.stats().submits_total as usize;
    accepted(&c, &d, "+19175554567", "In flight when the line drops").await;
    assert!(s.wait_for_submits(before + 1, wait).await);
    s.drop_connections();
    s.set_config(|c| c.response_delay = Duration::ZERO);
    until_scraped(&d, "smsgate_resubmits_total{").await;

    // The carrier throttles.
    s.set_config(|c| c.throttle_fraction = 1.0);
    accepted(&c, &d, "+19175555678", "Throttled once").await;
    until_scraped(&d, "smsgate_throttled_total{").await;
    s.set_config(|c| c.throttle_fraction = 0.0);

    // Metrics arrive asynchronously (webhook attempts, receipts): scrape until all are there.
    let deadline = tokio::time::Instant::now() + wait;
    let (scrape, text, problems) = loop {
        let text = d.metrics().await;
        let scrape = Scrape::parse(&text);
        let problems = metric_problems(&dash, &scrape);
        if problems.is_empty() || tokio::time::Instant::now() > deadline {
            break (scrape, text, problems);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        problems.is_empty(),
        "{problems:#?}\nwebhook events: {:?}\n{text}",
        events.lock().unwrap()
    );

    // A family on no panel is worth a look (a new metric deserves one) but fails nothing:
    // metrics are added more often than dashboards are edited.
    let used = families_used(&dash, &scrape);
    let unused: Vec<&String> = scrape.types.keys().filter(|f| !used.contains(*f)).collect();
    if !unused.is_empty() {
        eprintln!("exported but on no dashboard panel: {unused:?}");
    }

    // And the check bites: the same scrape with one family renamed fails it.
    let renamed = Scrape::parse(&text.replace("smsgate_queue_depth", "smsgate_queue_length"));
    let problems = metric_problems(&dash, &renamed);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`smsgate_queue_depth` is not exported")),
        "{problems:#?}"
    );

    d.stop().await;
    s.shutdown().await;
}
