//! Summaries as an aligned text table (stdout) or JSON (`--json`: the summary types'
//! `Serialize` form, durations in seconds).

use std::{collections::BTreeMap, fmt::Write, time::Duration};

use super::{
    CommitBatches, CpuSplit, E2eSummary, FloorSummary, HttpSummary, Latency, MoSummary,
    WebhookSummary,
};

/// Serializes a duration as fractional seconds.
pub(crate) fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Label column width.
const W: usize = 26;

fn row(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {label:<W$}{value}");
}

/// `total (code n, code n)` or `0`.
fn by_code(map: &BTreeMap<String, u64>) -> String {
    let total: u64 = map.values().sum();
    if total == 0 {
        return "0".into();
    }
    let mut parts: Vec<(&String, &u64)> = map.iter().collect();
    parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let detail: Vec<String> = parts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total}  ({})", detail.join(", "))
}

fn http_rows(out: &mut String, s: &HttpSummary) {
    let pacing = match s.target_rate {
        Some(r) => format!("paced at {r:.0}/s"),
        None => "back-to-back".into(),
    };
    row(
        out,
        "connections",
        format!("{} keep-alive HTTP/1.1, {pacing}", s.concurrency),
    );
    row(
        out,
        "duration",
        format!("{:.2} s", s.duration.as_secs_f64()),
    );
    row(out, "requests", s.requests);
    row(
        out,
        "accepted (202)",
        format!("{}  ({} parts)", s.accepted, s.accepted_segments),
    );
    row(out, "accepted/s", format!("{:.0}", s.accepted_per_sec));
    row(out, "rejected (4xx)", by_code(&s.rejected));
    row(out, "server errors (5xx)", by_code(&s.server_errors));
    row(out, "transport errors", by_code(&s.transport_errors));
    latency_row(out, "accept latency ms", &s.latency);
}

fn latency_row(out: &mut String, label: &str, l: &Latency) {
    row(
        out,
        label,
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        ),
    );
}

/// The sink's counts; `from` names the start of the timed span.
fn webhook_rows(out: &mut String, w: &WebhookSummary, from: &str) {
    row(
        out,
        "awaited webhooks",
        format!(
            "{} of {} messages  ({})",
            w.completed, w.expected, w.awaited_event
        ),
    );
    row(
        out,
        "requests",
        format!(
            "{}  (verified {}, message.status {}, message.received {}, other {})",
            w.requests, w.verified, w.status_events, w.received_events, w.other_events
        ),
    );
    let flag = if w.signature_failures > 0 {
        "  <-- ERROR"
    } else {
        ""
    };
    row(
        out,
        "signature failures",
        format!("{}{flag}", w.signature_failures),
    );
    row(
        out,
        "other anomalies",
        format!(
            "malformed {}, not delivered {}, unmatched {}, duplicates {}",
            w.malformed, w.not_delivered, w.unmatched, w.duplicates
        ),
    );
    row(
        out,
        "time to last webhook",
        format!("{:.2} s", w.time_to_last.as_secs_f64()),
    );
    row(
        out,
        "throughput",
        format!(
            "{:.0} msgs/s with their webhook  ({:.0} webhook requests/s)",
            w.completed_per_sec, w.requests_per_sec
        ),
    );
    latency_row(out, &format!("{from} -> webhook ms"), &w.latency);
    if w.before_start_seen > 0 {
        row(
            out,
            "webhook before 202 read",
            format!("{} (timed as 0)", w.before_start_seen),
        );
    }
}

fn commit_rows(out: &mut String, c: &CommitBatches) {
    let _ = writeln!(out, "Store group commit");
    row(
        out,
        "commits",
        format!(
            "{}  ({} operations, mean batch {:.1}, mean commit {:.2} ms)",
            c.commits, c.operations, c.mean, c.mean_commit_ms
        ),
    );
    let per_commit = if c.commits > 0 {
        c.wal_frames as f64 / c.commits as f64
    } else {
        0.0
    };
    row(
        out,
        "WAL",
        format!(
            "{} pages written ({per_commit:.1} per commit), {} restarts holding the writer {:.0} ms in all",
            c.wal_frames, c.wal_restarts, c.wal_restart_ms
        ),
    );
}

fn cpu_rows(out: &mut String, cpu: &CpuSplit, span: &str) {
    let _ = writeln!(out, "CPU ({span})");
    row(
        out,
        "process",
        format!(
            "{:.1} s over {:.1} s wall = {:.2} cores",
            cpu.process_s,
            cpu.wall_s,
            cpu.process_s / cpu.wall_s.max(1e-9)
        ),
    );
    let mut threads: Vec<_> = cpu.threads.iter().collect();
    threads.sort_by(|a, b| b.1.cpu_s.total_cmp(&a.1.cpu_s));
    for (name, g) in threads {
        row(
            out,
            &format!("{name} x{}", g.threads),
            format!(
                "{:.1} s on CPU, {:.1} s waiting for a CPU",
                g.cpu_s, g.runqueue_wait_s
            ),
        );
    }
}

fn problem_rows(out: &mut String, problems: &[String]) {
    if !problems.is_empty() {
        let _ = writeln!(out, "FAILED CHECKS");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
}

/// The `http` mode's summary as an aligned table.
pub fn http_table(s: &HttpSummary) -> String {
    let mut out = String::from("smsgate-bench http\n");
    http_rows(&mut out, s);
    out
}

/// The `e2e` mode's summary as an aligned table.
pub fn e2e_table(s: &E2eSummary) -> String {
    let mut out = format!(
        "smsgate-bench e2e (in-process simulator + daemon{} on loopback)\n",
        if s.webhooks.is_some() { " + sink" } else { "" }
    );
    row(
        &mut out,
        "runtime",
        format!(
            "one tokio runtime, {} workers, shared by {}",
            s.runtime_workers,
            if s.webhooks.is_some() {
                "client, daemon, simulator and webhook sink"
            } else {
                "client, daemon and simulator"
            }
        ),
    );
    row(
        &mut out,
        "carrier",
        format!(
            "{} bind(s) x window {}, receipt delay {:?}",
            s.binds, s.window, s.receipt_delay
        ),
    );
    let _ = writeln!(out, "HTTP accept");
    http_rows(&mut out, &s.http);
    let _ = writeln!(out, "To the carrier");
    row(
        &mut out,
        "submit_sm accepted",
        format!(
            "{}  (duplicates {}, daemon resubmits {})",
            s.carrier_submits, s.carrier_duplicates, s.resubmits
        ),
    );
    row(
        &mut out,
        "time to carrier",
        format!("{:.2} s", s.time_to_carrier.as_secs_f64()),
    );
    row(&mut out, "submit_sm/s", format!("{:.0}", s.submits_per_sec));
    let _ = writeln!(out, "End to end (receipts stored)");
    row(&mut out, "receipts recorded", s.receipts_recorded);
    row(
        &mut out,
        "time to receipts",
        format!("{:.2} s", s.time_to_receipts.as_secs_f64()),
    );
    row(
        &mut out,
        "end-to-end msgs/s",
        format!("{:.0}", s.e2e_msgs_per_sec),
    );
    let c = &s.commit_batches;
    commit_rows(&mut out, c);
    let buckets: Vec<String> = c
        .buckets
        .iter()
        .map(|(le, n)| format!("<={le}: {n}"))
        .collect();
    row(&mut out, "batch sizes", buckets.join("  "));
    if let Some(w) = &s.webhooks {
        let _ = writeln!(out, "Webhooks (signed, verified by the bench's sink)");
        let events = s.status_events.as_ref().map_or_else(
            || "every state change (sending, sent, delivered)".to_owned(),
            |e| e.join(", "),
        );
        row(&mut out, "status_events", events);
        webhook_rows(&mut out, w, "202");
    }
    if let Some(cpu) = &s.cpu {
        let span = if s.webhooks.is_some() {
            "load start to last delivered webhook"
        } else {
            "load start to last receipt"
        };
        cpu_rows(&mut out, cpu, span);
    }
    if let Some(dir) = &s.dir {
        row(&mut out, "kept", dir.display());
    }
    problem_rows(&mut out, &s.problems);
    out
}

/// The `floor` mode's summary as an aligned table.
pub fn floor_table(s: &FloorSummary) -> String {
    let mut out = String::from(
        "smsgate-bench floor (HTTP transport alone: handlers that only answer, on loopback)\n",
    );
    for (title, p) in [
        (
            "Raw TCP exchanges (no HTTP; webhook-sized request, short answer)",
            &s.tcp,
        ),
        ("API requests (bench client -> 202)", &s.api),
        (
            "Webhook requests (daemon's client, signed -> verified, 204)",
            &s.webhook,
        ),
    ] {
        let _ = writeln!(out, "{title}");
        row(
            &mut out,
            "answered",
            format!("{}  (failed {}) in {:.2} s", p.requests, p.failed, p.wall_s),
        );
        row(&mut out, "requests/s", format!("{:.0}", p.per_sec));
        row(
            &mut out,
            "CPU per request",
            format!(
                "{:.1} µs  ({:.2} cores busy)",
                p.cpu_us_per_request, p.cores_busy
            ),
        );
    }
    row(
        &mut out,
        "webhook body",
        format!("{} bytes", s.webhook_body_bytes),
    );
    let _ = writeln!(
        out,
        "Per message (1 API request + N webhooks), {} cores",
        s.cores
    );
    for events in [0, 1, 3] {
        row(
            &mut out,
            &format!("{events} status events"),
            format!(
                "{:.1} µs CPU  ->  at most {:.0} msgs/s for HTTP alone ({:.0} over raw TCP)",
                s.cpu_us_per_message(events),
                s.max_msgs_per_sec(events),
                s.tcp_max_msgs_per_sec(events)
            ),
        );
    }
    out
}

/// The `mo` mode's summary as an aligned table.
pub fn mo_table(s: &MoSummary) -> String {
    let mut out =
        String::from("smsgate-bench mo (in-process simulator + daemon + sink on loopback)\n");
    row(
        &mut out,
        "runtime",
        format!(
            "one tokio runtime, {} workers, shared by injectors, daemon, simulator and sink",
            s.runtime_workers
        ),
    );
    row(
        &mut out,
        "injectors",
        format!(
            "{} (one MO in flight each), {} handsets, {} transceiver bind(s)",
            s.concurrency, s.handsets, s.binds
        ),
    );
    let _ = writeln!(
        out,
        "MO into the daemon (deliver_sm_resp after the store commit)"
    );
    row(&mut out, "texts", s.messages);
    row(&mut out, "acknowledged", s.acked);
    row(&mut out, "not acknowledged", by_code(&s.refused));
    row(&mut out, "stored (metrics)", s.stored);
    row(
        &mut out,
        "duration",
        format!("{:.2} s", s.duration.as_secs_f64()),
    );
    row(&mut out, "acked/s", format!("{:.0}", s.acked_per_sec));
    latency_row(&mut out, "inject -> ack ms", &s.ack_latency);
    let _ = writeln!(out, "Webhooks (signed, verified by the bench's sink)");
    webhook_rows(&mut out, &s.webhooks, "inject");
    commit_rows(&mut out, &s.commit_batches);
    if let Some(cpu) = &s.cpu {
        cpu_rows(&mut out, cpu, "first injection to last webhook");
    }
    if let Some(dir) = &s.dir {
        row(&mut out, "kept", dir.display());
    }
    problem_rows(&mut out, &s.problems);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_table_should_list_rejections_by_code_largest_first() {
        let mut s = HttpSummary {
            requests: 10,
            accepted: 7,
            ..Default::default()
        };
        s.rejected.insert("invalid_number".into(), 1);
        s.rejected.insert("opted_out".into(), 2);
        let t = http_table(&s);
        assert!(t.contains("3  (opted_out 2, invalid_number 1)"), "{t}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["rejected"]["opted_out"], 2);
        assert_eq!(json["duration_s"], 0.0);
    }
}
