//! Low-balance notifications: Low Balance Profiles, parties' alert settings (billing
//! e-mail, e-mails to be alerted, warning thresholds, profile), webhook endpoints, the
//! notification log, and the scheduler's runs.
//!
//! These are settings, not money: they change no balance and carry no Idempotency-Key.
//! PUT and DELETE are idempotent by nature; a POST retried after a lost answer is refused
//! as a duplicate (a profile's name is unique per owner, an endpoint's URL per owner).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use purse_core::alerts::{self, AlertSettings, Profile, Rule, RuleKind, WarningLevel};
use purse_core::{Billing, Command, Currency, CurrencyCode, Item, Party, PartyId, PartyKind, Role, Timestamp};
use purse_store::{DeliveryRecord, NotificationQuery, NotificationRecord, PartyQuery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{currency_code, page_limit};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{reply, ApiJson, Id, Params};
use crate::portal::users::valid_email;
use crate::{time, AppState};

const HOUR_S: i64 = 3600;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub threshold: String,
    #[serde(default)]
    pub notify: bool,
    #[serde(default)]
    pub users: Vec<u64>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// Inactivity rule only.
    pub inactivity_hours: Option<i64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    pub name: String,
    /// The owner; a reseller's key may only name itself; `null` is the operator's own.
    pub reseller: Option<u64>,
    pub currency: String,
    #[serde(default)]
    pub sort_order: i64,
    pub max_quantity: i64,
    pub period_hours: i64,
    pub user_rule: Option<RuleBody>,
    pub client_rule: Option<RuleBody>,
    pub inactivity_rule: Option<RuleBody>,
    pub subject: Option<String>,
    pub body: Option<String>,
}

pub(crate) fn emails(field: &str, list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.len() > alerts::RECIPIENTS_MAX {
        return Err(ApiError::invalid(field, "too_many", format!("at most {} addresses", alerts::RECIPIENTS_MAX)));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.trim().to_ascii_lowercase();
            if valid_email(&e) {
                Ok(e)
            } else {
                Err(ApiError::invalid(
                    format!("{field}[{i}]"),
                    "invalid_email",
                    format!("{e:?} is not an e-mail address"),
                ))
            }
        })
        .collect()
}

/// The owner a caller may give a profile or endpoint.
fn owner(who: &Principal, field: &'static str, asked: Option<u64>, s: &AppState) -> Result<Option<PartyId>, ApiError> {
    match (who.role, asked) {
        (Role::Operator, None) => Ok(None),
        (Role::Operator, Some(id)) | (Role::Reseller(_), Some(id)) => {
            let party = s
                .party_for(who, id)
                .map_err(|_| ApiError::invalid(field, "reseller_not_found", format!("no reseller {id}")))?;
            if !matches!(party.kind, PartyKind::Reseller) {
                return Err(ApiError::invalid(field, "reseller_not_found", format!("party {id} is not a reseller")));
            }
            Ok(Some(party.id))
        }
        (Role::Reseller(me), None) => Ok(Some(me)),
        (Role::Customer(_), _) => Err(ApiError::Forbidden("a customer key may not manage Low Balance Profiles".into())),
    }
}

/// Checks a profile body and builds the profile. Blocking (reads currencies, users, parties).
fn profile_from(
    s: &AppState,
    who: &Principal,
    body: ProfileBody,
    id: u64,
    now: Timestamp,
) -> Result<Profile, ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty()
        || name.chars().count() > alerts::PROFILE_NAME_LEN_MAX
        || !purse_core::text::is_single_line(&name)
    {
        return Err(ApiError::invalid(
            "name",
            "invalid_name",
            format!("a name of 1 to {} characters, none of them control characters", alerts::PROFILE_NAME_LEN_MAX),
        ));
    }
    let reseller = owner(who, "reseller", body.reseller, s)?;
    let currency = s.currency("currency", currency_code("currency", &body.currency)?)?;
    let max_quantity =
        u32::try_from(body.max_quantity).ok().filter(|n| *n <= alerts::MAX_QUANTITY_MAX).ok_or_else(|| {
            ApiError::invalid(
                "max_quantity",
                "out_of_range",
                format!("max_quantity is 0 to {}", alerts::MAX_QUANTITY_MAX),
            )
        })?;
    // Zero never means "always": a period or an inactivity lasts at least an hour.
    let hours = |field: &str, h: i64| -> Result<i64, ApiError> {
        if (1..=alerts::DURATION_S_MAX / HOUR_S).contains(&h) {
            Ok(h * HOUR_S)
        } else {
            Err(ApiError::invalid(
                field,
                "out_of_range",
                format!("{field} is 1 to {} hours", alerts::DURATION_S_MAX / HOUR_S),
            ))
        }
    };
    let period_s = hours("period_hours", body.period_hours)?;
    let users: HashMap<u64, Role> = s.access.users()?.into_iter().map(|u| (u.id, u.role)).collect();
    let mut rules = Vec::new();
    for (kind, field, rule) in [
        (RuleKind::User, "user_rule", body.user_rule),
        (RuleKind::Client, "client_rule", body.client_rule),
        (RuleKind::Inactivity, "inactivity_rule", body.inactivity_rule),
    ] {
        let Some(rule) = rule else { continue };
        let threshold = currency.parse(rule.threshold.trim()).map_err(|e| {
            ApiError::invalid(
                format!("{field}.threshold"),
                "invalid_amount",
                format!("an amount in {} with at most {} decimals: {e}", currency.code, currency.scale),
            )
        })?;
        if rule.users.len() > alerts::RECIPIENTS_MAX {
            return Err(ApiError::invalid(
                format!("{field}.users"),
                "too_many",
                format!("at most {} users", alerts::RECIPIENTS_MAX),
            ));
        }
        if kind != RuleKind::User && !rule.users.is_empty() {
            return Err(ApiError::invalid(
                format!("{field}.users"),
                "not_allowed",
                "only the user rule notifies portal users",
            ));
        }
        for (i, u) in rule.users.iter().enumerate() {
            let fits = match (users.get(u), reseller) {
                (Some(Role::Operator), None) => true,
                (Some(Role::Reseller(r)), Some(owner)) => *r == owner,
                (Some(_), _) if who.is_operator() => true,
                _ => false,
            };
            if !fits {
                return Err(ApiError::invalid(
                    format!("{field}.users[{i}]"),
                    "user_not_found",
                    format!("no user {u} of the profile's owner"),
                ));
            }
        }
        let inactivity_s = match (kind, rule.inactivity_hours) {
            (RuleKind::Inactivity, Some(h)) if h > 0 => hours(&format!("{field}.inactivity_hours"), h)?,
            (RuleKind::Inactivity, _) => {
                return Err(ApiError::invalid(
                    format!("{field}.inactivity_hours"),
                    "required",
                    "the inactivity rule needs inactivity_hours above 0",
                ))
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    format!("{field}.inactivity_hours"),
                    "not_allowed",
                    "only the inactivity rule has a duration",
                ))
            }
            (_, None) => 0,
        };
        rules.push(Rule {
            kind,
            threshold,
            notify: rule.notify,
            users: rule.users,
            emails: emails(&format!("{field}.emails"), &rule.emails)?,
            inactivity_s,
        });
    }
    let template = |field: &str, text: Option<String>, default: &str, max: usize| -> Result<String, ApiError> {
        let text = text.unwrap_or_else(|| default.to_owned());
        if text.trim().is_empty() || text.len() > max {
            return Err(ApiError::invalid(field, "invalid_template", format!("{field} is 1 to {max} bytes")));
        }
        if !purse_core::text::is_multi_line(&text) {
            return Err(ApiError::invalid(
                field,
                "text_not_printable",
                format!("{field} must not contain control characters"),
            ));
        }
        if let Some(unknown) = alerts::unknown_placeholder(&text) {
            return Err(ApiError::invalid(
                field,
                "unknown_placeholder",
                format!(
                    "{{{unknown}}} is not a placeholder; use {}",
                    alerts::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ),
            ));
        }
        Ok(text)
    };
    let subject = template("subject", body.subject, alerts::DEFAULT_SUBJECT, alerts::SUBJECT_LEN_MAX)?;
    if subject.contains(['\r', '\n']) {
        return Err(ApiError::invalid("subject", "invalid_template", "a subject is one line"));
    }
    let body_text = template("body", body.body, alerts::DEFAULT_BODY, alerts::BODY_LEN_MAX)?;
    let taken = s
        .alerts
        .profiles()?
        .into_iter()
        .any(|p| p.id != id && p.reseller == reseller && p.name.eq_ignore_ascii_case(&name));
    if taken {
        return Err(ApiError::invalid("name", "name_taken", format!("the owner already has a profile named {name:?}")));
    }
    Ok(Profile {
        id,
        name,
        reseller,
        currency: currency.code,
        sort_order: body.sort_order,
        max_quantity,
        period_s,
        rules,
        subject,
        body: body_text,
        created_at: now,
        updated_at: now,
    })
}

fn rule_view(rule: &Rule, currency: &Currency) -> Value {
    let mut v = json!({ "threshold": currency.format(rule.threshold), "notify": rule.notify, "emails": rule.emails });
    if rule.kind == RuleKind::User {
        v["users"] = json!(rule.users);
    }
    if rule.kind == RuleKind::Inactivity {
        v["inactivity_hours"] = json!(rule.inactivity_s / HOUR_S);
    }
    v
}

pub(crate) fn profile_view(p: &Profile, currency: &Currency) -> Value {
    let rule = |k| p.rule(k).map(|r| rule_view(r, currency));
    json!({
        "id": p.id,
        "name": p.name,
        "reseller": p.reseller.map(|r| r.0),
        "currency": p.currency.to_string(),
        "sort_order": p.sort_order,
        "max_quantity": p.max_quantity,
        "period_hours": p.period_s / HOUR_S,
        "user_rule": rule(RuleKind::User),
        "client_rule": rule(RuleKind::Client),
        "inactivity_rule": rule(RuleKind::Inactivity),
        "subject": p.subject,
        "body": p.body,
        "created_at": time::format(p.created_at),
        "updated_at": time::format(p.updated_at),
    })
}

/// Whether `who` sees profile `p`: operators all, resellers their own.
fn sees_profile(who: &Principal, p: &Profile) -> bool {
    // A profile is its reseller's own (or the operator's): no customer sees one.
    purse_app::policy::sees_owner(who.role, p.reseller, |_| None)
}

fn visible_profile(s: &AppState, who: &Principal, id: u64) -> Result<Profile, ApiError> {
    s.alerts.profiles()?.into_iter().find(|p| p.id == id && sees_profile(who, p)).ok_or(ApiError::NotFound("profile"))
}

/// Sets the levels the ledger watches for `customers` (all customers when `None`) to what
/// their settings and profiles ask. Blocking reads; the engine applies the changes.
pub(crate) async fn sync_levels(
    state: &AppState,
    reseller: Option<Option<PartyId>>,
    customer: Option<PartyId>,
) -> Result<(), ApiError> {
    let items = state
        .read(move |s| {
            let reader = s.engine.reader();
            let parties: Vec<Party> = match (customer, reseller) {
                (Some(c), _) => reader.party(c)?.into_iter().collect(),
                (None, Some(r)) => {
                    let mut all = Vec::new();
                    let mut after = None;
                    loop {
                        let page = reader.parties(PartyQuery {
                            resellers: Some(false),
                            reseller: r,
                            after,
                            limit: 1000,
                            ..PartyQuery::default()
                        })?;
                        let Some(last) = page.last().map(|p| p.id) else { break };
                        all.extend(
                            page.into_iter()
                                .filter(|p| matches!(p.kind, PartyKind::Customer { reseller: x, .. } if x == r)),
                        );
                        after = Some(last);
                    }
                    all
                }
                (None, None) => Vec::new(),
            };
            let settings: HashMap<PartyId, AlertSettings> =
                s.alerts.all_alert_settings()?.into_iter().map(|a| (a.party, a)).collect();
            let profiles = s.alerts.profiles()?;
            let mut pairs = Vec::new();
            for p in &parties {
                if let PartyKind::Customer { wallet, .. } = p.kind {
                    if let Some(w) = reader.account(wallet)? {
                        pairs.push((p, w));
                    }
                }
            }
            let recharge = purse_core::recharge::watched(&s.payments.all_recharge_settings()?);
            let changes = alerts::level_changes(pairs.iter().map(|(p, w)| (*p, w)), &settings, &profiles, &recharge);
            Ok(changes
                .into_iter()
                .map(|(account, thresholds)| Item::single(Command::SetThresholds { account, thresholds }))
                .collect::<Vec<_>>())
        })
        .await?;
    for chunk in items.chunks(1000) {
        state.engine.submit_async(chunk.to_vec()).await?;
    }
    Ok(())
}

pub async fn list_profiles(
    State(state): State<AppState>,
    who: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&[])?;
    if matches!(who.role, Role::Customer(_)) {
        return Err(ApiError::Forbidden("a customer key may not list Low Balance Profiles".into()));
    }
    let data = state
        .read(move |s| {
            let mut data = Vec::new();
            for p in s.alerts.profiles()?.iter().filter(|p| sees_profile(&who, p)) {
                data.push(profile_view(p, &s.currency("currency", p.currency)?));
            }
            Ok(data)
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

pub async fn get_profile(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let view = state.read(move |s| {
        let p = visible_profile(s, &who, id)?;
        Ok(profile_view(&p, &s.currency("currency", p.currency)?))
    });
    Ok(reply(StatusCode::OK, &view.await?))
}

/// Creates or replaces a profile (blocking); returns it and the owners whose customers' levels change.
pub(crate) fn save_profile(
    s: &AppState,
    who: &Principal,
    id: Option<u64>,
    body: ProfileBody,
) -> Result<(Profile, Vec<Option<PartyId>>), ApiError> {
    let now = s.engine.clock().now();
    match id {
        None => {
            let mut p = profile_from(s, who, body, 0, now)?;
            p.id = s.alerts.insert_profile(&p)?;
            let after = profile_view(&p, &s.currency("currency", p.currency)?);
            s.audit(who, p.reseller, "profile", p.id, "create", None, Some(&after))?;
            let owners = vec![p.reseller];
            Ok((p, owners))
        }
        Some(id) => {
            let old = visible_profile(s, who, id)?;
            let mut p = profile_from(s, who, body, id, now)?;
            p.created_at = old.created_at;
            if !s.alerts.update_profile(&p)? {
                return Err(ApiError::NotFound("profile"));
            }
            let before = profile_view(&old, &s.currency("currency", old.currency)?);
            let after = profile_view(&p, &s.currency("currency", p.currency)?);
            s.audit(who, p.reseller, "profile", p.id, "update", Some(&before), Some(&after))?;
            let mut owners = vec![old.reseller, p.reseller];
            owners.dedup();
            Ok((p, owners))
        }
    }
}

pub(crate) async fn sync_owners(state: &AppState, owners: Vec<Option<PartyId>>) -> Result<(), ApiError> {
    for owner in owners {
        sync_levels(state, Some(owner), None).await?;
    }
    Ok(())
}

pub async fn create_profile(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Response, ApiError> {
    let (p, owners) = state.read(move |s| save_profile(s, &who, None, body)).await?;
    sync_owners(&state, owners).await?;
    let currency = state.read(move |s| s.currency("currency", p.currency).map(|c| profile_view(&p, &c))).await?;
    Ok(reply(StatusCode::CREATED, &currency))
}

pub async fn replace_profile(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Response, ApiError> {
    let (p, owners) = state.read(move |s| save_profile(s, &who, Some(id), body)).await?;
    sync_owners(&state, owners).await?;
    let view = state.read(move |s| s.currency("currency", p.currency).map(|c| profile_view(&p, &c))).await?;
    Ok(reply(StatusCode::OK, &view))
}

/// Deletes a profile (blocking); returns its owner.
pub(crate) fn remove_profile(s: &AppState, who: &Principal, id: u64) -> Result<Option<PartyId>, ApiError> {
    let p = visible_profile(s, who, id)?;
    if !s.alerts.delete_profile(id)? {
        return Err(ApiError::NotFound("profile"));
    }
    let before = profile_view(&p, &s.currency("currency", p.currency)?);
    s.audit(who, p.reseller, "profile", p.id, "delete", Some(&before), None)?;
    Ok(p.reseller)
}

pub async fn delete_profile(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    let owner = state.read(move |s| remove_profile(s, &who, id)).await?;
    sync_owners(&state, vec![owner]).await?;
    Ok(reply(StatusCode::OK, &json!({ "id": id, "deleted": true })))
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Customers only: the assigned profile; `null` falls back to the reseller's default.
    pub profile: Option<u64>,
    /// The billing e-mail (a customer's) or the e-mail user rules notify (a reseller's).
    pub billing_email: Option<String>,
    #[serde(default)]
    pub alert_emails: Vec<String>,
    /// Customers only: comma-separated, e.g. `"100, 50, 10%"`.
    #[serde(default)]
    pub warning_thresholds: String,
}

#[derive(Serialize)]
pub(crate) struct SettingsView {
    party: u64,
    profile: Option<u64>,
    /// The profile in force: the assigned one, else the reseller's default.
    effective_profile: Option<u64>,
    billing_email: Option<String>,
    alert_emails: Vec<String>,
    warning_thresholds: String,
    /// The levels of available balance they stand for now.
    warning_levels: Vec<String>,
}

pub(crate) fn settings_view(s: &AppState, party: &Party) -> Result<SettingsView, ApiError> {
    let mine = s.alerts.alert_settings(party.id)?;
    let profiles = s.alerts.profiles()?;
    let effective = alerts::profile_of(party, mine.as_ref(), &profiles).map(|p| p.id);
    let (text, levels) = match party.kind {
        PartyKind::Customer { currency, wallet, .. } => {
            let c = s.currency("currency", currency)?;
            let limit = s.engine.reader().account(wallet)?.map_or(purse_core::Amount::ZERO, |w| w.credit_limit);
            let warning = mine.as_ref().map_or(&[][..], |m| &m.warning[..]);
            (alerts::format_warning_levels(warning, &c), warning.iter().map(|w| c.format(w.resolve(limit))).collect())
        }
        PartyKind::Reseller => (String::new(), Vec::new()),
    };
    Ok(SettingsView {
        party: party.id.0,
        profile: mine.as_ref().and_then(|m| m.profile),
        effective_profile: effective,
        billing_email: mine.as_ref().and_then(|m| m.email.clone()),
        alert_emails: mine.map(|m| m.alert_emails).unwrap_or_default(),
        warning_thresholds: text,
        warning_levels: levels,
    })
}

/// Checks and stores a party's alert settings (blocking). Customers may change everything
/// but their profile, which is their reseller's or operator's choice.
pub(crate) fn save_settings(s: &AppState, who: &Principal, party: &Party, body: SettingsBody) -> Result<(), ApiError> {
    let old = s.alerts.alert_settings(party.id)?;
    let profile = match party.kind {
        PartyKind::Customer { reseller, currency, .. } => {
            let current = old.as_ref().and_then(|o| o.profile);
            if !purse_app::policy::may_set(who.role, purse_app::policy::Field::CustomerProfile)
                && body.profile != current
            {
                return Err(ApiError::ForbiddenField {
                    field: "profile",
                    message: "a customer's profile is chosen by its reseller or the operator".into(),
                });
            }
            if let Some(id) = body.profile.filter(|id| Some(*id) != current) {
                let p = s
                    .alerts
                    .profiles()?
                    .into_iter()
                    .find(|p| p.id == id && (who.is_operator() || p.reseller == reseller));
                let p = p.ok_or_else(|| {
                    ApiError::invalid(
                        "profile",
                        "profile_not_found",
                        format!("no profile {id} of this customer's reseller"),
                    )
                })?;
                if p.reseller != reseller {
                    return Err(ApiError::invalid(
                        "profile",
                        "profile_not_found",
                        format!("profile {id} belongs to another owner than this customer's reseller"),
                    ));
                }
                if p.currency != currency {
                    return Err(ApiError::invalid(
                        "profile",
                        "currency_mismatch",
                        format!("profile {id} is in {}, the customer in {currency}", p.currency),
                    ));
                }
            }
            body.profile
        }
        PartyKind::Reseller => {
            if body.profile.is_some() {
                return Err(ApiError::invalid("profile", "not_allowed", "a reseller has no profile; its customers do"));
            }
            None
        }
    };
    let email = match body.billing_email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => Some(
            emails("billing_email", &[e.to_owned()])
                .map_err(|_| {
                    ApiError::invalid("billing_email", "invalid_email", format!("{e:?} is not an e-mail address"))
                })?
                .remove(0),
        ),
        None => None,
    };
    let warning: Vec<WarningLevel> = match party.kind {
        PartyKind::Customer { currency, billing, wallet, .. } => {
            let c = s.currency("currency", currency)?;
            let limit = s.engine.reader().account(wallet)?.map_or(purse_core::Amount::ZERO, |w| w.credit_limit);
            let permanent = if billing == Billing::Postpaid { limit } else { purse_core::Amount::ZERO };
            alerts::parse_warning_levels(&body.warning_thresholds, &c, billing, permanent)
                .map_err(|m| ApiError::invalid("warning_thresholds", "invalid_thresholds", m))?
        }
        PartyKind::Reseller if !body.warning_thresholds.trim().is_empty() => {
            return Err(ApiError::invalid("warning_thresholds", "not_allowed", "warning thresholds are a customer's"));
        }
        PartyKind::Reseller => Vec::new(),
    };
    let settings = AlertSettings {
        party: party.id,
        profile,
        email,
        alert_emails: emails("alert_emails", &body.alert_emails)?,
        warning,
        updated_at: s.engine.clock().now(),
    };
    let before = serde_json::to_value(settings_view(s, party)?).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.alerts.put_alert_settings(&settings)?;
    let after = serde_json::to_value(settings_view(s, party)?).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.audit(who, Some(party.id), "alert_settings", party.id, "update", Some(&before), Some(&after))?;
    Ok(())
}

async fn put_settings(
    state: AppState,
    who: Principal,
    id: u64,
    reseller: bool,
    body: SettingsBody,
) -> Result<Response, ApiError> {
    let party = state.read(move |s| super::party_of_kind(s, &who, id, reseller)).await?;
    let p = party.clone();
    state.read(move |s| save_settings(s, &who, &p, body)).await?;
    if !reseller {
        sync_levels(&state, None, Some(party.id)).await?;
    }
    let view = state.read(move |s| settings_view(s, &party)).await?;
    Ok(reply(StatusCode::OK, &view))
}

async fn get_settings(state: AppState, who: Principal, id: u64, reseller: bool) -> Result<Response, ApiError> {
    let view = state.read(move |s| settings_view(s, &super::party_of_kind(s, &who, id, reseller)?)).await?;
    Ok(reply(StatusCode::OK, &view))
}

pub async fn get_customer_settings(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, false).await
}

pub async fn put_customer_settings(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, false, body).await
}

pub async fn get_reseller_settings(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
) -> Result<Response, ApiError> {
    get_settings(state, who, id, true).await
}

pub async fn put_reseller_settings(
    State(state): State<AppState>,
    who: Principal,
    Id(id): Id,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Response, ApiError> {
    put_settings(state, who, id, true, body).await
}

fn endpoint_view(e: &WebhookEndpoint) -> Value {
    json!({
        "id": e.id,
        "owner": e.owner.map(|o| o.0),
        "url": e.url,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "failures": e.failures,
        "created_at": time::format(e.created_at),
    })
}

fn sees_endpoint(who: &Principal, e: &WebhookEndpoint) -> bool {
    // An endpoint is its own tenant's alone (a reseller's customers register their own).
    purse_app::policy::sees_owner(who.role, e.owner, |_| None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    pub url: String,
}

/// Registers an endpoint for the caller's tenant (blocking); returns it with its secret.
pub(crate) fn add_endpoint(s: &AppState, who: &Principal, url: &str) -> Result<WebhookEndpoint, ApiError> {
    let url = url.trim();
    let parsed = crate::webhooks::parse_webhook_url(url).map_err(|m| ApiError::invalid("url", "invalid_url", m))?;
    let addresses: Vec<std::net::IpAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(parsed.host.as_str(), parsed.port))
            .map_err(|e| ApiError::invalid("url", "unresolvable_host", format!("{}: {e}", parsed.host)))?
            .map(|a| a.ip())
            .collect();
    crate::webhooks::check_addresses(&parsed.host, &addresses, s.settings.allow_private_webhooks)
        .map_err(|m| ApiError::invalid("url", "forbidden_address", m))?;
    let owner = match who.role {
        Role::Operator => None,
        Role::Reseller(me) | Role::Customer(me) => Some(me),
    };
    if s.alerts.endpoints()?.iter().any(|e| e.owner == owner && e.url == url) {
        return Err(ApiError::invalid("url", "duplicate", "this endpoint is registered already"));
    }
    let mut endpoint = WebhookEndpoint {
        id: 0,
        owner,
        url: url.to_owned(),
        secret: crate::webhooks::new_secret().map_err(|e| ApiError::Internal(e.to_string()))?,
        enabled: true,
        disabled_reason: None,
        failures: 0,
        created_at: s.engine.clock().now(),
    };
    endpoint.id = s.alerts.insert_endpoint(&endpoint)?;
    s.audit(who, owner, "webhook_endpoint", endpoint.id, "create", None, Some(&endpoint_view(&endpoint)))?;
    Ok(endpoint)
}

pub async fn create_endpoint(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<Response, ApiError> {
    let e = state.read(move |s| add_endpoint(s, &who, &body.url)).await?;
    let mut view = endpoint_view(&e);
    view["secret"] = json!(e.secret);
    Ok(reply(StatusCode::CREATED, &view))
}

pub async fn list_endpoints(
    State(state): State<AppState>,
    who: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&[])?;
    let data = state
        .read(move |s| {
            Ok(s.alerts.endpoints()?.iter().filter(|e| sees_endpoint(&who, e)).map(endpoint_view).collect::<Vec<_>>())
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}

pub(crate) fn remove_endpoint(s: &AppState, who: &Principal, id: u64) -> Result<(), ApiError> {
    let found = s.alerts.endpoints()?.into_iter().find(|e| e.id == id && sees_endpoint(who, e));
    let Some(endpoint) = found else { return Err(ApiError::NotFound("endpoint")) };
    if !s.alerts.delete_endpoint(id)? {
        return Err(ApiError::NotFound("endpoint"));
    }
    s.audit(who, endpoint.owner, "webhook_endpoint", id, "delete", Some(&endpoint_view(&endpoint)), None)?;
    Ok(())
}

pub async fn delete_endpoint(State(state): State<AppState>, who: Principal, Id(id): Id) -> Result<Response, ApiError> {
    state.read(move |s| remove_endpoint(s, &who, id)).await?;
    Ok(reply(StatusCode::OK, &json!({ "id": id, "deleted": true })))
}

/// The notifications `who` may see (blocking): staff those of the customers they see,
/// customers their own except the staff-facing user rule.
pub(crate) fn visible_notifications(
    s: &AppState,
    who: &Principal,
    customer: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<(NotificationRecord, Vec<DeliveryRecord>)>, ApiError> {
    let parties = match (who.role, customer) {
        (_, Some(c)) => Some(vec![s.party_for(who, c)?.id]),
        (Role::Operator, None) => None,
        (Role::Reseller(me), None) => {
            let query =
                PartyQuery { resellers: Some(false), reseller: Some(me), limit: 100_000, ..PartyQuery::default() };
            Some(s.engine.reader().parties(query)?.into_iter().map(|p| p.id).collect())
        }
        (Role::Customer(me), None) => Some(vec![me]),
    };
    let staff = !matches!(who.role, Role::Customer(_));
    let mut found = s.alerts.notifications(&NotificationQuery { parties, before, limit })?;
    if !staff {
        found.retain(|(n, _)| n.kind != purse_store::AlertKind::Rule(RuleKind::User));
    }
    Ok(found)
}

pub(crate) fn notification_view(n: &NotificationRecord, deliveries: &[DeliveryRecord], currency: &Currency) -> Value {
    json!({
        "id": n.id,
        "customer": n.party.0,
        "kind": n.kind.as_str(),
        "event_type": n.kind.event_type(),
        "threshold": currency.format(purse_core::Amount(n.threshold)),
        "available": currency.format(purse_core::Amount(n.available)),
        "currency": n.currency.to_string(),
        "at": time::format(n.at),
        "subject": n.subject,
        "body": n.body,
        "deliveries": deliveries.iter().map(|d| json!({
            "id": d.id,
            "channel": d.channel.as_str(),
            "target": d.target,
            "status": d.status.as_str(),
            "attempts": d.attempts,
            "next_attempt_at": (d.status == purse_store::DeliveryStatus::Pending).then(|| time::format(d.next_at)),
            "last_error": d.last_error,
            "sent_at": d.sent_at.map(time::format),
        })).collect::<Vec<_>>(),
    })
}

pub async fn list_notifications(
    State(state): State<AppState>,
    who: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["customer", "before", "limit"])?;
    let limit = page_limit(params.id("limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))?;
    let (customer, before) = (params.id("customer")?, params.id("before")?);
    let data = state
        .read(move |s| {
            let found = visible_notifications(s, &who, customer, before, limit)?;
            let mut currencies: HashMap<CurrencyCode, Currency> = HashMap::new();
            let mut data = Vec::new();
            for (n, d) in &found {
                if !currencies.contains_key(&n.currency) {
                    currencies.insert(n.currency, s.currency("currency", n.currency)?);
                }
                data.push(notification_view(n, d, &currencies[&n.currency]));
            }
            Ok((data, (found.len() == limit as usize).then(|| found.last().map(|(n, _)| n.id)).flatten()))
        })
        .await?;
    Ok(reply(StatusCode::OK, &json!({ "data": data.0, "next_before": data.1 })))
}

pub async fn list_job_runs(
    State(state): State<AppState>,
    _who: Principal,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["limit"])?;
    let limit = page_limit(params.id("limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))?;
    let runs = state.read(move |s| Ok(s.alerts.job_runs(limit)?)).await?;
    let data: Vec<Value> = runs
        .iter()
        .map(|r| json!({ "job": r.job, "key": r.key, "claimed_by": r.claimed_by, "started_at": time::format(r.started_at), "finished_at": r.finished_at.map(time::format), "summary": r.summary }))
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "data": data })))
}
