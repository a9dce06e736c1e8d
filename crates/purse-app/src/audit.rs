//! The audit log of settings changes: who (`user ann@example.com`, `key 12`), when, what,
//! before and after.

use purse_core::{PartyId, Role, Scope};
use purse_store::AuditEntry;
use serde_json::Value;

use crate::{App, AppResult, Principal};

/// How the audit log shows a key's or user's role and scope, and the party it belongs to.
pub fn access_view(role: Role, scope: Scope) -> (Value, Option<PartyId>) {
    let (kind, party) = purse_store::codec::role(role);
    (serde_json::json!({ "role": kind, "party": party, "scope": purse_store::codec::scope(scope) }), party.map(PartyId))
}

impl App {
    /// Who a principal is, as the audit log and the credit limit history name it:
    /// `user ann@example.com` for a portal session, `key 12` for an API key.
    pub fn actor(&self, who: &Principal) -> AppResult<String> {
        if let Some(id) = who.user_id {
            let user = self.access.user(id)?;
            return Ok(user.map_or_else(|| format!("user {id}"), |u| format!("user {}", u.email)));
        }
        Ok(format!("key {}", who.key_id))
    }

    /// Records a settings change in the audit log, with the state before and after as JSON.
    #[allow(clippy::too_many_arguments)]
    pub fn audit(
        &self,
        who: &Principal,
        party: Option<PartyId>,
        entity: &str,
        entity_id: impl ToString,
        action: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> AppResult<()> {
        let entry = self.audit_entry(who, party, entity, entity_id, action, before, after)?;
        self.credit.record_audit(&entry)?;
        Ok(())
    }

    /// The audit entry of a change made now by `who` (for stores that write it with the change).
    #[allow(clippy::too_many_arguments)]
    pub fn audit_entry(
        &self,
        who: &Principal,
        party: Option<PartyId>,
        entity: &str,
        entity_id: impl ToString,
        action: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> AppResult<AuditEntry> {
        Ok(AuditEntry {
            id: 0,
            at: self.now(),
            actor: self.actor(who)?,
            party,
            entity: entity.to_owned(),
            entity_id: entity_id.to_string(),
            action: action.to_owned(),
            before: before.map(ToString::to_string),
            after: after.map(ToString::to_string),
        })
    }
}
