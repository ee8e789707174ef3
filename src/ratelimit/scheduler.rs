//! Ready work per line, handed out round-robin across lines whose bucket and carrier both have
//! the tokens for it.
//!
//! Each line with queued work is in exactly one of two places: the `ready` ring (its tokens
//! are probably there; checked when it reaches the front) or the `waiting` heap (keyed by the
//! instant its head item's tokens will be there). A decision looks at the front of the ring
//! only, moving lines that turn out short of tokens to the heap, so its cost does not grow
//! with the number of lines.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    time::Duration,
};

use tokio::time::Instant;

use super::{LineLimit, carrier::CarrierLimit, gcra::Gcra};

/// Order within a line. Across lines, turns are round-robin whatever the priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Goes before every `Normal` item of its line: replies people are waiting for (HELP,
    /// opt-out confirmations, conversational replies).
    High,
    /// Bulk and everything else.
    #[default]
    Normal,
}

/// One carrier's queued messages, released at the pace its lines and the carrier allow.
///
/// Not thread-safe by design: one dispatcher task owns it. Times are
/// [`tokio::time::Instant`]s passed in by the caller, so paused tokio time and tests with
/// made-up instants both work.
#[derive(Debug)]
pub struct Scheduler<T> {
    /// Line number to its index in `lines`. Lines are never removed: they are configured, so
    /// bounded, and a line's spent tokens must outlive its queue.
    slots: HashMap<Box<str>, u32>,
    lines: Vec<Line<T>>,
    /// Lines with work whose turn it is next, front first.
    ready: VecDeque<u32>,
    /// Lines with work waiting for tokens, earliest first. An entry is current only while its
    /// line is `Waiting` at that very instant; others are skipped when they surface.
    waiting: BinaryHeap<Reverse<(Instant, u32)>>,
    carrier: CarrierLimit,
    len: usize,
    lines_with_work: usize,
    waits: u64,
}

#[derive(Debug)]
struct Line<T> {
    high: VecDeque<Queued<T>>,
    normal: VecDeque<Queued<T>>,
    bucket: Gcra,
    state: LineState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// No queued work; in neither `ready` nor `waiting`.
    Idle,
    /// In the `ready` ring.
    Ready,
    /// In the `waiting` heap until this instant.
    Waiting(Instant),
}

#[derive(Debug)]
struct Queued<T> {
    cost: u32,
    /// Already counted in `limiter_waits`.
    waited: bool,
    item: T,
}

impl<T> Line<T> {
    fn head(&self) -> Option<&Queued<T>> {
        self.high.front().or_else(|| self.normal.front())
    }

    /// Marks the head item as having waited for tokens; true the first time.
    fn mark_waited(&mut self) -> bool {
        let head = match self.high.front_mut() {
            Some(q) => q,
            None => self.normal.front_mut().expect("a ready line has work"),
        };
        !std::mem::replace(&mut head.waited, true)
    }

    fn pop_head(&mut self) -> Option<Queued<T>> {
        self.high.pop_front().or_else(|| self.normal.pop_front())
    }

    fn has_work(&self) -> bool {
        !(self.high.is_empty() && self.normal.is_empty())
    }
}

impl<T> Scheduler<T> {
    /// An empty scheduler for a carrier taking at most `carrier_rate` submits/s (`None` or a
    /// non-positive rate: unlimited), in bursts of `carrier_burst` (0: a tenth of a second's
    /// worth).
    pub fn new(carrier_rate: Option<f64>, carrier_burst: u32) -> Self {
        Self {
            slots: HashMap::new(),
            lines: Vec::new(),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            carrier: CarrierLimit::new(carrier_rate, carrier_burst),
            len: 0,
            lines_with_work: 0,
            waits: 0,
        }
    }

    /// Queues `item`, costing `cost` tokens (its segments still to send) on `line` and on the
    /// carrier. `limit` is the line's limit as configured now; a changed limit applies from
    /// the line's next token on (what it already spent stays spent).
    pub fn push(&mut self, line: &str, limit: LineLimit, cost: u32, priority: Priority, item: T) {
        let slot = self.slot(line, limit);
        let l = &mut self.lines[slot as usize];
        l.bucket.set_rate(limit.per_second, limit.burst);
        let queued = Queued {
            cost,
            waited: false,
            item,
        };
        match priority {
            Priority::High => l.high.push_back(queued),
            Priority::Normal => l.normal.push_back(queued),
        }
        self.len += 1;
        match l.state {
            LineState::Idle => {
                l.state = LineState::Ready;
                self.lines_with_work += 1;
                self.ready.push_back(slot);
            }
            LineState::Ready => {}
            // A new head (High) or a new limit may make the line ready sooner.
            LineState::Waiting(at) => {
                let cost = l.head().map_or(0, |q| q.cost);
                match l.bucket.ready_at(cost) {
                    None => {
                        l.state = LineState::Ready;
                        self.ready.push_back(slot);
                    }
                    Some(sooner) if sooner < at => {
                        l.state = LineState::Waiting(sooner);
                        self.waiting.push(Reverse((sooner, slot)));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    fn slot(&mut self, line: &str, limit: LineLimit) -> u32 {
        if let Some(&slot) = self.slots.get(line) {
            return slot;
        }
        let slot = u32::try_from(self.lines.len()).expect("fewer than 2^32 lines");
        self.lines.push(Line {
            high: VecDeque::new(),
            normal: VecDeque::new(),
            bucket: Gcra::new(limit.per_second, limit.burst),
            state: LineState::Idle,
        });
        self.slots.insert(line.into(), slot);
        slot
    }

    /// The next item whose line and carrier both have the tokens for its whole cost, spending
    /// them. Lines with ready work take turns (one item per turn); within a line `High` goes
    /// before `Normal`, each in push order. A line short of tokens waits aside without holding
    /// up the others; when the carrier is short, nothing goes and the line keeps its turn.
    pub fn pop_ready(&mut self, now: Instant) -> Option<T> {
        self.promote(now);
        while let Some(&slot) = self.ready.front() {
            let line = &mut self.lines[slot as usize];
            let cost = line.head().expect("a ready line has work").cost;
            if !line.bucket.allows(now, cost) {
                let at = line.bucket.ready_at(cost).expect("short of tokens: a time");
                self.waits += u64::from(line.mark_waited());
                line.state = LineState::Waiting(at);
                self.ready.pop_front();
                self.waiting.push(Reverse((at, slot)));
                continue;
            }
            if !self.carrier.allows(now, cost) {
                self.waits += u64::from(line.mark_waited());
                return None;
            }
            line.bucket.spend(now, cost);
            self.carrier.spend(now, cost);
            let queued = line.pop_head().expect("a ready line has work");
            self.ready.pop_front();
            if line.has_work() {
                self.ready.push_back(slot);
            } else {
                line.state = LineState::Idle;
                self.lines_with_work -= 1;
            }
            self.len -= 1;
            return Some(queued.item);
        }
        self.drop_stale_waits();
        None
    }

    /// Drops heap entries left behind by lines that were rescheduled, so the top is current
    /// and `next_ready_at` exact.
    fn drop_stale_waits(&mut self) {
        while let Some(&Reverse((at, slot))) = self.waiting.peek()
            && self.lines[slot as usize].state != LineState::Waiting(at)
        {
            self.waiting.pop();
        }
    }

    /// Moves lines whose tokens are due by `now` to the back of the ready ring.
    fn promote(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot))) = self.waiting.peek()
            && at <= now
        {
            self.waiting.pop();
            let line = &mut self.lines[slot as usize];
            if line.state == LineState::Waiting(at) {
                line.state = LineState::Ready;
                self.ready.push_back(slot);
            }
        }
    }

    /// When [`Scheduler::pop_ready`] may next return something, never before `now`; `None`
    /// when nothing is queued. Exact after `pop_ready` has returned `None`; otherwise (say after
    /// a push) possibly early, never late, so sleeping until it and trying again is always
    /// right.
    pub fn next_ready_at(&self, now: Instant) -> Option<Instant> {
        let at = if let Some(&slot) = self.ready.front() {
            let line = &self.lines[slot as usize];
            let cost = line.head().map_or(0, |q| q.cost);
            if !line.bucket.allows(now, cost) {
                // Lines behind it may be ready; only pop_ready can tell.
                return Some(now);
            }
            self.carrier.ready_at(cost)
        } else {
            let &Reverse((line_at, _)) = self.waiting.peek()?;
            Some(self.carrier.ready_at(1).map_or(line_at, |c| c.max(line_at)))
        };
        Some(at.map_or(now, |at| at.max(now)))
    }

    /// Queued items.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lines with at least one queued item (ready or waiting for tokens).
    pub fn lines_waiting(&self) -> usize {
        self.lines_with_work
    }

    /// Items queued on one line: lets the dispatcher stop claiming for a line whose backlog is
    /// already deep.
    pub fn line_len(&self, line: &str) -> usize {
        self.slots.get(line).map_or(0, |&s| {
            let l = &self.lines[s as usize];
            l.high.len() + l.normal.len()
        })
    }

    /// How long the line's queued work takes to go out at the line's own rate (zero for an
    /// unknown line or an unlimited rate). The dispatcher stops claiming for a line whose
    /// backlog lasts long, so one slow line cannot fill the scheduler.
    pub fn line_backlog(&self, line: &str) -> Duration {
        self.slots.get(line).map_or(Duration::ZERO, |&s| {
            let l = &self.lines[s as usize];
            let cost: u64 = l
                .high
                .iter()
                .chain(&l.normal)
                .map(|q| u64::from(q.cost))
                .sum();
            l.bucket.time_for(cost)
        })
    }

    /// The carrier answered with a throttling error (ESME_RTHROTTLED, ESME_RMSGQFUL): halve its
    /// rate (floor 1/s), at most once a second.
    pub fn on_throttled(&mut self, now: Instant) {
        self.carrier.on_throttled(now);
    }

    /// The carrier accepted a submit: after 5 s without throttling, step the rate back up (a
    /// tenth of the rate it fell from, at most once a second) until it is back where it was.
    pub fn on_accepted(&mut self, now: Instant) {
        self.carrier.on_accepted(now);
    }

    /// A reloaded carrier contract: a different configured rate applies from now on (the
    /// adaptive throttling state starts over); the same one changes nothing.
    pub fn set_carrier_rate(&mut self, per_second: Option<f64>) {
        let per_second = per_second.filter(|r| *r > 0.0);
        if self.carrier.configured() != per_second {
            self.carrier = CarrierLimit::new(per_second, self.carrier.burst());
        }
    }

    /// The carrier rate in force (submits/s), `None` when unlimited.
    pub fn carrier_rate(&self) -> Option<f64> {
        self.carrier.rate()
    }

    /// How many items have had to wait for tokens (line or carrier), each counted once.
    pub fn limiter_waits(&self) -> u64 {
        self.waits
    }

    /// Removes and returns every queued item (on shutdown, to release claimed work). Lines
    /// keep the tokens they spent.
    pub fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for line in &mut self.lines {
            out.extend(line.high.drain(..).map(|q| q.item));
            out.extend(line.normal.drain(..).map(|q| q.item));
            line.state = LineState::Idle;
        }
        self.ready.clear();
        self.waiting.clear();
        self.len = 0;
        self.lines_with_work = 0;
        out
    }
}
