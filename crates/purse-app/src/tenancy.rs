//! The policy's tenancy rules applied to the store's records: what a caller sees answers,
//! anything else answers exactly as if it did not exist (not found, or `*_not_found` for an
//! id in a body). Which party owns an account and which reseller a customer belongs to never
//! change, so both are cached.

use purse_core::{Account, AccountId, ClientId, Party, PartyId, PartyKind, Role};

use crate::{policy, remember, App, AppError, AppResult, Code, Principal};

/// Longest client id a caller may send, in bytes.
pub const CLIENT_ID_LEN_MAX: usize = 100;

/// The ledger's client id for `text` sent by a caller of `role`: in its tenant's namespace,
/// 1 to [`CLIENT_ID_LEN_MAX`] bytes of one line. A refusal says which rule `text` broke.
pub fn client_id(role: Role, field: &str, text: &str) -> AppResult<ClientId> {
    let scoped = (text.len() <= CLIENT_ID_LEN_MAX).then(|| ClientId::scoped(policy::tenant(role), text)).flatten();
    scoped.ok_or_else(|| {
        let rule = crate::parse::line_rule(text, false, CLIENT_ID_LEN_MAX, crate::parse::Count::Bytes)
            .unwrap_or_else(|| format!("must be 1 to {CLIENT_ID_LEN_MAX} bytes of one line"));
        AppError::invalid(field, Code::InvalidClientId, format!("{field} {rule}"))
    })
}

impl Principal {
    /// Whether this caller sees `party` (the policy's tenancy rule).
    pub fn sees_party(&self, party: &Party) -> bool {
        policy::sees_party(self.role, party)
    }

    /// The ledger's client id for `text` sent by this caller: in its tenant's namespace.
    pub fn client_id(&self, field: &str, text: &str) -> AppResult<ClientId> {
        client_id(self.role, field, text)
    }

    /// A stored client id as its caller sent it.
    pub fn shown_client_id(&self, id: &ClientId) -> String {
        id.as_str().to_owned()
    }
}

impl App {
    /// The party, if this caller sees it.
    pub fn party_for(&self, who: &Principal, id: u64) -> AppResult<Party> {
        let party = self.engine.reader().party(PartyId(id))?.ok_or(AppError::NotFound("party"))?;
        if who.sees_party(&party) {
            Ok(party)
        } else {
            Err(AppError::NotFound("party"))
        }
    }

    /// The reseller (`reseller`) or customer a path names, if the caller sees it.
    pub fn party_of_kind(&self, who: &Principal, id: u64, reseller: bool) -> AppResult<Party> {
        let party = self.party_for(who, id)?;
        if matches!(party.kind, PartyKind::Reseller) != reseller {
            return Err(AppError::NotFound(if reseller { "reseller" } else { "customer" }));
        }
        Ok(party)
    }

    /// The account, if this caller sees it (system accounts: operators only).
    pub fn account_for(&self, who: &Principal, id: u64) -> AppResult<Account> {
        let account = self.engine.reader().account(AccountId(id))?.ok_or(AppError::NotFound("account"))?;
        if self.sees_account(who, &account)? {
            Ok(account)
        } else {
            Err(AppError::NotFound("account"))
        }
    }

    pub fn sees_account(&self, who: &Principal, account: &Account) -> AppResult<bool> {
        self.ask(|reseller_of| policy::sees_owner(who.role, account.party, reseller_of))
    }

    /// Answers a policy rule that asks for customers' resellers, reading them (cached) from
    /// the store.
    pub fn ask<T>(&self, rule: impl FnOnce(&mut dyn FnMut(PartyId) -> Option<PartyId>) -> T) -> AppResult<T> {
        let mut failed = None;
        let answer = rule(&mut |p| match self.reseller_of(p) {
            Ok(r) => r,
            Err(e) => {
                failed.get_or_insert(e);
                None
            }
        });
        failed.map_or(Ok(answer), Err)
    }

    /// Checks that the caller sees the account a body field names (one it does not see is
    /// "not found" there). Operators see every account: the ledger itself answers for ones
    /// that do not exist, so their requests cost no read here.
    pub fn check_account_field(&self, who: &Principal, field: &str, id: u64) -> AppResult<()> {
        let not_found =
            || AppError::invalid(field, Code::AccountNotFound, format!("{field}: account {id} does not exist"));
        let owner = match who.role {
            Role::Operator => return Ok(()),
            Role::Reseller(_) | Role::Customer(_) => self.owner_of(id)?.ok_or_else(not_found)?,
        };
        if self.ask(|reseller_of| policy::sees_owner(who.role, owner, reseller_of))? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// `Some(owner)` of an existing account (the owner is `None` for system accounts).
    fn owner_of(&self, account: u64) -> AppResult<Option<Option<PartyId>>> {
        if let Some(owner) = self.owners.lock().ok().and_then(|m| m.get(&account).copied()) {
            return Ok(Some(owner));
        }
        let Some(a) = self.engine.reader().account(AccountId(account))? else { return Ok(None) };
        remember(&self.owners, account, a.party);
        Ok(Some(a.party))
    }

    /// The reseller a customer belongs to (none for a reseller or the operator's own).
    pub fn reseller_of(&self, party: PartyId) -> AppResult<Option<PartyId>> {
        if let Some(r) = self.resellers.lock().ok().and_then(|m| m.get(&party).copied()) {
            return Ok(r);
        }
        let reseller = match self.engine.reader().party(party)?.map(|p| p.kind) {
            Some(PartyKind::Customer { reseller, .. }) => reseller,
            _ => None,
        };
        remember(&self.resellers, party, reseller);
        Ok(reseller)
    }
}
