//! SQLite store: WAL + `synchronous=FULL`; one writer thread owns the write connection and
//! folds every operation waiting in its queue into one transaction (group commit), answering
//! each caller only after the COMMIT (and its fsync) returned. Reads use a separate connection.

use std::{
    cell::Cell,
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Instant,
};

use futures::{FutureExt, future::BoxFuture};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{Notify, mpsc, oneshot};

mod inbound;

use super::*;
use crate::{domain::now_millis, telemetry::Metrics};

/// Versioned schema; index i holds the migration to version i + 1. Never edit a shipped entry:
/// append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    line TEXT NOT NULL,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    client_ref TEXT,
    encoding TEXT NOT NULL,
    segments INTEGER NOT NULL,
    carrier TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX messages_queue ON messages (carrier, next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_sending ON messages (status) WHERE status = 'sending';
CREATE TABLE parts (
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    carrier TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    receipt_stat TEXT,
    receipt_err TEXT,
    sent_at INTEGER NOT NULL,
    done_at INTEGER,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
CREATE INDEX parts_by_carrier_id ON parts (carrier, carrier_message_id);
CREATE TABLE receipts_held (
    carrier TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    stat TEXT NOT NULL,
    err TEXT,
    received_at INTEGER NOT NULL,
    nt_reason TEXT,
    nt_until INTEGER
);
CREATE INDEX receipts_held_by_id ON receipts_held (carrier, carrier_message_id);
CREATE TABLE idempotency (
    app_id TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    app_id TEXT NOT NULL,
    type TEXT NOT NULL,
    conversation TEXT NOT NULL,
    payload TEXT NOT NULL,
    url TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX events_pending ON events (conversation, seq) WHERE state = 'pending';
CREATE INDEX events_dead ON events (app_id, seq) WHERE state = 'dead';
"#,
    r#"
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
ALTER TABLE messages ADD COLUMN exempt_opt_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN high_priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
ALTER TABLE messages ADD COLUMN status_url TEXT;
CREATE INDEX messages_conversation ON messages (line, to_number, created_at);
CREATE TABLE inbound (
    id TEXT PRIMARY KEY,
    app_id TEXT,
    carrier TEXT NOT NULL,
    line TEXT NOT NULL,
    from_number TEXT NOT NULL,
    body TEXT NOT NULL,
    parts INTEGER NOT NULL,
    incomplete INTEGER NOT NULL,
    keyword TEXT,
    after_hours INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    read_at INTEGER
) WITHOUT ROWID;
CREATE INDEX inbound_conversation ON inbound (line, from_number, received_at);
CREATE TABLE mo_dedup (
    carrier TEXT NOT NULL,
    key TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (carrier, key)
) WITHOUT ROWID;
CREATE TABLE mo_partials (
    carrier TEXT NOT NULL,
    line TEXT NOT NULL,
    from_number TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (carrier, line, from_number, ref, seq)
) WITHOUT ROWID;
CREATE TABLE opt_outs (
    line TEXT NOT NULL,
    number TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (line, number)
) WITHOUT ROWID;
CREATE TABLE trigger_sends (
    line TEXT NOT NULL,
    number TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    PRIMARY KEY (line, number)
) WITHOUT ROWID;
CREATE TABLE numbers (
    number TEXT PRIMARY KEY,
    textable INTEGER NOT NULL,
    line_type TEXT,
    reason TEXT,
    source TEXT NOT NULL,
    carrier TEXT,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE TABLE after_hours_replies (
    line TEXT NOT NULL,
    number TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (line, number)
) WITHOUT ROWID;
"#,
    // How many submit_sm a message takes on its carrier when that differs from its segments
    // (one message_payload PDU for a 3-segment text); NULL: one per segment.
    r#"
ALTER TABLE messages ADD COLUMN pdus INTEGER;
"#,
    // Held receipts and idempotency keys are swept by age as they come in (see
    // RECEIPT_HOLD_MS and IDEMPOTENCY_WINDOW_MS): a range of an index, not a table scan.
    r#"
CREATE INDEX receipts_held_by_time ON receipts_held (received_at);
CREATE INDEX idempotency_by_time ON idempotency (created_at);
"#,
];

const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// A held receipt whose part has not turned up within this long never will: its submit was
/// lost and sent again under a new carrier id, or it belongs to another system sending on the
/// same carrier account. Older ones are dropped now and then, so the table stays small.
const RECEIPT_HOLD_MS: i64 = 24 * 3600 * 1000;

pub struct SqliteStore {
    ops: mpsc::Sender<Op>,
    hooks: Arc<RwLock<HashMap<String, WebhookApp>>>,
    events: Arc<Notify>,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// What the checkpoint task has copied of the WAL, for the writer.
    wal: Arc<WalShare>,
}

type Reply<T> = oneshot::Sender<StoreResult<T>>;

enum Op {
    Insert(NewMessage, Option<Idempotency>, Reply<InsertOutcome>),
    Claim(
        String,
        usize,
        Vec<String>,
        Option<Vec<String>>,
        Reply<Vec<Claimed>>,
    ),
    Attempt(Attempt, Reply<()>),
    Receipt(Receipt, Reply<ReceiptMatch>),
    RequeueInFlight(Reply<u64>),
    Enqueue(NewEvent, Reply<()>),
    EventResults(Vec<(i64, EventOutcome)>, Reply<()>),
    Replay(String, Option<EventId>, Reply<u64>),
    Inbound(InboundPart, InboundPlanner, Reply<InboundOutcome>),
    ExpirePartials(Millis, InboundPlanner, Reply<u64>),
    OptOut(String, OptOutChange, Reply<u64>),
    MarkRead(PhoneNumber, PhoneNumber, Reply<u64>),
    Prune(Millis, usize, Reply<u64>),
    PutNumber(NumberInfo, Reply<()>),
    Triggered(NewMessage, std::time::Duration, Reply<TriggerOutcome>),
    /// Commit what came before, then stop.
    Shutdown,
}

/// An operation's result, held until its transaction commits.
enum Done {
    Insert(Reply<InsertOutcome>, StoreResult<InsertOutcome>),
    Claim(Reply<Vec<Claimed>>, StoreResult<Vec<Claimed>>),
    Unit(Reply<()>, StoreResult<()>),
    Receipt(Reply<ReceiptMatch>, StoreResult<ReceiptMatch>),
    Inbound(Reply<InboundOutcome>, StoreResult<InboundOutcome>),
    Triggered(Reply<TriggerOutcome>, StoreResult<TriggerOutcome>),
    Count(Reply<u64>, StoreResult<u64>),
    Nothing,
}

impl Done {
    fn finish(self, commit: &Result<(), String>) {
        fn send<T>(tx: oneshot::Sender<StoreResult<T>>, r: StoreResult<T>, c: &Result<(), String>) {
            let r = match c {
                Ok(()) => r,
                Err(e) => Err(StoreError::Unavailable(e.clone())),
            };
            // The caller may have gone (request timed out); the write stands either way.
            let _ = tx.send(r);
        }
        match self {
            Done::Insert(tx, r) => send(tx, r, commit),
            Done::Claim(tx, r) => send(tx, r, commit),
            Done::Unit(tx, r) => send(tx, r, commit),
            Done::Receipt(tx, r) => send(tx, r, commit),
            Done::Inbound(tx, r) => send(tx, r, commit),
            Done::Triggered(tx, r) => send(tx, r, commit),
            Done::Count(tx, r) => send(tx, r, commit),
            Done::Nothing => {}
        }
    }
}

/// WAL frames (about 4 KiB each) past which the writer finishes the checkpoint itself (see
/// `restart_wal_if_long`): about 32 MiB.
const WAL_RESTART_FRAMES: i32 = 8 * 1024;

thread_local! {
    /// Frames in the WAL after the writer's last commit, from SQLite's WAL hook (the writer's
    /// commits run on the writer thread).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
    /// The frame count seen at the previous batch (a smaller one means the WAL started over).
    static WAL_LAST: Cell<i32> = const { Cell::new(0) };
    /// The frame count at the writer's last checkpoint attempt.
    static WAL_TRIED_AT: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// What the checkpoint task has copied of the WAL, for the writer: the WAL's generation
/// (the writer counts each start-over) and the frames backfilled in it.
#[derive(Default)]
struct WalShare {
    generation: AtomicU32,
    /// `generation << 32 | frames backfilled`, as of the checkpoint task's last checkpoint.
    backfilled: AtomicU64,
}

impl WalShare {
    fn record(&self, generation: u32, backfilled: i64) {
        let done = backfilled.clamp(0, i64::from(u32::MAX)) as u64;
        self.backfilled
            .store(u64::from(generation) << 32 | done, Ordering::Relaxed);
    }

    /// Frames of the current WAL the checkpoint task has copied (0 if it has not yet).
    fn backfilled(&self) -> i32 {
        let packed = self.backfilled.load(Ordering::Relaxed);
        if (packed >> 32) as u32 == self.generation.load(Ordering::Relaxed) {
            (packed as u32).min(i32::MAX as u32) as i32
        } else {
            0
        }
    }
}

/// Between two batches: once the WAL holds more than `limit` frames, checkpoints it on the
/// writer's own connection, so that the next transaction starts the WAL over from its
/// beginning. The checkpoint task's PASSIVE checkpoints copy pages while the writer keeps
/// writing, so they never finish a WAL that is appended to hundreds of times a second: the
/// file only grew, to the TRUNCATE limit, and each TRUNCATE held the writer for 180-340 ms.
/// Here nothing writes meanwhile. It waits until the checkpoint task has copied all but an
/// eighth of `limit` (a checkpoint that had a whole WAL to copy held the writer 5-12 ms),
/// unless the WAL is twice its limit (no checkpoint task, or one that cannot keep up).
/// Returns how long the writer was held when it ran a checkpoint (whether or not the
/// checkpoint got to the end).
fn restart_wal_if_long(
    conn: &Connection,
    share: &WalShare,
    limit: i32,
) -> Option<std::time::Duration> {
    let frames = WAL_FRAMES.get();
    if frames < WAL_LAST.get() {
        share.generation.fetch_add(1, Ordering::Relaxed);
        WAL_TRIED_AT.set(0);
    }
    WAL_LAST.set(frames);
    if frames <= limit {
        return None;
    }
    if frames - share.backfilled() > limit / 8 && frames < 2 * limit {
        return None;
    }
    // A checkpoint that readers kept from finishing is tried again only once the WAL grew.
    if frames < WAL_TRIED_AT.get() + limit / 8 {
        return None;
    }
    WAL_TRIED_AT.set(frames);
    let started = Instant::now();
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    }) {
        Ok((log, done)) if log == done => WAL_TRIED_AT.set(0),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "wal checkpoint in the writer"),
    }
    Some(started.elapsed())
}

/// WAL size past which a checkpoint truncates it (see `spawn_checkpoints_with`).
const WAL_TRUNCATE_AT: u64 = 256 << 20;
/// WAL file size kept when the WAL restarts.
const WAL_KEEP: i64 = 64 << 20;

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    // The writer uses some fifty distinct statements; rusqlite keeps 16 by default, so the
    // least recent ones were parsed again and again.
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // Every operation runs in a savepoint of the batch's transaction; with the default
    // temp_store its sub-journal spills to a temp file past 64 KiB, and those writes were a
    // fifth of the store writer's time under load. In memory it is a few MiB at most.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this smsgate ({}): refusing to run",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating directories and schema as needed) and starts the writer thread.
    pub fn open(path: &Path, batch_max: usize, metrics: Arc<Metrics>) -> StoreResult<Self> {
        Self::open_with_limit(path, batch_max, None, metrics)
    }

    /// Like [`SqliteStore::open`], refusing writes (as a full disk would) once the database
    /// reaches `max_size_mb`.
    pub fn open_with_limit(
        path: &Path,
        batch_max: usize,
        max_size_mb: Option<u64>,
        metrics: Arc<Metrics>,
    ) -> StoreResult<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer_conn = open_connection(path)?;
        migrate(&mut writer_conn)?;
        // WAL checkpoints run on their own connection (see `spawn_checkpoints`), not inside
        // the writer's commits where they add a database fsync to some requests' latency; the
        // writer only finishes one now and then to start the WAL over (`restart_wal_if_long`).
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After the pragma above, which would replace it: counts the WAL's frames.
        writer_conn.wal_hook(Some(note_wal_frames));
        writer_conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS claim_skip (line TEXT PRIMARY KEY) WITHOUT ROWID; \
             CREATE TEMP TABLE IF NOT EXISTS claim_only (line TEXT PRIMARY KEY) WITHOUT ROWID;",
        )?;
        // When the writer restarts the WAL after a complete checkpoint, the file shrinks to this.
        writer_conn.pragma_update(None, "journal_size_limit", WAL_KEEP)?;
        if let Some(mb) = max_size_mb {
            let page: i64 = writer_conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            writer_conn.pragma_update(
                None,
                "max_page_count",
                (mb as i64 * 1024 * 1024 / page).max(1),
            )?;
        }
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 4);
        let batch_max = batch_max.max(1);
        let hooks = Arc::new(RwLock::new(HashMap::new()));
        let events = Arc::new(Notify::new());
        let (h, ev) = (hooks.clone(), events.clone());
        let wal = Arc::new(WalShare::default());
        let w = wal.clone();
        let writer = std::thread::Builder::new()
            .name("smsgate-store".into())
            .spawn(move || writer_loop(writer_conn, rx, batch_max, metrics, h, ev, w))
            .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            ops: tx,
            hooks,
            events,
            reader: Arc::new(Mutex::new(reader)),
            writer: Mutex::new(Some(writer)),
            wal,
        })
    }

    /// Checkpoints the WAL into the database every `every` on a connection of its own, so
    /// the writer never pays for it; a TRUNCATE now and then keeps the WAL file small.
    pub fn spawn_checkpoints(
        &self,
        path: &Path,
        every: std::time::Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> StoreResult<tokio::task::JoinHandle<()>> {
        self.spawn_checkpoints_with(path, every, WAL_TRUNCATE_AT, shutdown)
    }

    /// [`spawn_checkpoints`](Self::spawn_checkpoints) with the WAL size past which a checkpoint
    /// truncates it. PASSIVE checkpoints never wait for the writer, so they cost requests
    /// nothing; a TRUNCATE holds the writer until the whole WAL is copied back (a stall of
    /// hundreds of milliseconds under load), so it runs only when the WAL grew past the limit
    /// (readers kept PASSIVE from finishing). Otherwise the writer restarts the WAL once a
    /// PASSIVE checkpoint completed, and `journal_size_limit` trims the file then.
    pub fn spawn_checkpoints_with(
        &self,
        path: &Path,
        every: std::time::Duration,
        truncate_at: u64,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> StoreResult<tokio::task::JoinHandle<()>> {
        let conn = Arc::new(Mutex::new(open_connection(path)?));
        let wal = wal_path(path);
        let share = self.wal.clone();
        Ok(tokio::spawn(async move {
            let mut pause = every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let (conn, wal, share) = (conn.clone(), wal.clone(), share.clone());
                let r = tokio::task::spawn_blocking(move || {
                    let c = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let generation = share.generation.load(Ordering::Relaxed);
                    let (log, done): (i64, i64) =
                        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((r.get(1)?, r.get(2)?))
                        })?;
                    share.record(generation, done);
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    if size > truncate_at {
                        tracing::debug!(wal_bytes = size, "WAL past its limit: truncating");
                        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                    }
                    Ok::<_, rusqlite::Error>(log)
                })
                .await;
                // Past the writer's restart limit, catch up quickly: the writer waits for
                // this task to have copied nearly all of it.
                pause = match r {
                    Ok(Ok(log)) if log > i64::from(WAL_RESTART_FRAMES) => {
                        every.min(std::time::Duration::from_millis(20))
                    }
                    Ok(Ok(_)) => every,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "wal checkpoint");
                        every
                    }
                    Err(_) => every,
                };
            }
        }))
    }

    /// Apps with webhook secrets, whether each has a `webhook_url` and which status events it
    /// wants: their messages produce events (apps without a URL only for messages with their
    /// own `status_url`).
    pub fn set_webhook_apps(&self, apps: impl IntoIterator<Item = (String, WebhookApp)>) {
        *self.hooks.write().unwrap_or_else(|p| p.into_inner()) = apps.into_iter().collect();
    }

    /// Notified after a commit that put events in the outbox.
    pub fn event_notify(&self) -> Arc<Notify> {
        self.events.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another read panicked; the connection is still fine.
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

/// What a batch's operations need besides the connection.
struct Ctx<'a> {
    /// Apps with a webhook endpoint: only their messages produce events.
    hooks: &'a HashMap<String, WebhookApp>,
    /// Set when the batch put an event in the outbox, to wake the webhook dispatcher.
    emitted: Cell<bool>,
    metrics: &'a Metrics,
}

fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    batch_max: usize,
    m: Arc<Metrics>,
    hooks: Arc<RwLock<HashMap<String, WebhookApp>>>,
    events: Arc<Notify>,
    wal: Arc<WalShare>,
) {
    // The frames already in the WAL (the migrations', a crashed run's) were written before
    // this thread's hook counted anything: copy them back, and count from the WAL as it is.
    let log = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i32>(1))
        .unwrap_or(0)
        .max(0);
    WAL_FRAMES.set(log);
    WAL_LAST.set(log);
    let mut batch = Vec::with_capacity(batch_max);
    let mut done = Vec::with_capacity(batch_max);
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Some(pos) = batch.iter().position(|op| matches!(op, Op::Shutdown)) {
            stopping = true;
            // Ops queued behind the shutdown are dropped: their callers see the store closed.
            batch.truncate(pos);
        }
        let started = Instant::now();
        let size = batch.len();
        // Held for the batch (this thread only); a config reload waits for one batch at most.
        let hooks = hooks.read().unwrap_or_else(|p| p.into_inner());
        let ctx = Ctx {
            hooks: &hooks,
            emitted: Cell::new(false),
            metrics: &m,
        };
        let frames_before = WAL_FRAMES.get();
        let commit = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => {
                for op in batch.drain(..) {
                    done.push(apply(&tx, &ctx, op));
                }
                tx.commit().map_err(|e| e.to_string())
            }
            Err(e) => {
                // Nothing can be written: fail every caller of this batch.
                let msg = e.to_string();
                for op in batch.drain(..) {
                    done.push(fail(op, &msg));
                }
                Err(msg)
            }
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, batch = size, "store commit failed");
            m.store_commit_errors.inc();
        }
        // The WAL hook has counted the commit's frames (from 0 again if it started the WAL over).
        let frames = WAL_FRAMES.get();
        let written = if frames >= frames_before {
            frames - frames_before
        } else {
            frames
        };
        m.store_wal_frames.inc_by(written as u64);
        m.store_commit_batch.observe(size as f64);
        m.store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for d in done.drain(..) {
            d.finish(&commit);
        }
        if commit.is_ok() && ctx.emitted.get() {
            events.notify_one();
        }
        drop(hooks);
        if let Some(held) = restart_wal_if_long(&conn, &wal, WAL_RESTART_FRAMES) {
            m.store_wal_restart_seconds.observe(held.as_secs_f64());
        }
    }
    tracing::debug!("store writer stopped");
}

fn fail(op: Op, msg: &str) -> Done {
    fn e<T>(msg: &str) -> StoreResult<T> {
        Err(StoreError::Unavailable(msg.to_owned()))
    }
    match op {
        Op::Insert(_, _, tx) => Done::Insert(tx, e(msg)),
        Op::Claim(_, _, _, _, tx) => Done::Claim(tx, e(msg)),
        Op::Attempt(_, tx) => Done::Unit(tx, e(msg)),
        Op::Receipt(_, tx) => Done::Receipt(tx, e(msg)),
        Op::RequeueInFlight(tx) => Done::Count(tx, e(msg)),
        Op::Enqueue(_, tx) | Op::EventResults(_, tx) | Op::PutNumber(_, tx) => {
            Done::Unit(tx, e(msg))
        }
        Op::Replay(_, _, tx)
        | Op::ExpirePartials(_, _, tx)
        | Op::OptOut(_, _, tx)
        | Op::MarkRead(_, _, tx)
        | Op::Prune(_, _, tx) => Done::Count(tx, e(msg)),
        Op::Inbound(_, _, tx) => Done::Inbound(tx, e(msg)),
        Op::Triggered(_, _, tx) => Done::Triggered(tx, e(msg)),
        Op::Shutdown => Done::Nothing,
    }
}

/// Runs one operation inside a savepoint so a failing operation never undoes its batch-mates.
fn apply(tx: &Transaction<'_>, ctx: &Ctx<'_>, op: Op) -> Done {
    fn guarded<T>(
        tx: &Transaction<'_>,
        f: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        // Cached statements: parsing these three on every operation showed in profiles.
        tx.prepare_cached("SAVEPOINT op")?.execute([])?;
        match f(tx) {
            Ok(v) => {
                tx.prepare_cached("RELEASE op")?.execute([])?;
                Ok(v)
            }
            Err(e) => {
                tx.prepare_cached("ROLLBACK TO op")?.execute([])?;
                tx.prepare_cached("RELEASE op")?.execute([])?;
                Err(e)
            }
        }
    }
    match op {
        Op::Insert(m, idem, reply) => {
            Done::Insert(reply, guarded(tx, |c| insert(c, &m, idem.as_ref())))
        }
        Op::Claim(carrier, limit, skip, only, reply) => Done::Claim(
            reply,
            guarded(tx, |c| {
                claim(c, ctx, &carrier, limit, &skip, only.as_deref())
            }),
        ),
        Op::Attempt(a, reply) => Done::Unit(reply, guarded(tx, |c| attempt(c, ctx, &a))),
        Op::Receipt(r, reply) => Done::Receipt(reply, guarded(tx, |c| receipt(c, ctx, &r))),
        Op::Shutdown => Done::Nothing,
        Op::Inbound(part, planner, reply) => Done::Inbound(
            reply,
            guarded(tx, |c| inbound::record_inbound(c, ctx, &part, &planner)),
        ),
        Op::ExpirePartials(before, planner, reply) => Done::Count(
            reply,
            guarded(tx, |c| inbound::expire_partials(c, ctx, before, &planner)),
        ),
        Op::OptOut(app, change, reply) => Done::Count(
            reply,
            guarded(tx, |c| {
                inbound::apply_opt_out(c, ctx, &app, &change, now_millis())
            }),
        ),
        Op::Triggered(m, window, reply) => Done::Triggered(
            reply,
            guarded(tx, |c| {
                let last: Option<(String, i64)> = c
                    .prepare_cached(
                        "SELECT message_id, sent_at FROM trigger_sends WHERE line = ?1 AND number = ?2",
                    )?
                    .query_row(params![m.line.as_str(), m.to.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((id, at)) = last
                    && m.created_at - at < window.as_millis() as i64
                {
                    return Ok(TriggerOutcome::Duplicate(MessageId::from_store(id)));
                }
                let outcome = insert(c, &m, None)?;
                if outcome != InsertOutcome::Inserted {
                    return Ok(TriggerOutcome::Refused(outcome));
                }
                c.prepare_cached(
                    "INSERT OR REPLACE INTO trigger_sends (line, number, message_id, sent_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![m.line.as_str(), m.to.as_str(), m.id.as_str(), m.created_at])?;
                Ok(TriggerOutcome::Inserted)
            }),
        ),
        Op::PutNumber(info, reply) => Done::Unit(
            reply,
            guarded(tx, |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO numbers (number, textable, line_type, reason, source, carrier, updated_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    info.number.as_str(),
                    info.textable,
                    info.line_type,
                    info.reason,
                    info.source,
                    info.carrier,
                    info.updated_at,
                    info.expires_at
                ])?;
                Ok(())
            }),
        ),
        Op::Prune(before, batch, reply) => {
            Done::Count(reply, guarded(tx, |c| prune(c, before, batch)))
        }
        Op::MarkRead(line, number, reply) => Done::Count(
            reply,
            guarded(tx, |c| {
                Ok(c.prepare_cached(
                    "UPDATE inbound SET read_at = ?3 WHERE line = ?1 AND from_number = ?2 AND read_at IS NULL",
                )?
                .execute(params![line.as_str(), number.as_str(), now_millis()])? as u64)
            }),
        ),
        Op::Enqueue(ev, reply) => Done::Unit(
            reply,
            guarded(tx, |c| {
                ctx.emitted.set(true);
                insert_event(c, &ev)
            }),
        ),
        Op::EventResults(outcomes, reply) => Done::Unit(
            reply,
            guarded(tx, |c| {
                outcomes
                    .iter()
                    .try_for_each(|(seq, outcome)| event_result(c, *seq, outcome))
            }),
        ),
        Op::Replay(app, id, reply) => Done::Count(
            reply,
            guarded(tx, |c| {
                ctx.emitted.set(true);
                replay(c, &app, id.as_ref())
            }),
        ),
        Op::RequeueInFlight(reply) => Done::Count(
            reply,
            guarded(tx, |c| {
                Ok(c.prepare_cached(
                    "UPDATE messages SET status = 'queued', updated_at = ?1 WHERE status = 'sending'",
                )?
                .execute(params![now_millis()])? as u64)
            }),
        ),
    }
}

fn insert(
    c: &Connection,
    m: &NewMessage,
    idem: Option<&Idempotency>,
) -> StoreResult<InsertOutcome> {
    if let Some(idem) = idem {
        let found: Option<(String, String, i64)> = c
            .prepare_cached(
                "SELECT message_id, fingerprint, created_at FROM idempotency WHERE app_id = ?1 AND key = ?2",
            )?
            .query_row(params![m.app_id, idem.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        match found {
            Some((id, fp, at)) if m.created_at - at < IDEMPOTENCY_WINDOW_MS => {
                return Ok(InsertOutcome::Replayed {
                    id: MessageId::from_store(id),
                    same_request: fp == idem.fingerprint,
                });
            }
            Some(_) => {
                c.prepare_cached("DELETE FROM idempotency WHERE app_id = ?1 AND key = ?2")?
                    .execute(params![m.app_id, idem.key])?;
            }
            None => {}
        }
    }
    if !m.exempt_opt_out
        && c.prepare_cached("SELECT 1 FROM opt_outs WHERE line = ?1 AND number = ?2")?
            .exists(params![m.line.as_str(), m.to.as_str()])?
    {
        return Ok(InsertOutcome::OptedOut);
    }
    let refused: Option<(Option<String>, String)> = c
        .prepare_cached(
            "SELECT reason, source FROM numbers WHERE number = ?1 AND textable = 0 \
             AND (expires_at IS NULL OR expires_at > ?2)",
        )?
        .query_row(params![m.to.as_str(), m.created_at], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((reason, source)) = refused {
        return Ok(InsertOutcome::NotTextable {
            reason: reason.unwrap_or_else(|| "cannot take texts".into()),
            source,
        });
    }
    if let Some(idem) = idem {
        c.prepare_cached(
            "INSERT INTO idempotency (app_id, key, message_id, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![m.app_id, idem.key, m.id.as_str(), idem.fingerprint, m.created_at])?;
        // Keys past their window answer nothing; a store without retention would keep them all.
        sweep_now_and_then(
            c,
            "DELETE FROM idempotency WHERE created_at < ?1",
            m.created_at,
            IDEMPOTENCY_WINDOW_MS,
        )?;
    }
    c.prepare_cached(
        "INSERT INTO messages (id, app_id, line, to_number, body, client_ref, encoding, segments, carrier, \
         status, next_attempt_at, created_at, updated_at, kind, exempt_opt_out, high_priority, expires_at, \
         status_url) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?13, ?10, ?10, ?11, ?12, ?14, ?15, ?16)",
    )?
    .execute(params![
        m.id.as_str(),
        m.app_id,
        m.line.as_str(),
        m.to.as_str(),
        m.body,
        m.client_ref,
        m.encoding,
        m.segments,
        m.carrier,
        m.created_at,
        m.kind.as_str(),
        m.exempt_opt_out,
        m.send_at.unwrap_or(m.created_at).max(m.created_at),
        m.high_priority,
        m.expires_at,
        m.status_url
    ])?;
    Ok(InsertOutcome::Inserted)
}

fn claim(
    c: &Connection,
    ctx: &Ctx<'_>,
    carrier: &str,
    limit: usize,
    skip_lines: &[String],
    only_lines: Option<&[String]>,
) -> StoreResult<Vec<Claimed>> {
    let now = now_millis();
    // Lines to skip go into a temp table (made when the writer opened the store) so the
    // statement stays cached whatever their number. Cached statements: an execute_batch here
    // parsed four statements again on every claim.
    c.prepare_cached("DELETE FROM claim_skip")?.execute([])?;
    c.prepare_cached("DELETE FROM claim_only")?.execute([])?;
    if let Some(only) = only_lines {
        let mut ins = c.prepare_cached("INSERT OR IGNORE INTO claim_only (line) VALUES (?1)")?;
        for l in only {
            ins.execute(params![l])?;
        }
    }
    if !skip_lines.is_empty() {
        let mut ins = c.prepare_cached("INSERT OR IGNORE INTO claim_skip (line) VALUES (?1)")?;
        for l in skip_lines {
            ins.execute(params![l])?;
        }
    }
    let mut stmt = c.prepare_cached(
        "UPDATE messages SET status = 'sending', updated_at = ?1 WHERE id IN \
         (SELECT id FROM messages WHERE carrier = ?2 AND status = 'queued' AND next_attempt_at <= ?1 \
          AND line NOT IN (SELECT line FROM claim_skip) \
          AND (?4 = 0 OR line IN (SELECT line FROM claim_only)) \
          ORDER BY next_attempt_at LIMIT ?3) \
         RETURNING id, line, to_number, body, segments, attempts, exempt_opt_out, high_priority, expires_at",
    )?;
    let rows = stmt
        .query_map(
            params![now, carrier, limit as i64, only_lines.is_some()],
            |r| {
                Ok((
                    Claimed {
                        id: MessageId::from_store(r.get(0)?),
                        line: PhoneNumber::from_store(r.get(1)?),
                        to: PhoneNumber::from_store(r.get(2)?),
                        body: r.get(3)?,
                        segments: r.get(4)?,
                        attempts: r.get(5)?,
                        sent_parts: Vec::new(),
                        high_priority: r.get(7)?,
                    },
                    r.get::<_, bool>(6)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut opted_out =
        c.prepare_cached("SELECT 1 FROM opt_outs WHERE line = ?1 AND number = ?2")?;
    for (m, exempt, expires_at) in rows {
        if expires_at.is_some_and(|at| at <= now) {
            c.prepare_cached(
                "UPDATE messages SET status = 'expired', error_code = 'expired', \
                 error_message = 'the validity period ended before the message could be sent', \
                 updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![m.id.as_str(), now])?;
            emit_status(c, ctx, &m.id, now)?;
            continue;
        }
        // The last word on opt-outs: whatever was accepted before a STOP is never sent after it.
        if !exempt && opted_out.exists(params![m.line.as_str(), m.to.as_str()])? {
            c.prepare_cached(
                "UPDATE messages SET status = 'failed', error_code = 'opted_out', \
                 error_message = 'the recipient opted out of this line before it was sent', \
                 updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![m.id.as_str(), now])?;
            emit_status(c, ctx, &m.id, now)?;
            continue;
        }
        claimed.push(m);
    }
    // RETURNING order is unspecified; keep the queue's order.
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    for m in &claimed {
        emit_status(c, ctx, &m.id, now)?;
    }
    let mut parts = c.prepare_cached("SELECT seq FROM parts WHERE message_id = ?1")?;
    for m in claimed.iter_mut().filter(|m| m.attempts > 0) {
        m.sent_parts = parts
            .query_map(params![m.id.as_str()], |r| r.get(0))?
            .collect::<Result<Vec<u32>, _>>()?;
    }
    Ok(claimed)
}

fn attempt(c: &Connection, ctx: &Ctx<'_>, a: &Attempt) -> StoreResult<()> {
    let now = now_millis();
    let mut retry_delay: Option<std::time::Duration> = None;
    let mut permanent: Option<(Option<u32>, &str, Option<&NotTextable>)> = None;
    for (seq, outcome) in &a.parts {
        match outcome {
            PartOutcome::Accepted { carrier_message_id } => {
                c.prepare_cached(
                    "INSERT OR IGNORE INTO parts (message_id, seq, carrier, carrier_message_id, status, sent_at) \
                     VALUES (?1, ?2, ?3, ?4, 'sent', ?5)",
                )?
                .execute(params![a.id.as_str(), seq, a.carrier, carrier_message_id, now])?;
                apply_held_receipts(c, &a.id, *seq, &a.carrier, carrier_message_id)?;
            }
            PartOutcome::Retry { delay, .. } => {
                retry_delay = Some(retry_delay.map_or(*delay, |d| d.max(*delay)));
            }
            PartOutcome::Lost => {
                retry_delay.get_or_insert(std::time::Duration::ZERO);
            }
            PartOutcome::Permanent {
                status,
                reason,
                not_textable,
            } => permanent = Some((*status, reason, not_textable.as_ref())),
        }
    }
    let status: Option<String> = c
        .prepare_cached("SELECT status FROM messages WHERE id = ?1")?
        .query_row(params![a.id.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(pdus) = a.pdus {
        c.prepare_cached(
            "UPDATE messages SET pdus = ?2 WHERE id = ?1 AND pdus IS NOT ?2 AND segments != ?2",
        )?
        .execute(params![a.id.as_str(), pdus])?;
    }
    if status.as_deref() != Some("sending") {
        // Already final (e.g. a receipt beat us) or unknown: nothing to move.
        return Ok(());
    }
    if let Some((code, reason, not_textable)) = permanent {
        let (error_code, error_message) = match (not_textable, code) {
            (Some(nt), code) => {
                mark_not_textable(c, &a.id, &a.carrier, nt, now)?;
                (
                    "not_textable".to_owned(),
                    format!(
                        "the number cannot take texts: {} (command_status 0x{:08X})",
                        nt.reason,
                        code.unwrap_or_default()
                    ),
                )
            }
            (None, Some(code)) => (
                reason.to_owned(),
                format!("carrier refused the message: {reason} (command_status 0x{code:08X})"),
            ),
            // Nothing was submitted: the text does not fit this carrier.
            (None, None) => (
                reason.to_owned(),
                "the text cannot be sent on this carrier: it does not fit the carrier's encodings and part limit".to_owned(),
            ),
        };
        c.prepare_cached(
            "UPDATE messages SET status = 'failed', error_code = ?2, error_message = ?3, \
             attempts = attempts + 1, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![a.id.as_str(), error_code, error_message, now])?;
        emit_status(c, ctx, &a.id, now)?;
    } else if let Some(delay) = retry_delay {
        c.prepare_cached(
            "UPDATE messages SET status = 'queued', attempts = attempts + 1, next_attempt_at = ?2, \
             updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![a.id.as_str(), now + delay.as_millis() as i64, now])?;
    } else {
        c.prepare_cached("UPDATE messages SET attempts = attempts + 1 WHERE id = ?1")?
            .execute(params![a.id.as_str()])?;
        settle(c, ctx, &a.id, now)?;
    }
    Ok(())
}

/// Moves a message whose parts have all been accepted to `sent`, `delivered` or
/// `undelivered` from its parts' receipts.
fn settle(c: &Connection, ctx: &Ctx<'_>, id: &MessageId, now: Millis) -> StoreResult<MessageState> {
    let (status, segments): (String, u32) = c
        .prepare_cached("SELECT status, coalesce(pdus, segments) FROM messages WHERE id = ?1")?
        .query_row(params![id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let current = MessageState::parse(&status).unwrap_or(MessageState::Sending);
    if current.is_final() || current == MessageState::Queued {
        return Ok(current);
    }
    let (parts, delivered, failed, err): (u32, u32, u32, Option<String>) = c
        .prepare_cached(
            "SELECT count(*), sum(status = 'delivered'), sum(status IN ('undelivered', 'expired')), \
             max(CASE WHEN status IN ('undelivered', 'expired') THEN receipt_stat || ':' || coalesce(receipt_err, '') END) \
             FROM parts WHERE message_id = ?1",
        )?
        .query_row(params![id.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<u32>>(1)?.unwrap_or(0),
                r.get::<_, Option<u32>>(2)?.unwrap_or(0),
                r.get(3)?,
            ))
        })?;
    let next = if failed > 0 {
        MessageState::Undelivered
    } else if parts >= segments && delivered >= segments {
        MessageState::Delivered
    } else if parts >= segments {
        MessageState::Sent
    } else {
        current
    };
    if next != current {
        // Every part was accepted and its receipt came with (or before) the last response:
        // the message was sent, and apps are told so before they hear the final state.
        if current == MessageState::Sending && parts >= segments && next.is_final() {
            c.prepare_cached("UPDATE messages SET status = 'sent', updated_at = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), now])?;
            emit_status(c, ctx, id, now)?;
        }
        let (code, message) = match (next, err) {
            (MessageState::Undelivered, Some(e)) => {
                let (stat, code) = e.split_once(':').unwrap_or((&e, ""));
                (
                    Some(stat.to_owned()),
                    Some(format!("receipt says {stat}, error {code}")),
                )
            }
            _ => (None, None),
        };
        c.prepare_cached(
            "UPDATE messages SET status = ?2, error_code = coalesce(error_code, ?3), \
             error_message = coalesce(error_message, ?4), updated_at = ?5 WHERE id = ?1",
        )?
        .execute(params![id.as_str(), next.as_str(), code, message, now])?;
        emit_status(c, ctx, id, now)?;
    }
    Ok(next)
}

fn part_status(state: ReceiptState) -> &'static str {
    match state {
        ReceiptState::Delivered => "delivered",
        ReceiptState::Expired => "expired",
        ReceiptState::Enroute => "sent",
        ReceiptState::Undelivered
        | ReceiptState::Rejected
        | ReceiptState::Deleted
        | ReceiptState::Unknown => "undelivered",
    }
}

/// Applies a receipt to its part; `None` when no part carries that id.
fn apply_receipt(
    c: &Connection,
    ctx: &Ctx<'_>,
    r: &Receipt,
) -> StoreResult<Option<(MessageId, MessageState)>> {
    let found: Option<(String, u32)> = c
        .prepare_cached(
            "SELECT message_id, seq FROM parts WHERE carrier = ?1 AND carrier_message_id = ?2 LIMIT 1",
        )?
        .query_row(params![r.carrier, r.carrier_message_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((id, seq)) = found else {
        return Ok(None);
    };
    let id = MessageId::from_store(id);
    receipt_to_part(c, &id, seq, r)?;
    let state = settle(c, ctx, &id, r.received_at)?;
    Ok(Some((id, state)))
}

/// Writes a receipt's verdict on one part (and a "cannot take texts" mark if it carries one).
fn receipt_to_part(c: &Connection, id: &MessageId, seq: u32, r: &Receipt) -> StoreResult<()> {
    let done_at = (r.state != ReceiptState::Enroute).then_some(r.received_at);
    c.prepare_cached(
        "UPDATE parts SET status = ?3, receipt_stat = ?4, receipt_err = ?5, done_at = ?6 \
         WHERE message_id = ?1 AND seq = ?2",
    )?
    .execute(params![
        id.as_str(),
        seq,
        part_status(r.state),
        r.stat,
        r.err,
        done_at
    ])?;
    if let Some(nt) = &r.not_textable {
        mark_not_textable(c, id, &r.carrier, nt, r.received_at)?;
        c.prepare_cached(
            "UPDATE messages SET error_code = 'not_textable', error_message = ?2 WHERE id = ?1",
        )?
        .execute(params![
            id.as_str(),
            format!("the number cannot take texts: {}", nt.reason)
        ])?;
    }
    Ok(())
}

fn receipt(c: &Connection, ctx: &Ctx<'_>, r: &Receipt) -> StoreResult<ReceiptMatch> {
    match apply_receipt(c, ctx, r)? {
        Some((id, state)) => Ok(ReceiptMatch::Matched { id, state }),
        None => {
            c.prepare_cached(
                "INSERT INTO receipts_held (carrier, carrier_message_id, state, stat, err, received_at, \
                 nt_reason, nt_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.carrier,
                r.carrier_message_id,
                r.state.as_str(),
                r.stat,
                r.err,
                r.received_at,
                r.not_textable.as_ref().map(|n| &n.reason),
                r.not_textable.as_ref().map(|n| n.until)
            ])?;
            sweep_now_and_then(
                c,
                "DELETE FROM receipts_held WHERE received_at < ?1",
                r.received_at,
                RECEIPT_HOLD_MS,
            )?;
            Ok(ReceiptMatch::Held)
        }
    }
}

/// A receipt that arrived before its `submit_sm_resp` is applied as soon as the part exists.
fn apply_held_receipts(
    c: &Connection,
    id: &MessageId,
    seq: u32,
    carrier: &str,
    carrier_message_id: &str,
) -> StoreResult<()> {
    let held: Vec<Receipt> = c
        .prepare_cached(
            "SELECT state, stat, err, received_at, nt_reason, nt_until FROM receipts_held \
             WHERE carrier = ?1 AND carrier_message_id = ?2 ORDER BY received_at",
        )?
        .query_map(params![carrier, carrier_message_id], |r| {
            let nt_reason: Option<String> = r.get(4)?;
            let nt_until: Option<Millis> = r.get(5)?;
            Ok(Receipt {
                carrier: carrier.to_owned(),
                carrier_message_id: carrier_message_id.to_owned(),
                state: ReceiptState::parse(&r.get::<_, String>(0)?)
                    .unwrap_or(ReceiptState::Unknown),
                stat: r.get(1)?,
                err: r.get(2)?,
                received_at: r.get(3)?,
                not_textable: nt_reason
                    .zip(nt_until)
                    .map(|(reason, until)| NotTextable { reason, until }),
            })
        })?
        .collect::<Result<_, _>>()?;
    if held.is_empty() {
        return Ok(());
    }
    // The part row was just written; the message settles once all its parts are in.
    for r in &held {
        receipt_to_part(c, id, seq, r)?;
    }
    c.prepare_cached("DELETE FROM receipts_held WHERE carrier = ?1 AND carrier_message_id = ?2")?
        .execute(params![carrier, carrier_message_id])?;
    Ok(())
}

/// Keeps a table that is only ever looked up within a time window small: about one write in
/// 64 (by its millisecond `at`) runs `delete` (one `?1` parameter, a time bound) for rows
/// older than `at - window`.
pub(super) fn sweep_now_and_then(
    c: &Connection,
    delete: &str,
    at: Millis,
    window: Millis,
) -> StoreResult<()> {
    if at % 64 == 0 {
        c.prepare_cached(delete)?.execute(params![at - window])?;
    }
    Ok(())
}

fn prune(c: &Connection, before: Millis, batch: usize) -> StoreResult<u64> {
    // Bodies first: patients' words go even if a later step of this pass fails.
    c.prepare_cached(
        "UPDATE messages SET body = '' WHERE id IN (SELECT id FROM messages WHERE created_at < ?1 \
         AND status NOT IN ('queued', 'sending') AND body != '' LIMIT ?2)",
    )?
    .execute(params![before, batch as i64])?;
    c.prepare_cached(
        "UPDATE inbound SET body = '' WHERE id IN (SELECT id FROM inbound WHERE received_at < ?1 \
         AND body != '' LIMIT ?2)",
    )?
    .execute(params![before, batch as i64])?;
    let old: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM messages WHERE created_at < ?1 AND status NOT IN ('queued', 'sending') \
             AND body = '' LIMIT ?2",
        )?
        .query_map(params![before, batch as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &old {
        c.prepare_cached("DELETE FROM parts WHERE message_id = ?1")?
            .execute(params![id])?;
        c.prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute(params![id])?;
    }
    let inbound = c
        .prepare_cached(
            "DELETE FROM inbound WHERE id IN (SELECT id FROM inbound WHERE received_at < ?1 \
             AND body = '' LIMIT ?2)",
        )?
        .execute(params![before, batch as i64])?;
    c.prepare_cached(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE state = 'delivered' \
         AND created_at < ?1 LIMIT ?2)",
    )?
    .execute(params![before, batch as i64])?;
    c.prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")?
        .execute(params![before.min(now_millis() - IDEMPOTENCY_WINDOW_MS)])?;
    Ok((old.len() + inbound) as u64)
}

/// Remembers that the recipient of message `id` cannot take texts.
fn mark_not_textable(
    c: &Connection,
    id: &MessageId,
    carrier: &str,
    nt: &NotTextable,
    now: Millis,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO numbers (number, textable, line_type, reason, source, carrier, updated_at, expires_at) \
         SELECT to_number, 0, NULL, ?2, 'carrier', ?3, ?4, ?5 FROM messages WHERE id = ?1",
    )?
    .execute(params![id.as_str(), nt.reason, carrier, now, nt.until])?;
    Ok(())
}

/// Puts a `message.status` event for the message's current state in the outbox, if its app
/// has a webhook endpoint. Runs in the same transaction as the state change.
fn emit_status(c: &Connection, ctx: &Ctx<'_>, id: &MessageId, now: Millis) -> StoreResult<()> {
    if ctx.hooks.is_empty() {
        return Ok(());
    }
    let Some((mut m, url)) = read_message_row(c, id)? else {
        return Ok(());
    };
    let wanted = match ctx.hooks.get(&m.app_id) {
        Some(app) => (app.has_url || url.is_some()) && app.status_events.contains(m.state),
        None => false,
    };
    if !wanted {
        return Ok(());
    }
    // Parts only when the event goes somewhere.
    m.parts = read_parts(c, id)?;
    let event = OutEvent {
        app_id: &m.app_id,
        kind: "message.status",
        line: &m.line,
        number: &m.to,
        url,
    };
    emit(c, ctx, event, &super::view::message_view(&m), now)
}

/// Where an event goes.
struct OutEvent<'a> {
    app_id: &'a str,
    kind: &'a str,
    line: &'a PhoneNumber,
    number: &'a PhoneNumber,
    /// A message's own `status_url`; `None`: the app's endpoint.
    url: Option<String>,
}

/// Puts an event in the outbox if `app_id` has a webhook endpoint. Events of one
/// conversation (line + number) are delivered in the order they are written here.
#[allow(clippy::too_many_arguments)]
fn emit_event(
    c: &Connection,
    ctx: &Ctx<'_>,
    app_id: &str,
    kind: &str,
    line: &PhoneNumber,
    number: &PhoneNumber,
    data: serde_json::Value,
    now: Millis,
) -> StoreResult<()> {
    let event = OutEvent {
        app_id,
        kind,
        line,
        number,
        url: None,
    };
    emit(c, ctx, event, &data, now)
}

/// The webhook body: `{"created_at", "data", "id", "type"}` (the key order a
/// `serde_json::Value` prints).
#[derive(serde::Serialize)]
struct Envelope<'a, T: serde::Serialize> {
    created_at: String,
    data: &'a T,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn emit(
    c: &Connection,
    ctx: &Ctx<'_>,
    e: OutEvent<'_>,
    data: &impl serde::Serialize,
    now: Millis,
) -> StoreResult<()> {
    let (app_id, kind, line, number) = (e.app_id, e.kind, e.line, e.number);
    match ctx.hooks.get(app_id) {
        Some(app) if app.has_url || e.url.is_some() => {}
        _ => return Ok(()),
    }
    let event_id = EventId::generate();
    let payload = serde_json::to_string(&Envelope {
        created_at: crate::domain::rfc3339(now),
        data,
        id: event_id.as_str(),
        kind,
    })
    .map_err(|e| StoreError::Internal(format!("cannot render an event: {e}")))?;
    ctx.emitted.set(true);
    insert_event(
        c,
        &NewEvent {
            id: event_id,
            app_id: app_id.to_owned(),
            kind: kind.to_owned(),
            conversation: format!("{}:{}", line.as_str(), number.as_str()),
            payload,
            url: e.url,
            created_at: now,
        },
    )
}

pub(crate) fn insert_event(c: &Connection, ev: &NewEvent) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO events (id, app_id, type, conversation, payload, url, next_attempt_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        ev.id.as_str(),
        ev.app_id,
        ev.kind,
        ev.conversation,
        ev.payload,
        ev.url,
        ev.created_at
    ])?;
    Ok(())
}

fn event_result(c: &Connection, seq: i64, outcome: &EventOutcome) -> StoreResult<()> {
    let now = now_millis();
    match outcome {
        EventOutcome::Delivered => c
            .prepare_cached(
                "UPDATE events SET state = 'delivered', attempts = attempts + 1, delivered_at = ?2, \
                 last_error = NULL WHERE seq = ?1",
            )?
            .execute(params![seq, now])?,
        EventOutcome::Retry {
            next_attempt_at,
            error,
        } => c
            .prepare_cached(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 \
                 WHERE seq = ?1 AND state = 'pending'",
            )?
            .execute(params![seq, next_attempt_at, error])?,
        EventOutcome::Dead { error } => c
            .prepare_cached(
                "UPDATE events SET state = 'dead', attempts = attempts + 1, last_error = ?2 \
                 WHERE seq = ?1 AND state = 'pending'",
            )?
            .execute(params![seq, error])?,
    };
    Ok(())
}

fn replay(c: &Connection, app_id: &str, id: Option<&EventId>) -> StoreResult<u64> {
    let now = now_millis();
    let n = match id {
        Some(id) => c
            .prepare_cached(
                "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?3 \
                 WHERE app_id = ?1 AND id = ?2 AND state = 'dead'",
            )?
            .execute(params![app_id, id.as_str(), now])?,
        None => c
            .prepare_cached(
                "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?2 \
                 WHERE app_id = ?1 AND state = 'dead'",
            )?
            .execute(params![app_id, now])?,
    };
    Ok(n as u64)
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        seq: r.get(0)?,
        id: EventId::from_store(r.get(1)?),
        app_id: r.get(2)?,
        kind: r.get(3)?,
        conversation: r.get(4)?,
        payload: r.get(5)?,
        url: r.get(6)?,
        attempts: r.get(7)?,
        created_at: r.get(8)?,
        last_error: r.get(9)?,
    })
}

/// The oldest pending event of each conversation (read from `events_pending` alone).
const PENDING_HEADS: &str =
    "SELECT min(seq) FROM events WHERE state = 'pending' GROUP BY conversation";

const EVENT_COLUMNS: &str =
    "seq, id, app_id, type, conversation, payload, url, attempts, created_at, last_error";

fn read_message(
    c: &Connection,
    app_id: &str,
    id: &MessageId,
) -> StoreResult<Option<MessageRecord>> {
    Ok(read_message_by_id(c, id)?.filter(|m| m.app_id == app_id))
}

fn read_message_by_id(c: &Connection, id: &MessageId) -> StoreResult<Option<MessageRecord>> {
    let Some((mut msg, _)) = read_message_row(c, id)? else {
        return Ok(None);
    };
    msg.parts = read_parts(c, id)?;
    Ok(Some(msg))
}

/// The message row without its parts, and its `status_url`.
fn read_message_row(
    c: &Connection,
    id: &MessageId,
) -> StoreResult<Option<(MessageRecord, Option<String>)>> {
    Ok(c.prepare_cached(
        "SELECT app_id, line, to_number, client_ref, encoding, segments, status, error_code, \
             error_message, carrier, attempts, created_at, updated_at, status_url \
             FROM messages WHERE id = ?1",
    )?
    .query_row(params![id.as_str()], |r| {
        let m = MessageRecord {
            id: id.clone(),
            app_id: r.get(0)?,
            line: PhoneNumber::from_store(r.get(1)?),
            to: PhoneNumber::from_store(r.get(2)?),
            client_ref: r.get(3)?,
            encoding: r.get(4)?,
            segments: r.get(5)?,
            state: MessageState::parse(&r.get::<_, String>(6)?).unwrap_or(MessageState::Queued),
            error_code: r.get(7)?,
            error_message: r.get(8)?,
            carrier: r.get(9)?,
            attempts: r.get(10)?,
            created_at: r.get(11)?,
            updated_at: r.get(12)?,
            parts: Vec::new(),
        };
        Ok((m, r.get(13)?))
    })
    .optional()?)
}

fn read_parts(c: &Connection, id: &MessageId) -> StoreResult<Vec<PartRecord>> {
    Ok(c
        .prepare_cached(
            "SELECT seq, carrier, carrier_message_id, status, receipt_stat, receipt_err, sent_at, done_at \
             FROM parts WHERE message_id = ?1 ORDER BY seq",
        )?
        .query_map(params![id.as_str()], |r| {
            Ok(PartRecord {
                seq: r.get(0)?,
                carrier: r.get(1)?,
                carrier_message_id: r.get(2)?,
                state: MessageState::parse(&r.get::<_, String>(3)?).unwrap_or(MessageState::Sent),
                receipt_stat: r.get(4)?,
                receipt_err: r.get(5)?,
                sent_at: r.get(6)?,
                done_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

impl Store for SqliteStore {
    fn insert_message(
        &self,
        msg: NewMessage,
        idem: Option<Idempotency>,
    ) -> BoxFuture<'_, StoreResult<InsertOutcome>> {
        self.call(|tx| Op::Insert(msg, idem, tx)).boxed()
    }

    fn get_message(
        &self,
        app_id: String,
        id: MessageId,
    ) -> BoxFuture<'_, StoreResult<Option<MessageRecord>>> {
        self.read(move |c| read_message(c, &app_id, &id)).boxed()
    }

    fn claim_queued(
        &self,
        carrier: String,
        limit: usize,
        skip_lines: Vec<String>,
        only_lines: Option<Vec<String>>,
    ) -> BoxFuture<'_, StoreResult<Vec<Claimed>>> {
        self.call(move |tx| Op::Claim(carrier, limit, skip_lines, only_lines, tx))
            .boxed()
    }

    fn record_attempt(&self, attempt: Attempt) -> BoxFuture<'_, StoreResult<()>> {
        self.call(|tx| Op::Attempt(attempt, tx)).boxed()
    }

    fn record_receipt(&self, receipt: Receipt) -> BoxFuture<'_, StoreResult<ReceiptMatch>> {
        self.call(|tx| Op::Receipt(receipt, tx)).boxed()
    }

    fn requeue_in_flight(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(Op::RequeueInFlight).boxed()
    }

    fn queue_depth_by_line(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT line, count(*) FROM messages WHERE status IN ('queued', 'sending') GROUP BY line",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .boxed()
    }

    fn queue_depth(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')",
            )?
            .query_row([], |r| r.get::<_, i64>(0))? as u64)
        })
        .boxed()
    }

    fn record_inbound(
        &self,
        part: InboundPart,
        planner: InboundPlanner,
    ) -> BoxFuture<'_, StoreResult<InboundOutcome>> {
        self.call(|tx| Op::Inbound(part, planner, tx)).boxed()
    }

    fn expire_partials(
        &self,
        before: Millis,
        planner: InboundPlanner,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(move |tx| Op::ExpirePartials(before, planner, tx))
            .boxed()
    }

    fn change_opt_out(
        &self,
        app_id: String,
        change: OptOutChange,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(|tx| Op::OptOut(app_id, change, tx)).boxed()
    }

    fn opt_out(
        &self,
        line: PhoneNumber,
        number: PhoneNumber,
    ) -> BoxFuture<'_, StoreResult<Option<OptOut>>> {
        self.read(move |c| inbound::read_opt_out(c, &line, &number))
            .boxed()
    }

    fn opt_outs(
        &self,
        line: PhoneNumber,
        after: String,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OptOut>>> {
        self.read(move |c| inbound::list_opt_outs(c, &line, &after, limit))
            .boxed()
    }

    fn conversations(
        &self,
        line: PhoneNumber,
        before: Millis,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<Conversation>>> {
        self.read(move |c| inbound::conversations(c, &line, before, limit))
            .boxed()
    }

    fn conversation_messages(
        &self,
        line: PhoneNumber,
        number: PhoneNumber,
        after: Millis,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<ConversationMessage>>> {
        self.read(move |c| inbound::conversation_page(c, &line, &number, after, limit))
            .boxed()
    }

    fn mark_read(&self, line: PhoneNumber, number: PhoneNumber) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(move |tx| Op::MarkRead(line, number, tx)).boxed()
    }

    fn insert_triggered(
        &self,
        msg: NewMessage,
        window: std::time::Duration,
    ) -> BoxFuture<'_, StoreResult<TriggerOutcome>> {
        self.call(move |tx| Op::Triggered(msg, window, tx)).boxed()
    }

    fn number_info(&self, number: PhoneNumber) -> BoxFuture<'_, StoreResult<Option<NumberInfo>>> {
        self.read(move |c| {
            let now = now_millis();
            Ok(c.prepare_cached(
                "SELECT textable, line_type, reason, source, carrier, updated_at, expires_at FROM numbers \
                 WHERE number = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .query_row(params![number.as_str(), now], |r| {
                Ok(NumberInfo {
                    number: number.clone(),
                    textable: r.get(0)?,
                    line_type: r.get(1)?,
                    reason: r.get(2)?,
                    source: r.get(3)?,
                    carrier: r.get(4)?,
                    updated_at: r.get(5)?,
                    expires_at: r.get(6)?,
                })
            })
            .optional()?)
        })
        .boxed()
    }

    fn put_number_info(&self, info: NumberInfo) -> BoxFuture<'_, StoreResult<()>> {
        self.call(|tx| Op::PutNumber(info, tx)).boxed()
    }

    fn prune(&self, before: Millis, batch: usize) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(move |tx| Op::Prune(before, batch, tx)).boxed()
    }

    fn enqueue_event(&self, event: NewEvent) -> BoxFuture<'_, StoreResult<()>> {
        self.call(|tx| Op::Enqueue(event, tx)).boxed()
    }

    fn due_events(
        &self,
        now: Millis,
        limit: usize,
        exclude: Vec<i64>,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEvent>>> {
        self.read(move |c| {
            // The head (oldest pending event) of each conversation, from the pending index
            // alone (a covering scan, no table reads): a later event never overtakes an
            // earlier one that is waiting for a retry.
            let exclude: std::collections::HashSet<i64> = exclude.into_iter().collect();
            let mut heads: Vec<i64> = c
                .prepare_cached(PENDING_HEADS)?
                .query_map([], |r| r.get(0))?
                .filter(|s| !matches!(s, Ok(seq) if exclude.contains(seq)))
                .collect::<Result<_, _>>()?;
            heads.sort_unstable();
            // Then only the heads not already in flight are read, payload and all. Reading
            // the in-flight ones too (and dropping them here) was most of this query's cost.
            let mut one = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1 AND next_attempt_at <= ?2"
            ))?;
            let mut out = Vec::with_capacity(limit.min(heads.len()));
            for seq in heads {
                if let Some(ev) = one.query_row(params![seq, now], event_row).optional()? {
                    out.push(ev);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .boxed()
    }

    fn record_events(&self, outcomes: Vec<(i64, EventOutcome)>) -> BoxFuture<'_, StoreResult<()>> {
        self.call(move |tx| Op::EventResults(outcomes, tx)).boxed()
    }

    fn dead_events(
        &self,
        app_id: String,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEvent>>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE app_id = ?1 AND state = 'dead' AND seq > ?2 \
                 ORDER BY seq LIMIT ?3"
            );
            Ok(c.prepare_cached(&sql)?
                .query_map(params![app_id, after, limit as i64], event_row)?
                .collect::<Result<_, _>>()?)
        })
        .boxed()
    }

    fn replay_dead(&self, app_id: String, id: Option<EventId>) -> BoxFuture<'_, StoreResult<u64>> {
        self.call(move |tx| Op::Replay(app_id, id, tx)).boxed()
    }

    fn outbox_depth(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM events WHERE state = 'pending'")?
                    .query_row([], |r| r.get::<_, i64>(0))? as u64,
            )
        })
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            // Everything handed over before the shutdown op is committed; later callers
            // find the channel closed and get `Unavailable`.
            let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                let _ = self.ops.send(Op::Shutdown).await;
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventId;

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join("smsgate.db"), 64, Arc::new(Metrics::new())).expect("opens")
    }

    fn event(conversation: &str, at: Millis) -> NewEvent {
        let id = EventId::generate();
        NewEvent {
            payload: format!(r#"{{"id":"{}"}}"#, id.as_str()),
            id,
            app_id: "clinic".into(),
            kind: "message.status".into(),
            conversation: conversation.into(),
            url: None,
            created_at: at,
        }
    }

    /// The first column of a query's rows, read on a connection of its own.
    fn strings(dir: &Path, sql: &str) -> Vec<String> {
        open_connection(&dir.join("smsgate.db"))
            .unwrap()
            .prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn seqs(events: &[OutboxEvent]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn due_events_should_return_each_conversations_head_in_outbox_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = now_millis();
        // a1 b1 a2 c1 b2: heads are a1, b1, c1.
        for conv in ["a", "b", "a", "c", "b"] {
            store.enqueue_event(event(conv, now)).await.unwrap();
        }
        let all = store.due_events(now, 10, vec![]).await.unwrap();
        let convs: Vec<&str> = all.iter().map(|e| e.conversation.as_str()).collect();
        assert_eq!(convs, ["a", "b", "c"]);
        let (a1, b1, c1) = (all[0].seq, all[1].seq, all[2].seq);
        assert!(a1 < b1 && b1 < c1);

        // In flight (excluded): a later event of the same conversation still waits.
        let rest = store.due_events(now, 10, vec![a1]).await.unwrap();
        assert_eq!(seqs(&rest), [b1, c1]);
        assert_eq!(seqs(&store.due_events(now, 1, vec![]).await.unwrap()), [a1]);

        // a1 delivered, b1 to be retried later, c1 dead: a2 is due, b2 waits behind b1.
        store
            .record_events(vec![
                (a1, EventOutcome::Delivered),
                (
                    b1,
                    EventOutcome::Retry {
                        next_attempt_at: now + 60_000,
                        error: "endpoint answered 500".into(),
                    },
                ),
                (
                    c1,
                    EventOutcome::Dead {
                        error: "gone".into(),
                    },
                ),
            ])
            .await
            .unwrap();
        let next = store.due_events(now, 10, vec![]).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].conversation, "a");
        assert!(
            b1 < next[0].seq && next[0].seq < c1,
            "a2 was enqueued between b1 and c1"
        );
        // Once the retry is due, b1 (not b2) comes back, with its attempt counted.
        let later = store.due_events(now + 60_000, 10, vec![]).await.unwrap();
        assert_eq!(seqs(&later), [b1, next[0].seq]);
        assert_eq!(later[0].attempts, 1);
        assert_eq!(
            later[0].last_error.as_deref(),
            Some("endpoint answered 500")
        );
        assert_eq!(store.outbox_depth().await.unwrap(), 3);
    }

    #[test]
    fn the_writer_should_start_the_wal_over_once_it_passes_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let c = open_connection(&db).unwrap();
        c.pragma_update(None, "synchronous", "OFF").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.wal_hook(Some(note_wal_frames));
        c.execute_batch("CREATE TABLE junk (b BLOB)").unwrap();
        let fill = |n: usize| {
            for _ in 0..n {
                c.execute("INSERT INTO junk VALUES (zeroblob(8192))", [])
                    .unwrap();
            }
        };
        let wal_len = || std::fs::metadata(wal_path(&db)).unwrap().len();
        fill(40);
        let share = WalShare::default();
        let frames = WAL_FRAMES.get();
        assert!(frames > 64, "{frames}");
        // Under the limit nothing happens: the WAL keeps growing.
        assert_eq!(restart_wal_if_long(&c, &share, frames), None);
        fill(1);
        assert!(WAL_FRAMES.get() > frames);
        // Past it, but the checkpoint task has not copied it yet: the writer waits.
        let frames = WAL_FRAMES.get();
        let limit = frames * 2 / 3;
        assert_eq!(restart_wal_if_long(&c, &share, limit), None);
        fill(1);
        assert!(WAL_FRAMES.get() > frames);
        // Once it has: checkpointed, and the next commit writes at the start of the same file.
        let len = wal_len();
        share.record(0, i64::from(WAL_FRAMES.get()));
        assert!(restart_wal_if_long(&c, &share, limit).is_some());
        fill(1);
        assert!(WAL_FRAMES.get() < 10, "{}", WAL_FRAMES.get());
        assert_eq!(wal_len(), len);
        // The writer saw the WAL start over: what was copied of the last one no longer counts.
        restart_wal_if_long(&c, &share, limit);
        assert_eq!(share.backfilled(), 0);
        // Twice past its limit it checkpoints without waiting (no checkpoint task).
        fill(60);
        let frames = WAL_FRAMES.get();
        assert!(restart_wal_if_long(&c, &share, frames / 2).is_some());
        fill(1);
        assert!(WAL_FRAMES.get() < 10, "{}", WAL_FRAMES.get());
        let rows: i64 = c
            .query_row("SELECT count(*) FROM junk", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 104);
    }

    #[tokio::test]
    async fn the_wal_frames_metric_should_count_the_pages_commits_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("smsgate.db");
        let m = Arc::new(Metrics::new());
        let store = SqliteStore::open(&db, 64, m.clone()).unwrap();
        let page: usize = open_connection(&db)
            .unwrap()
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        // Frames of the WAL's current generation: those of an earlier one carry other salts.
        let frames_in_wal = || {
            let w = std::fs::read(wal_path(&db)).unwrap();
            let frame = 24 + page;
            (0..)
                .take_while(|i| {
                    let at = 32 + i * frame;
                    at + frame <= w.len() && w[at + 8..at + 16] == w[16..24]
                })
                .count() as u64
        };
        let now = now_millis();
        // The migrations' frames are not counted: the writer copied them back when it
        // started, so its first commit starts the WAL over and counts only its own pages.
        store.enqueue_event(event("c", now)).await.unwrap();
        let first = m.store_wal_frames.get();
        assert!((2..10).contains(&first), "{first}");
        assert_eq!(frames_in_wal(), first);
        for i in 0..40 {
            store
                .enqueue_event(event(&format!("c{}", i % 7), now))
                .await
                .unwrap();
        }
        let counted = m.store_wal_frames.get();
        // Each commit writes at least the table's page and an index's.
        assert!(counted >= first + 2 * 40, "{counted}");
        assert_eq!(frames_in_wal(), counted);
        store.close().await;
    }

    #[tokio::test]
    async fn held_receipts_older_than_a_day_should_be_swept_by_a_later_held_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let receipt = |id: &str, at: Millis| Receipt {
            carrier: "sim".into(),
            carrier_message_id: id.into(),
            state: ReceiptState::Delivered,
            stat: "DELIVRD".into(),
            err: None,
            received_at: at,
            not_textable: None,
        };
        // A sweep runs on arrival times that are multiples of 64: the first two are not.
        let sweep_at = now_millis() / 64 * 64;
        for (id, at) in [
            ("stale", sweep_at - RECEIPT_HOLD_MS - 1),
            ("recent", sweep_at - 3_600_000 + 1),
        ] {
            assert_eq!(
                store.record_receipt(receipt(id, at)).await.unwrap(),
                ReceiptMatch::Held
            );
        }
        let held = || {
            strings(
                dir.path(),
                "SELECT carrier_message_id FROM receipts_held ORDER BY received_at",
            )
        };
        assert_eq!(held(), ["stale", "recent"]);
        store
            .record_receipt(receipt("sweeper", sweep_at))
            .await
            .unwrap();
        assert_eq!(held(), ["recent", "sweeper"]);
        store.close().await;
    }

    #[tokio::test]
    async fn idempotency_keys_past_their_window_should_be_swept_by_a_later_keyed_insert() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let keyed = |key: &str, at: Millis| {
            let m = NewMessage {
                id: MessageId::generate(),
                app_id: "clinic".into(),
                line: PhoneNumber::parse("+12125551000").unwrap(),
                to: PhoneNumber::parse("+19174561234").unwrap(),
                body: "See you tomorrow".into(),
                client_ref: None,
                encoding: "gsm7",
                segments: 1,
                carrier: "sim".into(),
                created_at: at,
                kind: MessageKind::Api,
                exempt_opt_out: false,
                high_priority: false,
                send_at: None,
                expires_at: None,
                status_url: None,
            };
            let idem = Idempotency {
                key: key.into(),
                fingerprint: "f".into(),
            };
            store.insert_message(m, Some(idem))
        };
        // A sweep runs on creation times that are multiples of 64: the first two are not.
        let sweep_at = now_millis() / 64 * 64;
        keyed("old", sweep_at - IDEMPOTENCY_WINDOW_MS - 1)
            .await
            .unwrap();
        keyed("fresh", sweep_at - 1).await.unwrap();
        let keys = || {
            strings(
                dir.path(),
                "SELECT key FROM idempotency ORDER BY created_at",
            )
        };
        assert_eq!(keys(), ["old", "fresh"]);
        keyed("sweeper", sweep_at).await.unwrap();
        assert_eq!(keys(), ["fresh", "sweeper"]);
        store.close().await;
    }

    #[test]
    fn age_sweeps_should_use_an_index_range_not_a_table_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open_connection(&dir.path().join("smsgate.db")).unwrap();
        migrate(&mut c).unwrap();
        for (sql, index) in [
            (
                "DELETE FROM receipts_held WHERE received_at < 1",
                "receipts_held_by_time",
            ),
            (
                "DELETE FROM idempotency WHERE created_at < 1",
                "idempotency_by_time",
            ),
        ] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|p| p.starts_with("SEARCH") && p.contains(index)),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn the_conversation_heads_should_be_read_from_the_pending_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open_connection(&dir.path().join("smsgate.db")).unwrap();
        migrate(&mut c).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {PENDING_HEADS}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan, ["SCAN events USING COVERING INDEX events_pending"]);
    }
}
