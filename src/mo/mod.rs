//! What arrives from carriers as deliver_sm: delivery receipts go to the store (and are
//! acknowledged only once stored); inbound texts (MO) are the next stage of the pipeline.

use std::{collections::HashMap, sync::Arc};

use futures::{FutureExt, future::BoxFuture};
use rusmpp::pdus::DeliverSm;

use crate::{
    config,
    dlr::{self, IdSource},
    domain::now_millis,
    smpp::session::InboundHandler,
    store::{Receipt, ReceiptMatch, Store},
    telemetry::Metrics,
};

/// ESME_RX_T_APPN: "temporary application error", the carrier keeps the PDU and retries.
const STATUS_RETRY_LATER: u32 = 0x64;

pub struct Inbound {
    store: Arc<dyn Store>,
    carriers: HashMap<String, Arc<config::Carrier>>,
    metrics: Arc<Metrics>,
}

impl Inbound {
    pub fn new(
        store: Arc<dyn Store>,
        carriers: &[Arc<config::Carrier>],
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            carriers: carriers.iter().map(|c| (c.id.clone(), c.clone())).collect(),
            metrics,
        }
    }
}

impl InboundHandler for Inbound {
    fn deliver_sm(&self, carrier: Arc<str>, pdu: DeliverSm) -> BoxFuture<'static, u32> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let format = self
            .carriers
            .get(&*carrier)
            .map(|c| c.dlr_id_format)
            .unwrap_or_default();
        async move {
            if !dlr::is_receipt(&pdu) {
                // Inbound texts are not stored yet: refuse them temporarily so the carrier
                // keeps them instead of us acknowledging something we would lose.
                tracing::warn!(carrier = %carrier, "inbound text refused (temporary): MO handling is not enabled");
                return STATUS_RETRY_LATER;
            }
            let Some(parsed) = dlr::parse_receipt(&pdu) else {
                tracing::warn!(carrier = %carrier, "receipt without a message id; acknowledged and dropped");
                metrics.receipts_unmatched.with_label_values(&[&carrier]).inc();
                return 0;
            };
            let receipt = Receipt {
                carrier: carrier.to_string(),
                carrier_message_id: dlr::normalise_id(&parsed.id, format, IdSource::Receipt),
                state: parsed.state,
                stat: parsed.stat,
                err: parsed.err,
                received_at: now_millis(),
            };
            let state = receipt.state;
            match store.record_receipt(receipt).await {
                Ok(m) => {
                    metrics
                        .receipts
                        .with_label_values(&[&carrier, state.as_str()])
                        .inc();
                    if m == ReceiptMatch::Held {
                        metrics.receipts_unmatched.with_label_values(&[&carrier]).inc();
                    }
                    0
                }
                Err(e) => {
                    tracing::error!(carrier = %carrier, error = %e, "cannot store a receipt; asking the carrier to retry");
                    STATUS_RETRY_LATER
                }
            }
        }
        .boxed()
    }
}
