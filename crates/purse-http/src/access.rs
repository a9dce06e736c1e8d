//! Tenancy: what each role sees and may do. An operator sees everything; a reseller itself
//! and its customers; a customer only itself. Anything outside a caller's scope answers
//! exactly as if it did not exist (404, or `*_not_found` for an id in a body).
//!
//! Client ids are scoped the same way: a reseller's or customer's client id is stored with
//! its party as a prefix (`r12:` / `c34:`), so two tenants never collide on an id (nor learn
//! of each other's through a collision). Operators' ids are stored as given.

use purse_core::{Account, ClientId, Party, PartyKind, Role, Scope};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// Entries past which the ownership caches start over (a bound, not a tuning knob).
const OWNERS_CACHED_MAX: usize = 1_000_000;

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Refuses read-only keys.
    pub fn require_write(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::ReadWrite => Ok(()),
            Scope::Read => Err(ApiError::Forbidden("this API key is read-only".into())),
        }
    }

    /// A write allowed to operators only.
    pub fn require_operator(&self, what: &str) -> Result<(), ApiError> {
        self.require_write()?;
        if self.is_operator() { Ok(()) } else { Err(ApiError::Forbidden(format!("only an operator key may {what}"))) }
    }

    /// A write allowed to operators and resellers.
    pub fn require_staff(&self, what: &str) -> Result<(), ApiError> {
        self.require_write()?;
        match self.role {
            Role::Customer(_) => Err(ApiError::Forbidden(format!("a customer key may not {what}"))),
            _ => Ok(()),
        }
    }

    /// Whether this caller sees `party`.
    pub fn sees_party(&self, party: &Party) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Reseller(r) => {
                party.id == r || matches!(party.kind, PartyKind::Customer { reseller: Some(x), .. } if x == r)
            }
            Role::Customer(c) => party.id == c,
        }
    }

    fn prefix(&self) -> Option<String> {
        match self.role {
            Role::Operator => None,
            Role::Reseller(p) => Some(format!("r{p}:")),
            Role::Customer(p) => Some(format!("c{p}:")),
        }
    }

    /// The ledger's client id for `text` sent by this caller.
    pub fn client_id(&self, field: &str, text: &str) -> Result<ClientId, ApiError> {
        let invalid = || ApiError::invalid(field, "invalid_client_id", format!("{field} must be 1 to 100 printable characters"));
        if text.is_empty() || text.len() > 100 {
            return Err(invalid());
        }
        let scoped = match self.prefix() {
            Some(prefix) => format!("{prefix}{text}"),
            None => text.to_owned(),
        };
        ClientId::new(&scoped).ok_or_else(invalid)
    }

    /// A stored client id as this caller sent it.
    pub fn shown_client_id(&self, id: &ClientId) -> String {
        match self.prefix() {
            Some(prefix) => id.as_str().strip_prefix(&prefix).unwrap_or(id.as_str()).to_owned(),
            None => id.as_str().to_owned(),
        }
    }
}

impl AppState {
    /// The party, if this caller sees it. Blocking: call inside `AppState::read`.
    pub(crate) fn party_for(&self, who: &Principal, id: u64) -> Result<Party, ApiError> {
        let party = self.engine.reader().party(purse_core::PartyId(id))?.ok_or(ApiError::NotFound("party"))?;
        if who.sees_party(&party) { Ok(party) } else { Err(ApiError::NotFound("party")) }
    }

    /// The account, if this caller sees it (system accounts: operators only). Blocking.
    pub(crate) fn account_for(&self, who: &Principal, id: u64) -> Result<Account, ApiError> {
        let account = self.engine.reader().account(purse_core::AccountId(id))?.ok_or(ApiError::NotFound("account"))?;
        if self.sees_account(who, &account)? { Ok(account) } else { Err(ApiError::NotFound("account")) }
    }

    pub(crate) fn sees_account(&self, who: &Principal, account: &Account) -> Result<bool, ApiError> {
        Ok(match (who.role, account.party) {
            (Role::Operator, _) => true,
            (_, None) => false,
            (Role::Customer(c), Some(p)) => p == c,
            (Role::Reseller(r), Some(p)) if p == r => true,
            (Role::Reseller(_), Some(p)) => match self.engine.reader().party(p)? {
                Some(party) => who.sees_party(&party),
                None => false,
            },
        })
    }

    /// Checks that the caller sees the account a body field names (one it does not see is
    /// "not found" there). Operators see every account: the ledger itself answers for ones
    /// that do not exist, so their requests cost no read here. For the others, which party
    /// owns an account (and which reseller a party belongs to) never changes, so both are
    /// cached. Blocking on a miss.
    pub(crate) fn check_account_field(&self, who: &Principal, field: &str, id: u64) -> Result<(), ApiError> {
        let not_found = || ApiError::invalid(field, "account_not_found", format!("{field}: account {id} does not exist"));
        let owner = match who.role {
            Role::Operator => return Ok(()),
            Role::Reseller(_) | Role::Customer(_) => self.owner_of(id)?.ok_or_else(not_found)?,
        };
        let visible = match who.role {
            Role::Customer(c) => owner == Some(c),
            Role::Reseller(r) => match owner {
                Some(p) if p == r => true,
                Some(p) => self.reseller_of(p)? == Some(r),
                None => false,
            },
            Role::Operator => true,
        };
        if visible { Ok(()) } else { Err(not_found()) }
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

    fn reseller_of(&self, party: purse_core::PartyId) -> Result<Option<purse_core::PartyId>, ApiError> {
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
