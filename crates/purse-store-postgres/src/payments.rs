//! [`PaymentStore`] on PostgreSQL. Starting a recharge takes a transaction-scoped advisory
//! lock on the customer, so the in-flight check and the caps are counted by one process at
//! a time; recharge claims skip rows another process is claiming.

use postgres::{GenericClient, Row};
use purse_core::recharge::{RechargeSettings, Used};
use purse_core::{PartyId, Timestamp};
use purse_store::codec::{self, id_to_db, SettingsRow};
use purse_store::columns::{RECHARGE_COLUMNS, RECHARGE_SETTINGS_COLUMNS};
use purse_store::{
    AlertBatch, Fire, NewNotification, NewRecharge, PaymentStore, RechargeReason, RechargeRecord, RechargeStatus,
    RechargeUpdate, StoreResult,
};

use crate::db::{atomically, rows};
use crate::{err, PgReader};

/// The advisory lock namespace of recharges (the other half is the party id).
const RECHARGE_LOCK: i32 = 0x5245_4348;

fn settings_from_row(r: &Row) -> StoreResult<RechargeSettings> {
    codec::recharge_settings(SettingsRow {
        party: r.get(0),
        enabled: r.get(1),
        method: r.get(2),
        threshold: r.get(3),
        amount: r.get(4),
        target: r.get(5),
        per_day_max: r.get(6),
        month_cap: r.get(7),
        emails: r.get(8),
        stripe_customer: r.get(9),
        payment_method: r.get(10),
        card_brand: r.get(11),
        card_last4: r.get(12),
        failures: r.get(13),
        disabled_reason: r.get(14),
        updated_at: r.get(15),
    })
}

fn recharge_from_row(r: &Row) -> StoreResult<RechargeRecord> {
    codec::recharge(
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
        r.get(10),
        r.get(11),
        r.get(12),
        r.get(13),
    )
}

fn used(c: &mut impl GenericClient, party: PartyId, day: &str, month: &str) -> StoreResult<Used> {
    let p = id_to_db(party.0);
    let today: i64 = c
        .query_one("SELECT COUNT(*) FROM recharges WHERE party_id = $1 AND reason = 'auto' AND day = $2", &[&p, &day])
        .map_err(err)?
        .get(0);
    let month: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM recharges WHERE party_id = $1 AND reason = 'auto' AND month = $2 AND status <> 'failed'",
            &[&p, &month],
        )
        .map_err(err)?
        .get(0);
    Ok(Used { today: u32::try_from(today).unwrap_or(u32::MAX), month: i128::from(month) })
}

fn notice(c: &mut postgres::Transaction<'_>, n: &NewNotification, at: Timestamp) -> StoreResult<bool> {
    let batch = AlertBatch { fires: vec![Fire { counter: None, notification: n.clone() }], ..AlertBatch::default() };
    purse_store::alert_sql::record(&mut crate::db::Pg(c), &batch, at)
}

fn start(c: &mut postgres::Transaction<'_>, new: &NewRecharge, out: &mut Option<RechargeRecord>) -> StoreResult<bool> {
    let party = id_to_db(new.party.0);
    if let Some(key) = &new.request_key {
        c.execute(
            "SELECT pg_advisory_xact_lock($1, $2::INT)",
            &[&RECHARGE_LOCK, &i32::try_from(party % 0x7fff_ffff).unwrap_or(0)],
        )
        .map_err(err)?;
        let found = c
            .query_opt(
                &format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE party_id = $1 AND request_key = $2"),
                &[&party, key],
            )
            .map_err(err)?;
        if let Some(row) = found {
            *out = Some(recharge_from_row(&row)?);
            return Ok(true);
        }
    }
    if new.reason == RechargeReason::Auto {
        c.execute(
            "SELECT pg_advisory_xact_lock($1, $2::INT)",
            &[&RECHARGE_LOCK, &i32::try_from(party % 0x7fff_ffff).unwrap_or(0)],
        )
        .map_err(err)?;
        let busy: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM recharges WHERE party_id = $1 AND reason = 'auto' AND status IN ('pending', 'processing', 'invoiced'))",
                &[&party],
            )
            .map_err(err)?
            .get(0);
        let u = used(c, new.party, &new.day, &new.month)?;
        let capped = u.today >= new.per_day_max
            || new.month_cap.is_some_and(|cap| u.month + i128::from(new.amount) > i128::from(cap));
        if busy || capped {
            return Ok(true);
        }
    }
    let status = if new.method == purse_core::recharge::RechargeMethod::Invoice {
        RechargeStatus::Invoiced
    } else {
        RechargeStatus::Pending
    };
    let id: i64 = c
        .query_one(
            "INSERT INTO recharges (party_id, method, reason, amount, currency, status, created_at, day, month, lease_until, request_key) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id",
            &[
                &party,
                &new.method.as_str(),
                &new.reason.as_str(),
                &new.amount,
                &new.currency.as_str(),
                &status.as_str(),
                &new.at.0,
                &new.day,
                &new.month,
                &new.lease_until,
                &new.request_key,
            ],
        )
        .map_err(err)?
        .get(0);
    if status == RechargeStatus::Invoiced {
        let issuer = new.issuer.map_or(0, |p| id_to_db(p.0));
        let number: i64 = c
            .query_one(
                "INSERT INTO invoice_numbers (issuer_id, last) VALUES ($1, 1) \
                 ON CONFLICT (issuer_id) DO UPDATE SET last = invoice_numbers.last + 1 RETURNING last",
                &[&issuer],
            )
            .map_err(err)?
            .get(0);
        let invoice: i64 = c
            .query_one(
                "INSERT INTO invoices (issuer_id, number, party_id, kind, amount, currency, status, created_at, recharge_id) \
                 VALUES ($1,$2,$3,'top_up',$4,$5,'open',$6,$7) RETURNING id",
                &[&issuer, &number, &party, &new.amount, &new.currency.as_str(), &new.at.0, &id],
            )
            .map_err(err)?
            .get(0);
        c.execute("UPDATE recharges SET invoice_id = $1 WHERE id = $2", &[&invoice, &id]).map_err(err)?;
        let taxed = purse_store::taxes::tax_top_up_invoice(&mut crate::db::Pg(c), invoice)?;
        if let Some(n) = &new.notice {
            let number = purse_store::payments::top_up_number(new.issuer, codec::id_from_db(number));
            let mut n = n.clone();
            n.subject = n.subject.replace("{invoice}", &number);
            n.body = n.body.replace("{invoice}", &number);
            if let Some(line) = taxed {
                n.body = purse_store::taxes::with_tax_line(&n.body, &line);
            }
            notice(c, &n, new.at)?;
        }
    }
    let row = c.query_one(&format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE id = $1"), &[&id]).map_err(err)?;
    *out = Some(recharge_from_row(&row)?);
    Ok(true)
}

impl PaymentStore for PgReader {
    fn recharge_settings(&self, party: PartyId) -> StoreResult<Option<RechargeSettings>> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {RECHARGE_SETTINGS_COLUMNS} FROM recharge_settings WHERE party_id = $1"),
                &[&id_to_db(party.0)],
            )
            .map_err(err)?
            .as_ref()
            .map(settings_from_row)
            .transpose()
        })
    }

    fn all_recharge_settings(&self) -> StoreResult<Vec<RechargeSettings>> {
        self.with(|c| {
            rows(
                c.query(&format!("SELECT {RECHARGE_SETTINGS_COLUMNS} FROM recharge_settings ORDER BY party_id"), &[])
                    .map_err(err)?,
                settings_from_row,
            )
        })
    }

    fn put_recharge_settings(&self, s: &RechargeSettings) -> StoreResult<()> {
        self.with(|c| {
            let (amount, target) = codec::recharge_target(s.target);
            let card = s.card.as_ref();
            c.execute(
                &format!(
                    "INSERT INTO recharge_settings ({RECHARGE_SETTINGS_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) \
                     ON CONFLICT (party_id) DO UPDATE SET enabled = excluded.enabled, method = excluded.method, threshold = excluded.threshold, \
                     amount = excluded.amount, target = excluded.target, per_day_max = excluded.per_day_max, month_cap = excluded.month_cap, \
                     emails = excluded.emails, stripe_customer = excluded.stripe_customer, payment_method = excluded.payment_method, \
                     card_brand = excluded.card_brand, card_last4 = excluded.card_last4, failures = excluded.failures, \
                     disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at"
                ),
                &[
                    &id_to_db(s.party.0),
                    &s.enabled,
                    &s.method.as_str(),
                    &s.threshold.0,
                    &amount,
                    &target,
                    &i64::from(s.per_day_max),
                    &s.month_cap.map(|c| c.0),
                    &codec::emails(&s.emails),
                    &card.map(|c| c.customer.as_str()),
                    &card.map(|c| c.payment_method.as_str()),
                    &card.map(|c| c.brand.as_str()),
                    &card.map(|c| c.last4.as_str()),
                    &i64::from(s.failures),
                    &s.disabled_reason,
                    &s.updated_at.0,
                ],
            )
            .map_err(err)
            .map(drop)
        })
    }

    fn recharges_used(&self, party: PartyId, day: &str, month: &str) -> StoreResult<Used> {
        self.with(|c| used(c, party, day, month))
    }

    fn start_recharge(&self, new: &NewRecharge) -> StoreResult<Option<RechargeRecord>> {
        let mut out = None;
        self.with(|c| atomically(c, |tx| start(tx, new, &mut out)))?;
        Ok(out)
    }

    fn claim_recharges(&self, wall: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<RechargeRecord>> {
        self.with(|c| {
            rows(
                c.query(
                    &format!(
                        "UPDATE recharges SET lease_until = $1 WHERE id IN (SELECT id FROM recharges WHERE status IN ('pending', 'processing') \
                         AND lease_until <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) AND status IN ('pending', 'processing') \
                         AND lease_until <= $2 RETURNING {RECHARGE_COLUMNS}"
                    ),
                    &[&lease_until, &wall, &i64::from(limit)],
                )
                .map_err(err)?,
                recharge_from_row,
            )
        })
    }

    fn update_recharge(
        &self,
        id: u64,
        update: &RechargeUpdate,
        at: Timestamp,
        n: Option<&NewNotification>,
    ) -> StoreResult<bool> {
        let mut changed = false;
        self.with(|c| {
            atomically(c, |tx| {
                let rows = match update {
                    RechargeUpdate::Intent(intent) => tx.execute(
                        "UPDATE recharges SET status = 'processing', intent = $1 WHERE id = $2 AND status = 'pending'",
                        &[intent, &id_to_db(id)],
                    ),
                    RechargeUpdate::Succeeded { transfer } => tx.execute(
                        "UPDATE recharges SET status = 'succeeded', transfer_id = $1, finished_at = $2, error = NULL, lease_until = 0 \
                         WHERE id = $3 AND status IN ('pending', 'processing', 'invoiced')",
                        &[&id_to_db(*transfer), &at.0, &id_to_db(id)],
                    ),
                    RechargeUpdate::Failed { error } => tx.execute(
                        "UPDATE recharges SET status = 'failed', error = $1, finished_at = $2, lease_until = 0 \
                         WHERE id = $3 AND status IN ('pending', 'processing', 'invoiced')",
                        &[error, &at.0, &id_to_db(id)],
                    ),
                }
                .map_err(err)?;
                changed = rows == 1;
                if changed {
                    if let Some(n) = n {
                        notice(tx, n, at)?;
                    }
                }
                Ok(true)
            })
        })?;
        Ok(changed)
    }

    fn recharge(&self, id: u64) -> StoreResult<Option<RechargeRecord>> {
        self.with(|c| {
            c.query_opt(&format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE id = $1"), &[&id_to_db(id)])
                .map_err(err)?
                .as_ref()
                .map(recharge_from_row)
                .transpose()
        })
    }

    fn recharges(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<RechargeRecord>> {
        self.with(|c| {
            rows(
                c.query(
                    &format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE $1::BIGINT IS NULL OR party_id = $1 ORDER BY id DESC LIMIT $2"),
                    &[&party.map(|p| id_to_db(p.0)), &i64::from(limit)],
                )
                .map_err(err)?,
                recharge_from_row,
            )
        })
    }

    fn card_result(
        &self,
        party: PartyId,
        ok: bool,
        failures_max: u32,
        reason: &str,
        at: Timestamp,
        n: Option<&NewNotification>,
    ) -> StoreResult<bool> {
        let mut disabled = false;
        self.with(|c| {
            atomically(c, |tx| {
                let p = id_to_db(party.0);
                if ok {
                    tx.execute("UPDATE recharge_settings SET failures = 0 WHERE party_id = $1", &[&p]).map_err(err)?;
                    return Ok(true);
                }
                let Some(row) = tx.query_opt("SELECT failures, enabled FROM recharge_settings WHERE party_id = $1 FOR UPDATE", &[&p]).map_err(err)?
                else {
                    return Ok(true);
                };
                let failures = row.get::<_, i64>(0) + 1;
                disabled = row.get::<_, bool>(1) && failures >= i64::from(failures_max);
                if disabled {
                    tx.execute(
                        "UPDATE recharge_settings SET failures = $1, enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE party_id = $4",
                        &[&failures, &reason, &at.0, &p],
                    )
                    .map_err(err)?;
                    if let Some(n) = n {
                        notice(tx, n, at)?;
                    }
                } else {
                    tx.execute("UPDATE recharge_settings SET failures = $1 WHERE party_id = $2", &[&failures, &p]).map_err(err)?;
                }
                Ok(true)
            })
        })?;
        Ok(disabled)
    }

    fn invoice_paid(&self, id: u64, transfer: u64, at: Timestamp) -> StoreResult<bool> {
        let mut changed = false;
        self.with(|c| {
            atomically(c, |tx| {
                changed = tx
                    .execute(
                        "UPDATE invoices SET status = 'paid', paid_at = $1, transfer_id = $2 WHERE id = $3 AND status = 'open'",
                        &[&at.0, &id_to_db(transfer), &id_to_db(id)],
                    )
                    .map_err(err)?
                    == 1;
                if changed {
                    tx.execute(
                        "UPDATE recharges SET status = 'succeeded', transfer_id = $1, finished_at = $2 WHERE invoice_id = $3 AND status = 'invoiced'",
                        &[&id_to_db(transfer), &at.0, &id_to_db(id)],
                    )
                    .map_err(err)?;
                }
                Ok(true)
            })
        })?;
        Ok(changed)
    }
}
