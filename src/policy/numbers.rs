//! Number intelligence: which numbers cannot take texts. What carriers told us (marks written
//! by the store when a configured status or receipt error comes back), what an operator set,
//! and, when configured, what a line-type lookup service says, cached in the store.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::sync::Semaphore;

use crate::{
    config::Lookup,
    domain::{PhoneNumber, now_millis},
    net::{HttpsClient, https_client},
    store::{NumberInfo, Store, StoreError},
};

/// The answer for a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Textable,
    NotTextable {
        reason: String,
        source: String,
    },
    /// The lookup could not answer (down, timeout, unreadable): the line decides.
    Unknown,
}

pub struct NumberIntel {
    store: Arc<dyn Store>,
    lookup: Option<LookupClient>,
    metrics: prometheus::IntCounterVec,
}

struct LookupClient {
    cfg: Lookup,
    client: HttpsClient<Empty<Bytes>>,
    permits: Semaphore,
}

#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Failed(String),
}

impl NumberIntel {
    /// `metrics`: a counter vec labelled by `result`.
    pub fn new(
        store: Arc<dyn Store>,
        lookup: Option<Lookup>,
        metrics: prometheus::IntCounterVec,
    ) -> Self {
        Self {
            store,
            lookup: lookup.map(|cfg| LookupClient {
                client: https_client(cfg.timeout),
                permits: Semaphore::new(cfg.concurrency),
                cfg,
            }),
            metrics,
        }
    }

    /// What we know, from the store first, then from the lookup (whose answer is cached).
    pub async fn check(&self, number: &PhoneNumber) -> Result<Verdict, StoreError> {
        // Without a lookup, what the store knows (carrier and operator marks) is applied by
        // the insert itself, in its transaction: no read needed here.
        if self.lookup.is_none() {
            return Ok(Verdict::Textable);
        }
        if let Some(info) = self.store.number_info(number.clone()).await? {
            self.metrics.with_label_values(&["cache_hit"]).inc();
            return Ok(verdict(&info));
        }
        let Some(lookup) = &self.lookup else {
            return Ok(Verdict::Textable);
        };
        self.metrics.with_label_values(&["cache_miss"]).inc();
        match lookup.ask(number).await {
            Ok(line_type) => {
                let textable = lookup.cfg.textable_types.contains(&line_type);
                self.metrics
                    .with_label_values(&[if textable { "textable" } else { "not_textable" }])
                    .inc();
                let now = now_millis();
                let info = NumberInfo {
                    number: number.clone(),
                    textable,
                    reason: (!textable).then(|| format!("line type is {line_type}")),
                    line_type: Some(line_type),
                    source: "lookup".into(),
                    carrier: None,
                    updated_at: now,
                    expires_at: Some(now + lookup.cfg.cache_ttl.as_millis() as i64),
                };
                self.store.put_number_info(info.clone()).await?;
                Ok(verdict(&info))
            }
            Err(e) => {
                let label = match e {
                    LookupError::Timeout => "timeout",
                    LookupError::Failed(_) => "error",
                };
                self.metrics.with_label_values(&[label]).inc();
                tracing::warn!(number = %number, error = %e, "line-type lookup failed");
                Ok(Verdict::Unknown)
            }
        }
    }
}

fn verdict(info: &NumberInfo) -> Verdict {
    if info.textable {
        Verdict::Textable
    } else {
        Verdict::NotTextable {
            reason: info
                .reason
                .clone()
                .unwrap_or_else(|| "cannot take texts".into()),
            source: info.source.clone(),
        }
    }
}

impl LookupClient {
    async fn ask(&self, number: &PhoneNumber) -> Result<String, LookupError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| LookupError::Failed("lookup closed".into()))?;
        let url = self
            .cfg
            .url
            .replace("{number}", &number.as_str().replace('+', "%2B"));
        let mut req = hyper::Request::get(url).header("accept", "application/json");
        if let Some(t) = &self.cfg.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| LookupError::Failed(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| LookupError::Failed(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| LookupError::Failed(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(LookupError::Failed(format!("lookup answered {status}")));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| LookupError::Failed(format!("lookup answer is not JSON: {e}")))?;
            let field = self
                .cfg
                .line_type_field
                .split('.')
                .try_fold(&v, |v, k| v.get(k))
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    LookupError::Failed(format!(
                        "lookup answer has no string at {:?}",
                        self.cfg.line_type_field
                    ))
                })?;
            Ok(field.to_ascii_lowercase())
        };
        tokio::time::timeout(self.cfg.timeout, work)
            .await
            .map_err(|_| LookupError::Timeout)?
    }
}
