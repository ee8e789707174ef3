//! Property test: any interleaving of pushes, pops and clock advances keeps every line and
//! the carrier within their rates, keeps each line's order, and eventually lets every item go.

use std::{collections::HashMap, time::Duration};

use proptest::prelude::*;
use proptest::sample::select;
use tokio::time::Instant;

use super::super::*;
use super::drain;

const LINES: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Push { line: usize, cost: u32, high: bool },
    Advance(u64),
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..LINES, 1u32..=5, any::<bool>())
            .prop_map(|(line, cost, high)| Op::Push { line, cost, high }),
        2 => (0u64..1_500).prop_map(Op::Advance),
        4 => Just(Op::Pop),
    ]
}

fn limit() -> impl Strategy<Value = LineLimit> {
    (select(vec![0.5, 1.0, 2.0, 3.0, 10.0, 100.0]), 1u32..=4)
        .prop_map(|(r, b)| LineLimit::new(r, b))
}

#[derive(Debug, Clone, Copy)]
struct Item {
    id: usize,
    line: usize,
    cost: u32,
    high: bool,
    /// Index of the event (push or pop) at which it was pushed.
    pushed: usize,
}

/// Tokens spent in any window `[t_i, t_j]` are at most `max(burst, largest cost in it) +
/// rate * (t_j - t_i)`: the burst, plus what refills, plus the debt a cost above the burst
/// may leave.
fn check_rate(
    what: &str,
    sends: &[(Duration, u32)],
    per_second: f64,
    burst: u32,
) -> Result<(), TestCaseError> {
    for i in 0..sends.len() {
        let mut spent = 0u64;
        let mut biggest = burst;
        for &(at, cost) in &sends[i..] {
            spent += u64::from(cost);
            biggest = biggest.max(cost);
            let window = (at - sends[i].0).as_secs_f64();
            let allowed = f64::from(biggest) + per_second * window + 1e-6;
            prop_assert!(
                spent as f64 <= allowed,
                "{what}: {spent} tokens in {window}s from {:?} (rate {per_second}, burst {burst})",
                sends[i].0
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_line_or_carrier_exceeds_its_rate_and_every_item_goes(
        limits in proptest::collection::vec(limit(), LINES),
        carrier in select(vec![None, Some(2.0), Some(5.0), Some(50.0)]),
        carrier_burst in 1u32..=6,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let start = Instant::now();
        let mut s = Scheduler::new(carrier, carrier_burst);
        let mut now = start;
        let mut items = Vec::new();
        let mut popped: Vec<(usize, Duration, usize)> = Vec::new();
        let mut event = 0;
        for op in ops {
            match op {
                Op::Push { line, cost, high } => {
                    let item = Item { id: items.len(), line, cost, high, pushed: event };
                    let priority = if high { Priority::High } else { Priority::Normal };
                    s.push(&format!("line{line}"), limits[line], cost, priority, item);
                    items.push(item);
                    event += 1;
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Pop => {
                    if let Some(item) = s.pop_ready(now) {
                        popped.push((item.id, now - start, event));
                        event += 1;
                    }
                }
            }
        }
        let end = now - start;
        for (item, at) in drain(&mut s, now) {
            popped.push((item.id, end + at, event));
            event += 1;
        }

        // Every item went, exactly once.
        prop_assert!(s.is_empty());
        let mut ids: Vec<_> = popped.iter().map(|p| p.0).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..items.len()).collect::<Vec<_>>());

        // Rates.
        let mut per_line: HashMap<usize, Vec<(Duration, u32)>> = HashMap::new();
        let mut all = Vec::new();
        for &(id, at, _) in &popped {
            per_line.entry(items[id].line).or_default().push((at, items[id].cost));
            all.push((at, items[id].cost));
        }
        for (line, sends) in &per_line {
            let l = limits[*line];
            check_rate(&format!("line{line}"), sends, l.per_second, l.burst)?;
        }
        if let Some(rate) = carrier {
            check_rate("carrier", &all, rate, carrier_burst)?;
        }

        // Order within a line: High before Normal among what was queued, each in push order.
        for (k, &(id, _, at_event)) in popped.iter().enumerate() {
            let it = items[id];
            let later: Vec<_> = popped[k + 1..].iter().map(|p| items[p.0]).collect();
            for other in later.iter().filter(|o| o.line == it.line && o.pushed < at_event) {
                prop_assert!(
                    other.high <= it.high && !(other.high == it.high && other.pushed < it.pushed),
                    "{:?} went before {:?} although both were queued", it, other
                );
            }
        }
    }
}
