//! API keys and portal users: who may issue, list, revoke and disable whose is the
//! policy's `may_manage` (an operator anyone's, a reseller its own and its customers', a
//! customer admin its own party's). Every change is audited. A key's secret is shown once, when
//! it is issued, and never stored; passwords are kept only as argon2id hashes.

use purse_core::{PartyId, PartyKind, Role, Scope};
use purse_store::{ApiKeyRecord, NewUser, UserRecord};
use serde_json::json;

use crate::audit::access_view;
use crate::parse::{name, password_rule, scope, valid_email, NAME_LEN_MAX};
use crate::secrets::{hash_password, issue_key};
use crate::{policy, App, AppError, AppResult, Code, Principal};

/// Whether `who` may manage keys and users of `target`. Blocking on a cache miss.
fn manages(s: &App, who: &Principal, target: Role) -> Result<bool, AppError> {
    s.ask(|reseller_of| policy::may_manage(who.role, target, reseller_of))
}

/// The role a new key or user gets: `role` (the caller's own when absent) of `party`, if
/// the caller may manage it; a refusal names the field. Blocking.
pub fn target_role(s: &App, who: &Principal, role: Option<&str>, party: Option<u64>) -> Result<Role, AppError> {
    let own_party = match who.role {
        Role::Operator => None,
        Role::Reseller(p) | Role::Customer(p) => Some(p.0),
    };
    let role_text = role.unwrap_or(match who.role {
        Role::Operator => "operator",
        Role::Reseller(_) => "reseller",
        Role::Customer(_) => "customer",
    });
    let target = match role_text {
        "operator" => {
            if party.is_some() {
                return Err(AppError::invalid(
                    "party",
                    Code::PartyNotAllowed,
                    "an operator key or user belongs to no party",
                ));
            }
            Role::Operator
        }
        "reseller" | "customer" => {
            let id = party.or(own_party.filter(|_| role.is_none())).ok_or_else(|| {
                AppError::invalid(
                    "party",
                    Code::PartyRequired,
                    format!("give the id of the {role_text} the key or user belongs to"),
                )
            })?;
            let not_found = || {
                AppError::invalid("party", Code::PartyNotFound, format!("there is no {role_text} {id} that you manage"))
            };
            let found = s.party_for(who, id).map_err(|_| not_found())?;
            match (role_text, &found.kind) {
                ("reseller", PartyKind::Reseller) => Role::Reseller(PartyId(id)),
                ("customer", PartyKind::Customer { .. }) => Role::Customer(PartyId(id)),
                _ => return Err(not_found()),
            }
        }
        other => {
            return Err(AppError::invalid(
                "role",
                Code::InvalidRole,
                format!("role {other:?} is not one of operator, reseller, customer"),
            ))
        }
    };
    if !manages(s, who, target)? {
        return Err(AppError::ForbiddenField {
            field: "role",
            message: "you may not issue keys or users of this role or party".into(),
        });
    }
    Ok(target)
}

// ------------------------------------------------------------------ keys

/// The keys `who` manages, oldest first. Blocking.
pub fn visible_keys(s: &App, who: &Principal) -> Result<Vec<ApiKeyRecord>, AppError> {
    let mut shown = Vec::new();
    for k in s.access.keys()? {
        if manages(s, who, k.role)? {
            shown.push(k);
        }
    }
    Ok(shown)
}

/// Issues a key of `role` and `scope` named `name`, audited; returns it and its secret,
/// which is shown once. Blocking.
pub fn create_key(
    s: &App,
    who: &Principal,
    name: &str,
    role: Role,
    scope: Scope,
) -> Result<(ApiKeyRecord, String), AppError> {
    let now = s.engine.clock().now();
    let (secret, record) = issue_key(name, role, scope, now).map_err(|e| AppError::Internal(e.to_string()))?;
    let id = s.access.insert_key(&record)?;
    let (mut after, party) = access_view(record.role, record.scope);
    after["name"] = json!(record.name);
    s.audit(who, party, "api_key", id, "create", None, Some(&after))?;
    let stored = ApiKeyRecord {
        id,
        prefix: record.prefix,
        hash: record.hash,
        name: record.name,
        role,
        scope,
        created_at: now,
        revoked_at: None,
    };
    Ok((stored, secret))
}

/// Revokes a key `who` manages, audited; a key revoked through this process stops at once.
/// Blocking.
pub fn revoke_key(s: &App, who: &Principal, id: u64) -> Result<ApiKeyRecord, AppError> {
    let key = visible_keys(s, who)?.into_iter().find(|k| k.id == id).ok_or(AppError::NotFound("API key"))?;
    let now = s.engine.clock().now();
    if s.access.revoke_key(id, now)? {
        let (mut before, party) = access_view(key.role, key.scope);
        before["name"] = json!(key.name);
        s.audit(who, party, "api_key", id, "revoke", Some(&before), None)?;
    }
    s.keys_revoked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(ApiKeyRecord { revoked_at: key.revoked_at.or(Some(now)), ..key })
}

// ------------------------------------------------------------------ users

/// The users `who` manages, oldest first. Blocking.
pub fn visible_users(s: &App, who: &Principal) -> Result<Vec<UserRecord>, AppError> {
    let mut shown = Vec::new();
    for u in s.access.users()? {
        if manages(s, who, u.role)? {
            shown.push(u);
        }
    }
    Ok(shown)
}

/// What a new user is given; checked whole by [`check_user`].
pub struct UserInput {
    pub email: String,
    pub name: String,
    pub password: String,
    pub role: Option<String>,
    pub party: Option<u64>,
    pub scope: String,
}

/// Every wrong field of a new user at once; the role's needs the store. Blocking.
pub fn check_user(s: &App, who: &Principal, input: &UserInput) -> AppResult<(NewUser, Vec<AppError>)> {
    let mut errors = Vec::new();
    let email = input.email.trim().to_lowercase();
    if !valid_email(&email) {
        errors.push(AppError::invalid("email", Code::InvalidEmail, "Enter an e-mail address such as ana@example.com."));
    }
    let name = name("name", &input.name).unwrap_or_else(|_| {
        let message = format!("A name is 1 to {NAME_LEN_MAX} characters, none of them control characters.");
        errors.push(AppError::invalid("name", Code::InvalidName, message));
        String::new()
    });
    if let Some(rule) = password_rule(&input.password) {
        errors.push(AppError::invalid("password", Code::InvalidPassword, rule));
    }
    let scope = scope("scope", &input.scope).unwrap_or_else(|_| {
        errors.push(AppError::invalid("scope", Code::InvalidScope, "Choose admin (read and write) or read only."));
        Scope::Read
    });
    let role = match target_role(s, who, input.role.as_deref(), input.party) {
        Ok(role) => role,
        Err(e @ (AppError::Invalid { .. } | AppError::ForbiddenField { .. })) => {
            errors.push(e);
            Role::Operator
        }
        Err(other) => return Err(other),
    };
    let hash = if errors.is_empty() { hash_password(&input.password)? } else { String::new() };
    let user = NewUser { email, name, password_hash: hash, role, scope, created_at: s.now() };
    Ok((user, errors))
}

/// Stores a checked user, audited; a refusal when the e-mail is taken. Blocking.
pub fn create_user(s: &App, who: &Principal, user: NewUser) -> Result<UserRecord, AppError> {
    let Some(id) = s.access.insert_user(&user)? else {
        return Err(AppError::invalid("email", Code::EmailTaken, "a user with this e-mail exists"));
    };
    let (mut after, party) = access_view(user.role, user.scope);
    after["email"] = json!(user.email);
    after["name"] = json!(user.name);
    s.audit(who, party, "user", id, "create", None, Some(&after))?;
    s.access.user(id)?.ok_or(AppError::Internal("the user just stored is gone".into()))
}

/// Disables a user `who` manages (not `who` itself), ending its sessions, audited. Blocking.
pub fn disable_user(s: &App, who: &Principal, id: u64) -> Result<UserRecord, AppError> {
    let user = visible_users(s, who)?.into_iter().find(|u| u.id == id).ok_or(AppError::NotFound("user"))?;
    if who.user_id == Some(id) {
        return Err(AppError::invalid("user", Code::CannotDisableSelf, "you cannot disable your own user"));
    }
    let now = s.engine.clock().now();
    if s.access.disable_user(id, now)? {
        let (mut before, party) = access_view(user.role, user.scope);
        before["email"] = json!(user.email);
        s.audit(who, party, "user", id, "disable", Some(&before), None)?;
    }
    s.access.user(id)?.ok_or(AppError::NotFound("user"))
}
