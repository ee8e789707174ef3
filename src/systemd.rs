//! systemd integration without libsystemd: `sd_notify` datagrams (READY, STATUS, STOPPING,
//! WATCHDOG) to `$NOTIFY_SOCKET`. Does nothing when not started by systemd.

use std::{os::unix::net::UnixDatagram, path::PathBuf, time::Duration};

/// Where to send notifications, read once from the environment at start.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
    /// Half of `WATCHDOG_USEC`, when systemd asked for keep-alives.
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// Linux abstract socket (`@name`).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (ignored unless it is us).
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let s = s.to_string_lossy().into_owned();
            match s.strip_prefix('@') {
                Some(name) => Some(Target::Abstract(name.as_bytes().to_vec())),
                None if s.starts_with('/') => Some(Target::Path(PathBuf::from(s))),
                None => None,
            }
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        Self { target, watchdog }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`, if systemd watches us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// Sends one notification (e.g. `READY=1`); errors are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let result = UnixDatagram::unbound().and_then(|sock| match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}
