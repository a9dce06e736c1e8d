//! API keys and portal users, for the API (`/v1/api-keys`, `/v1/users`) and the portal alike:
//! who may issue, list, revoke and disable whose is the policy's `may_manage` (an operator
//! anyone's, a reseller its own and its customers', a customer admin its own party's).
//! Every change is audited. A key's secret is shown once, in the answer that creates it,
//! and never stored (so these requests take no Idempotency-Key: a stored answer would keep it).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_app::policy;
use purse_core::{PartyId, PartyKind, Role, Scope};
use purse_store::{ApiKeyRecord, NewUser, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{issue_key, Principal};
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id};
use crate::portal::session::{hash_password, PASSWORD_LEN_MAX, PASSWORD_LEN_MIN};
use crate::{time, AppState};

/// Longest name of a key or a user.
pub const NAME_LEN_MAX: usize = 100;
const EMAIL_LEN_MAX: usize = 254;

/// Whether `email` has the shape of a plain address, `local@domain.tld` (delivery proves
/// the rest): the local part of the characters RFC 5322 allows unquoted, the domain of
/// letters, digits, hyphens and dots; no display name, brackets or comments.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    let local_ok = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let domain_ok = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    !local.is_empty()
        && local.chars().all(local_ok)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && domain.contains('.')
        && domain.chars().all(domain_ok)
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && email.len() <= EMAIL_LEN_MAX
}

/// The rule a password breaks, if any.
pub fn password_rule(password: &str) -> Option<String> {
    let n = password.chars().count();
    (!(PASSWORD_LEN_MIN..=PASSWORD_LEN_MAX).contains(&n))
        .then(|| format!("A password is {PASSWORD_LEN_MIN} to {PASSWORD_LEN_MAX} characters."))
}

/// A name of a key or a user: trimmed, 1 to 100 characters, none of them control characters.
pub fn name(field: &str, text: &str) -> Result<String, ApiError> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "invalid_name",
            format!("{field} must be 1 to {NAME_LEN_MAX} characters, none of them control characters"),
        ));
    }
    Ok(name.to_owned())
}

pub fn scope(field: &str, text: &str) -> Result<Scope, ApiError> {
    match text {
        "read_write" => Ok(Scope::ReadWrite),
        "read" => Ok(Scope::Read),
        _ => Err(ApiError::invalid(field, "invalid_scope", format!("{field} must be read or read_write"))),
    }
}

/// Whether `who` may manage keys and users of `target`. Blocking on a cache miss.
fn manages(s: &AppState, who: &Principal, target: Role) -> Result<bool, ApiError> {
    s.ask(|reseller_of| policy::may_manage(who.role, target, reseller_of))
}

/// The role a new key or user gets: `role` (the caller's own when absent) of `party`, if
/// the caller may manage it; a refusal names the field. Blocking.
pub fn target_role(s: &AppState, who: &Principal, role: Option<&str>, party: Option<u64>) -> Result<Role, ApiError> {
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
                return Err(ApiError::invalid(
                    "party",
                    "party_not_allowed",
                    "an operator key or user belongs to no party",
                ));
            }
            Role::Operator
        }
        "reseller" | "customer" => {
            let id = party.or(own_party.filter(|_| role.is_none())).ok_or_else(|| {
                ApiError::invalid(
                    "party",
                    "party_required",
                    format!("give the id of the {role_text} the key or user belongs to"),
                )
            })?;
            let not_found = || {
                ApiError::invalid("party", "party_not_found", format!("there is no {role_text} {id} that you manage"))
            };
            let found = s.party_for(who, id).map_err(|_| not_found())?;
            match (role_text, &found.kind) {
                ("reseller", PartyKind::Reseller) => Role::Reseller(PartyId(id)),
                ("customer", PartyKind::Customer { .. }) => Role::Customer(PartyId(id)),
                _ => return Err(not_found()),
            }
        }
        other => {
            return Err(ApiError::invalid(
                "role",
                "invalid_role",
                format!("role {other:?} is not one of operator, reseller, customer"),
            ))
        }
    };
    if !manages(s, who, target)? {
        return Err(ApiError::ForbiddenField {
            field: "role",
            message: "you may not issue keys or users of this role or party".into(),
        });
    }
    Ok(target)
}

// ------------------------------------------------------------------ keys

/// The keys `who` manages, oldest first. Blocking.
pub fn visible_keys(s: &AppState, who: &Principal) -> Result<Vec<ApiKeyRecord>, ApiError> {
    let mut shown = Vec::new();
    for k in s.access.keys()? {
        if manages(s, who, k.role)? {
            shown.push(k);
        }
    }
    Ok(shown)
}

pub fn key_view(k: &ApiKeyRecord) -> Value {
    let (role, party) = purse_store::codec::role(k.role);
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "role": role,
        "party": party,
        "scope": purse_store::codec::scope(k.scope),
        "created_at": time::format(k.created_at),
        "revoked_at": k.revoked_at.map(time::format),
    })
}

/// Issues a key of `role` and `scope` named `name`, audited; returns it and its secret,
/// which is shown once. Blocking.
pub fn create_key(
    s: &AppState,
    who: &Principal,
    name: &str,
    role: Role,
    scope: Scope,
) -> Result<(ApiKeyRecord, String), ApiError> {
    let now = s.engine.clock().now();
    let (secret, record) = issue_key(name, role, scope, now).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = s.access.insert_key(&record)?;
    let (mut after, party) = AppState::access_view(record.role, record.scope);
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
pub fn revoke_key(s: &AppState, who: &Principal, id: u64) -> Result<ApiKeyRecord, ApiError> {
    let key = visible_keys(s, who)?.into_iter().find(|k| k.id == id).ok_or(ApiError::NotFound("API key"))?;
    let now = s.engine.clock().now();
    if s.access.revoke_key(id, now)? {
        let (mut before, party) = AppState::access_view(key.role, key.scope);
        before["name"] = json!(key.name);
        s.audit(who, party, "api_key", id, "revoke", Some(&before), None)?;
    }
    s.auth.clear();
    Ok(ApiKeyRecord { revoked_at: key.revoked_at.or(Some(now)), ..key })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    name: String,
    /// `operator`, `reseller` or `customer`; the caller's own when absent.
    role: Option<String>,
    /// The reseller or customer the key belongs to; the caller's own when absent.
    party: Option<u64>,
    scope: String,
}

pub async fn list_api_keys(State(state): State<AppState>, who: Principal) -> Result<Response, ApiError> {
    let keys = state.read(move |s| visible_keys(s, &who)).await?;
    Ok(reply(StatusCode::OK, &json!({ "data": keys.iter().map(key_view).collect::<Vec<_>>() })))
}

pub async fn create_api_key(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> Result<Response, ApiError> {
    let name = name("name", &body.name)?;
    let scope = scope("scope", &body.scope)?;
    let (key, secret) = state
        .read(move |s| {
            let role = target_role(s, &who, body.role.as_deref(), body.party)?;
            create_key(s, &who, &name, role, scope)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &json!({ "key": key_view(&key), "secret": secret })))
}

pub async fn revoke_api_key(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let key = state.read(move |s| revoke_key(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &key_view(&key)))
}

// ------------------------------------------------------------------ users

/// The users `who` manages, oldest first. Blocking.
pub fn visible_users(s: &AppState, who: &Principal) -> Result<Vec<UserRecord>, ApiError> {
    let mut shown = Vec::new();
    for u in s.access.users()? {
        if manages(s, who, u.role)? {
            shown.push(u);
        }
    }
    Ok(shown)
}

pub fn user_view(u: &UserRecord) -> Value {
    let (role, party) = purse_store::codec::role(u.role);
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": role,
        "party": party,
        "scope": purse_store::codec::scope(u.scope),
        "created_at": time::format(u.created_at),
        "disabled_at": u.disabled_at.map(time::format),
    })
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

/// A wrong field: its name, the rule's code and a sentence.
pub type FieldError = (&'static str, &'static str, String);

/// Every wrong field of a new user at once; the role's needs the store. Blocking.
pub fn check_user(s: &AppState, who: &Principal, input: &UserInput) -> Result<(NewUser, Vec<FieldError>), ApiError> {
    let mut errors = Vec::new();
    let email = input.email.trim().to_lowercase();
    if !valid_email(&email) {
        errors.push(("email", "invalid_email", "Enter an e-mail address such as ana@example.com.".to_owned()));
    }
    let name = name("name", &input.name).unwrap_or_else(|_| {
        errors.push((
            "name",
            "invalid_name",
            format!("A name is 1 to {NAME_LEN_MAX} characters, none of them control characters."),
        ));
        String::new()
    });
    if let Some(rule) = password_rule(&input.password) {
        errors.push(("password", "invalid_password", rule));
    }
    let scope = scope("scope", &input.scope).unwrap_or_else(|_| {
        errors.push(("scope", "invalid_scope", "Choose admin (read and write) or read only.".to_owned()));
        Scope::Read
    });
    let role = match target_role(s, who, input.role.as_deref(), input.party) {
        Ok(role) => role,
        Err(ApiError::InvalidField { field, code, message }) => {
            errors.push((if field == "role" { "role" } else { "party" }, code, message));
            Role::Operator
        }
        Err(ApiError::ForbiddenField { message, .. }) => {
            errors.push(("role", "forbidden_field", message));
            Role::Operator
        }
        Err(other) => return Err(other),
    };
    let hash = if errors.is_empty() {
        hash_password(&input.password).map_err(|e| ApiError::Internal(format!("{e:?}")))?
    } else {
        String::new()
    };
    let user = NewUser { email, name, password_hash: hash, role, scope, created_at: s.engine.clock().now() };
    Ok((user, errors))
}

/// Stores a checked user, audited; a refusal when the e-mail is taken. Blocking.
pub fn create_user(s: &AppState, who: &Principal, user: NewUser) -> Result<UserRecord, ApiError> {
    let Some(id) = s.access.insert_user(&user)? else {
        return Err(ApiError::invalid("email", "email_taken", "a user with this e-mail exists"));
    };
    let (mut after, party) = AppState::access_view(user.role, user.scope);
    after["email"] = json!(user.email);
    after["name"] = json!(user.name);
    s.audit(who, party, "user", id, "create", None, Some(&after))?;
    s.access.user(id)?.ok_or(ApiError::Internal("the user just stored is gone".into()))
}

/// Disables a user `who` manages (not `who` itself), ending its sessions, audited. Blocking.
pub fn disable_user(s: &AppState, who: &Principal, id: u64) -> Result<UserRecord, ApiError> {
    let user = visible_users(s, who)?.into_iter().find(|u| u.id == id).ok_or(ApiError::NotFound("user"))?;
    if who.user_id == Some(id) {
        return Err(ApiError::invalid("user", "cannot_disable_self", "you cannot disable your own user"));
    }
    let now = s.engine.clock().now();
    if s.access.disable_user(id, now)? {
        let (mut before, party) = AppState::access_view(user.role, user.scope);
        before["email"] = json!(user.email);
        s.audit(who, party, "user", id, "disable", Some(&before), None)?;
    }
    s.access.user(id)?.ok_or(ApiError::NotFound("user"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    email: String,
    name: String,
    password: String,
    role: Option<String>,
    party: Option<u64>,
    scope: String,
}

pub async fn list_users(State(state): State<AppState>, who: Principal) -> Result<Response, ApiError> {
    let users = state.read(move |s| visible_users(s, &who)).await?;
    Ok(reply(StatusCode::OK, &json!({ "data": users.iter().map(user_view).collect::<Vec<_>>() })))
}

pub async fn create_user_route(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<NewUserBody>,
) -> Result<Response, ApiError> {
    let input =
        UserInput { email: b.email, name: b.name, password: b.password, role: b.role, party: b.party, scope: b.scope };
    let user = state
        .read(move |s| {
            let (user, errors) = check_user(s, &who, &input)?;
            match errors.into_iter().next() {
                Some((field, "forbidden_field", message)) => return Err(ApiError::ForbiddenField { field, message }),
                Some((field, code, message)) => return Err(ApiError::invalid(field, code, message)),
                None => {}
            }
            create_user(s, &who, user)
        })
        .await?;
    Ok(reply(StatusCode::CREATED, &user_view(&user)))
}

pub async fn disable_user_route(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let user = state.read(move |s| disable_user(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &user_view(&user)))
}
