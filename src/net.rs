//! Outbound HTTP clients (webhooks, number lookups): one keep-alive pool per use, https through
//! rustls with the system's CA certificates (Mozilla's roots where the system has none).

use std::{sync::Arc, time::Duration};

use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

pub fn https_client<B>(connect_timeout: Duration) -> HttpsClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "no usable system CA certificates; using webpki roots");
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .expect("ring supports the default protocol versions")
        }
    };
    let https = tls.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}
