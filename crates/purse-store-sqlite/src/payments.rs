//! [`PaymentStore`] on SQLite. Writes that decide something run in `BEGIN IMMEDIATE`
//! transactions on the reader's connection, so they queue behind the engine's batches.

use purse_core::recharge::{RechargeSettings, Used};
use purse_core::{PartyId, Timestamp};
use purse_store::codec::{self, id_to_db, SettingsRow};
use purse_store::columns::{RECHARGE_COLUMNS, RECHARGE_SETTINGS_COLUMNS};
use purse_store::{
    AlertBatch, Fire, NewNotification, NewRecharge, PaymentStore, RechargeReason, RechargeRecord, RechargeStatus,
    RechargeUpdate, StoreResult,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::db::exclusive;
use crate::{conv, SqliteReader};

fn settings_from_row(r: &Row<'_>) -> rusqlite::Result<RechargeSettings> {
    conv(codec::recharge_settings(SettingsRow {
        party: r.get(0)?,
        enabled: r.get(1)?,
        method: r.get(2)?,
        threshold: r.get(3)?,
        amount: r.get(4)?,
        target: r.get(5)?,
        per_day_max: r.get(6)?,
        month_cap: r.get(7)?,
        emails: r.get(8)?,
        stripe_customer: r.get(9)?,
        payment_method: r.get(10)?,
        card_brand: r.get(11)?,
        card_last4: r.get(12)?,
        failures: r.get(13)?,
        disabled_reason: r.get(14)?,
        updated_at: r.get(15)?,
    }))
}

fn recharge_from_row(r: &Row<'_>) -> rusqlite::Result<RechargeRecord> {
    conv(codec::recharge(
        r.get(0)?,
        r.get(1)?,
        &r.get::<_, String>(2)?,
        &r.get::<_, String>(3)?,
        r.get(4)?,
        &r.get::<_, String>(5)?,
        &r.get::<_, String>(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
    ))
}

fn used(c: &Connection, party: PartyId, day: &str, month: &str) -> rusqlite::Result<Used> {
    let today: u32 = c.query_row(
        "SELECT COUNT(*) FROM recharges WHERE party_id = ? AND reason = 'auto' AND day = ?",
        params![id_to_db(party.0), day],
        |r| r.get(0),
    )?;
    let month: i64 = c.query_row(
        "SELECT COALESCE(SUM(amount), 0) FROM recharges WHERE party_id = ? AND reason = 'auto' AND month = ? AND status <> 'failed'",
        params![id_to_db(party.0), month],
        |r| r.get(0),
    )?;
    Ok(Used { today, month: i128::from(month) })
}

fn notice(c: &Connection, n: &NewNotification, at: Timestamp) -> rusqlite::Result<bool> {
    let batch = AlertBatch { fires: vec![Fire { counter: None, notification: n.clone() }], ..AlertBatch::default() };
    crate::conv(purse_store::alert_sql::record(&mut crate::db::Lite(c), &batch, at))
}

fn start(c: &Connection, new: &NewRecharge, out: &mut Option<RechargeRecord>) -> rusqlite::Result<bool> {
    let party = id_to_db(new.party.0);
    if let Some(key) = &new.request_key {
        let found = c
            .query_row(
                &format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE party_id = ? AND request_key = ?"),
                params![party, key],
                recharge_from_row,
            )
            .optional()?;
        if found.is_some() {
            *out = found;
            return Ok(true);
        }
    }
    if new.reason == RechargeReason::Auto {
        let busy: bool = c.query_row(
            "SELECT EXISTS (SELECT 1 FROM recharges WHERE party_id = ? AND reason = 'auto' AND status IN ('pending', 'processing', 'invoiced'))",
            [party],
            |r| r.get(0),
        )?;
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
    let id: i64 = c.query_row(
        "INSERT INTO recharges (party_id, method, reason, amount, currency, status, created_at, day, month, lease_until, request_key) \
         VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        params![
            party,
            new.method.as_str(),
            new.reason.as_str(),
            new.amount,
            new.currency.as_str(),
            status.as_str(),
            new.at.0,
            new.day,
            new.month,
            new.lease_until,
            new.request_key
        ],
        |r| r.get(0),
    )?;
    if status == RechargeStatus::Invoiced {
        let issuer = new.issuer.map_or(0, |p| id_to_db(p.0));
        let number: i64 = c.query_row(
            "INSERT INTO invoice_numbers (issuer_id, last) VALUES (?, 1) ON CONFLICT (issuer_id) DO UPDATE SET last = last + 1 RETURNING last",
            [issuer],
            |r| r.get(0),
        )?;
        let invoice: i64 = c.query_row(
            "INSERT INTO invoices (issuer_id, number, party_id, kind, amount, currency, status, created_at, recharge_id) \
             VALUES (?,?,?,'top_up',?,?,'open',?,?) RETURNING id",
            params![issuer, number, party, new.amount, new.currency.as_str(), new.at.0, id],
            |r| r.get(0),
        )?;
        c.execute("UPDATE recharges SET invoice_id = ? WHERE id = ?", params![invoice, id])?;
        let taxed = crate::conv(purse_store::taxes::tax_top_up_invoice(&mut crate::db::Lite(c), invoice))?;
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
    *out = Some(c.query_row(
        &format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE id = ?"),
        [id],
        recharge_from_row,
    )?);
    Ok(true)
}

impl PaymentStore for SqliteReader {
    fn recharge_settings(&self, party: PartyId) -> StoreResult<Option<RechargeSettings>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {RECHARGE_SETTINGS_COLUMNS} FROM recharge_settings WHERE party_id = ?"))?
                .query_row([id_to_db(party.0)], settings_from_row)
                .optional()
        })
    }

    fn all_recharge_settings(&self) -> StoreResult<Vec<RechargeSettings>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {RECHARGE_SETTINGS_COLUMNS} FROM recharge_settings ORDER BY party_id"))?
                .query_map([], settings_from_row)?
                .collect()
        })
    }

    fn put_recharge_settings(&self, s: &RechargeSettings) -> StoreResult<()> {
        self.with(|c| {
            let (amount, target) = codec::recharge_target(s.target);
            let card = s.card.as_ref();
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO recharge_settings ({RECHARGE_SETTINGS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                ),
                params![
                    id_to_db(s.party.0),
                    s.enabled,
                    s.method.as_str(),
                    s.threshold.0,
                    amount,
                    target,
                    s.per_day_max,
                    s.month_cap.map(|c| c.0),
                    codec::emails(&s.emails),
                    card.map(|c| &c.customer),
                    card.map(|c| &c.payment_method),
                    card.map(|c| &c.brand),
                    card.map(|c| &c.last4),
                    s.failures,
                    s.disabled_reason,
                    s.updated_at.0
                ],
            )
            .map(drop)
        })
    }

    fn recharges_used(&self, party: PartyId, day: &str, month: &str) -> StoreResult<Used> {
        self.with(|c| used(c, party, day, month))
    }

    fn start_recharge(&self, new: &NewRecharge) -> StoreResult<Option<RechargeRecord>> {
        let mut out = None;
        self.with(|c| exclusive(c, |c| start(c, new, &mut out)))?;
        Ok(out)
    }

    fn claim_recharges(&self, wall: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<RechargeRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "UPDATE recharges SET lease_until = ?1 WHERE id IN (SELECT id FROM recharges WHERE status IN ('pending', 'processing') \
                 AND lease_until <= ?2 ORDER BY id LIMIT ?3) AND status IN ('pending', 'processing') AND lease_until <= ?2 \
                 RETURNING {RECHARGE_COLUMNS}"
            ))?
            .query_map(params![lease_until, wall, limit], recharge_from_row)?
            .collect()
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
            exclusive(c, |c| {
                let rows = match update {
                    RechargeUpdate::Intent(intent) => c.execute(
                        "UPDATE recharges SET status = 'processing', intent = ? WHERE id = ? AND status = 'pending'",
                        params![intent, id_to_db(id)],
                    )?,
                    RechargeUpdate::Succeeded { transfer } => c.execute(
                        "UPDATE recharges SET status = 'succeeded', transfer_id = ?, finished_at = ?, error = NULL, lease_until = 0 \
                         WHERE id = ? AND status IN ('pending', 'processing', 'invoiced')",
                        params![id_to_db(*transfer), at.0, id_to_db(id)],
                    )?,
                    RechargeUpdate::Failed { error } => c.execute(
                        "UPDATE recharges SET status = 'failed', error = ?, finished_at = ?, lease_until = 0 \
                         WHERE id = ? AND status IN ('pending', 'processing', 'invoiced')",
                        params![error, at.0, id_to_db(id)],
                    )?,
                };
                changed = rows == 1;
                if changed {
                    if let Some(n) = n {
                        notice(c, n, at)?;
                    }
                }
                Ok(true)
            })
        })?;
        Ok(changed)
    }

    fn recharge(&self, id: u64) -> StoreResult<Option<RechargeRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {RECHARGE_COLUMNS} FROM recharges WHERE id = ?"))?
                .query_row([id_to_db(id)], recharge_from_row)
                .optional()
        })
    }

    fn recharges(&self, party: Option<PartyId>, limit: u32) -> StoreResult<Vec<RechargeRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {RECHARGE_COLUMNS} FROM recharges WHERE ?1 IS NULL OR party_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![party.map(|p| id_to_db(p.0)), limit], recharge_from_row)?
            .collect()
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
            exclusive(c, |c| {
                let p = id_to_db(party.0);
                if ok {
                    c.execute("UPDATE recharge_settings SET failures = 0 WHERE party_id = ?", [p])?;
                    return Ok(true);
                }
                let found: Option<(u32, bool)> = c
                    .query_row("SELECT failures, enabled FROM recharge_settings WHERE party_id = ?", [p], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((failures, enabled)) = found else { return Ok(true) };
                let failures = failures + 1;
                disabled = enabled && failures >= failures_max;
                if disabled {
                    c.execute(
                        "UPDATE recharge_settings SET failures = ?, enabled = 0, disabled_reason = ?, updated_at = ? WHERE party_id = ?",
                        params![failures, reason, at.0, p],
                    )?;
                    if let Some(n) = n {
                        notice(c, n, at)?;
                    }
                } else {
                    c.execute("UPDATE recharge_settings SET failures = ? WHERE party_id = ?", params![failures, p])?;
                }
                Ok(true)
            })
        })?;
        Ok(disabled)
    }

    fn invoice_paid(&self, id: u64, transfer: u64, at: Timestamp) -> StoreResult<bool> {
        let mut changed = false;
        self.with(|c| {
            exclusive(c, |c| {
                changed = c.execute(
                    "UPDATE invoices SET status = 'paid', paid_at = ?, transfer_id = ? WHERE id = ? AND status = 'open'",
                    params![at.0, id_to_db(transfer), id_to_db(id)],
                )? == 1;
                if changed {
                    c.execute(
                        "UPDATE recharges SET status = 'succeeded', transfer_id = ?, finished_at = ? WHERE invoice_id = ? AND status = 'invoiced'",
                        params![id_to_db(transfer), at.0, id_to_db(id)],
                    )?;
                }
                Ok(true)
            })
        })?;
        Ok(changed)
    }
}
