//! Accounts as they stand now, and what the ledger answered.

use purse_core::{
    Account, AccountId, AccountKind, AdjustCategory, AdjustDirection, Amount, ChangeNote, ClientId, Command,
    CommandResult, Currency, Money, Outcome, Rejection, TransferKind,
};

use crate::{policy, App, AppError, AppResult, Code, Principal, Problems};

/// The account as of now (a temporary increase past its end no longer counts), what can be
/// spent from it, and its currency.
pub fn live(app: &App, a: &Account) -> AppResult<(Account, i128, Currency)> {
    let currency = app.currency("currency", a.currency)?;
    let now = app.now();
    let a = app.engine.as_of(a.clone(), now)?;
    let parent = match a.kind {
        AccountKind::SubscriberCredit { parent } => app.engine.current(parent, now)?,
        _ => None,
    };
    let available = purse_core::ledger::available(&a, parent.as_ref(), now);
    Ok((a, available, currency))
}

/// The first failure among `results` (a linked chain reports its cause first), or the
/// outcome of the first command.
pub fn outcome(results: &[CommandResult]) -> AppResult<Outcome> {
    if let Some(Err(r)) = results.iter().find(|r| matches!(r, Err(e) if *e != Rejection::LinkedCommandFailed)) {
        return Err(AppError::Rejected(r.clone()));
    }
    match results.first() {
        Some(Ok(o)) => Ok(o.clone()),
        Some(Err(r)) => Err(AppError::Rejected(r.clone())),
        None => Err(AppError::Internal("no result".into())),
    }
}

/// A transfer someone asked for (by the API or the portal), checked for who may move what:
/// money leaves a customer only by its own transfer, a reseller's only from its own master
/// wallet. One made on someone else's behalf carries who and why for the audit log. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn transfer_command(
    s: &App,
    who: &Principal,
    client_id: ClientId,
    source: u64,
    target: u64,
    money: Money,
    kind: TransferKind,
    reason: Option<String>,
    metadata: Option<String>,
) -> AppResult<Command> {
    s.check_account_field(who, "source", source)?;
    s.check_account_field(who, "target", target)?;
    let reader = s.engine.reader();
    let mut note = None;
    if let (Some(from), Some(to)) = (reader.account(AccountId(source))?, reader.account(AccountId(target))?) {
        if !policy::may_move_from(who.role, &from) {
            return Err(AppError::ForbiddenField {
                field: "source",
                message: "money leaves a customer's account only by the customer's own transfer; staff take it back with an adjustment and a reason".into(),
            });
        }
        crate::credit::check_subscriber_transfer(&from, &to)?;
        if policy::on_behalf(who.role, &from, &to) {
            note = Some(ChangeNote { by: s.actor(who)?, reason });
        }
    }
    Ok(Command::Transfer {
        client_id,
        money,
        source: AccountId(source),
        target: AccountId(target),
        kind,
        metadata,
        note,
    })
}

/// A staff member's adjustment of a balance, as asked.
pub struct Adjustment {
    pub account: u64,
    pub money: Money,
    pub direction: AdjustDirection,
    pub category: AdjustCategory,
    pub reason: String,
    pub metadata: Option<String>,
}

/// A staff member's adjustment of a balance, up or down, against its category's system
/// account, with the reason the audit log keeps: the operator any account, a reseller its
/// customers' (never its own). Goodwill and write-offs only raise a balance, and a write-off
/// at most to zero: it gives up a debt. Every wrong field is named at once. Blocking.
pub fn adjustment_command(s: &App, who: &Principal, client_id: ClientId, a: Adjustment) -> AppResult<Command> {
    let mut problems = Problems::default();
    let reason = problems.check(crate::parse::reason_text(Some(&a.reason)).and_then(|r| {
        r.ok_or_else(|| {
            AppError::invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept in the audit log")
        })
    }));
    if matches!(a.category, AdjustCategory::CreditNote | AdjustCategory::Tax) {
        problems.note(AppError::invalid(
            "category",
            Code::InvalidCategory,
            "credit notes and tax come from invoices: choose goodwill, correction or write_off",
        ));
    } else if a.category.credits_only() && a.direction == AdjustDirection::Debit {
        problems.note(AppError::invalid(
            "direction",
            Code::CategoryOnlyRaises,
            "goodwill and write-offs only raise a balance; lower one with a correction",
        ));
    }
    problems.check(s.check_account_field(who, "account", a.account));
    if let Some(account) = s.engine.reader().account(AccountId(a.account))? {
        if !policy::may_adjust(who.role, &account) {
            problems.note(AppError::ForbiddenField {
                field: "account",
                message: "a reseller adjusts its customers' accounts, not its own".into(),
            });
        } else if a.category == AdjustCategory::WriteOff && account.currency == a.money.currency {
            let owed = account.balance.0.checked_neg().unwrap_or(i64::MAX);
            let currency = s.currency("currency", account.currency)?;
            if owed <= 0 {
                problems.note(AppError::invalid(
                    "category",
                    Code::NothingOwed,
                    "nothing is owed on this account: a write-off gives up a debt",
                ));
            } else if a.money.amount.0 > owed {
                problems.note(AppError::invalid(
                    "amount",
                    Code::AboveWhatIsOwed,
                    format!("a write-off is at most what is owed, {} {}", currency.format(Amount(owed)), currency.code),
                ));
            }
        }
    }
    problems.finish()?;
    Ok(Command::Adjust {
        client_id,
        account: AccountId(a.account),
        money: a.money,
        direction: a.direction,
        category: a.category,
        note: ChangeNote { by: s.actor(who)?, reason },
        metadata: a.metadata,
    })
}

/// One adjustment as the audit log keeps it: who, when, why, which way, what category.
#[derive(Clone, Debug)]
pub struct AdjustmentEntry {
    pub id: u64,
    pub transfer: u64,
    pub at: purse_core::Timestamp,
    pub by: String,
    pub customer: Option<purse_core::PartyId>,
    pub account: u64,
    pub direction: AdjustDirection,
    pub category: AdjustCategory,
    /// In the currency's decimals.
    pub amount: String,
    pub currency: String,
    pub reason: String,
}

/// The adjustments the caller may see (of one customer or all), newest first, from the audit
/// log written with each posting. Blocking.
pub fn adjustments(
    s: &App,
    who: &Principal,
    customer: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> AppResult<Vec<AdjustmentEntry>> {
    if let Some(c) = customer {
        s.party_of_kind(who, c, false)?;
    }
    let query = purse_store::AuditQuery {
        visible: crate::credit::visible(who),
        party: customer.map(purse_core::PartyId),
        entity: Some("transfer".into()),
        action: Some(TransferKind::Adjustment.as_str().into()),
        actor: None,
        from: None,
        to: None,
        before,
        limit,
    };
    let reader = s.engine.reader();
    let mut out = Vec::new();
    for e in s.credit.audit_log(&query)? {
        let Some(after) = e.after.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()) else {
            continue;
        };
        let (debit, credit) = (after["debit"].as_u64().unwrap_or(0), after["credit"].as_u64().unwrap_or(0));
        let system = |id: u64| -> AppResult<bool> { Ok(reader.account(AccountId(id))?.is_some_and(|a| a.is_system())) };
        let (account, direction) =
            if system(debit)? { (credit, AdjustDirection::Credit) } else { (debit, AdjustDirection::Debit) };
        out.push(AdjustmentEntry {
            id: e.id,
            transfer: e.entity_id.parse().unwrap_or(0),
            at: e.at,
            by: e.actor,
            customer: e.party,
            account,
            direction,
            // Adjustments before categories were all corrections.
            category: after["category"].as_str().and_then(AdjustCategory::parse).unwrap_or(AdjustCategory::Correction),
            amount: after["amount"].as_str().unwrap_or_default().to_owned(),
            currency: after["currency"].as_str().unwrap_or_default().to_owned(),
            reason: after["reason"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}
