//! [`AlertStore`] on SQLite. Writes that must happen once run in `BEGIN IMMEDIATE`
//! transactions on the reader's connection, so they queue behind the engine's batches.

use purse_core::alerts::{AlertSettings, Counter, Profile, Rule, RuleKind};
use purse_core::{Amount, Event, PartyId, Timestamp};
use purse_store::codec::{self, id_from_db, id_to_db};
use purse_store::columns::{
    ALERT_SETTINGS_COLUMNS, DELIVERY_COLUMNS, ENDPOINT_COLUMNS, JOB_RUN_COLUMNS, NOTIFICATION_COLUMNS, OUTBOX_COLUMNS,
    PROFILE_COLUMNS, RULE_COLUMNS,
};
use purse_store::{
    AlertBatch, AlertKind, AlertStore, Attempt, Channel, DeliveryRecord, DeliveryStatus, JobRun, NotificationQuery,
    NotificationRecord, StoreError, StoreResult, WebhookEndpoint,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{conv, opt_id, SqliteReader};

fn bad(what: &str, text: &str) -> rusqlite::Error {
    conv::<()>(Err(StoreError::Other(format!("unknown {what} {text:?}")))).unwrap_err()
}

fn profile_from_row(r: &Row<'_>) -> rusqlite::Result<Profile> {
    Ok(Profile {
        id: id_from_db(r.get(0)?),
        name: r.get(1)?,
        reseller: opt_id(r.get(2)?).map(PartyId),
        currency: conv(codec::currency_code(&r.get::<_, String>(3)?))?,
        sort_order: r.get(4)?,
        max_quantity: r.get(5)?,
        period_s: r.get(6)?,
        rules: Vec::new(),
        subject: r.get(7)?,
        body: r.get(8)?,
        created_at: Timestamp(r.get(9)?),
        updated_at: Timestamp(r.get(10)?),
    })
}

fn rule_from_row(r: &Row<'_>) -> rusqlite::Result<(u64, Rule)> {
    let kind: String = r.get(1)?;
    Ok((
        id_from_db(r.get(0)?),
        Rule {
            kind: RuleKind::parse(&kind).ok_or_else(|| bad("rule kind", &kind))?,
            threshold: Amount(r.get(2)?),
            notify: r.get(3)?,
            users: conv(codec::parse_ids(&r.get::<_, String>(4)?))?,
            emails: codec::parse_emails(&r.get::<_, String>(5)?),
            inactivity_s: r.get(6)?,
        },
    ))
}

fn settings_from_row(r: &Row<'_>) -> rusqlite::Result<AlertSettings> {
    Ok(AlertSettings {
        party: PartyId(id_from_db(r.get(0)?)),
        profile: opt_id(r.get(1)?),
        email: r.get(2)?,
        alert_emails: codec::parse_emails(&r.get::<_, String>(3)?),
        warning: conv(codec::parse_warning_levels(&r.get::<_, String>(4)?))?,
        updated_at: Timestamp(r.get(5)?),
    })
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = r.get(3)?;
    let direction: Option<String> = r.get(5)?;
    conv(codec::parse_event(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        &kind,
        r.get(4)?,
        direction.as_deref(),
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn notification_from_row(r: &Row<'_>) -> rusqlite::Result<NotificationRecord> {
    let kind: String = r.get(2)?;
    Ok(NotificationRecord {
        id: id_from_db(r.get(0)?),
        party: PartyId(id_from_db(r.get(1)?)),
        kind: AlertKind::parse(&kind).ok_or_else(|| bad("notification kind", &kind))?,
        threshold: r.get(3)?,
        available: r.get(4)?,
        currency: conv(codec::currency_code(&r.get::<_, String>(5)?))?,
        at: Timestamp(r.get(6)?),
        subject: r.get(7)?,
        body: r.get(8)?,
        payload: r.get(9)?,
    })
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let channel: String = r.get(2)?;
    let status: String = r.get(5)?;
    Ok(DeliveryRecord {
        id: id_from_db(r.get(0)?),
        notification: id_from_db(r.get(1)?),
        channel: if channel == "webhook" { Channel::Webhook } else { Channel::Email },
        target: r.get(3)?,
        endpoint: opt_id(r.get(4)?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| bad("delivery status", &status))?,
        attempts: r.get(6)?,
        next_at: Timestamp(r.get(7)?),
        last_error: r.get(8)?,
        sent_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
    })
}

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: id_from_db(r.get(0)?),
        owner: opt_id(r.get(1)?).map(PartyId),
        url: r.get(2)?,
        secret: r.get(3)?,
        enabled: r.get(4)?,
        disabled_reason: r.get(5)?,
        failures: r.get(6)?,
        created_at: Timestamp(r.get(7)?),
    })
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRun> {
    Ok(JobRun {
        job: r.get(0)?,
        key: r.get(1)?,
        claimed_by: r.get(2)?,
        started_at: Timestamp(r.get(3)?),
        finished_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
        summary: r.get(5)?,
    })
}

fn write_rules(c: &Connection, profile: &Profile) -> rusqlite::Result<()> {
    c.execute("DELETE FROM profile_rules WHERE profile_id = ?", [id_to_db(profile.id)])?;
    let mut insert = c.prepare_cached(&format!("INSERT INTO profile_rules ({RULE_COLUMNS}) VALUES (?,?,?,?,?,?,?)"))?;
    for rule in &profile.rules {
        insert.execute(params![
            id_to_db(profile.id),
            rule.kind.as_str(),
            rule.threshold.0,
            rule.notify,
            codec::ids(&rule.users),
            codec::emails(&rule.emails),
            rule.inactivity_s,
        ])?;
    }
    Ok(())
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing when it returns `Ok(true)`.
pub(crate) fn exclusive(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<bool>,
) -> rusqlite::Result<bool> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    match f(c) {
        Ok(true) => {
            c.execute_batch("COMMIT")?;
            Ok(true)
        }
        other => {
            c.execute_batch("ROLLBACK")?;
            other
        }
    }
}

pub(crate) fn record(c: &Connection, batch: &AlertBatch, now: Timestamp) -> rusqlite::Result<bool> {
    if let Some((from, to)) = batch.cursor {
        let moved = c.execute(
            "UPDATE alert_cursor SET value = ? WHERE name = 'outbox' AND value = ?",
            params![id_to_db(to), id_to_db(from)],
        )?;
        if moved != 1 {
            return Ok(false);
        }
    }
    for party in &batch.resets {
        c.execute("UPDATE alert_counters SET count = 0 WHERE party_id = ?", [id_to_db(party.0)])?;
    }
    let mut notification = c.prepare_cached(&format!(
        "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?,?,?) RETURNING id"
    ))?;
    let mut delivery = c.prepare_cached(
        "INSERT INTO deliveries (notification_id, channel, target, endpoint_id, status, attempts, next_at, lease_until) \
         VALUES (?,?,?,?,'pending',0,?,0)",
    )?;
    for fire in &batch.fires {
        let n = &fire.notification;
        if let Some((rule, expected)) = fire.counter {
            let found: Option<(u32, Option<i64>)> = c
                .query_row(
                    "SELECT count, last_at FROM alert_counters WHERE party_id = ? AND rule = ?",
                    params![id_to_db(n.party.0), rule.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let found =
                found.map_or(Counter::default(), |(count, last)| Counter { count, last_at: last.map(Timestamp) });
            if found != expected {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO alert_counters (party_id, rule, count, last_at) VALUES (?,?,?,?) \
                 ON CONFLICT (party_id, rule) DO UPDATE SET count = excluded.count, last_at = excluded.last_at",
                params![id_to_db(n.party.0), rule.as_str(), expected.count + 1, now.0],
            )?;
        }
        let id: i64 = notification.query_row(
            params![
                id_to_db(n.party.0),
                n.kind.as_str(),
                n.threshold,
                n.available,
                n.currency.as_str(),
                n.at.0,
                n.subject,
                n.body,
                n.payload
            ],
            |r| r.get(0),
        )?;
        for email in &n.emails {
            delivery.execute(params![id, Channel::Email.as_str(), email, None::<i64>, now.0])?;
        }
        for (endpoint, url) in &n.endpoints {
            delivery.execute(params![id, Channel::Webhook.as_str(), url, id_to_db(*endpoint), now.0])?;
        }
    }
    drop((notification, delivery));
    for n in conv(purse_store::invoices::record_payments(&mut crate::db::Lite(c), batch, now))? {
        record(
            c,
            &AlertBatch { fires: vec![purse_store::Fire { counter: None, notification: n }], ..AlertBatch::default() },
            now,
        )?;
    }
    Ok(true)
}

impl AlertStore for SqliteReader {
    fn profiles(&self) -> StoreResult<Vec<Profile>> {
        self.with(|c| {
            let mut profiles: Vec<Profile> = c
                .prepare_cached(&format!("SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY id"))?
                .query_map([], profile_from_row)?
                .collect::<Result<_, _>>()?;
            let mut s =
                c.prepare_cached(&format!("SELECT {RULE_COLUMNS} FROM profile_rules ORDER BY profile_id, kind"))?;
            for row in s.query_map([], rule_from_row)? {
                let (id, rule) = row?;
                if let Some(p) = profiles.iter_mut().find(|p| p.id == id) {
                    p.rules.push(rule);
                }
            }
            for p in &mut profiles {
                p.rules.sort_by_key(|r| r.kind);
            }
            Ok(profiles)
        })
    }

    fn insert_profile(&self, p: &Profile) -> StoreResult<u64> {
        self.with(|c| {
            let id: i64 = c.query_row(
                &format!("INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?,?,?,?) RETURNING id"),
                params![
                    p.name,
                    p.reseller.map(|r| id_to_db(r.0)),
                    p.currency.as_str(),
                    p.sort_order,
                    p.max_quantity,
                    p.period_s,
                    p.subject,
                    p.body,
                    p.created_at.0,
                    p.updated_at.0
                ],
                |r| r.get(0),
            )?;
            write_rules(c, &Profile { id: id_from_db(id), ..p.clone() })?;
            Ok(id_from_db(id))
        })
    }

    fn update_profile(&self, p: &Profile) -> StoreResult<bool> {
        self.with(|c| {
            exclusive(c, |c| {
                let n = c.execute(
                    "UPDATE profiles SET name = ?, reseller_id = ?, currency = ?, sort_order = ?, max_quantity = ?, period_s = ?, \
                     subject = ?, body = ?, updated_at = ? WHERE id = ?",
                    params![p.name, p.reseller.map(|r| id_to_db(r.0)), p.currency.as_str(), p.sort_order, p.max_quantity, p.period_s, p.subject, p.body, p.updated_at.0, id_to_db(p.id)],
                )?;
                if n == 0 {
                    return Ok(false);
                }
                write_rules(c, p)?;
                Ok(true)
            })
        })
    }

    fn delete_profile(&self, id: u64) -> StoreResult<bool> {
        self.with(|c| {
            exclusive(c, |c| {
                c.execute("DELETE FROM profile_rules WHERE profile_id = ?", [id_to_db(id)])?;
                c.execute("UPDATE alert_settings SET profile_id = NULL WHERE profile_id = ?", [id_to_db(id)])?;
                Ok(c.execute("DELETE FROM profiles WHERE id = ?", [id_to_db(id)])? == 1)
            })
        })
    }

    fn alert_settings(&self, party: PartyId) -> StoreResult<Option<AlertSettings>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings WHERE party_id = ?"))?
                .query_row([id_to_db(party.0)], settings_from_row)
                .optional()
        })
    }

    fn all_alert_settings(&self) -> StoreResult<Vec<AlertSettings>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings"))?
                .query_map([], settings_from_row)?
                .collect()
        })
    }

    fn put_alert_settings(&self, s: &AlertSettings) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO alert_settings ({ALERT_SETTINGS_COLUMNS}) VALUES (?,?,?,?,?,?) ON CONFLICT (party_id) DO UPDATE SET \
                     profile_id = excluded.profile_id, email = excluded.email, alert_emails = excluded.alert_emails, \
                     warning = excluded.warning, updated_at = excluded.updated_at"
                ),
                params![
                    id_to_db(s.party.0),
                    s.profile.map(id_to_db),
                    s.email,
                    codec::emails(&s.alert_emails),
                    codec::warning_levels(&s.warning),
                    s.updated_at.0
                ],
            )
            .map(drop)
        })
    }

    fn counters(&self) -> StoreResult<Vec<(PartyId, RuleKind, Counter)>> {
        self.with(|c| {
            let mut s = c.prepare_cached("SELECT party_id, rule, count, last_at FROM alert_counters")?;
            let rows = s.query_map([], |r| {
                let rule: String = r.get(1)?;
                Ok((
                    PartyId(id_from_db(r.get(0)?)),
                    RuleKind::parse(&rule).ok_or_else(|| bad("rule", &rule))?,
                    Counter { count: r.get(2)?, last_at: r.get::<_, Option<i64>>(3)?.map(Timestamp) },
                ))
            })?;
            rows.collect()
        })
    }

    fn outbox_cursor(&self) -> StoreResult<u64> {
        self.with(|c| {
            c.query_row("SELECT value FROM alert_cursor WHERE name = 'outbox'", [], |r| r.get::<_, i64>(0))
                .map(id_from_db)
        })
    }

    fn events_after(&self, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?"))?
                .query_map(params![id_to_db(after), limit], event_from_row)?
                .collect()
        })
    }

    fn record_alerts(&self, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool> {
        self.with(|c| exclusive(c, |c| record(c, batch, now)))
    }

    fn claim_deliveries(
        &self,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "UPDATE deliveries SET lease_until = ?1, attempts = attempts + 1 WHERE id IN \
                 (SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= ?2 AND lease_until <= ?3 ORDER BY next_at, id LIMIT ?4) \
                 AND status = 'pending' AND lease_until <= ?3 RETURNING {DELIVERY_COLUMNS}"
            ))?
            .query_map(params![lease_until, now.0, wall, limit], delivery_from_row)?
            .collect()
        })
    }

    fn finish_delivery(&self, id: u64, attempt: &Attempt) -> StoreResult<()> {
        self.with(|c| {
            match attempt {
                Attempt::Sent { at } => c.execute(
                    "UPDATE deliveries SET status = 'sent', sent_at = ?, lease_until = 0, last_error = NULL WHERE id = ?",
                    params![at.0, id_to_db(id)],
                ),
                Attempt::Retry { at, error } => c.execute(
                    "UPDATE deliveries SET next_at = ?, last_error = ?, lease_until = 0 WHERE id = ?",
                    params![at.0, error, id_to_db(id)],
                ),
                Attempt::Failed { error } => c.execute(
                    "UPDATE deliveries SET status = 'failed', last_error = ?, lease_until = 0 WHERE id = ?",
                    params![error, id_to_db(id)],
                ),
            }
            .map(drop)
        })
    }

    fn notification(&self, id: u64) -> StoreResult<Option<NotificationRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?"))?
                .query_row([id_to_db(id)], notification_from_row)
                .optional()
        })
    }

    fn notifications(&self, q: &NotificationQuery) -> StoreResult<Vec<(NotificationRecord, Vec<DeliveryRecord>)>> {
        self.with(|c| {
            let parties =
                q.parties.as_ref().map(|p| p.iter().map(|p| id_to_db(p.0).to_string()).collect::<Vec<_>>().join(","));
            let filter = parties.map_or(String::new(), |list| format!("AND party_id IN ({list})"));
            let mut s = c.prepare(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id < ? {filter} ORDER BY id DESC LIMIT ?"
            ))?;
            let before = q.before.map_or(i64::MAX, id_to_db);
            let found: Vec<NotificationRecord> =
                s.query_map(params![before, q.limit], notification_from_row)?.collect::<Result<_, _>>()?;
            let mut deliveries = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id = ? ORDER BY id"
            ))?;
            found
                .into_iter()
                .map(|n| {
                    let d = deliveries.query_map([id_to_db(n.id)], delivery_from_row)?.collect::<Result<_, _>>()?;
                    Ok((n, d))
                })
                .collect()
        })
    }

    fn insert_endpoint(&self, e: &WebhookEndpoint) -> StoreResult<u64> {
        self.with(|c| {
            c.query_row(
                &format!("INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?) RETURNING id"),
                params![
                    e.owner.map(|o| id_to_db(o.0)),
                    e.url,
                    e.secret,
                    e.enabled,
                    e.disabled_reason,
                    e.failures,
                    e.created_at.0
                ],
                |r| r.get::<_, i64>(0),
            )
            .map(id_from_db)
        })
    }

    fn endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id"))?
                .query_map([], endpoint_from_row)?
                .collect()
        })
    }

    fn delete_endpoint(&self, id: u64) -> StoreResult<bool> {
        self.with(|c| c.execute("DELETE FROM webhook_endpoints WHERE id = ?", [id_to_db(id)]).map(|n| n == 1))
    }

    fn endpoint_attempt(&self, id: u64, ok: bool, disable: Option<&str>, failures_max: u32) -> StoreResult<()> {
        self.with(|c| {
            if ok {
                c.execute("UPDATE webhook_endpoints SET failures = 0 WHERE id = ?", [id_to_db(id)])?;
            } else if let Some(reason) = disable {
                c.execute("UPDATE webhook_endpoints SET failures = failures + 1, enabled = 0, disabled_reason = ? WHERE id = ?", params![reason, id_to_db(id)])?;
            } else {
                c.execute(
                    "UPDATE webhook_endpoints SET failures = failures + 1, enabled = (failures + 1 < ?1), \
                     disabled_reason = CASE WHEN failures + 1 < ?1 THEN disabled_reason ELSE ?2 END WHERE id = ?3",
                    params![failures_max, format!("{failures_max} failed attempts in a row"), id_to_db(id)],
                )?;
            }
            Ok(())
        })
    }

    fn claim_job(
        &self,
        job: &str,
        key: &str,
        by: &str,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
    ) -> StoreResult<bool> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO job_runs (job, key, claimed_by, lease_until, started_at, summary) VALUES (?1,?2,?3,?4,?5,'') \
                 ON CONFLICT (job, key) DO UPDATE SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until, \
                 started_at = excluded.started_at WHERE job_runs.finished_at IS NULL AND job_runs.lease_until <= ?6 RETURNING 1",
                params![job, key, by, lease_until, now.0, wall],
                |_| Ok(()),
            )
            .optional()
            .map(|claimed| claimed.is_some())
        })
    }

    fn finish_job(&self, job: &str, key: &str, at: Timestamp, summary: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "UPDATE job_runs SET finished_at = ?, summary = ? WHERE job = ? AND key = ?",
                params![at.0, summary, job, key],
            )
            .map(drop)
        })
    }

    fn job_runs(&self, limit: u32) -> StoreResult<Vec<JobRun>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {JOB_RUN_COLUMNS} FROM job_runs ORDER BY started_at DESC, job, key LIMIT ?"
            ))?
            .query_map([limit], job_from_row)?
            .collect()
        })
    }
}
