//! Test harness: an in-process smsgate on 127.0.0.1:0 with its own temp store, and helpers to
//! talk to it. Every task it starts is stopped by `Daemon::stop` (or aborted on drop).
#![allow(dead_code)]

use std::{net::SocketAddr, path::Path, time::Duration};

use serde_json::Value;
use smsgate::{app, config};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

pub const CLINIC_KEY: &str = "test-key-clinic-0001";
pub const DENTAL_KEY: &str = "test-key-dental-0001";
pub const CLINIC_LINE: &str = "+12125551000";
pub const DENTAL_LINE: &str = "+12125552000";

/// A config for tests: two apps with a line each, one carrier at `carrier_port`.
pub fn config_text(db: &Path, carrier_port: u16, carrier_extra: &str) -> String {
    format!(
        r#"
[store]
path = "{db}"

[[apps]]
id = "clinic"
api_keys = ["{CLINIC_KEY}"]

[[apps]]
id = "dental"
api_keys = ["{DENTAL_KEY}"]

[[carriers]]
id = "sim"
host = "127.0.0.1"
port = {carrier_port}
system_id = "smsgate"
password = "secret"
reconnect_min = "50ms"
reconnect_max = "500ms"
response_timeout = "2s"
{carrier_extra}

[[lines]]
number = "{CLINIC_LINE}"
app = "clinic"
carrier = "sim"
rate = 10000.0
burst = 1000

[[lines]]
number = "{DENTAL_LINE}"
app = "dental"
carrier = "sim"
rate = 10000.0
burst = 1000
"#,
        db = db.display()
    )
}

pub struct Daemon {
    pub http: SocketAddr,
    pub admin: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    pub async fn start(config_text: &str) -> Daemon {
        let cfg = config::parse(config_text).expect("test config is valid");
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, admin_addr) = (http.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(app::run(cfg, app::Listeners { http, admin }, rx));
        Daemon {
            http: http_addr,
            admin: admin_addr,
            shutdown: tx,
            task: Some(task),
        }
    }

    /// Graceful drain; panics if the daemon failed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(40), t)
                .await
                .expect("daemon drains in time")
                .expect("daemon task")
                .expect("daemon ran cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let client = reqwest::Client::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                && r.status() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub async fn send(client: &reqwest::Client, d: &Daemon, key: &str, body: Value) -> (u16, Value) {
    let r = client
        .post(d.url("/v1/messages"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_message(client: &reqwest::Client, d: &Daemon, key: &str, id: &str) -> Value {
    get_json(client, d, key, &format!("/v1/messages/{id}")).await
}

/// GET `path` on the app listener with `key`; the JSON body.
pub async fn get_json(client: &reqwest::Client, d: &Daemon, key: &str, path: &str) -> Value {
    client
        .get(d.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The clinic line's conversation with `number`, newest first.
pub async fn clinic_conversation(client: &reqwest::Client, d: &Daemon, number: &str) -> Value {
    get_json(
        client,
        d,
        CLINIC_KEY,
        &format!("/v1/lines/{CLINIC_LINE}/conversations/{number}/messages"),
    )
    .await
}

/// Polls a message until its status is `want` (or the timeout passes); returns the last view.
pub async fn wait_status(
    client: &reqwest::Client,
    d: &Daemon,
    key: &str,
    id: &str,
    want: &str,
    timeout: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = get_message(client, d, key, id).await;
        if m["status"] == want || tokio::time::Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port with nothing listening (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process (the real `smsgate` binary), killed and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM (a drain), then the exit status; panics if it takes longer than `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "smsgate did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
