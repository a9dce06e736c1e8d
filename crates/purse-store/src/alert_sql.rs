//! [`AlertStore`] written once for both backends over [`Db`]. Compare-and-set writes run in
//! one transaction and lock the rows they check ([`Db::row_lock`]; SQLite's write
//! transaction is exclusive already); delivery claims pass over rows another process is
//! claiming.

use purse_core::alerts::{AlertSettings, Counter, Profile, Rule, RuleKind};
use purse_core::{Amount, Event, PartyId, Timestamp};

use crate::codec::{self, id_from_db, id_to_db};
use crate::columns::{
    ALERT_SETTINGS_COLUMNS, DELIVERY_COLUMNS, ENDPOINT_COLUMNS, JOB_RUN_COLUMNS, NOTIFICATION_COLUMNS, OUTBOX_COLUMNS,
    PROFILE_COLUMNS, RULE_COLUMNS,
};
use crate::credit::Value;
use crate::invoices::{run_db, Db, Transact};
use crate::{
    AlertBatch, AlertKind, AlertStore, Attempt, Channel, DeliveryRecord, DeliveryStatus, Fire, JobRun,
    NotificationQuery, NotificationRecord, StoreError, StoreResult, WebhookEndpoint,
};

fn text(t: &str) -> Value {
    Value::from(t.to_owned())
}

fn id(v: u64) -> Value {
    Value::from(id_to_db(v))
}

fn int(v: impl Into<i64>) -> Value {
    Value::from(v.into())
}

fn party(p: Option<PartyId>) -> Value {
    Value::from(p.map(|p| id_to_db(p.0)))
}

fn small(v: &Value) -> StoreResult<u32> {
    u32::try_from(v.int()?).map_err(|_| StoreError::Other("a count out of range".into()))
}

fn unknown(what: &str, text: &str) -> StoreError {
    StoreError::Other(format!("unknown {what} {text:?}"))
}

fn profile_from(r: &[Value]) -> StoreResult<Profile> {
    Ok(Profile {
        id: id_from_db(r[0].int()?),
        name: r[1].text()?,
        reseller: r[2].opt_int()?.map(|p| PartyId(id_from_db(p))),
        currency: codec::currency_code(&r[3].text()?)?,
        sort_order: r[4].int()?,
        max_quantity: small(&r[5])?,
        period_s: r[6].int()?,
        rules: Vec::new(),
        subject: r[7].text()?,
        body: r[8].text()?,
        created_at: Timestamp(r[9].int()?),
        updated_at: Timestamp(r[10].int()?),
    })
}

fn rule_from(r: &[Value]) -> StoreResult<(u64, Rule)> {
    let kind = r[1].text()?;
    Ok((
        id_from_db(r[0].int()?),
        Rule {
            kind: RuleKind::parse(&kind).ok_or_else(|| unknown("rule kind", &kind))?,
            threshold: Amount(r[2].int()?),
            notify: r[3].int()? != 0,
            users: codec::parse_ids(&r[4].text()?)?,
            emails: codec::parse_emails(&r[5].text()?),
            inactivity_s: r[6].int()?,
        },
    ))
}

fn settings_from(r: &[Value]) -> StoreResult<AlertSettings> {
    Ok(AlertSettings {
        party: PartyId(id_from_db(r[0].int()?)),
        profile: r[1].opt_int()?.map(id_from_db),
        email: r[2].opt_text()?,
        alert_emails: codec::parse_emails(&r[3].text()?),
        warning: codec::parse_warning_levels(&r[4].text()?)?,
        updated_at: Timestamp(r[5].int()?),
    })
}

fn event_from(r: &[Value]) -> StoreResult<Event> {
    codec::parse_event(
        r[0].int()?,
        r[1].int()?,
        r[2].int()?,
        &r[3].text()?,
        r[4].opt_int()?,
        r[5].opt_text()?.as_deref(),
        r[6].opt_int()?,
        r[7].opt_int()?,
        r[8].opt_int()?,
        r[9].opt_int()?,
    )
}

fn notification_from(r: &[Value]) -> StoreResult<NotificationRecord> {
    let kind = r[2].text()?;
    Ok(NotificationRecord {
        id: id_from_db(r[0].int()?),
        party: PartyId(id_from_db(r[1].int()?)),
        kind: AlertKind::parse(&kind).ok_or_else(|| unknown("notification kind", &kind))?,
        threshold: r[3].int()?,
        available: r[4].int()?,
        currency: codec::currency_code(&r[5].text()?)?,
        at: Timestamp(r[6].int()?),
        subject: r[7].text()?,
        body: r[8].text()?,
        payload: r[9].text()?,
    })
}

fn delivery_from(r: &[Value]) -> StoreResult<DeliveryRecord> {
    let status = r[5].text()?;
    Ok(DeliveryRecord {
        id: id_from_db(r[0].int()?),
        notification: id_from_db(r[1].int()?),
        channel: if r[2].text()? == "webhook" { Channel::Webhook } else { Channel::Email },
        target: r[3].text()?,
        endpoint: r[4].opt_int()?.map(id_from_db),
        status: DeliveryStatus::parse(&status).ok_or_else(|| unknown("delivery status", &status))?,
        attempts: small(&r[6])?,
        next_at: Timestamp(r[7].int()?),
        last_error: r[8].opt_text()?,
        sent_at: r[9].opt_int()?.map(Timestamp),
    })
}

fn endpoint_from(r: &[Value]) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: id_from_db(r[0].int()?),
        owner: r[1].opt_int()?.map(|p| PartyId(id_from_db(p))),
        url: r[2].text()?,
        secret: r[3].text()?,
        enabled: r[4].int()? != 0,
        disabled_reason: r[5].opt_text()?,
        failures: small(&r[6])?,
        created_at: Timestamp(r[7].int()?),
    })
}

fn job_from(r: &[Value]) -> StoreResult<JobRun> {
    Ok(JobRun {
        job: r[0].text()?,
        key: r[1].text()?,
        claimed_by: r[2].text()?,
        started_at: Timestamp(r[3].int()?),
        finished_at: r[4].opt_int()?.map(Timestamp),
        summary: r[5].text()?,
    })
}

fn all<T>(db: &mut dyn Db, sql: &str, params: &[Value], from: fn(&[Value]) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    db.rows(sql, params)?.iter().map(|r| from(r)).collect()
}

fn first<T>(
    db: &mut dyn Db,
    sql: &str,
    params: &[Value],
    from: fn(&[Value]) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    Ok(all(db, sql, params, from)?.into_iter().next())
}

fn new_id(db: &mut dyn Db, sql: &str, params: &[Value]) -> StoreResult<u64> {
    let rows = db.rows(sql, params)?;
    let row = rows.first().ok_or_else(|| StoreError::Other("an insert returned no id".into()))?;
    Ok(id_from_db(row[0].int()?))
}

/// A boolean parameter: PostgreSQL's BOOLEAN columns take `CAST($n AS BIGINT) <> 0`, and so
/// does SQLite.
fn boolean(n: usize) -> String {
    format!("(CAST(${n} AS BIGINT) <> 0)")
}

fn write_rules(db: &mut dyn Db, profile: &Profile) -> StoreResult<()> {
    db.run("DELETE FROM profile_rules WHERE profile_id = $1", &[id(profile.id)])?;
    let sql = format!("INSERT INTO profile_rules ({RULE_COLUMNS}) VALUES ($1,$2,$3,{},$5,$6,$7)", boolean(4));
    for rule in &profile.rules {
        db.run(
            &sql,
            &[
                id(profile.id),
                text(rule.kind.as_str()),
                int(rule.threshold.0),
                int(i64::from(rule.notify)),
                text(&codec::ids(&rule.users)),
                text(&codec::emails(&rule.emails)),
                int(rule.inactivity_s),
            ],
        )?;
    }
    Ok(())
}

/// The compare-and-set refusal inside a transaction (rolled back, answered `false`).
fn lost() -> StoreError {
    StoreError::Conflict("another process got there first".into())
}

/// Runs `f` in a write transaction: `false` (and nothing written) when it found another
/// process got there first.
fn compare_and_set(
    s: &(impl Transact + ?Sized),
    mut f: impl FnMut(&mut dyn Db) -> StoreResult<bool>,
) -> StoreResult<bool> {
    match run_db(s, true, |db| if f(db)? { Ok(()) } else { Err(lost()) }) {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes a batch of notifications (and the receipts of the payments it carries) in the
/// caller's transaction; `false` when the cursor or a counter is not what it expected, and
/// then the caller must roll back.
pub fn record(db: &mut dyn Db, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool> {
    if let Some((from, to)) = batch.cursor {
        let moved =
            db.run("UPDATE alert_cursor SET value = $1 WHERE name = 'outbox' AND value = $2", &[id(to), id(from)])?;
        if moved != 1 {
            return Ok(false);
        }
    }
    for party in &batch.resets {
        db.run("UPDATE alert_counters SET count = 0 WHERE party_id = $1", &[id(party.0)])?;
    }
    let counter_sql =
        format!("SELECT count, last_at FROM alert_counters WHERE party_id = $1 AND rule = $2{}", db.row_lock(false));
    for fire in &batch.fires {
        let n = &fire.notification;
        if let Some((rule, expected)) = fire.counter {
            let key = [id(n.party.0), text(rule.as_str())];
            db.run(
                "INSERT INTO alert_counters (party_id, rule, count, last_at) VALUES ($1, $2, 0, NULL) \
                 ON CONFLICT (party_id, rule) DO NOTHING",
                &key,
            )?;
            let found = first(db, &counter_sql, &key, |r| {
                Ok(Counter { count: small(&r[0])?, last_at: r[1].opt_int()?.map(Timestamp) })
            })?
            .unwrap_or_default();
            if found != expected {
                return Ok(false);
            }
            // A notice that reaches nobody (no e-mail, no webhook) is logged and waits its
            // period, but is not one of the rule's max quantity: those are notices sent.
            let sent = u32::from(!n.emails.is_empty() || !n.endpoints.is_empty());
            db.run(
                "UPDATE alert_counters SET count = $3, last_at = $4 WHERE party_id = $1 AND rule = $2",
                &[id(n.party.0), text(rule.as_str()), int(expected.count + sent), int(now.0)],
            )?;
        }
        let notification = new_id(
            db,
            "INSERT INTO notifications (party_id, kind, threshold, available, currency, at, subject, body, payload) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id",
            &[
                id(n.party.0),
                text(n.kind.as_str()),
                int(n.threshold),
                int(n.available),
                text(n.currency.as_str()),
                int(n.at.0),
                text(&n.subject),
                text(&n.body),
                text(&n.payload),
            ],
        )?;
        let insert = "INSERT INTO deliveries (notification_id, channel, target, endpoint_id, status, attempts, next_at, lease_until) \
                      VALUES ($1,$2,$3,$4,'pending',0,$5,0)";
        for email in &n.emails {
            db.run(
                insert,
                &[id(notification), text(Channel::Email.as_str()), text(email), Value::Int(None), int(now.0)],
            )?;
        }
        for (endpoint, url) in &n.endpoints {
            db.run(insert, &[id(notification), text(Channel::Webhook.as_str()), text(url), id(*endpoint), int(now.0)])?;
        }
    }
    for n in crate::invoices::record_payments(db, batch, now)? {
        let receipt = AlertBatch { fires: vec![Fire { counter: None, notification: n }], ..AlertBatch::default() };
        record(db, &receipt, now)?;
    }
    Ok(true)
}

impl<T: Transact> AlertStore for T {
    fn profiles(&self) -> StoreResult<Vec<Profile>> {
        run_db(self, false, |db| {
            let mut profiles =
                // In the order they are chosen in (the lowest sort order first), as every list shows them.
                all(db, &format!("SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY sort_order, id"), &[], profile_from)?;
            let rules = all(
                db,
                &format!("SELECT {RULE_COLUMNS} FROM profile_rules ORDER BY profile_id, kind"),
                &[],
                rule_from,
            )?;
            for (id, rule) in rules {
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
        run_db(self, true, |db| {
            let new = new_id(
                db,
                "INSERT INTO profiles (name, reseller_id, currency, sort_order, max_quantity, period_s, subject, body, created_at, updated_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
                &[
                    text(&p.name),
                    party(p.reseller),
                    text(p.currency.as_str()),
                    int(p.sort_order),
                    int(p.max_quantity),
                    int(p.period_s),
                    text(&p.subject),
                    text(&p.body),
                    int(p.created_at.0),
                    int(p.updated_at.0),
                ],
            )?;
            write_rules(db, &Profile { id: new, ..p.clone() })?;
            Ok(new)
        })
    }

    fn update_profile(&self, p: &Profile) -> StoreResult<bool> {
        compare_and_set(self, |db| {
            let n = db.run(
                "UPDATE profiles SET name = $1, reseller_id = $2, currency = $3, sort_order = $4, max_quantity = $5, \
                 period_s = $6, subject = $7, body = $8, updated_at = $9 WHERE id = $10",
                &[
                    text(&p.name),
                    party(p.reseller),
                    text(p.currency.as_str()),
                    int(p.sort_order),
                    int(p.max_quantity),
                    int(p.period_s),
                    text(&p.subject),
                    text(&p.body),
                    int(p.updated_at.0),
                    id(p.id),
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            write_rules(db, p)?;
            Ok(true)
        })
    }

    fn delete_profile(&self, profile: u64) -> StoreResult<bool> {
        compare_and_set(self, |db| {
            db.run("DELETE FROM profile_rules WHERE profile_id = $1", &[id(profile)])?;
            db.run("UPDATE alert_settings SET profile_id = NULL WHERE profile_id = $1", &[id(profile)])?;
            Ok(db.run("DELETE FROM profiles WHERE id = $1", &[id(profile)])? == 1)
        })
    }

    fn alert_settings(&self, p: PartyId) -> StoreResult<Option<AlertSettings>> {
        let sql = format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings WHERE party_id = $1");
        run_db(self, false, |db| first(db, &sql, &[id(p.0)], settings_from))
    }

    fn all_alert_settings(&self) -> StoreResult<Vec<AlertSettings>> {
        let sql = format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings");
        run_db(self, false, |db| all(db, &sql, &[], settings_from))
    }

    fn put_alert_settings(&self, s: &AlertSettings) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO alert_settings ({ALERT_SETTINGS_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (party_id) DO UPDATE SET \
             profile_id = excluded.profile_id, email = excluded.email, alert_emails = excluded.alert_emails, \
             warning = excluded.warning, updated_at = excluded.updated_at"
        );
        let params = [
            id(s.party.0),
            Value::from(s.profile.map(id_to_db)),
            Value::from(s.email.clone()),
            text(&codec::emails(&s.alert_emails)),
            text(&codec::warning_levels(&s.warning)),
            int(s.updated_at.0),
        ];
        run_db(self, true, |db| db.run(&sql, &params).map(drop))
    }

    fn counters(&self) -> StoreResult<Vec<(PartyId, RuleKind, Counter)>> {
        run_db(self, false, |db| {
            all(db, "SELECT party_id, rule, count, last_at FROM alert_counters", &[], |r| {
                let rule = r[1].text()?;
                Ok((
                    PartyId(id_from_db(r[0].int()?)),
                    RuleKind::parse(&rule).ok_or_else(|| unknown("rule", &rule))?,
                    Counter { count: small(&r[2])?, last_at: r[3].opt_int()?.map(Timestamp) },
                ))
            })
        })
    }

    fn outbox_cursor(&self) -> StoreResult<u64> {
        run_db(self, false, |db| {
            let rows = db.rows("SELECT value FROM alert_cursor WHERE name = 'outbox'", &[])?;
            let row = rows.first().ok_or_else(|| StoreError::Other("the outbox cursor is missing".into()))?;
            Ok(id_from_db(row[0].int()?))
        })
    }

    fn events_after(&self, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2");
        run_db(self, false, |db| all(db, &sql, &[id(after), int(limit)], event_from))
    }

    fn record_alerts(&self, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool> {
        compare_and_set(self, |db| record(db, batch, now))
    }

    fn claim_deliveries(
        &self,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        run_db(self, true, |db| {
            let sql = format!(
                "UPDATE deliveries SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
                 (SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= $2 AND lease_until <= $3 \
                  ORDER BY next_at, id LIMIT $4{}) \
                 AND status = 'pending' AND lease_until <= $3 RETURNING {DELIVERY_COLUMNS}",
                db.row_lock(true)
            );
            let mut claimed = all(db, &sql, &[int(lease_until), int(now.0), int(wall), int(limit)], delivery_from)?;
            claimed.sort_by_key(|d| (d.next_at, d.id));
            Ok(claimed)
        })
    }

    fn finish_delivery(&self, delivery: u64, attempt: &Attempt) -> StoreResult<()> {
        run_db(self, true, |db| {
            match attempt {
                Attempt::Sent { at } => db.run(
                    "UPDATE deliveries SET status = 'sent', sent_at = $1, lease_until = 0, last_error = NULL WHERE id = $2",
                    &[int(at.0), id(delivery)],
                ),
                Attempt::Retry { at, error } => db.run(
                    "UPDATE deliveries SET next_at = $1, last_error = $2, lease_until = 0 WHERE id = $3",
                    &[int(at.0), text(error), id(delivery)],
                ),
                Attempt::Failed { error } => db.run(
                    "UPDATE deliveries SET status = 'failed', last_error = $1, lease_until = 0 WHERE id = $2",
                    &[text(error), id(delivery)],
                ),
            }
            .map(drop)
        })
    }

    fn notification(&self, n: u64) -> StoreResult<Option<NotificationRecord>> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1");
        run_db(self, false, |db| first(db, &sql, &[id(n)], notification_from))
    }

    fn notifications(&self, q: &NotificationQuery) -> StoreResult<Vec<(NotificationRecord, Vec<DeliveryRecord>)>> {
        // Ids are integers the store made: listed in the statement, never text from a caller.
        let list = |ids: &mut dyn Iterator<Item = i64>| ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let filter = q.parties.as_ref().map_or(String::new(), |p| {
            let ids = list(&mut p.iter().map(|p| id_to_db(p.0)));
            format!("AND party_id IN ({})", if ids.is_empty() { "NULL" } else { ids.as_str() })
        });
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id < $1 {filter} ORDER BY id DESC LIMIT $2"
        );
        run_db(self, false, |db| {
            let before = q.before.map_or(i64::MAX, id_to_db);
            let found = all(db, &sql, &[int(before), int(q.limit)], notification_from)?;
            if found.is_empty() {
                return Ok(Vec::new());
            }
            let ids = list(&mut found.iter().map(|n| id_to_db(n.id)));
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id IN ({ids}) ORDER BY id");
            let deliveries = all(db, &sql, &[], delivery_from)?;
            Ok(found
                .into_iter()
                .map(|n| {
                    let mine = deliveries.iter().filter(|d| d.notification == n.id).cloned().collect();
                    (n, mine)
                })
                .collect())
        })
    }

    fn insert_endpoint(&self, e: &WebhookEndpoint) -> StoreResult<u64> {
        let sql = format!(
            "INSERT INTO webhook_endpoints (owner_id, url, secret, enabled, disabled_reason, failures, created_at) \
             VALUES ($1,$2,$3,{},$5,$6,$7) RETURNING id",
            boolean(4)
        );
        let params = [
            party(e.owner),
            text(&e.url),
            text(&e.secret),
            int(i64::from(e.enabled)),
            Value::from(e.disabled_reason.clone()),
            int(e.failures),
            int(e.created_at.0),
        ];
        run_db(self, true, |db| new_id(db, &sql, &params))
    }

    fn endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id");
        run_db(self, false, |db| all(db, &sql, &[], endpoint_from))
    }

    fn delete_endpoint(&self, endpoint: u64) -> StoreResult<bool> {
        run_db(self, true, |db| Ok(db.run("DELETE FROM webhook_endpoints WHERE id = $1", &[id(endpoint)])? == 1))
    }

    fn endpoint_attempt(&self, endpoint: u64, ok: bool, disable: Option<&str>, failures_max: u32) -> StoreResult<()> {
        run_db(self, true, |db| {
            if ok {
                db.run("UPDATE webhook_endpoints SET failures = 0 WHERE id = $1", &[id(endpoint)])?;
            } else if let Some(reason) = disable {
                db.run(
                    "UPDATE webhook_endpoints SET failures = failures + 1, enabled = (1 = 0), disabled_reason = $1 WHERE id = $2",
                    &[text(reason), id(endpoint)],
                )?;
            } else {
                db.run(
                    "UPDATE webhook_endpoints SET failures = failures + 1, enabled = (failures + 1 < $1), \
                     disabled_reason = CASE WHEN failures + 1 < $1 THEN disabled_reason ELSE $2 END WHERE id = $3",
                    &[int(failures_max), text(&format!("{failures_max} failed attempts in a row")), id(endpoint)],
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
        run_db(self, true, |db| {
            let claimed = db.rows(
                "INSERT INTO job_runs (job, key, claimed_by, lease_until, started_at, summary) VALUES ($1,$2,$3,$4,$5,'') \
                 ON CONFLICT (job, key) DO UPDATE SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until, \
                 started_at = excluded.started_at WHERE job_runs.finished_at IS NULL AND job_runs.lease_until <= $6 RETURNING 1",
                &[text(job), text(key), text(by), int(lease_until), int(now.0), int(wall)],
            )?;
            Ok(!claimed.is_empty())
        })
    }

    fn finish_job(&self, job: &str, key: &str, at: Timestamp, summary: &str) -> StoreResult<()> {
        run_db(self, true, |db| {
            db.run(
                "UPDATE job_runs SET finished_at = $1, summary = $2 WHERE job = $3 AND key = $4",
                &[int(at.0), text(summary), text(job), text(key)],
            )
            .map(drop)
        })
    }

    fn job_runs(&self, limit: u32) -> StoreResult<Vec<JobRun>> {
        let sql = format!("SELECT {JOB_RUN_COLUMNS} FROM job_runs ORDER BY started_at DESC, job, key LIMIT $1");
        run_db(self, false, |db| all(db, &sql, &[int(limit)], job_from))
    }
}
