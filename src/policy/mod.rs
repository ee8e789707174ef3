//! Policy: the decisions about inbound and outbound texts.
//!
//! - [`keywords`]: whether an inbound text is STOP, STOPALL, START or HELP, which lines it covers,
//!   and the automatic reply.
//! - [`hours`]: whether a line is open at an instant (weekly hours, holidays, its time zone, DST),
//!   when it opens next, and whether an after-hours reply is due.
//! - [`numbers`]: whether a number can take texts (carrier marks, operator overrides, an optional
//!   line-type lookup with a cache). The only part here that does I/O.
//!
//! Enforcement lives elsewhere: the opt-out list and what is known about numbers (landline, not
//! textable) are kept by the store and applied by the API and the inbound path; those callers
//! pass the current time in, so everything here is deterministic.

pub mod hours;
pub mod keywords;
pub mod numbers;

pub use hours::{Hours, HoursConfig, NEXT_OPEN_HORIZON_DAYS, ReplyLimiter};
pub use keywords::{Keyword, KeywordConfig, Keywords, OptOutScope};
pub use numbers::{NumberIntel, Verdict};
