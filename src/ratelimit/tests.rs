//! Scheduler behaviour on a simulated clock: instants are made up and passed in, nothing
//! sleeps, and no test looks at the wall clock.

mod props;

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const UNLIMITED: LineLimit = LineLimit::new(f64::INFINITY, 1);

/// Runs the scheduler on a simulated clock until it is empty: everything ready goes, then the
/// clock jumps to `next_ready_at`. Returns each item with when it went, relative to `start`.
fn drain<T>(s: &mut Scheduler<T>, start: Instant) -> Vec<(T, Duration)> {
    let mut now = start;
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        while let Some(item) = s.pop_ready(now) {
            out.push((item, now - start));
        }
        match s.next_ready_at(now) {
            None => return out,
            Some(next) => {
                assert!(
                    next > now,
                    "nothing went at {now:?} yet next_ready_at is not later"
                );
                now = next;
            }
        }
    }
    panic!("scheduler did not drain");
}

/// The times at which items matching `keep` went.
fn times_of<T>(out: &[(T, Duration)], keep: impl Fn(&T) -> bool) -> Vec<Duration> {
    out.iter()
        .filter(|(t, _)| keep(t))
        .map(|(_, at)| *at)
        .collect()
}

#[test]
fn class_defaults_are_one_three_and_a_hundred_per_second() {
    assert_eq!(
        LineLimit::for_class(RateClass::LongCode),
        LineLimit::new(1.0, 1)
    );
    assert_eq!(
        LineLimit::for_class(RateClass::TollFree),
        LineLimit::new(3.0, 1)
    );
    assert_eq!(
        LineLimit::for_class(RateClass::ShortCode),
        LineLimit::new(100.0, 10)
    );
}

#[test]
fn a_line_override_replaces_its_class_default_and_zero_carrier_rate_is_unlimited() {
    let mut limits = Limits::new(0.0);
    limits.set_line("+12125550100", LineLimit::new(5.0, 2));
    assert_eq!(
        limits.line("+12125550100", RateClass::LongCode),
        LineLimit::new(5.0, 2)
    );
    assert_eq!(
        limits.line("+12125550101", RateClass::TollFree),
        LineLimit::new(3.0, 1)
    );
    assert_eq!(limits.carrier_rate(), None);
    assert_eq!(Limits::new(50.0).carrier_rate(), Some(50.0));
    assert_eq!(
        Limits::new(50.0).scheduler::<()>().carrier_rate(),
        Some(50.0)
    );
}

#[test]
fn two_per_second_line_needs_nine_and_a_half_seconds_for_twenty_segments_and_leaves_another_line_alone()
 {
    let limit = LineLimit::new(2.0, 1);
    let start = Instant::now();

    let mut alone = Scheduler::new(None, 0);
    for i in 0..20 {
        alone.push("b", limit, 1, Priority::Normal, ("b", i));
    }
    let b_alone = times_of(&drain(&mut alone, start), |_| true);

    let mut s = Scheduler::new(None, 0);
    for i in 0..20 {
        s.push("a", limit, 1, Priority::Normal, ("a", i));
        s.push("b", limit, 1, Priority::Normal, ("b", i));
    }
    let out = drain(&mut s, start);
    let a = times_of(&out, |(l, _)| *l == "a");
    let b = times_of(&out, |(l, _)| *l == "b");

    assert_eq!(a.len(), 20);
    assert!(a[19] >= ms(9_500), "20 segments at 2/s in {:?}", a[19]);
    assert!(a[19] < ms(9_600), "and not slower: {:?}", a[19]);
    for w in a.windows(2) {
        assert!(w[1] - w[0] >= ms(500), "{w:?}");
    }
    assert_eq!(b, b_alone, "the other line is paced as if it were alone");
}

#[test]
fn three_part_text_costs_three_tokens() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::new(1.0, 3);
    s.push("a", limit, 3, Priority::Normal, "three parts");
    s.push("a", limit, 1, Priority::Normal, "one part");
    assert_eq!(s.pop_ready(start), Some("three parts"));
    assert_eq!(s.pop_ready(start), None, "the bucket of 3 is empty");
    assert_eq!(s.next_ready_at(start), Some(start + secs(1)));
    assert_eq!(s.pop_ready(start + secs(1)), Some("one part"));
}

#[test]
fn three_part_text_costs_three_carrier_tokens() {
    let start = Instant::now();
    let mut s = Scheduler::new(Some(1.0), 3);
    s.push("a", UNLIMITED, 3, Priority::Normal, "a");
    s.push("b", UNLIMITED, 1, Priority::Normal, "b");
    assert_eq!(s.pop_ready(start), Some("a"));
    assert_eq!(s.pop_ready(start), None);
    assert_eq!(s.next_ready_at(start), Some(start + secs(1)));
    assert_eq!(s.pop_ready(start + secs(1)), Some("b"));
}

#[test]
fn text_costing_more_than_the_burst_goes_when_the_bucket_is_full_and_the_next_waits_off_the_debt() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::new(1.0, 1);
    s.push("a", limit, 1, Priority::Normal, "first");
    s.push("a", limit, 3, Priority::Normal, "three parts");
    s.push("a", limit, 1, Priority::Normal, "after");
    let out = drain(&mut s, start);
    assert_eq!(
        out,
        vec![
            ("first", Duration::ZERO),
            ("three parts", secs(1)),
            ("after", secs(4)),
        ]
    );
}

#[test]
fn a_line_with_ten_thousand_queued_delays_a_line_with_one_by_at_most_one_round() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    for bulk in ["bulk1", "bulk2", "bulk3"] {
        for i in 0..10_000 {
            s.push(bulk, UNLIMITED, 1, Priority::Normal, (bulk, i));
        }
    }
    // Some turns have gone already; the new line joins the back of the round.
    for _ in 0..5 {
        assert!(s.pop_ready(start).is_some());
    }
    s.push("one", UNLIMITED, 1, Priority::Normal, ("one", 0));
    let next: Vec<_> = (0..4).map_while(|_| s.pop_ready(start)).collect();
    assert!(next.contains(&("one", 0)), "{next:?}");
    assert_eq!(s.lines_waiting(), 3);
    assert_eq!(s.len(), 30_000 - 5 - 3);
}

#[test]
fn a_line_out_of_tokens_does_not_block_other_lines() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let slow = LineLimit::new(1.0, 1);
    for i in 0..10 {
        s.push("slow1", slow, 1, Priority::Normal, ("slow1", i));
        s.push("slow2", slow, 1, Priority::Normal, ("slow2", i));
    }
    for i in 0..100 {
        s.push("fast", UNLIMITED, 1, Priority::Normal, ("fast", i));
    }
    let mut now_out = Vec::new();
    while let Some(x) = s.pop_ready(start) {
        now_out.push(x);
    }
    assert_eq!(now_out.iter().filter(|(l, _)| *l == "fast").count(), 100);
    assert_eq!(now_out.len(), 102, "one each from the slow lines");
    assert_eq!(s.lines_waiting(), 2);
    assert_eq!(s.next_ready_at(start), Some(start + secs(1)));
}

#[test]
fn high_priority_goes_before_normal_within_a_line() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    s.push("a", UNLIMITED, 1, Priority::Normal, "n1");
    s.push("a", UNLIMITED, 1, Priority::Normal, "n2");
    s.push("a", UNLIMITED, 1, Priority::High, "h1");
    s.push("a", UNLIMITED, 1, Priority::High, "h2");
    let order: Vec<_> = std::iter::from_fn(|| s.pop_ready(start)).collect();
    assert_eq!(order, ["h1", "h2", "n1", "n2"]);
}

#[test]
fn high_priority_push_to_a_waiting_line_makes_it_ready_sooner() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::new(1.0, 3);
    s.push("a", limit, 3, Priority::Normal, "bulk 1");
    s.push("a", limit, 3, Priority::Normal, "bulk 2");
    assert_eq!(s.pop_ready(start), Some("bulk 1"));
    assert_eq!(s.pop_ready(start), None);
    assert_eq!(s.next_ready_at(start), Some(start + secs(3)));
    s.push("a", limit, 1, Priority::High, "reply");
    assert_eq!(s.next_ready_at(start), Some(start + secs(1)));
    assert_eq!(s.pop_ready(start + secs(1)), Some("reply"));
    assert_eq!(s.pop_ready(start + secs(1)), None);
    assert_eq!(s.next_ready_at(start + secs(1)), Some(start + secs(4)));
}

#[test]
fn carrier_cap_applies_across_lines() {
    let start = Instant::now();
    let mut s = Scheduler::new(Some(10.0), 1);
    for line in 0..5 {
        for i in 0..20 {
            s.push(
                &format!("line{line}"),
                UNLIMITED,
                1,
                Priority::Normal,
                (line, i),
            );
        }
    }
    let out = drain(&mut s, start);
    assert_eq!(out.len(), 100);
    assert_eq!(out[99].1, ms(9_900));
    for w in out.windows(2) {
        assert!(w[1].1 - w[0].1 >= ms(100), "{w:?}");
    }
    let first_round: Vec<_> = out[..5].iter().map(|((line, _), _)| *line).collect();
    assert_eq!(first_round, [0, 1, 2, 3, 4], "lines take turns");
}

#[test]
fn a_reloaded_carrier_rate_applies_and_the_same_rate_keeps_the_throttled_state() {
    let start = Instant::now();
    let mut s = Scheduler::new(Some(10.0), 1);
    s.on_throttled(start);
    assert_eq!(s.carrier_rate(), Some(5.0));
    // Reloading an unchanged contract must not undo the back-off.
    s.set_carrier_rate(Some(10.0));
    assert_eq!(s.carrier_rate(), Some(5.0));
    s.set_carrier_rate(Some(100.0));
    assert_eq!(s.carrier_rate(), Some(100.0));
    for i in 0..50 {
        s.push("line", UNLIMITED, 1, Priority::Normal, i);
    }
    let out = drain(&mut s, start);
    assert_eq!(out[49].1, ms(490), "paced at the new 100/s");
    s.set_carrier_rate(None);
    assert_eq!(s.carrier_rate(), None);
}

#[test]
fn a_line_backlog_is_its_queued_segments_at_its_own_rate() {
    let mut s = Scheduler::new(Some(1.0), 1);
    s.push("slow", LineLimit::new(2.0, 1), 3, Priority::Normal, 0);
    s.push("slow", LineLimit::new(2.0, 1), 1, Priority::High, 1);
    s.push("fast", UNLIMITED, 5, Priority::Normal, 2);
    assert_eq!(s.line_backlog("slow"), ms(2_000), "4 segments at 2/s");
    assert_eq!(
        s.line_backlog("fast"),
        Duration::ZERO,
        "unlimited: never slow"
    );
    assert_eq!(s.line_backlog("unknown"), Duration::ZERO);
}

#[test]
fn a_line_blocked_by_the_carrier_keeps_its_turn() {
    let start = Instant::now();
    let mut s = Scheduler::new(Some(1.0), 1);
    let limit = LineLimit::new(1.0, 1);
    s.push("a", limit, 1, Priority::Normal, "a1");
    s.push("a", limit, 1, Priority::Normal, "a2");
    s.push("b", limit, 1, Priority::Normal, "b1");
    let out = drain(&mut s, start);
    assert_eq!(
        out,
        vec![("a1", Duration::ZERO), ("b1", secs(1)), ("a2", secs(2))]
    );
}

#[test]
fn throttling_halves_the_carrier_rate_once_a_second_down_to_one_per_second() {
    let t = Instant::now();
    let mut s = Scheduler::<()>::new(Some(100.0), 0);
    s.on_throttled(t);
    assert_eq!(s.carrier_rate(), Some(50.0));
    s.on_throttled(t + ms(500));
    assert_eq!(
        s.carrier_rate(),
        Some(50.0),
        "the same congestion, answered once"
    );
    s.on_throttled(t + secs(1));
    assert_eq!(s.carrier_rate(), Some(25.0));
    for i in 2..12 {
        s.on_throttled(t + secs(i));
    }
    assert_eq!(s.carrier_rate(), Some(1.0));
}

#[test]
fn a_throttled_carrier_is_paced_at_the_lower_rate() {
    let start = Instant::now();
    let mut s = Scheduler::new(Some(10.0), 1);
    s.on_throttled(start);
    for i in 0..10 {
        s.push("a", UNLIMITED, 1, Priority::Normal, i);
    }
    let out = drain(&mut s, start);
    assert_eq!(out[9].1, ms(1_800), "5/s, not 10/s");
}

#[test]
fn accepted_submits_after_a_quiet_period_recover_the_carrier_rate() {
    let t = Instant::now();
    let mut s = Scheduler::<()>::new(Some(100.0), 0);
    s.on_throttled(t);
    assert_eq!(s.carrier_rate(), Some(50.0));
    s.on_accepted(t + ms(4_900));
    assert_eq!(s.carrier_rate(), Some(50.0), "not quiet for long enough");
    s.on_accepted(t + secs(5));
    assert_eq!(s.carrier_rate(), Some(60.0), "a tenth of 100 per step");
    s.on_accepted(t + ms(5_500));
    assert_eq!(s.carrier_rate(), Some(60.0), "one step a second");
    for i in 6..20 {
        s.on_accepted(t + secs(i));
    }
    assert_eq!(
        s.carrier_rate(),
        Some(100.0),
        "never above the configured rate"
    );
    s.on_throttled(t + secs(20));
    assert_eq!(s.carrier_rate(), Some(50.0), "and halves again");
}

#[test]
fn throttling_an_unlimited_carrier_limits_it_to_half_the_rate_it_was_driven_at_until_it_recovers() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    for i in 0..40 {
        s.push(&format!("line{i}"), UNLIMITED, 1, Priority::Normal, i);
    }
    // 40 submits in the first second, 40 more in the next.
    for sec in 0..2 {
        for i in 0..40 {
            let now = start + secs(sec) + ms(i * 20);
            assert!(s.pop_ready(now).is_some());
            s.push(&format!("line{i}"), UNLIMITED, 1, Priority::Normal, i);
        }
    }
    s.on_throttled(start + secs(2));
    assert_eq!(s.carrier_rate(), Some(20.0));
    let mut now = start + secs(7);
    for _ in 0..5 {
        s.on_accepted(now);
        now += secs(1);
    }
    assert_eq!(s.carrier_rate(), None, "back to unlimited");
}

#[test]
fn limiter_waits_counts_each_waiting_item_once() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::new(1.0, 1);
    for i in 0..3 {
        s.push("a", limit, 1, Priority::Normal, i);
    }
    assert_eq!(s.pop_ready(start), Some(0));
    for _ in 0..5 {
        assert_eq!(s.pop_ready(start + ms(100)), None);
    }
    assert_eq!(s.limiter_waits(), 1);
    drain(&mut s, start + ms(100));
    assert_eq!(s.limiter_waits(), 2, "items 1 and 2 waited, item 0 did not");
}

#[test]
fn next_ready_at_is_none_when_empty_and_never_before_now() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    assert_eq!(s.next_ready_at(start), None);
    s.push("a", LineLimit::new(1.0, 1), 1, Priority::Normal, ());
    assert_eq!(s.next_ready_at(start), Some(start), "ready now");
    assert_eq!(s.pop_ready(start), Some(()));
    s.push("a", LineLimit::new(1.0, 1), 1, Priority::Normal, ());
    let later = start + secs(5);
    assert_eq!(s.next_ready_at(later), Some(later), "due long ago");
}

#[test]
fn a_changed_line_limit_applies_from_the_next_token() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    s.push("a", LineLimit::new(1.0, 1), 1, Priority::Normal, 1);
    assert_eq!(s.pop_ready(start), Some(1));
    s.push("a", LineLimit::new(0.1, 1), 1, Priority::Normal, 2);
    s.push("a", LineLimit::new(0.1, 1), 1, Priority::Normal, 3);
    let out = drain(&mut s, start);
    assert_eq!(out, vec![(2, secs(1)), (3, secs(11))]);
}

#[test]
fn take_all_returns_everything_queued_and_empties_the_scheduler() {
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::new(1.0, 1);
    for i in 0..4 {
        s.push(&format!("l{}", i % 2), limit, 1, Priority::Normal, i);
    }
    assert!(s.pop_ready(start).is_some());
    assert!(s.pop_ready(start).is_some());
    assert_eq!(s.pop_ready(start), None);
    let mut rest = s.take_all();
    rest.sort();
    assert_eq!(rest, [2, 3]);
    assert!(s.is_empty());
    assert_eq!(s.lines_waiting(), 0);
    assert_eq!(s.next_ready_at(start), None);
    assert_eq!(s.line_len("l0"), 0);
}

#[test]
fn hundred_thousand_lines_are_scheduled() {
    const LINES: usize = 100_000;
    let start = Instant::now();
    let mut s = Scheduler::new(None, 0);
    let limit = LineLimit::for_class(RateClass::LongCode);
    let names: Vec<String> = (0..LINES).map(|i| format!("+1212{i:07}")).collect();
    for (i, name) in names.iter().enumerate() {
        s.push(name, limit, 1, Priority::Normal, i);
    }
    assert_eq!(s.len(), LINES);
    assert_eq!(s.lines_waiting(), LINES);
    assert_eq!(std::iter::from_fn(|| s.pop_ready(start)).count(), LINES);
    assert!(s.is_empty());

    // Every line has spent its token: the next round waits a second, then all go.
    for (i, name) in names.iter().enumerate() {
        s.push(name, limit, 1, Priority::Normal, i);
    }
    assert_eq!(s.pop_ready(start), None);
    assert_eq!(s.limiter_waits(), LINES as u64);
    assert_eq!(s.next_ready_at(start), Some(start + secs(1)));
    let later = start + secs(1);
    assert_eq!(std::iter::from_fn(|| s.pop_ready(later)).count(), LINES);
    assert_eq!(s.len(), 0);
    assert_eq!(s.line_len(&names[7]), 0);
}
