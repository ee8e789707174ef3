//! Decides what an inbound text causes: opt-out keywords and their replies, after-hours
//! replies and staff notifications. Pure and quick: it runs inside the store's transaction.

use std::sync::Arc;

use crate::{
    config::{Config, Line, Live},
    domain::{MessageId, PhoneNumber},
    policy::{Keyword, OptOutScope},
    segment,
    store::{InboundEffects, InboundPlanner, InboundText, MessageKind, NewMessage, OptOutChange},
};

pub struct Planner {
    config: Live,
}

impl Planner {
    pub fn new(config: Live) -> Self {
        Self { config }
    }

    pub fn into_planner(self) -> InboundPlanner {
        Arc::new(move |text: &InboundText| self.plan(text))
    }

    pub fn plan(&self, text: &InboundText) -> InboundEffects {
        let config = self.config.get();
        let Some(line) = config.lines.get(&text.line) else {
            // Checked before storing; a line removed by a reload still gets its text stored.
            return InboundEffects::default();
        };
        let mut fx = InboundEffects {
            app_id: Some(line.app.clone()),
            emit: true,
            ..Default::default()
        };
        let now = jiff::Timestamp::from_millisecond(text.received_at)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let keywords = &config.keywords;
        // A text missing parts is never taken as a keyword: "STOP" may be the start of more.
        let keyword = if text.incomplete {
            None
        } else {
            keywords.classify(&text.body)
        };
        if let Some(kw) = keyword {
            fx.keyword = Some(kw.as_str());
            let reply = keywords.reply_for(kw, line.help_text.as_deref()).to_owned();
            let lines = match keywords.scope(kw) {
                Some(OptOutScope::App) => app_lines(&config, &line.app),
                _ => vec![line.number.clone()],
            };
            match kw {
                Keyword::Stop | Keyword::StopAll => {
                    fx.opt_out = Some(OptOutChange {
                        lines,
                        number: text.from.clone(),
                        opted_out: true,
                        source: "keyword".into(),
                    });
                    // The one message an opted-out number still gets.
                    fx.replies
                        .push(self.reply(line, &text.from, reply, true, text.received_at));
                }
                Keyword::Start => {
                    fx.opt_out = Some(OptOutChange {
                        lines,
                        number: text.from.clone(),
                        opted_out: false,
                        source: "keyword".into(),
                    });
                    fx.replies
                        .push(self.reply(line, &text.from, reply, false, text.received_at));
                }
                Keyword::Help => {
                    fx.replies
                        .push(self.reply(line, &text.from, reply, false, text.received_at));
                }
            }
        }
        if let Some(hours) = &line.hours
            && !hours.is_open(now)
        {
            fx.after_hours = true;
            if keyword.is_none()
                && let Some(reply) = hours.after_hours_reply()
            {
                fx.after_hours_reply = Some((
                    self.reply(line, &text.from, reply.to_owned(), false, text.received_at),
                    hours.reply_window(),
                ));
            }
            if let Some(staff) = &line.staff_notify {
                // Says a text arrived and from whom (last 4 digits), never what it says.
                let body = format!(
                    "New text to {} from number ending {} after hours.",
                    line.number.as_str(),
                    text.from.last4()
                );
                let mut m = self.reply(line, staff, body, false, text.received_at);
                m.kind = MessageKind::Notify;
                fx.notify = Some(m);
            }
        }
        fx
    }

    fn reply(
        &self,
        line: &Line,
        to: &PhoneNumber,
        body: String,
        exempt: bool,
        at: i64,
    ) -> NewMessage {
        let plan = segment::plan(&body, &line.segment).ok();
        NewMessage {
            id: MessageId::generate(),
            app_id: line.app.clone(),
            line: line.number.clone(),
            to: to.clone(),
            encoding: plan.as_ref().map_or("ucs2", |p| p.encoding.as_str()),
            segments: plan.as_ref().map_or(1, |p| p.parts as u32),
            body: plan.map_or(body, |p| p.text),
            client_ref: None,
            carrier: line.carrier.clone(),
            created_at: at,
            kind: MessageKind::AutoReply,
            exempt_opt_out: exempt,
            high_priority: true,
            send_at: None,
            status_url: None,
            expires_at: Some(at + line.validity.as_millis() as i64),
        }
    }
}

fn app_lines(config: &Config, app: &str) -> Vec<PhoneNumber> {
    let mut v: Vec<PhoneNumber> = config
        .lines
        .values()
        .filter(|l| l.app == app)
        .map(|l| l.number.clone())
        .collect();
    v.sort();
    v
}
