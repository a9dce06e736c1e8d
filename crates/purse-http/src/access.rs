//! Tenancy: what each role sees and may do. An operator sees everything; a reseller itself
//! and its customers; a customer only itself. Anything outside a caller's scope answers
//! exactly as if it did not exist (404, or `*_not_found` for an id in a body).
//!
//! The rules themselves are `purse_app::policy`'s; this module applies them to the store's
//! records. Client ids live in their tenant's namespace (`purse_core::Tenant`), so two
//! tenants never collide on an id (nor learn of each other's through a collision).

use purse_app::policy;
use purse_core::{Account, ClientId, Party, PartyId, PartyKind, Role};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// Entries past which the ownership caches start over (a bound, not a tuning knob).
const OWNERS_CACHED_MAX: usize = 1_000_000;

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether this caller sees `party` (the policy's tenancy rule).
    pub fn sees_party(&self, party: &Party) -> bool {
        policy::sees_party(self.role, party)
    }

    /// The ledger's client id for `text` sent by this caller: in its tenant's namespace.
    pub fn client_id(&self, field: &str, text: &str) -> Result<ClientId, ApiError> {
        Ok(purse_app::tenancy::client_id(self.role, field, text)?)
    }

    /// A stored client id as its caller sent it.
    pub fn shown_client_id(&self, id: &ClientId) -> String {
        id.as_str().to_owned()
    }
}

impl AppState {
    /// The party, if this caller sees it. Blocking: call inside `AppState::read`.
    pub(crate) fn party_for(&self, who: &Principal, id: u64) -> Result<Party, ApiError> {
        let party = self.engine.reader().party(purse_core::PartyId(id))?.ok_or(ApiError::NotFound("party"))?;
        if who.sees_party(&party) {
            Ok(party)
        } else {
            Err(ApiError::NotFound("party"))
        }
    }

    /// The account, if this caller sees it (system accounts: operators only). Blocking.
    pub(crate) fn account_for(&self, who: &Principal, id: u64) -> Result<Account, ApiError> {
        let account = self.engine.reader().account(purse_core::AccountId(id))?.ok_or(ApiError::NotFound("account"))?;
        if self.sees_account(who, &account)? {
            Ok(account)
        } else {
            Err(ApiError::NotFound("account"))
        }
    }

    pub(crate) fn sees_account(&self, who: &Principal, account: &Account) -> Result<bool, ApiError> {
        self.ask(|reseller_of| policy::sees_owner(who.role, account.party, reseller_of))
    }

    /// Answers a policy rule that asks for customers' resellers, reading them (cached) from
    /// the store. Blocking on a miss.
    pub(crate) fn ask<T>(
        &self,
        rule: impl FnOnce(&mut dyn FnMut(PartyId) -> Option<PartyId>) -> T,
    ) -> Result<T, ApiError> {
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
    /// that do not exist, so their requests cost no read here. For the others, which party
    /// owns an account (and which reseller a party belongs to) never changes, so both are
    /// cached. Blocking on a miss.
    pub(crate) fn check_account_field(&self, who: &Principal, field: &str, id: u64) -> Result<(), ApiError> {
        let not_found =
            || ApiError::invalid(field, "account_not_found", format!("{field}: account {id} does not exist"));
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
    fn owner_of(&self, account: u64) -> Result<Option<Option<purse_core::PartyId>>, ApiError> {
        if let Some(owner) = self.owners.lock().ok().and_then(|m| m.get(&account).copied()) {
            return Ok(Some(owner));
        }
        let Some(a) = self.engine.reader().account(purse_core::AccountId(account))? else { return Ok(None) };
        if let Ok(mut m) = self.owners.lock() {
            if m.len() >= OWNERS_CACHED_MAX {
                m.clear();
            }
            m.insert(account, a.party);
        }
        Ok(Some(a.party))
    }

    pub(crate) fn reseller_of(&self, party: purse_core::PartyId) -> Result<Option<purse_core::PartyId>, ApiError> {
        if let Some(r) = self.resellers.lock().ok().and_then(|m| m.get(&party).copied()) {
            return Ok(r);
        }
        let reseller = match self.engine.reader().party(party)?.map(|p| p.kind) {
            Some(PartyKind::Customer { reseller, .. }) => reseller,
            _ => None,
        };
        if let Ok(mut m) = self.resellers.lock() {
            if m.len() >= OWNERS_CACHED_MAX {
                m.clear();
            }
            m.insert(party, reseller);
        }
        Ok(reseller)
    }
}
