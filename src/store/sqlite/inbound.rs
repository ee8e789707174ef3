//! Inbound texts (reassembly, duplicate detection, effects) and the opt-out list.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{Ctx, emit_event, insert};
use crate::{
    domain::{MessageId, Millis, PhoneNumber, now_millis, rfc3339},
    store::*,
};

/// A carrier retries a deliver_sm whose ack was lost within seconds to minutes; the same
/// bytes from the same number after this long are a new text ("Yes" sent twice).
const DEDUP_WINDOW_MS: i64 = 120_000;

pub(super) fn record_inbound(
    c: &Connection,
    ctx: &Ctx<'_>,
    part: &InboundPart,
    planner: &InboundPlanner,
) -> StoreResult<InboundOutcome> {
    let seen: Option<i64> = c
        .prepare_cached("SELECT received_at FROM mo_dedup WHERE carrier = ?1 AND key = ?2")?
        .query_row(params![part.carrier, part.dedup_key], |r| r.get(0))
        .optional()?;
    if seen.is_some_and(|at| part.received_at - at < DEDUP_WINDOW_MS) {
        return Ok(InboundOutcome::Duplicate);
    }
    c.prepare_cached(
        "INSERT OR REPLACE INTO mo_dedup (carrier, key, received_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![part.carrier, part.dedup_key, part.received_at])?;
    super::sweep_now_and_then(
        c,
        "DELETE FROM mo_dedup WHERE received_at < ?1",
        part.received_at,
        DEDUP_WINDOW_MS,
    )?;

    let (body, parts) = match part.concat {
        Some((reference, total, seq)) if total > 1 => {
            c.prepare_cached(
                "INSERT OR IGNORE INTO mo_partials (carrier, line, from_number, ref, total, seq, text, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                part.carrier,
                part.line.as_str(),
                part.from.as_str(),
                reference,
                total,
                seq,
                part.text,
                part.received_at
            ])?;
            let texts: Vec<String> = c
                .prepare_cached(
                    "SELECT text FROM mo_partials WHERE carrier = ?1 AND line = ?2 AND from_number = ?3 \
                     AND ref = ?4 ORDER BY seq",
                )?
                .query_map(
                    params![part.carrier, part.line.as_str(), part.from.as_str(), reference],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            if texts.len() < total as usize {
                return Ok(InboundOutcome::Partial);
            }
            c.prepare_cached(
                "DELETE FROM mo_partials WHERE carrier = ?1 AND line = ?2 AND from_number = ?3 AND ref = ?4",
            )?
            .execute(params![part.carrier, part.line.as_str(), part.from.as_str(), reference])?;
            (texts.concat(), u32::from(total))
        }
        _ => (part.text.clone(), 1),
    };
    let text = InboundText {
        id: MessageId::generate(),
        carrier: part.carrier.clone(),
        line: part.line.clone(),
        from: part.from.clone(),
        body,
        parts,
        incomplete: false,
        received_at: part.received_at,
    };
    store_text(c, ctx, &text, planner)
}

/// Stores a whole text and applies its effects.
fn store_text(
    c: &Connection,
    ctx: &Ctx<'_>,
    text: &InboundText,
    planner: &InboundPlanner,
) -> StoreResult<InboundOutcome> {
    let fx = planner(text);
    c.prepare_cached(
        "INSERT INTO inbound (id, app_id, carrier, line, from_number, body, parts, incomplete, keyword, \
         after_hours, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        text.id.as_str(),
        fx.app_id,
        text.carrier,
        text.line.as_str(),
        text.from.as_str(),
        text.body,
        text.parts,
        text.incomplete,
        fx.keyword,
        fx.after_hours,
        text.received_at
    ])?;
    // The list changes before the replies are stored (a START reply must not be refused), but
    // its events follow `message.received`: apps hear about the text before what it caused.
    let changed = match &fx.opt_out {
        Some(change) if fx.app_id.is_some() => change_opt_out_rows(c, change, text.received_at)?,
        _ => Vec::new(),
    };
    let mut replies = Vec::new();
    for m in &fx.replies {
        // A HELP reply to an opted-out number is refused like any other send.
        if insert(c, m, None)? == InsertOutcome::Inserted {
            replies.push(m.id.clone());
        }
    }
    if let Some((m, window)) = &fx.after_hours_reply {
        let last: Option<i64> = c
            .prepare_cached(
                "SELECT last_at FROM after_hours_replies WHERE line = ?1 AND number = ?2",
            )?
            .query_row(params![text.line.as_str(), text.from.as_str()], |r| {
                r.get(0)
            })
            .optional()?;
        if last.is_none_or(|at| text.received_at - at >= window.as_millis() as i64)
            && insert(c, m, None)? == InsertOutcome::Inserted
        {
            replies.push(m.id.clone());
            c.prepare_cached(
                "INSERT OR REPLACE INTO after_hours_replies (line, number, last_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![text.line.as_str(), text.from.as_str(), text.received_at])?;
        }
    }
    if let Some(m) = &fx.notify
        && insert(c, m, None)? == InsertOutcome::Inserted
    {
        replies.push(m.id.clone());
    }
    if fx.emit
        && let Some(app) = &fx.app_id
    {
        let opted_out = is_opted_out(c, &text.line, &text.from)?;
        emit_event(
            c,
            ctx,
            app,
            "message.received",
            &text.line,
            &text.from,
            json!({
                "id": text.id.as_str(),
                "line": text.line.as_str(),
                "from": text.from.as_str(),
                "body": text.body,
                "parts": text.parts,
                "incomplete": text.incomplete,
                "received_at": rfc3339(text.received_at),
                "after_hours": fx.after_hours,
                "keyword": fx.keyword,
                "opted_out": opted_out,
                "auto_replies": replies.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            }),
            text.received_at,
        )?;
    }
    if let (Some(change), Some(app)) = (&fx.opt_out, &fx.app_id) {
        emit_opt_out_events(c, ctx, app, change, &changed, text.received_at)?;
    }
    Ok(InboundOutcome::Stored {
        id: text.id.clone(),
        replies,
    })
}

pub(super) fn expire_partials(
    c: &Connection,
    ctx: &Ctx<'_>,
    before: Millis,
    planner: &InboundPlanner,
) -> StoreResult<u64> {
    let groups: Vec<(String, String, String, u16, u8)> = c
        .prepare_cached(
            "SELECT carrier, line, from_number, ref, max(total) FROM mo_partials \
             GROUP BY carrier, line, from_number, ref HAVING min(received_at) < ?1",
        )?
        .query_map(params![before], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let n = groups.len() as u64;
    for (carrier, line, from, reference, total) in groups {
        let rows: Vec<(String, Millis)> = c
            .prepare_cached(
                "SELECT text, received_at FROM mo_partials WHERE carrier = ?1 AND line = ?2 \
                 AND from_number = ?3 AND ref = ?4 ORDER BY seq",
            )?
            .query_map(params![carrier, line, from, reference], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        c.prepare_cached(
            "DELETE FROM mo_partials WHERE carrier = ?1 AND line = ?2 AND from_number = ?3 AND ref = ?4",
        )?
        .execute(params![carrier, line, from, reference])?;
        let text = InboundText {
            id: MessageId::generate(),
            carrier,
            line: PhoneNumber::from_store(line),
            from: PhoneNumber::from_store(from),
            body: rows.iter().map(|(t, _)| t.as_str()).collect(),
            parts: u32::from(total),
            incomplete: true,
            received_at: rows.first().map_or_else(now_millis, |r| r.1),
        };
        store_text(c, ctx, &text, planner)?;
    }
    Ok(n)
}

fn is_opted_out(c: &Connection, line: &PhoneNumber, number: &PhoneNumber) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM opt_outs WHERE line = ?1 AND number = ?2")?
            .query_row(params![line.as_str(), number.as_str()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Applies an opt-out change and emits its `opt_out.changed` events; returns how many lines
/// actually changed.
pub(super) fn apply_opt_out(
    c: &Connection,
    ctx: &Ctx<'_>,
    app_id: &str,
    change: &OptOutChange,
    now: Millis,
) -> StoreResult<u64> {
    let changed = change_opt_out_rows(c, change, now)?;
    emit_opt_out_events(c, ctx, app_id, change, &changed, now)?;
    Ok(changed.len() as u64)
}

/// Writes an opt-out change; returns the lines whose state actually changed.
fn change_opt_out_rows(
    c: &Connection,
    change: &OptOutChange,
    now: Millis,
) -> StoreResult<Vec<PhoneNumber>> {
    let mut changed = Vec::new();
    for line in &change.lines {
        let n = if change.opted_out {
            c.prepare_cached(
                "INSERT OR IGNORE INTO opt_outs (line, number, source, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![line.as_str(), change.number.as_str(), change.source, now])?
        } else {
            c.prepare_cached("DELETE FROM opt_outs WHERE line = ?1 AND number = ?2")?
                .execute(params![line.as_str(), change.number.as_str()])?
        };
        if n > 0 {
            changed.push(line.clone());
        }
    }
    Ok(changed)
}

fn emit_opt_out_events(
    c: &Connection,
    ctx: &Ctx<'_>,
    app_id: &str,
    change: &OptOutChange,
    lines: &[PhoneNumber],
    now: Millis,
) -> StoreResult<()> {
    // Every change passes here (keyword, API, import), whether or not the app takes events.
    if !lines.is_empty() {
        let kind = if change.opted_out {
            "opt_out"
        } else {
            "opt_in"
        };
        ctx.metrics
            .opt_out_changes
            .with_label_values(&[kind, change.source.as_str()])
            .inc_by(lines.len() as u64);
    }
    for line in lines {
        emit_event(
            c,
            ctx,
            app_id,
            "opt_out.changed",
            line,
            &change.number,
            json!({
                "line": line.as_str(),
                "number": change.number.as_str(),
                "opted_out": change.opted_out,
                "source": change.source,
                "changed_at": rfc3339(now),
            }),
            now,
        )?;
    }
    Ok(())
}

pub(super) fn read_opt_out(
    c: &Connection,
    line: &PhoneNumber,
    number: &PhoneNumber,
) -> StoreResult<Option<OptOut>> {
    Ok(
        c.prepare_cached(
            "SELECT source, created_at FROM opt_outs WHERE line = ?1 AND number = ?2",
        )?
        .query_row(params![line.as_str(), number.as_str()], |r| {
            Ok(OptOut {
                line: line.clone(),
                number: number.clone(),
                source: r.get(0)?,
                created_at: r.get(1)?,
            })
        })
        .optional()?,
    )
}

pub(super) fn list_opt_outs(
    c: &Connection,
    line: &PhoneNumber,
    after: &str,
    limit: usize,
) -> StoreResult<Vec<OptOut>> {
    Ok(c.prepare_cached(
        "SELECT number, source, created_at FROM opt_outs WHERE line = ?1 AND number > ?2 \
             ORDER BY number LIMIT ?3",
    )?
    .query_map(params![line.as_str(), after, limit as i64], |r| {
        Ok(OptOut {
            line: line.clone(),
            number: PhoneNumber::from_store(r.get(0)?),
            source: r.get(1)?,
            created_at: r.get(2)?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

pub(super) fn conversations(
    c: &Connection,
    line: &PhoneNumber,
    before: Millis,
    limit: usize,
) -> StoreResult<Vec<Conversation>> {
    // Staff notifications leave from the line too, but they are not a conversation.
    let heads: Vec<(String, Millis)> = c
        .prepare_cached(
            "SELECT number, max(last_at) AS last FROM ( \
               SELECT to_number AS number, max(created_at) AS last_at FROM messages \
                 WHERE line = ?1 AND kind != 'notify' GROUP BY to_number \
               UNION ALL \
               SELECT from_number, max(received_at) FROM inbound WHERE line = ?1 GROUP BY from_number) \
             GROUP BY number HAVING last < ?2 ORDER BY last DESC, number LIMIT ?3",
        )?
        .query_map(params![line.as_str(), before, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(heads.len());
    for (number, last_at) in heads {
        let number = PhoneNumber::from_store(number);
        let last = conversation_page(c, line, &number, last_at - 1, 1)?;
        let unread: u32 = c
            .prepare_cached(
                "SELECT count(*) FROM inbound WHERE line = ?1 AND from_number = ?2 AND read_at IS NULL",
            )?
            .query_row(params![line.as_str(), number.as_str()], |r| r.get(0))?;
        let (last_direction, last_body) = last
            .into_iter()
            .next()
            .map_or((Direction::Outbound, String::new()), |m| {
                (m.direction, m.body)
            });
        out.push(Conversation {
            opted_out: is_opted_out(c, line, &number)?,
            number,
            last_at,
            last_direction,
            last_body,
            unread,
        });
    }
    Ok(out)
}

pub(super) fn conversation_page(
    c: &Connection,
    line: &PhoneNumber,
    number: &PhoneNumber,
    after: Millis,
    limit: usize,
) -> StoreResult<Vec<ConversationMessage>> {
    Ok(c
        .prepare_cached(
            "SELECT 'outbound', id, body, status, created_at FROM messages \
               WHERE line = ?1 AND to_number = ?2 AND created_at > ?3 \
             UNION ALL \
             SELECT 'inbound', id, body, CASE WHEN read_at IS NULL THEN 'unread' ELSE 'read' END, received_at \
               FROM inbound WHERE line = ?1 AND from_number = ?2 AND received_at > ?3 \
             ORDER BY 5, 2 LIMIT ?4",
        )?
        .query_map(params![line.as_str(), number.as_str(), after, limit as i64], |r| {
            Ok(ConversationMessage {
                direction: if r.get::<_, String>(0)? == "inbound" {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                id: MessageId::from_store(r.get(1)?),
                body: r.get(2)?,
                status: r.get(3)?,
                at: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}
