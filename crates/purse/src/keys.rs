//! `purse keys` and `purse users`: API keys and portal users made directly on the database
//! (how the first operator key and login come to exist, and how an operator recovers access).

use purse_core::{PartyId, PartyKind, Role, Scope, Timestamp};
use purse_store::{codec, ApiKeyRecord};

use crate::Opened;

/// The role of a new key, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleName {
    Operator,
    Reseller,
    Customer,
}

/// Checks that `party` fits `role` and returns the role to store.
pub fn role_for(opened: &Opened, role: RoleName, party: Option<u64>) -> crate::error::Result<Role> {
    let lookup = |id: u64| -> crate::error::Result<PartyKind> {
        let party = opened.reader.party(PartyId(id)).map_err(crate::Error::from)?;
        party.map(|p| p.kind).ok_or_else(|| crate::Error::Usage(format!("--party {id}: no such party")))
    };
    match (role, party) {
        (RoleName::Operator, None) => Ok(Role::Operator),
        (RoleName::Operator, Some(_)) => {
            Err(crate::Error::Usage("--party: an operator key belongs to no party".into()))
        }
        (_, None) => {
            Err(crate::Error::Usage("--party: a reseller or customer key needs the party it belongs to".into()))
        }
        (RoleName::Reseller, Some(id)) => match lookup(id)? {
            PartyKind::Reseller => Ok(Role::Reseller(PartyId(id))),
            _ => Err(crate::Error::Usage(format!("--party {id}: is a customer, not a reseller"))),
        },
        (RoleName::Customer, Some(id)) => match lookup(id)? {
            PartyKind::Customer { .. } => Ok(Role::Customer(PartyId(id))),
            PartyKind::Reseller => Err(crate::Error::Usage(format!("--party {id}: is a reseller, not a customer"))),
        },
    }
}

/// Issues a key and stores its hash; returns the id and the secret, to be shown once.
pub fn create(
    opened: &Opened,
    name: &str,
    role: Role,
    scope: Scope,
    now: Timestamp,
) -> crate::error::Result<(u64, String)> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(crate::Error::Usage("--name: must be 1 to 100 characters".into()));
    }
    let (secret, record) = purse_app::secrets::issue_key(name, role, scope, now).map_err(crate::Error::from)?;
    let id = opened.access.insert_key(&record).map_err(crate::Error::from)?;
    let (mut after, party) = purse_app::audit::access_view(role, scope);
    after["name"] = serde_json::json!(record.name);
    audit(opened, now, party, ("api_key", id, "create"), None, Some(after))?;
    Ok((id, secret))
}

/// Revokes a key; `false` when there is no such active key.
pub fn revoke(opened: &Opened, id: u64, now: Timestamp) -> crate::error::Result<bool> {
    let key =
        opened.access.keys().map_err(crate::Error::from)?.into_iter().find(|k| k.id == id && k.revoked_at.is_none());
    let Some(key) = key else { return Ok(false) };
    if !opened.access.revoke_key(id, now).map_err(crate::Error::from)? {
        return Ok(false);
    }
    let (mut before, party) = purse_app::audit::access_view(key.role, key.scope);
    before["name"] = serde_json::json!(key.name);
    audit(opened, now, party, ("api_key", id, "revoke"), Some(before), None)?;
    Ok(true)
}

/// Records a change made from the command line in the audit log (the actor is `cli`).
fn audit(
    opened: &Opened,
    at: Timestamp,
    party: Option<PartyId>,
    (entity, id, action): (&str, u64, &str),
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> crate::error::Result<()> {
    let entry = purse_store::AuditEntry {
        id: 0,
        at,
        actor: "cli".into(),
        party,
        entity: entity.into(),
        entity_id: id.to_string(),
        action: action.into(),
        before: before.map(|b| b.to_string()),
        after: after.map(|a| a.to_string()),
    };
    opened.credit.record_audit(&entry).map_err(crate::Error::from)
}

/// A table of keys: never the secrets, which are not stored.
pub fn table(keys: &[ApiKeyRecord]) -> String {
    let mut out = format!(
        "{:>4}  {:<14}  {:<9}  {:>5}  {:<10}  {:<8}  {}\n",
        "id", "prefix", "role", "party", "scope", "status", "name"
    );
    for k in keys {
        let (role, party) = codec::role(k.role);
        let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
        let party = party.map_or("-".to_owned(), |p| p.to_string());
        out.push_str(&format!(
            "{:>4}  {:<14}  {:<9}  {:>5}  {:<10}  {:<8}  {}\n",
            k.id,
            k.prefix,
            role,
            party,
            codec::scope(k.scope),
            status,
            k.name
        ));
    }
    out
}

/// Creates a portal user with a random password; returns the password, to be shown once.
pub fn create_user(
    opened: &Opened,
    email: &str,
    name: &str,
    role: Role,
    scope: Scope,
    now: Timestamp,
) -> crate::error::Result<String> {
    let email = email.trim().to_lowercase();
    if !purse_app::parse::valid_email(&email) {
        return Err(crate::Error::Usage(format!("--email {email:?}: not an e-mail address")));
    }
    if name.trim().is_empty() || name.len() > 100 {
        return Err(crate::Error::Usage("--name: must be 1 to 100 characters".into()));
    }
    let password = purse_app::secrets::random_hex::<10>().map_err(|e| crate::Error::Usage(format!("{e:?}")))?;
    let password_hash =
        purse_app::secrets::hash_password(&password).map_err(|e| crate::Error::Usage(format!("{e:?}")))?;
    let user = purse_store::NewUser {
        email: email.clone(),
        name: name.trim().to_owned(),
        password_hash,
        role,
        scope,
        created_at: now,
    };
    match opened.access.insert_user(&user).map_err(crate::Error::from)? {
        Some(id) => {
            let (mut after, party) = purse_app::audit::access_view(role, scope);
            after["email"] = serde_json::json!(email);
            after["name"] = serde_json::json!(user.name);
            audit(opened, now, party, ("user", id, "create"), None, Some(after))?;
            Ok(password)
        }
        None => Err(crate::Error::Usage(format!("--email {email}: a user with this e-mail exists"))),
    }
}
