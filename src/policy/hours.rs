//! Business hours: whether a line is open at an instant, when it opens next, and whether an
//! after-hours auto reply is due.
//!
//! Hours are wall-clock times in the line's time zone. An interval is the real time between the
//! first moment the line's clocks read its start and the first moment they read its end, so:
//! - on a spring-forward day, "01:30-03:00" in New York lasts 30 minutes (02:00-03:00 does not
//!   happen) and an interval starting in the skipped hour opens at 03:00;
//! - on a fall-back day, "01:30-03:00" lasts two and a half hours without a break, and
//!   "01:00-01:30" covers the first pass of the repeated hour only.
//!
//! Holidays close the whole calendar day in the line's zone. Nothing here reads a clock: the
//! caller passes `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// How far [`Hours::next_open`] looks ahead.
pub const NEXT_OPEN_HORIZON_DAYS: i64 = 14;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// A line's `hours` table as written in the config.
///
/// ```toml
/// [[lines]]
/// number = "+12125550100"
/// # ...
/// [lines.hours]
/// timezone = "America/New_York"
/// holidays = ["2026-12-25", "2027-01-01"]
/// after_hours_reply = "We are closed. We will reply when we open. / Estamos cerrados."
/// reply_window = "12h"
/// staff_notify = "+12125550199"
/// [lines.hours.weekly]
/// mon = ["08:00-12:00", "13:00-17:30"]
/// fri = ["08:00-12:00"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// IANA zone name, e.g. "America/Chicago".
    pub timezone: String,
    /// Day ("mon".."sun") to open intervals "HH:MM-HH:MM" (end exclusive, may be "24:00").
    /// A day that is not listed is closed all day.
    pub weekly: BTreeMap<String, Vec<String>>,
    /// Dates ("2026-12-25") closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Auto reply to inbound texts while closed; none when absent.
    #[serde(default)]
    pub after_hours_reply: Option<String>,
    /// At most one after-hours reply per sender per this window ("12h", "30m").
    #[serde(default = "default_reply_window")]
    pub reply_window: String,
    /// E.164 number told about inbound texts while closed (validated by the config layer).
    #[serde(default)]
    pub staff_notify: Option<String>,
}

fn default_reply_window() -> String {
    "12h".to_owned()
}

/// One open interval of a day, in minutes after midnight; `end` may be 1440 (24:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Interval {
    start: u16,
    end: u16,
}

/// Compiled hours of one line.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    timezone: String,
    /// Indexed Monday = 0; sorted, non-overlapping.
    weekly: [Vec<Interval>; 7],
    holidays: BTreeSet<Date>,
    after_hours_reply: Option<String>,
    reply_window: Duration,
    staff_notify: Option<String>,
}

impl Hours {
    /// Validates and compiles a line's hours. Every problem is reported, each as one message
    /// naming the field and the value; the config layer adds line numbers.
    pub fn compile(cfg: &HoursConfig) -> Result<Hours, Vec<String>> {
        let mut errors = Vec::new();

        let tz = match TimeZone::get(&cfg.timezone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(format!("unknown timezone {:?}", cfg.timezone));
                None
            }
        };

        let mut weekly: [Vec<Interval>; 7] = Default::default();
        for (day, specs) in &cfg.weekly {
            let Some(index) = DAYS.iter().position(|d| d == day) else {
                errors.push(format!(
                    "weekly: unknown day {day:?} (use mon, tue, wed, thu, fri, sat, sun)"
                ));
                continue;
            };
            let mut parsed: Vec<(Interval, &str)> = Vec::new();
            for spec in specs {
                match parse_interval(spec) {
                    Ok(iv) => parsed.push((iv, spec)),
                    Err(why) => errors.push(format!("{day}: {why}")),
                }
            }
            parsed.sort();
            for pair in parsed.windows(2) {
                let ((a, a_spec), (b, b_spec)) = (pair[0], pair[1]);
                if a.end > b.start {
                    errors.push(format!("{day}: {a_spec:?} overlaps {b_spec:?}"));
                }
            }
            weekly[index] = parsed.into_iter().map(|(iv, _)| iv).collect();
        }

        let mut holidays = BTreeSet::new();
        for h in &cfg.holidays {
            match parse_date(h) {
                Some(d) => {
                    holidays.insert(d);
                }
                None => errors.push(format!("holidays: {h:?} is not a date (YYYY-MM-DD)")),
            }
        }

        if cfg
            .after_hours_reply
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            errors.push("after_hours_reply is empty (leave it out to send none)".to_owned());
        }

        let reply_window = match humantime::parse_duration(&cfg.reply_window) {
            Ok(d) if d.is_zero() => {
                // Zero would answer every text, and two auto-responders would loop.
                errors.push(format!(
                    "reply_window: {:?} must be longer than zero",
                    cfg.reply_window
                ));
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(format!(
                    "reply_window: {:?} is not a duration (e.g. \"12h\", \"30m\")",
                    cfg.reply_window
                ));
                None
            }
        };

        match (tz, reply_window) {
            (Some(tz), Some(reply_window)) if errors.is_empty() => Ok(Hours {
                timezone: tz.iana_name().unwrap_or(&cfg.timezone).to_owned(),
                tz,
                weekly,
                holidays,
                after_hours_reply: cfg.after_hours_reply.clone(),
                reply_window,
                staff_notify: cfg.staff_notify.clone(),
            }),
            _ => Err(errors),
        }
    }

    /// The line's IANA time zone name.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The line's time zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The configured after-hours auto reply, if any.
    pub fn after_hours_reply(&self) -> Option<&str> {
        self.after_hours_reply.as_deref()
    }

    /// At most one after-hours reply per sender per this window.
    pub fn reply_window(&self) -> Duration {
        self.reply_window
    }

    /// The staff number to notify about inbound texts while closed, as configured.
    pub fn staff_notify(&self) -> Option<&str> {
        self.staff_notify.as_deref()
    }

    /// Whether the line is open at `at`: start inclusive, end exclusive.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let today = self.tz.to_datetime(at).date();
        // Neighbouring days too: a DST change at midnight can put an interval's instants on the
        // other side of the civil date boundary.
        neighbours(today)
            .into_iter()
            .flatten()
            .flat_map(|d| self.open_spans(d))
            .any(|(start, end)| start <= at && at < end)
    }

    /// The first instant at or after `at` when the line is open: `at` itself when open now,
    /// `None` when it stays closed for the next [`NEXT_OPEN_HORIZON_DAYS`] days.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        let horizon = at
            .checked_add(SignedDuration::from_hours(NEXT_OPEN_HORIZON_DAYS * 24))
            .unwrap_or(Timestamp::MAX);
        let mut day = self.tz.to_datetime(at).date().yesterday().ok()?;
        let mut best: Option<Timestamp> = None;
        // Yesterday through the horizon's day and one more, for the same reason as `is_open`.
        for _ in 0..NEXT_OPEN_HORIZON_DAYS + 3 {
            for (start, end) in self.open_spans(day) {
                if end > at {
                    let candidate = start.max(at);
                    if candidate <= horizon && best.is_none_or(|b| candidate < b) {
                        best = Some(candidate);
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        best
    }

    /// The after-hours reply to send now, if the line is closed, has a reply, and the sender got
    /// none within the reply window (`last_reply`: when they last got one from this line).
    pub fn after_hours_reply_due(
        &self,
        last_reply: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<&str> {
        let reply = self.after_hours_reply.as_deref()?;
        let due =
            !self.is_open(now) && ReplyLimiter::should_reply(last_reply, now, self.reply_window);
        due.then_some(reply)
    }

    /// The open intervals of civil date `day` as real-time spans; none on holidays.
    fn open_spans(&self, day: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let intervals: &[Interval] = if self.holidays.contains(&day) {
            &[]
        } else {
            &self.weekly[usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0)]
        };
        intervals.iter().filter_map(move |iv| {
            let start = first_instant_at_or_after(&self.tz, civil_at(day, iv.start)?)?;
            let end = first_instant_at_or_after(&self.tz, civil_at(day, iv.end)?)?;
            // An interval inside a skipped hour is empty.
            (start < end).then_some((start, end))
        })
    }
}

/// Decides whether another after-hours reply may go to a sender. Pure: the caller keeps the
/// last-reply time per (line, number).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyLimiter;

impl ReplyLimiter {
    /// True when there was no reply yet, or at least `window` has passed since `last`. A `last`
    /// more than `window` in the future (the clock was moved back) does not block replies.
    pub fn should_reply(last: Option<Timestamp>, now: Timestamp, window: Duration) -> bool {
        let Some(last) = last else {
            return true;
        };
        let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
        let elapsed = now.duration_since(last);
        elapsed >= window || elapsed < -window
    }
}

fn neighbours(day: Date) -> [Option<Date>; 3] {
    [day.yesterday().ok(), Some(day), day.tomorrow().ok()]
}

/// Civil datetime of `minute` after midnight on `day`; 1440 is the next day's midnight.
fn civil_at(day: Date, minute: u16) -> Option<DateTime> {
    let (day, minute) = if minute >= MINUTES_PER_DAY {
        (day.tomorrow().ok()?, minute - MINUTES_PER_DAY)
    } else {
        (day, minute)
    };
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    Some(DateTime::from_parts(day, Time::new(hour, min, 0, 0).ok()?))
}

/// The first instant at which the zone's clocks read `dt` or later: `dt` itself normally, its
/// first occurrence in a repeated hour, the end of the gap when `dt` was skipped.
fn first_instant_at_or_after(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `dt` lies before the transition; the transition is
            // when the clocks jump past `dt`.
            let before_gap = after.to_timestamp(dt).ok()?;
            match tz.following(before_gap).next() {
                Some(transition) => Some(transition.timestamp()),
                None => ambiguous.compatible().ok(),
            }
        }
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
            ambiguous.earlier().ok()
        }
    }
}

/// "08:00-17:30" (hours may have one digit, "24:00" only as the end) into minutes.
fn parse_interval(spec: &str) -> Result<Interval, String> {
    let shape = || format!("{spec:?} is not HH:MM-HH:MM (e.g. \"08:00-17:30\")");
    let (a, b) = spec.split_once('-').ok_or_else(shape)?;
    let (a, b) = (a.trim(), b.trim());
    let start = parse_hhmm(a).ok_or_else(shape)?;
    let end = parse_hhmm(b).ok_or_else(shape)?;
    for (text, minutes) in [(a, start), (b, end)] {
        if minutes > MINUTES_PER_DAY {
            return Err(format!(
                "{spec:?}: {text} is not a time of day (00:00 to 24:00)"
            ));
        }
    }
    if start == end {
        return Err(format!("{spec:?} is empty"));
    }
    if start > end {
        return Err(format!(
            "{spec:?} ends before it starts (to stay open past midnight, end this day at \
             \"24:00\" and start the next at \"00:00\")"
        ));
    }
    Ok(Interval { start, end })
}

/// "H:MM" or "HH:MM" into minutes after midnight, unchecked against 24:00 (the caller says why).
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 {
        return Some(u16::MAX); // out of range; reported as not a time of day
    }
    Some(h * 60 + m)
}

/// Strict "YYYY-MM-DD".
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let year: i16 = s[0..4].parse().ok()?;
    let month: i8 = s[5..7].parse().ok()?;
    let day: i8 = s[8..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tz: &str, weekly: &[(&str, &[&str])]) -> HoursConfig {
        HoursConfig {
            timezone: tz.to_owned(),
            weekly: weekly
                .iter()
                .map(|(d, ivs)| {
                    (
                        (*d).to_owned(),
                        ivs.iter().map(|s| (*s).to_owned()).collect(),
                    )
                })
                .collect(),
            holidays: vec![],
            after_hours_reply: None,
            reply_window: default_reply_window(),
            staff_notify: None,
        }
    }

    const WEEKDAYS_9_TO_5: &[(&str, &[&str])] = &[
        ("mon", &["09:00-17:00"]),
        ("tue", &["09:00-17:00"]),
        ("wed", &["09:00-17:00"]),
        ("thu", &["09:00-17:00"]),
        ("fri", &["09:00-17:00"]),
    ];

    fn hours(tz: &str, weekly: &[(&str, &[&str])]) -> Hours {
        Hours::compile(&cfg(tz, weekly)).expect("valid hours")
    }

    /// An instant: "2026-03-16T13:30:00Z", or zoned, "2026-03-09T08:59:59-04:00[America/New_York]"
    /// (the offset must agree with the zone, which checks the test's own arithmetic).
    fn ts(s: &str) -> Timestamp {
        if s.contains('[') {
            s.parse::<jiff::Zoned>().expect(s).timestamp()
        } else {
            s.parse::<Timestamp>().expect(s)
        }
    }

    fn errors(c: &HoursConfig) -> Vec<String> {
        Hours::compile(c).expect_err("should be rejected")
    }

    #[test]
    fn weekday_boundaries_should_include_start_and_exclude_end() {
        // 2026-03-16 is a Monday.
        let h = hours("America/New_York", WEEKDAYS_9_TO_5);
        let ny = "[America/New_York]";
        assert!(!h.is_open(ts(&format!("2026-03-16T08:59:59-04:00{ny}"))));
        assert!(h.is_open(ts(&format!("2026-03-16T09:00:00-04:00{ny}"))));
        assert!(h.is_open(ts(&format!("2026-03-16T16:59:59.999-04:00{ny}"))));
        assert!(!h.is_open(ts(&format!("2026-03-16T17:00:00-04:00{ny}"))));
        assert!(!h.is_open(ts(&format!("2026-03-21T12:00:00-04:00{ny}")))); // Saturday
    }

    #[test]
    fn lunch_break_should_close_between_two_intervals() {
        let h = hours(
            "America/Chicago",
            &[("tue", &["13:00-17:30", "08:00-12:00"])],
        );
        let at = |t: &str| ts(&format!("2026-03-17T{t}-05:00[America/Chicago]"));
        assert!(h.is_open(at("11:59")));
        assert!(!h.is_open(at("12:00")));
        assert!(!h.is_open(at("12:59")));
        assert!(h.is_open(at("13:00")));
        assert!(h.is_open(at("17:29")));
        assert!(!h.is_open(at("17:30")));
        assert_eq!(h.next_open(at("12:15")), Some(at("13:00")));
        assert_eq!(h.next_open(at("10:00")), Some(at("10:00")));
    }

    #[test]
    fn holiday_should_close_the_whole_day_in_the_line_zone() {
        let mut c = cfg("America/New_York", WEEKDAYS_9_TO_5);
        c.holidays = vec!["2026-12-25".into()];
        let h = Hours::compile(&c).unwrap();
        // Friday 2026-12-25 is closed; Thursday and the next Monday are not.
        assert!(!h.is_open(ts("2026-12-25T10:00:00-05:00[America/New_York]")));
        assert!(h.is_open(ts("2026-12-24T10:00:00-05:00[America/New_York]")));
        assert_eq!(
            h.next_open(ts("2026-12-24T17:00:00-05:00[America/New_York]")),
            Some(ts("2026-12-28T09:00:00-05:00[America/New_York]"))
        );
    }

    #[test]
    fn same_instant_should_be_open_in_new_york_and_closed_in_los_angeles() {
        let ny = hours("America/New_York", WEEKDAYS_9_TO_5);
        let la = hours("America/Los_Angeles", WEEKDAYS_9_TO_5);
        let at = ts("2026-03-16T13:30:00Z"); // 09:30 in New York, 06:30 in Los Angeles
        assert!(ny.is_open(at));
        assert!(!la.is_open(at));
        assert_eq!(la.next_open(at), Some(ts("2026-03-16T16:00:00Z")));
    }

    #[test]
    fn spring_forward_interval_should_lose_the_skipped_hour() {
        // 2026-03-08 (Sunday): New York clocks jump from 02:00 EST to 03:00 EDT.
        let h = hours(
            "America/New_York",
            &[("sun", &["01:30-03:00", "05:00-06:00"])],
        );
        assert!(!h.is_open(ts("2026-03-08T01:29:59-05:00[America/New_York]")));
        assert!(h.is_open(ts("2026-03-08T01:30:00-05:00[America/New_York]")));
        assert!(h.is_open(ts("2026-03-08T01:59:59-05:00[America/New_York]")));
        assert!(!h.is_open(ts("2026-03-08T03:00:00-04:00[America/New_York]")));
        assert_eq!(
            h.next_open(ts("2026-03-08T03:00:00-04:00[America/New_York]")),
            Some(ts("2026-03-08T05:00:00-04:00[America/New_York]"))
        );
    }

    #[test]
    fn interval_starting_in_skipped_hour_should_open_when_clocks_jump() {
        let h = hours(
            "America/New_York",
            &[("sun", &["02:30-04:00", "02:00-02:15"])],
        );
        // 02:00-02:15 never happens that day; 02:30-04:00 opens at 03:00 EDT.
        assert!(!h.is_open(ts("2026-03-08T01:59:59-05:00[America/New_York]")));
        assert!(h.is_open(ts("2026-03-08T03:00:00-04:00[America/New_York]")));
        assert!(!h.is_open(ts("2026-03-08T04:00:00-04:00[America/New_York]")));
        assert_eq!(
            h.next_open(ts("2026-03-08T00:00:00-05:00[America/New_York]")),
            Some(ts("2026-03-08T03:00:00-04:00[America/New_York]"))
        );
        // A week later the same hours are ordinary.
        assert!(h.is_open(ts("2026-03-15T02:10:00-04:00[America/New_York]")));
    }

    #[test]
    fn fall_back_interval_should_stay_open_through_the_repeated_hour() {
        // 2026-11-01 (Sunday): New York clocks go back from 02:00 EDT to 01:00 EST.
        let h = hours("America/New_York", &[("sun", &["01:30-03:00"])]);
        assert!(!h.is_open(ts("2026-11-01T01:29:59-04:00[America/New_York]")));
        assert!(h.is_open(ts("2026-11-01T01:30:00-04:00[America/New_York]")));
        assert!(h.is_open(ts("2026-11-01T01:00:00-05:00[America/New_York]"))); // second 01:00
        assert!(h.is_open(ts("2026-11-01T01:15:00-05:00[America/New_York]")));
        assert!(h.is_open(ts("2026-11-01T02:59:59-05:00[America/New_York]")));
        assert!(!h.is_open(ts("2026-11-01T03:00:00-05:00[America/New_York]")));
    }

    #[test]
    fn fall_back_interval_inside_repeated_hour_should_cover_first_pass_only() {
        let h = hours("America/New_York", &[("sun", &["01:00-01:30"])]);
        assert!(h.is_open(ts("2026-11-01T01:00:00-04:00[America/New_York]")));
        assert!(!h.is_open(ts("2026-11-01T01:30:00-04:00[America/New_York]")));
        assert!(!h.is_open(ts("2026-11-01T01:10:00-05:00[America/New_York]")));
    }

    #[test]
    fn dst_change_at_midnight_should_keep_overnight_hours_continuous() {
        // Santiago skips from Saturday 24:00 to Sunday 01:00 on 2026-09-06.
        let h = hours(
            "America/Santiago",
            &[("sat", &["22:00-24:00"]), ("sun", &["00:00-02:00"])],
        );
        let cl = "[America/Santiago]";
        assert!(h.is_open(ts(&format!("2026-09-05T23:59:59-04:00{cl}"))));
        assert!(h.is_open(ts(&format!("2026-09-06T01:00:00-03:00{cl}"))));
        assert!(h.is_open(ts(&format!("2026-09-06T01:59:59-03:00{cl}"))));
        assert!(!h.is_open(ts(&format!("2026-09-06T02:00:00-03:00{cl}"))));
        // And repeats Saturday 23:00-24:00 on 2026-04-04: open through both passes.
        assert!(h.is_open(ts(&format!("2026-04-04T23:30:00-03:00{cl}"))));
        assert!(h.is_open(ts(&format!("2026-04-04T23:30:00-04:00{cl}"))));
        assert!(h.is_open(ts(&format!("2026-04-05T00:00:00-04:00{cl}"))));
        assert_eq!(
            h.next_open(ts(&format!("2026-09-05T21:00:00-04:00{cl}"))),
            Some(ts(&format!("2026-09-05T22:00:00-04:00{cl}")))
        );
    }

    #[test]
    fn interval_ending_at_24_should_meet_next_day_interval() {
        let h = hours(
            "UTC",
            &[("mon", &["18:00-24:00"]), ("tue", &["00:00-06:00"])],
        );
        assert!(h.is_open(ts("2026-03-16T23:59:59Z[UTC]")));
        assert!(h.is_open(ts("2026-03-17T00:00:00Z[UTC]")));
        assert!(!h.is_open(ts("2026-03-17T06:00:00Z[UTC]")));
        assert!(!h.is_open(ts("2026-03-16T17:59:59Z[UTC]")));
    }

    #[test]
    fn next_open_should_give_up_after_fourteen_days() {
        let closed = hours("America/New_York", &[]);
        assert_eq!(closed.next_open(ts("2026-03-16T12:00:00Z")), None);

        let mut c = cfg("UTC", &[("mon", &["09:00-10:00"])]);
        // Closed on the next two Mondays: the Monday after is 21 days away.
        c.holidays = vec!["2026-03-23".into(), "2026-03-30".into()];
        let h = Hours::compile(&c).unwrap();
        assert_eq!(h.next_open(ts("2026-03-16T10:00:00Z")), None);
        // Exactly fourteen days ahead still counts; a second more does not.
        let mut c = cfg("UTC", &[("mon", &["09:00-10:00"])]);
        c.holidays = vec!["2026-03-09".into()];
        let h = Hours::compile(&c).unwrap();
        assert_eq!(
            h.next_open(ts("2026-03-02T09:00:00Z")),
            Some(ts("2026-03-02T09:00:00Z"))
        );
        assert_eq!(
            h.next_open(ts("2026-03-02T10:00:00Z")),
            Some(ts("2026-03-16T09:00:00Z"))
        );
        c.holidays.push("2026-03-02".into());
        let h = Hours::compile(&c).unwrap();
        assert_eq!(
            h.next_open(ts("2026-03-02T09:00:00Z")),
            Some(ts("2026-03-16T09:00:00Z"))
        );
        assert_eq!(h.next_open(ts("2026-03-02T08:59:59Z")), None);
    }

    #[test]
    fn config_errors_should_name_field_and_value() {
        let mut c = cfg(
            "America/NewYork",
            &[
                ("mon", &["8-5"]),
                ("tue", &["08:00-12:00", "11:30-13:00"]),
                ("wed", &["17:00-08:00"]),
                ("thu", &["25:00-26:00", "09:00-09:00", "09:60-10:00"]),
                ("monday", &["09:00-17:00"]),
            ],
        );
        c.holidays = vec!["2026-02-30".into(), "12/25/2026".into()];
        c.reply_window = "12 hourz".into();
        c.after_hours_reply = Some(" ".into());
        assert_eq!(
            errors(&c),
            [
                "unknown timezone \"America/NewYork\"",
                "mon: \"8-5\" is not HH:MM-HH:MM (e.g. \"08:00-17:30\")",
                "weekly: unknown day \"monday\" (use mon, tue, wed, thu, fri, sat, sun)",
                "thu: \"25:00-26:00\": 25:00 is not a time of day (00:00 to 24:00)",
                "thu: \"09:00-09:00\" is empty",
                "thu: \"09:60-10:00\": 09:60 is not a time of day (00:00 to 24:00)",
                "tue: \"08:00-12:00\" overlaps \"11:30-13:00\"",
                "wed: \"17:00-08:00\" ends before it starts (to stay open past midnight, end this \
                 day at \"24:00\" and start the next at \"00:00\")",
                "holidays: \"2026-02-30\" is not a date (YYYY-MM-DD)",
                "holidays: \"12/25/2026\" is not a date (YYYY-MM-DD)",
                "after_hours_reply is empty (leave it out to send none)",
                "reply_window: \"12 hourz\" is not a duration (e.g. \"12h\", \"30m\")",
            ]
        );
    }

    #[test]
    fn zero_reply_window_and_24_start_should_be_rejected() {
        let mut c = cfg(
            "UTC",
            &[("sat", &["24:00-24:00"]), ("sun", &["23:00-24:30"])],
        );
        c.reply_window = "0s".into();
        assert_eq!(
            errors(&c),
            [
                "sat: \"24:00-24:00\" is empty",
                "sun: \"23:00-24:30\": 24:30 is not a time of day (00:00 to 24:00)",
                "reply_window: \"0s\" must be longer than zero",
            ]
        );
    }

    #[test]
    fn config_should_deserialize_from_a_lines_sub_table() {
        #[derive(serde::Deserialize)]
        struct Line {
            hours: HoursConfig,
        }
        let line: Line = toml::from_str(
            r#"
            [hours]
            timezone = "america/new_york"
            holidays = ["2026-12-25"]
            after_hours_reply = "We are closed."
            staff_notify = "+12125550199"
            [hours.weekly]
            mon = ["08:00-12:00", "13:00-17:30"]
            "#,
        )
        .unwrap();
        assert_eq!(line.hours.reply_window, "12h");
        let h = Hours::compile(&line.hours).unwrap();
        assert_eq!(h.timezone(), "America/New_York");
        assert_eq!(h.reply_window(), Duration::from_secs(12 * 3600));
        assert_eq!(h.staff_notify(), Some("+12125550199"));

        let inline: Line = toml::from_str(
            r#"hours = { timezone = "UTC", weekly = { sat = ["10:00-14:00"] }, reply_window = "30m" }"#,
        )
        .unwrap();
        assert_eq!(
            Hours::compile(&inline.hours).unwrap().reply_window(),
            Duration::from_secs(1800)
        );
        let err = toml::from_str::<Line>(r#"hours = { timezone = "UTC", weekly = {}, tz = "x" }"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn should_reply_should_allow_one_reply_per_window() {
        let window = Duration::from_secs(12 * 3600);
        let last = ts("2026-03-16T20:00:00Z");
        let plus = |secs: i64| last.checked_add(SignedDuration::from_secs(secs)).unwrap();
        assert!(ReplyLimiter::should_reply(None, last, window));
        assert!(!ReplyLimiter::should_reply(Some(last), last, window));
        assert!(!ReplyLimiter::should_reply(
            Some(last),
            plus(12 * 3600 - 1),
            window
        ));
        assert!(ReplyLimiter::should_reply(
            Some(last),
            plus(12 * 3600),
            window
        ));
        // Clock moved back a little: still within the window. Far back: do not block forever.
        assert!(!ReplyLimiter::should_reply(Some(last), plus(-60), window));
        assert!(!ReplyLimiter::should_reply(
            Some(last),
            plus(-12 * 3600),
            window
        ));
        assert!(ReplyLimiter::should_reply(
            Some(last),
            plus(-12 * 3600 - 1),
            window
        ));
        assert!(!ReplyLimiter::should_reply(
            Some(last),
            plus(1),
            Duration::MAX
        ));
    }

    #[test]
    fn after_hours_reply_due_should_need_closed_reply_and_window() {
        let mut c = cfg("America/New_York", WEEKDAYS_9_TO_5);
        let open = ts("2026-03-16T10:00:00-04:00[America/New_York]");
        let closed = ts("2026-03-16T20:00:00-04:00[America/New_York]");
        assert_eq!(
            Hours::compile(&c)
                .unwrap()
                .after_hours_reply_due(None, closed),
            None
        );
        c.after_hours_reply = Some("Closed".into());
        let h = Hours::compile(&c).unwrap();
        assert_eq!(h.after_hours_reply_due(None, open), None);
        assert_eq!(h.after_hours_reply_due(None, closed), Some("Closed"));
        let hour_ago = closed.checked_sub(SignedDuration::from_hours(1)).unwrap();
        assert_eq!(h.after_hours_reply_due(Some(hour_ago), closed), None);
    }
}
