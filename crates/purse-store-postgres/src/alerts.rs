//! [`AlertStore`] on PostgreSQL. Compare-and-set writes lock the rows they check
//! (`FOR UPDATE`), and delivery claims skip rows another process is claiming.

use postgres::{Client, GenericClient, Row};
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

use crate::{err, opt_id, PgReader};

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn bad(what: &str, text: &str) -> StoreError {
    StoreError::Other(format!("unknown {what} {text:?}"))
}

fn profile_from_row(r: &Row) -> StoreResult<Profile> {
    Ok(Profile {
        id: id_from_db(r.get(0)),
        name: r.get(1),
        reseller: opt_id(r.get(2)).map(PartyId),
        currency: codec::currency_code(r.get(3))?,
        sort_order: r.get(4),
        max_quantity: small(r.get(5)),
        period_s: r.get(6),
        rules: Vec::new(),
        subject: r.get(7),
        body: r.get(8),
        created_at: Timestamp(r.get(9)),
        updated_at: Timestamp(r.get(10)),
    })
}

fn rule_from_row(r: &Row) -> StoreResult<(u64, Rule)> {
    let kind: &str = r.get(1);
    Ok((
        id_from_db(r.get(0)),
        Rule {
            kind: RuleKind::parse(kind).ok_or_else(|| bad("rule kind", kind))?,
            threshold: Amount(r.get(2)),
            notify: r.get(3),
            users: codec::parse_ids(r.get(4))?,
            emails: codec::parse_emails(r.get(5)),
            inactivity_s: r.get(6),
        },
    ))
}

fn settings_from_row(r: &Row) -> StoreResult<AlertSettings> {
    Ok(AlertSettings {
        party: PartyId(id_from_db(r.get(0))),
        profile: opt_id(r.get(1)),
        email: r.get(2),
        alert_emails: codec::parse_emails(r.get(3)),
        warning: codec::parse_warning_levels(r.get(4))?,
        updated_at: Timestamp(r.get(5)),
    })
}

fn event_from_row(r: &Row) -> StoreResult<Event> {
    codec::parse_event(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
        r.get(8),
        r.get(9),
    )
}

fn notification_from_row(r: &Row) -> StoreResult<NotificationRecord> {
    let kind: &str = r.get(2);
    Ok(NotificationRecord {
        id: id_from_db(r.get(0)),
        party: PartyId(id_from_db(r.get(1))),
        kind: AlertKind::parse(kind).ok_or_else(|| bad("notification kind", kind))?,
        threshold: r.get(3),
        available: r.get(4),
        currency: codec::currency_code(r.get(5))?,
        at: Timestamp(r.get(6)),
        subject: r.get(7),
        body: r.get(8),
        payload: r.get(9),
    })
}

fn delivery_from_row(r: &Row) -> StoreResult<DeliveryRecord> {
    let channel: &str = r.get(2);
    let status: &str = r.get(5);
    Ok(DeliveryRecord {
        id: id_from_db(r.get(0)),
        notification: id_from_db(r.get(1)),
        channel: if channel == "webhook" { Channel::Webhook } else { Channel::Email },
        target: r.get(3),
        endpoint: opt_id(r.get(4)),
        status: DeliveryStatus::parse(status).ok_or_else(|| bad("delivery status", status))?,
        attempts: small(r.get(6)),
        next_at: Timestamp(r.get(7)),
        last_error: r.get(8),
        sent_at: r.get::<_, Option<i64>>(9).map(Timestamp),
    })
}

fn endpoint_from_row(r: &Row) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: id_from_db(r.get(0)),
        owner: opt_id(r.get(1)).map(PartyId),
        url: r.get(2),
        secret: r.get(3),
        enabled: r.get(4),
        disabled_reason: r.get(5),
        failures: small(r.get(6)),
        created_at: Timestamp(r.get(7)),
    })
}

fn job_from_row(r: &Row) -> StoreResult<JobRun> {
    Ok(JobRun {
        job: r.get(0),
        key: r.get(1),
        claimed_by: r.get(2),
        started_at: Timestamp(r.get(3)),
        finished_at: r.get::<_, Option<i64>>(4).map(Timestamp),
        summary: r.get(5),
    })
}

pub(crate) fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

fn write_rules(c: &mut impl GenericClient, profile: &Profile) -> StoreResult<()> {
    c.execute("DELETE FROM profile_rules WHERE profile_id = $1", &[&id_to_db(profile.id)]).map_err(err)?;
    for rule in &profile.rules {
        c.execute(
            &format!("INSERT INTO profile_rules ({RULE_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7)"),
            &[
                &id_to_db(profile.id),
                &rule.kind.as_str(),
                &rule.threshold.0,
                &rule.notify,
                &codec::ids(&rule.users),
                &codec::emails(&rule.emails),
                &rule.inactivity_s,
            ],
        )
        .map_err(err)?;
    }
    Ok(())
}

pub(crate) fn record(c: &mut postgres::Transaction<'_>, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool> {
    if let Some((from, to)) = batch.cursor {
        let moved = c
            .execute(
                "UPDATE alert_cursor SET value = $1 WHERE name = 'outbox' AND value = $2",
                &[&id_to_db(to), &id_to_db(from)],
            )
            .map_err(err)?;
        if moved != 1 {
            return Ok(false);
        }
    }
    for party in &batch.resets {
        c.execute("UPDATE alert_counters SET count = 0 WHERE party_id = $1", &[&id_to_db(party.0)]).map_err(err)?;
    }
    for fire in &batch.fires {
        let n = &fire.notification;
        let party = id_to_db(n.party.0);
        if let Some((rule, expected)) = fire.counter {
            c.execute(
                "INSERT INTO alert_counters (party_id, rule, count, last_at) VALUES ($1, $2, 0, NULL) ON CONFLICT DO NOTHING",
                &[&party, &rule.as_str()],
            )
            .map_err(err)?;
            let row = c
                .query_one(
                    "SELECT count, last_at FROM alert_counters WHERE party_id = $1 AND rule = $2 FOR UPDATE",
                    &[&party, &rule.as_str()],
                )
                .map_err(err)?;
            let found = Counter { count: small(row.get(0)), last_at: row.get::<_, Option<i64>>(1).map(Timestamp) };
            if found != expected {
                return Ok(false);
            }
            c.execute(
                "UPDATE alert_counters SET count = $3, last_at = $4 WHERE party_id = $1 AND rule = $2",
                &[&party, &rule.as_str(), &i64::from(expected.count + 1), &now.0],
            )
            .map_err(err)?;
        }
        let id: i64 = c
            .query_one(
                "INSERT INTO notifications (party_id, kind, threshold, available, currency, at, subject, body, payload) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id",
                &[&party, &n.kind.as_str(), &n.threshold, &n.available, &n.currency.as_str(), &n.at.0, &n.subject, &n.body, &n.payload],
            )
            .map_err(err)?
            .get(0);
        let insert = "INSERT INTO deliveries (notification_id, channel, target, endpoint_id, status, attempts, next_at, lease_until) \
                      VALUES ($1,$2,$3,$4,'pending',0,$5,0)";
        for email in &n.emails {
            c.execute(insert, &[&id, &Channel::Email.as_str(), email, &None::<i64>, &now.0]).map_err(err)?;
        }
        for (endpoint, url) in &n.endpoints {
            c.execute(insert, &[&id, &Channel::Webhook.as_str(), url, &Some(id_to_db(*endpoint)), &now.0])
                .map_err(err)?;
        }
    }
    for n in purse_store::invoices::record_payments(&mut crate::db::Pg(c), batch, now)? {
        record(
            c,
            &AlertBatch { fires: vec![purse_store::Fire { counter: None, notification: n }], ..AlertBatch::default() },
            now,
        )?;
    }
    Ok(true)
}

/// Runs `f` in a transaction, committing when it returns `Ok(true)`.
pub(crate) fn atomically(
    c: &mut Client,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> StoreResult<bool>,
) -> StoreResult<bool> {
    let mut tx = c.transaction().map_err(err)?;
    if f(&mut tx)? {
        tx.commit().map_err(err)?;
        Ok(true)
    } else {
        Ok(false) // dropped: rolled back
    }
}

impl AlertStore for PgReader {
    fn profiles(&self) -> StoreResult<Vec<Profile>> {
        self.with(|c| {
            let mut profiles = rows(
                c.query(&format!("SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY id"), &[]).map_err(err)?,
                profile_from_row,
            )?;
            let rules = rows(
                c.query(&format!("SELECT {RULE_COLUMNS} FROM profile_rules ORDER BY profile_id, kind"), &[])
                    .map_err(err)?,
                rule_from_row,
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
        self.with(|c| {
            let mut tx = c.transaction().map_err(err)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO profiles (name, reseller_id, currency, sort_order, max_quantity, period_s, subject, body, created_at, updated_at) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
                    &[&p.name, &p.reseller.map(|r| id_to_db(r.0)), &p.currency.as_str(), &p.sort_order, &i64::from(p.max_quantity), &p.period_s, &p.subject, &p.body, &p.created_at.0, &p.updated_at.0],
                )
                .map_err(err)?
                .get(0);
            write_rules(&mut tx, &Profile { id: id_from_db(id), ..p.clone() })?;
            tx.commit().map_err(err)?;
            Ok(id_from_db(id))
        })
    }

    fn update_profile(&self, p: &Profile) -> StoreResult<bool> {
        self.with(|c| {
            atomically(c, |tx| {
                let n = tx
                    .execute(
                        "UPDATE profiles SET name = $1, reseller_id = $2, currency = $3, sort_order = $4, max_quantity = $5, period_s = $6, \
                         subject = $7, body = $8, updated_at = $9 WHERE id = $10",
                        &[&p.name, &p.reseller.map(|r| id_to_db(r.0)), &p.currency.as_str(), &p.sort_order, &i64::from(p.max_quantity), &p.period_s, &p.subject, &p.body, &p.updated_at.0, &id_to_db(p.id)],
                    )
                    .map_err(err)?;
                if n == 0 {
                    return Ok(false);
                }
                write_rules(tx, p)?;
                Ok(true)
            })
        })
    }

    fn delete_profile(&self, id: u64) -> StoreResult<bool> {
        self.with(|c| {
            atomically(c, |tx| {
                tx.execute("DELETE FROM profile_rules WHERE profile_id = $1", &[&id_to_db(id)]).map_err(err)?;
                tx.execute("UPDATE alert_settings SET profile_id = NULL WHERE profile_id = $1", &[&id_to_db(id)])
                    .map_err(err)?;
                Ok(tx.execute("DELETE FROM profiles WHERE id = $1", &[&id_to_db(id)]).map_err(err)? == 1)
            })
        })
    }

    fn alert_settings(&self, party: PartyId) -> StoreResult<Option<AlertSettings>> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings WHERE party_id = $1"),
                &[&id_to_db(party.0)],
            )
            .map_err(err)?
            .as_ref()
            .map(settings_from_row)
            .transpose()
        })
    }

    fn all_alert_settings(&self) -> StoreResult<Vec<AlertSettings>> {
        self.with(|c| {
            rows(
                c.query(&format!("SELECT {ALERT_SETTINGS_COLUMNS} FROM alert_settings"), &[]).map_err(err)?,
                settings_from_row,
            )
        })
    }

    fn put_alert_settings(&self, s: &AlertSettings) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO alert_settings ({ALERT_SETTINGS_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (party_id) DO UPDATE SET \
                     profile_id = excluded.profile_id, email = excluded.email, alert_emails = excluded.alert_emails, \
                     warning = excluded.warning, updated_at = excluded.updated_at"
                ),
                &[&id_to_db(s.party.0), &s.profile.map(id_to_db), &s.email, &codec::emails(&s.alert_emails), &codec::warning_levels(&s.warning), &s.updated_at.0],
            )
            .map_err(err)
            .map(drop)
        })
    }

    fn counters(&self) -> StoreResult<Vec<(PartyId, RuleKind, Counter)>> {
        self.with(|c| {
            rows(c.query("SELECT party_id, rule, count, last_at FROM alert_counters", &[]).map_err(err)?, |r| {
                let rule: &str = r.get(1);
                Ok((
                    PartyId(id_from_db(r.get(0))),
                    RuleKind::parse(rule).ok_or_else(|| bad("rule", rule))?,
                    Counter { count: small(r.get(2)), last_at: r.get::<_, Option<i64>>(3).map(Timestamp) },
                ))
            })
        })
    }

    fn outbox_cursor(&self) -> StoreResult<u64> {
        self.with(|c| {
            Ok(id_from_db(
                c.query_one("SELECT value FROM alert_cursor WHERE name = 'outbox'", &[]).map_err(err)?.get(0),
            ))
        })
    }

    fn events_after(&self, after: u64, limit: u32) -> StoreResult<Vec<Event>> {
        self.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2"),
                    &[&id_to_db(after), &i64::from(limit)],
                )
                .map_err(err)?,
                event_from_row,
            )
        })
    }

    fn record_alerts(&self, batch: &AlertBatch, now: Timestamp) -> StoreResult<bool> {
        self.with(|c| atomically(c, |tx| record(tx, batch, now)))
    }

    fn claim_deliveries(
        &self,
        now: Timestamp,
        wall: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.with(|c| {
            rows(
                c.query(
                    &format!(
                        "UPDATE deliveries SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
                         (SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= $2 AND lease_until <= $3 \
                          ORDER BY next_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                         AND status = 'pending' AND lease_until <= $3 RETURNING {DELIVERY_COLUMNS}"
                    ),
                    &[&lease_until, &now.0, &wall, &i64::from(limit)],
                )
                .map_err(err)?,
                delivery_from_row,
            )
        })
    }

    fn finish_delivery(&self, id: u64, attempt: &Attempt) -> StoreResult<()> {
        self.with(|c| {
            match attempt {
                Attempt::Sent { at } => c.execute(
                    "UPDATE deliveries SET status = 'sent', sent_at = $1, lease_until = 0, last_error = NULL WHERE id = $2",
                    &[&at.0, &id_to_db(id)],
                ),
                Attempt::Retry { at, error } => {
                    c.execute("UPDATE deliveries SET next_at = $1, last_error = $2, lease_until = 0 WHERE id = $3", &[&at.0, error, &id_to_db(id)])
                }
                Attempt::Failed { error } => {
                    c.execute("UPDATE deliveries SET status = 'failed', last_error = $1, lease_until = 0 WHERE id = $2", &[error, &id_to_db(id)])
                }
            }
            .map_err(err)
            .map(drop)
        })
    }

    fn notification(&self, id: u64) -> StoreResult<Option<NotificationRecord>> {
        self.with(|c| {
            c.query_opt(&format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"), &[&id_to_db(id)])
                .map_err(err)?
                .as_ref()
                .map(notification_from_row)
                .transpose()
        })
    }

    fn notifications(&self, q: &NotificationQuery) -> StoreResult<Vec<(NotificationRecord, Vec<DeliveryRecord>)>> {
        self.with(|c| {
            let before = q.before.map_or(i64::MAX, id_to_db);
            let found = match &q.parties {
                Some(parties) => {
                    let ids: Vec<i64> = parties.iter().map(|p| id_to_db(p.0)).collect();
                    c.query(
                        &format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id < $1 AND party_id = ANY($2) ORDER BY id DESC LIMIT $3"),
                        &[&before, &ids, &i64::from(q.limit)],
                    )
                }
                None => c.query(
                    &format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id < $1 ORDER BY id DESC LIMIT $2"),
                    &[&before, &i64::from(q.limit)],
                ),
            }
            .map_err(err)?;
            let found = rows(found, notification_from_row)?;
            let ids: Vec<i64> = found.iter().map(|n| id_to_db(n.id)).collect();
            let deliveries = rows(
                c.query(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id = ANY($1) ORDER BY id"), &[&ids]).map_err(err)?,
                delivery_from_row,
            )?;
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
        self.with(|c| {
            let row = c
                .query_one(
                    "INSERT INTO webhook_endpoints (owner_id, url, secret, enabled, disabled_reason, failures, created_at) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id",
                    &[&e.owner.map(|o| id_to_db(o.0)), &e.url, &e.secret, &e.enabled, &e.disabled_reason, &i64::from(e.failures), &e.created_at.0],
                )
                .map_err(err)?;
            Ok(id_from_db(row.get(0)))
        })
    }

    fn endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.with(|c| {
            rows(
                c.query(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id"), &[]).map_err(err)?,
                endpoint_from_row,
            )
        })
    }

    fn delete_endpoint(&self, id: u64) -> StoreResult<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM webhook_endpoints WHERE id = $1", &[&id_to_db(id)]).map_err(err)? == 1))
    }

    fn endpoint_attempt(&self, id: u64, ok: bool, disable: Option<&str>, failures_max: u32) -> StoreResult<()> {
        self.with(|c| {
            if ok {
                c.execute("UPDATE webhook_endpoints SET failures = 0 WHERE id = $1", &[&id_to_db(id)])
            } else if let Some(reason) = disable {
                c.execute(
                    "UPDATE webhook_endpoints SET failures = failures + 1, enabled = FALSE, disabled_reason = $1 WHERE id = $2",
                    &[&reason, &id_to_db(id)],
                )
            } else {
                c.execute(
                    "UPDATE webhook_endpoints SET failures = failures + 1, enabled = (failures + 1 < $1), \
                     disabled_reason = CASE WHEN failures + 1 < $1 THEN disabled_reason ELSE $2 END WHERE id = $3",
                    &[&i64::from(failures_max), &format!("{failures_max} failed attempts in a row"), &id_to_db(id)],
                )
            }
            .map_err(err)
            .map(drop)
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
            let row = c
                .query_opt(
                    "INSERT INTO job_runs (job, key, claimed_by, lease_until, started_at, summary) VALUES ($1,$2,$3,$4,$5,'') \
                     ON CONFLICT (job, key) DO UPDATE SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until, \
                     started_at = excluded.started_at WHERE job_runs.finished_at IS NULL AND job_runs.lease_until <= $6 RETURNING 1",
                    &[&job, &key, &by, &lease_until, &now.0, &wall],
                )
                .map_err(err)?;
            Ok(row.is_some())
        })
    }

    fn finish_job(&self, job: &str, key: &str, at: Timestamp, summary: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "UPDATE job_runs SET finished_at = $1, summary = $2 WHERE job = $3 AND key = $4",
                &[&at.0, &summary, &job, &key],
            )
            .map_err(err)
            .map(drop)
        })
    }

    fn job_runs(&self, limit: u32) -> StoreResult<Vec<JobRun>> {
        self.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {JOB_RUN_COLUMNS} FROM job_runs ORDER BY started_at DESC, job, key LIMIT $1"),
                    &[&i64::from(limit)],
                )
                .map_err(err)?,
                job_from_row,
            )
        })
    }
}
