//! Accounts as they stand now, and what the ledger answered.

use purse_core::{Account, AccountKind, CommandResult, Currency, Outcome, Rejection};

use crate::{App, AppError, AppResult};

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
