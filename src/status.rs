//! `smsgate status`: a terminal view of a running daemon, read from its admin listener
//! (`/readyz` and `/metrics`), so it needs no extra endpoint and works on any instance.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// One Prometheus sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (enough of it for our own exposition).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    if let Some((k, v)) = pair.split_once("=\"") {
                        labels.insert(k.trim().to_owned(), v.trim_end_matches('"').to_owned());
                    }
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    // An empty f64 sum is -0.0; adding 0.0 prints it as 0.
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum::<f64>()
        + 0.0
}

fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        if let Some(l) = s.labels.get(label) {
            *m.entry(l.clone()).or_default() += s.value;
        }
    }
    m
}

/// Renders the status view from `/readyz` and `/metrics` bodies.
pub fn render(ready: Option<&str>, metrics: &str) -> String {
    let s = parse_metrics(metrics);
    let mut out = String::new();
    let ready_line = ready.map_or("unknown (no answer)", |r| r.lines().next().unwrap_or(""));
    let _ = writeln!(out, "smsgate: {ready_line}");
    let binds = by_label(&s, "smsgate_binds_up", "carrier");
    let window = by_label(&s, "smsgate_window_in_flight", "carrier");
    let queued = by_label(&s, "smsgate_scheduler_queued", "carrier");
    let throttled = by_label(&s, "smsgate_throttled_total", "carrier");
    let _ = writeln!(
        out,
        "\ncarrier          binds  in flight  waiting for rate  throttled"
    );
    for (carrier, b) in &binds {
        let _ = writeln!(
            out,
            "{carrier:<16} {b:>5}  {:>9}  {:>16}  {:>9}",
            window.get(carrier).copied().unwrap_or(0.0),
            queued.get(carrier).copied().unwrap_or(0.0),
            throttled.get(carrier).copied().unwrap_or(0.0),
        );
    }
    let _ = writeln!(
        out,
        "\nqueue depth (queued + sending): {}",
        sum(&s, "smsgate_queue_depth")
    );
    for class in ["long_code", "toll_free", "short_code"] {
        let n = s
            .iter()
            .filter(|m| {
                m.name == "smsgate_queue_depth_by_class"
                    && m.labels.get("class").is_some_and(|v| v == class)
            })
            .fold(0.0, |a, m| a + m.value);
        let _ = writeln!(out, "  {class:<29} {n}");
    }
    let _ = writeln!(
        out,
        "accepted since start:           {}",
        sum(&s, "smsgate_messages_accepted_total")
    );
    let _ = writeln!(
        out,
        "rejected since start:           {}",
        sum(&s, "smsgate_messages_rejected_total")
    );
    let _ = writeln!(
        out,
        "webhook backlog:                {}",
        sum(&s, "smsgate_webhook_outbox_depth")
    );
    let _ = writeln!(
        out,
        "webhook dead letters:           {}",
        sum(&s, "smsgate_webhook_dead_letters_total")
    );
    out
}

async fn get(
    client: &crate::net::HttpsClient<Empty<Bytes>>,
    url: String,
) -> Result<(u16, String), String> {
    let req = hyper::Request::get(&url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Fetches and renders the status of the daemon whose admin listener is at `admin`.
pub async fn fetch(admin: &str) -> Result<String, String> {
    let client = crate::net::https_client(Duration::from_secs(3));
    let base = if admin.starts_with("http") {
        admin.to_owned()
    } else {
        format!("http://{admin}")
    };
    let ready = get(&client, format!("{base}/readyz"))
        .await
        .ok()
        .map(|(_, b)| b);
    let (status, metrics) = get(&client, format!("{base}/metrics")).await?;
    if status != 200 {
        return Err(format!("{base}/metrics answered {status}"));
    }
    Ok(render(ready.as_deref(), &metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP smsgate_binds_up x
# TYPE smsgate_binds_up gauge
smsgate_binds_up{carrier="att"} 2
smsgate_binds_up{carrier="sim"} 0
smsgate_window_in_flight{carrier="att"} 17
smsgate_queue_depth 42
smsgate_queue_depth_by_class{class="long_code"} 40
smsgate_queue_depth_by_class{class="short_code"} 2
smsgate_webhook_outbox_depth{app="clinic"} 3
smsgate_webhook_outbox_depth{app="dental"} 4
smsgate_webhook_dead_letters_total{app="clinic",reason="gone"} 1
"#;

    #[test]
    fn the_status_view_sums_per_carrier_and_per_app_metrics() {
        let out = render(Some("ready\nstore=ok\n"), TEXT);
        assert!(out.starts_with("smsgate: ready"), "{out}");
        assert!(out.contains("att                  2         17"), "{out}");
        assert!(out.contains("sim                  0          0"), "{out}");
        assert!(out.contains("queue depth (queued + sending): 42"), "{out}");
        assert!(
            out.contains("  long_code                     40\n"),
            "{out}"
        );
        assert!(out.contains("  toll_free                     0\n"), "{out}");
        assert!(out.contains("  short_code                    2\n"), "{out}");
        assert!(out.contains("webhook backlog:                7"), "{out}");
        assert!(out.contains("webhook dead letters:           1"), "{out}");
        assert!(out.contains("rejected since start:           0\n"), "{out}");
    }

    #[test]
    fn labels_with_commas_and_odd_lines_parse() {
        let s = parse_metrics("a{x=\"1,2\",y=\"b\"} 3\ngarbage\nb 1.5\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["x"], "1,2");
        assert_eq!(s[1].value, 1.5);
    }
}
