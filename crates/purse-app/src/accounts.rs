//! Accounts as they stand now, and what the ledger answered.

use purse_core::{
    Account, AccountId, AccountKind, AdjustDirection, ChangeNote, ClientId, Command, CommandResult, Currency, Money,
    Outcome, Rejection, TransferKind,
};

use crate::{policy, App, AppError, AppResult, Code, Principal};

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

/// A staff member's adjustment of a balance, up or down, against the adjustments account,
/// with the reason the audit log keeps: the operator any account, a reseller its customers'
/// (never its own). Blocking.
#[allow(clippy::too_many_arguments)]
pub fn adjustment_command(
    s: &App,
    who: &Principal,
    client_id: ClientId,
    account: u64,
    money: Money,
    direction: AdjustDirection,
    reason: &str,
    metadata: Option<String>,
) -> AppResult<Command> {
    let reason = crate::parse::reason_text(Some(reason))?.ok_or_else(|| {
        AppError::invalid("reason", Code::ReasonMustNotBeEmpty, "give a reason: it is kept in the audit log")
    })?;
    s.check_account_field(who, "account", account)?;
    if let Some(a) = s.engine.reader().account(AccountId(account))? {
        if !policy::may_adjust(who.role, &a) {
            return Err(AppError::ForbiddenField {
                field: "account",
                message: "a reseller adjusts its customers' accounts, not its own".into(),
            });
        }
    }
    Ok(Command::Adjust {
        client_id,
        account: AccountId(account),
        money,
        direction,
        note: ChangeNote { by: s.actor(who)?, reason: Some(reason) },
        metadata,
    })
}
