//! Low-balance notifications' settings (seeds 000, 001, 003): Low Balance Profiles with their
//! rules, a customer's or reseller's alert settings and warning thresholds, webhook endpoints,
//! and the notification log, checked once for the API and the portal alike.

use std::collections::HashMap;

use purse_core::alerts::{self, AlertSettings, Profile, Rule, RuleKind, WarningLevel};
use purse_core::time;
use purse_core::{Billing, Command, Currency, Item, Party, PartyId, PartyKind, Role, Timestamp};
use purse_store::{DeliveryRecord, NotificationQuery, NotificationRecord, PartyQuery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::parse::{currency_code, valid_email};
use crate::{App, AppError, AppResult, Code, Principal, Problems};

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

pub fn emails(field: &str, list: &[String]) -> Result<Vec<String>, AppError> {
    if list.len() > alerts::RECIPIENTS_MAX {
        return Err(AppError::invalid(field, Code::TooMany, format!("at most {} addresses", alerts::RECIPIENTS_MAX)));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.trim().to_ascii_lowercase();
            if valid_email(&e) {
                Ok(e)
            } else {
                Err(AppError::invalid(
                    format!("{field}[{i}]"),
                    Code::InvalidEmail,
                    format!("{e:?} is not an e-mail address"),
                ))
            }
        })
        .collect()
}

/// The owner a caller may give a profile or endpoint.
fn owner(who: &Principal, field: &'static str, asked: Option<u64>, s: &App) -> Result<Option<PartyId>, AppError> {
    match (who.role, asked) {
        (Role::Operator, None) => Ok(None),
        (Role::Operator, Some(id)) | (Role::Reseller(_), Some(id)) => {
            let party = s
                .party_for(who, id)
                .map_err(|_| AppError::invalid(field, Code::ResellerNotFound, format!("no reseller {id}")))?;
            if !matches!(party.kind, PartyKind::Reseller) {
                return Err(AppError::invalid(field, Code::ResellerNotFound, format!("party {id} is not a reseller")));
            }
            Ok(Some(party.id))
        }
        (Role::Reseller(me), None) => Ok(Some(me)),
        (Role::Customer(_), _) => Err(AppError::Forbidden("a customer key may not manage Low Balance Profiles".into())),
    }
}

/// Checks a profile body and builds the profile, telling every wrong field at once.
/// Blocking (reads currencies, users, parties).
fn profile_from(s: &App, who: &Principal, body: ProfileBody, id: u64, now: Timestamp) -> Result<Profile, AppError> {
    let mut problems = Problems::default();
    let name = body.name.trim().to_owned();
    if name.is_empty()
        || name.chars().count() > alerts::PROFILE_NAME_LEN_MAX
        || !purse_core::text::is_single_line(&name)
    {
        problems.note(AppError::invalid(
            "name",
            Code::InvalidName,
            format!("a name of 1 to {} characters, none of them control characters", alerts::PROFILE_NAME_LEN_MAX),
        ));
    }
    let reseller = problems.check(owner(who, "reseller", body.reseller, s));
    let currency = problems.check(currency_code("currency", &body.currency).and_then(|c| s.currency("currency", c)));
    let max_quantity = problems.check(
        u32::try_from(body.max_quantity).ok().filter(|n| *n <= alerts::MAX_QUANTITY_MAX).ok_or_else(|| {
            AppError::invalid("max_quantity", Code::OutOfRange, format!("must be 0 to {}", alerts::MAX_QUANTITY_MAX))
        }),
    );
    // Zero never means "always": a period or an inactivity lasts at least an hour.
    let hours = |field: &str, h: i64| -> Result<i64, AppError> {
        if (1..=alerts::DURATION_S_MAX / HOUR_S).contains(&h) {
            Ok(h * HOUR_S)
        } else {
            Err(AppError::invalid(
                field,
                Code::OutOfRange,
                format!("must be 1 to {} hours", alerts::DURATION_S_MAX / HOUR_S),
            ))
        }
    };
    let period_s = problems.check(hours("period_hours", body.period_hours));
    let users: HashMap<u64, Role> = s.access.users()?.into_iter().map(|u| (u.id, u.role)).collect();
    let mut rules = Vec::new();
    for (kind, field, rule) in [
        (RuleKind::User, "user_rule", body.user_rule),
        (RuleKind::Client, "client_rule", body.client_rule),
        (RuleKind::Inactivity, "inactivity_rule", body.inactivity_rule),
    ] {
        let Some(rule) = rule else { continue };
        let threshold = currency.as_ref().and_then(|currency| {
            problems.check(currency.parse(rule.threshold.trim()).map_err(|e| {
                AppError::invalid(
                    format!("{field}.threshold"),
                    Code::InvalidAmount,
                    format!("an amount in {} with at most {} decimals: {e}", currency.code, currency.scale),
                )
            }))
        });
        let users_field = format!("{field}.users");
        if rule.users.len() > alerts::RECIPIENTS_MAX {
            problems.note(AppError::invalid(
                &users_field,
                Code::TooMany,
                format!("at most {} users", alerts::RECIPIENTS_MAX),
            ));
        } else if kind != RuleKind::User && !rule.users.is_empty() {
            problems.note(AppError::invalid(
                &users_field,
                Code::NotAllowed,
                "only the user rule notifies portal users",
            ));
        } else if let Some(reseller) = reseller {
            if let Some(u) = rule.users.iter().find(|u| !match (users.get(u), reseller) {
                (Some(Role::Operator), None) => true,
                (Some(Role::Reseller(r)), Some(owner)) => *r == owner,
                (Some(_), _) if who.is_operator() => true,
                _ => false,
            }) {
                problems.note(AppError::invalid(
                    &users_field,
                    Code::UserNotFound,
                    format!("user {u} is not a user of the profile's owner"),
                ));
            }
        }
        let hours_field = format!("{field}.inactivity_hours");
        let inactivity_s = match (kind, rule.inactivity_hours) {
            (RuleKind::Inactivity, Some(h)) if h > 0 => problems.check(hours(&hours_field, h)),
            (RuleKind::Inactivity, _) => {
                problems.note(AppError::invalid(
                    &hours_field,
                    Code::Required,
                    "the inactivity rule needs a number of hours above 0",
                ));
                None
            }
            (_, Some(_)) => {
                problems.note(AppError::invalid(
                    &hours_field,
                    Code::NotAllowed,
                    "only the inactivity rule has a duration",
                ));
                None
            }
            (_, None) => Some(0),
        };
        let emails = problems.check(emails(&format!("{field}.emails"), &rule.emails));
        if let (Some(threshold), Some(inactivity_s), Some(emails)) = (threshold, inactivity_s, emails) {
            rules.push(Rule { kind, threshold, notify: rule.notify, users: rule.users, emails, inactivity_s });
        }
    }
    let template = |field: &str, text: Option<String>, default: &str, max: usize| -> Result<String, AppError> {
        let text = text.unwrap_or_else(|| default.to_owned());
        if text.trim().is_empty() || text.len() > max {
            return Err(AppError::invalid(field, Code::InvalidTemplate, format!("1 to {max} bytes")));
        }
        if !purse_core::text::is_multi_line(&text) {
            return Err(AppError::invalid(field, Code::TextNotPrintable, "must not contain control characters"));
        }
        if let Some(unknown) = alerts::unknown_placeholder(&text) {
            return Err(AppError::invalid(
                field,
                Code::UnknownPlaceholder,
                format!(
                    "{{{unknown}}} is not a placeholder; use {}",
                    alerts::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ),
            ));
        }
        Ok(text)
    };
    let subject = problems.check(
        template("subject", body.subject, alerts::DEFAULT_SUBJECT, alerts::SUBJECT_LEN_MAX).and_then(|subject| {
            if subject.contains(['\r', '\n']) {
                Err(AppError::invalid("subject", Code::InvalidTemplate, "a subject is one line"))
            } else {
                Ok(subject)
            }
        }),
    );
    let body_text = problems.check(template("body", body.body, alerts::DEFAULT_BODY, alerts::BODY_LEN_MAX));
    if let Some(reseller) = reseller {
        let taken = s
            .alerts
            .profiles()?
            .into_iter()
            .any(|p| p.id != id && p.reseller == reseller && p.name.eq_ignore_ascii_case(&name));
        if taken {
            problems.note(AppError::invalid(
                "name",
                Code::NameTaken,
                format!("the owner already has a profile named {name:?}"),
            ));
        }
    }
    problems.finish()?;
    let (Some(reseller), Some(currency), Some(max_quantity), Some(period_s), Some(subject), Some(body_text)) =
        (reseller, currency, max_quantity, period_s, subject, body_text)
    else {
        return Err(AppError::Internal("a profile check passed without a value".into()));
    };
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

pub fn profile_view(p: &Profile, currency: &Currency) -> Value {
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
pub fn sees_profile(who: &Principal, p: &Profile) -> bool {
    // A profile is its reseller's own (or the operator's): no customer sees one.
    crate::policy::sees_owner(who.role, p.reseller, |_| None)
}

pub fn visible_profile(s: &App, who: &Principal, id: u64) -> Result<Profile, AppError> {
    s.alerts.profiles()?.into_iter().find(|p| p.id == id && sees_profile(who, p)).ok_or(AppError::NotFound("profile"))
}

/// Sets the levels the ledger watches for `customers` (all customers when `None`) to what
/// their settings and profiles ask. Blocking reads; the engine applies the changes.
pub fn sync_levels(state: &App, reseller: Option<Option<PartyId>>, customer: Option<PartyId>) -> Result<(), AppError> {
    let items = (move |s: &App| -> AppResult<_> {
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
    })(state)?;
    for chunk in items.chunks(1000) {
        state.engine.submit(chunk.to_vec())?;
    }
    Ok(())
}

/// Creates or replaces a profile (blocking); returns it and the owners whose customers' levels change.
pub fn save_profile(
    s: &App,
    who: &Principal,
    id: Option<u64>,
    body: ProfileBody,
) -> Result<(Profile, Vec<Option<PartyId>>), AppError> {
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
                return Err(AppError::NotFound("profile"));
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

/// Checks a profile body as [`save_profile`] would, saving nothing.
pub fn check_profile(s: &App, who: &Principal, id: Option<u64>, body: ProfileBody) -> Result<(), AppError> {
    if let Some(id) = id {
        visible_profile(s, who, id)?;
    }
    profile_from(s, who, body, id.unwrap_or(0), s.engine.clock().now()).map(|_| ())
}

pub fn sync_owners(state: &App, owners: Vec<Option<PartyId>>) -> Result<(), AppError> {
    for owner in owners {
        sync_levels(state, Some(owner), None)?;
    }
    Ok(())
}

/// Deletes a profile (blocking); returns its owner.
pub fn remove_profile(s: &App, who: &Principal, id: u64) -> Result<Option<PartyId>, AppError> {
    let p = visible_profile(s, who, id)?;
    if !s.alerts.delete_profile(id)? {
        return Err(AppError::NotFound("profile"));
    }
    let before = profile_view(&p, &s.currency("currency", p.currency)?);
    s.audit(who, p.reseller, "profile", p.id, "delete", Some(&before), None)?;
    Ok(p.reseller)
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
pub struct SettingsView {
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

pub fn settings_view(s: &App, party: &Party) -> Result<SettingsView, AppError> {
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
pub fn save_settings(s: &App, who: &Principal, party: &Party, body: SettingsBody) -> Result<(), AppError> {
    let old = s.alerts.alert_settings(party.id)?;
    let mut problems = Problems::default();
    let profile = problems.check((|| -> Result<Option<u64>, AppError> {
        Ok(match party.kind {
            PartyKind::Customer { reseller, currency, .. } => {
                let current = old.as_ref().and_then(|o| o.profile);
                if !crate::policy::may_set(who.role, crate::policy::Field::CustomerProfile) && body.profile != current {
                    return Err(AppError::ForbiddenField {
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
                        AppError::invalid(
                            "profile",
                            Code::ProfileNotFound,
                            format!("no profile {id} of this customer's reseller"),
                        )
                    })?;
                    if p.reseller != reseller {
                        return Err(AppError::invalid(
                            "profile",
                            Code::ProfileNotFound,
                            format!("profile {id} belongs to another owner than this customer's reseller"),
                        ));
                    }
                    if p.currency != currency {
                        return Err(AppError::invalid(
                            "profile",
                            Code::CurrencyMismatch,
                            format!("profile {id} is in {}, the customer in {currency}", p.currency),
                        ));
                    }
                }
                body.profile
            }
            PartyKind::Reseller => {
                if body.profile.is_some() {
                    return Err(AppError::invalid(
                        "profile",
                        Code::NotAllowed,
                        "a reseller has no profile; its customers do",
                    ));
                }
                None
            }
        })
    })());
    let email = problems.check(match body.billing_email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => emails("billing_email", &[e.to_owned()]).map(|mut found| Some(found.remove(0))).map_err(|_| {
            AppError::invalid("billing_email", Code::InvalidEmail, format!("{e:?} is not an e-mail address"))
        }),
        None => Ok(None),
    });
    let warning: Vec<WarningLevel> = match party.kind {
        PartyKind::Customer { currency, billing, wallet, .. } => {
            let c = s.currency("currency", currency)?;
            let limit = s.engine.reader().account(wallet)?.map_or(purse_core::Amount::ZERO, |w| w.credit_limit);
            let permanent = if billing == Billing::Postpaid { limit } else { purse_core::Amount::ZERO };
            problems
                .check(
                    alerts::parse_warning_levels(&body.warning_thresholds, &c, billing, permanent)
                        .map_err(|e| AppError::invalid("warning_thresholds", Code::InvalidThresholds, e.to_string())),
                )
                .unwrap_or_default()
        }
        PartyKind::Reseller if !body.warning_thresholds.trim().is_empty() => {
            problems.note(AppError::invalid(
                "warning_thresholds",
                Code::NotAllowed,
                "warning thresholds are a customer's",
            ));
            Vec::new()
        }
        PartyKind::Reseller => Vec::new(),
    };
    let alert_emails = problems.check(emails("alert_emails", &body.alert_emails));
    problems.finish()?;
    let (Some(profile), Some(email), Some(alert_emails)) = (profile, email, alert_emails) else {
        return Err(AppError::Internal("alert settings passed their checks without values".into()));
    };
    let settings =
        AlertSettings { party: party.id, profile, email, alert_emails, warning, updated_at: s.engine.clock().now() };
    let before = serde_json::to_value(settings_view(s, party)?).map_err(|e| AppError::Internal(e.to_string()))?;
    s.alerts.put_alert_settings(&settings)?;
    let after = serde_json::to_value(settings_view(s, party)?).map_err(|e| AppError::Internal(e.to_string()))?;
    s.audit(who, Some(party.id), "alert_settings", party.id, "update", Some(&before), Some(&after))?;
    Ok(())
}

pub fn endpoint_view(e: &WebhookEndpoint) -> Value {
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

pub fn sees_endpoint(who: &Principal, e: &WebhookEndpoint) -> bool {
    // An endpoint is its own tenant's alone (a reseller's customers register their own).
    crate::policy::sees_owner(who.role, e.owner, |_| None)
}

/// Registers an endpoint for the caller's tenant (blocking); returns it with its secret.
pub fn add_endpoint(s: &App, who: &Principal, url: &str) -> Result<WebhookEndpoint, AppError> {
    let url = url.trim();
    let parsed = crate::webhooks::parse_webhook_url(url)
        .map_err(|e| AppError::invalid("url", Code::InvalidUrl, e.to_string()))?;
    let addresses: Vec<std::net::IpAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(parsed.host.as_str(), parsed.port))
            .map_err(|e| AppError::invalid("url", Code::UnresolvableHost, format!("{}: {e}", parsed.host)))?
            .map(|a| a.ip())
            .collect();
    crate::webhooks::check_addresses(&parsed.host, &addresses, s.config.allow_private_webhooks)
        .map_err(|e| AppError::invalid("url", Code::ForbiddenAddress, e.to_string()))?;
    let owner = match who.role {
        Role::Operator => None,
        Role::Reseller(me) | Role::Customer(me) => Some(me),
    };
    if s.alerts.endpoints()?.iter().any(|e| e.owner == owner && e.url == url) {
        return Err(AppError::invalid("url", Code::Duplicate, "this endpoint is registered already"));
    }
    let mut endpoint = WebhookEndpoint {
        id: 0,
        owner,
        url: url.to_owned(),
        secret: crate::webhooks::new_secret().map_err(|e| AppError::Internal(e.to_string()))?,
        enabled: true,
        disabled_reason: None,
        failures: 0,
        created_at: s.engine.clock().now(),
    };
    endpoint.id = s.alerts.insert_endpoint(&endpoint)?;
    s.audit(who, owner, "webhook_endpoint", endpoint.id, "create", None, Some(&endpoint_view(&endpoint)))?;
    Ok(endpoint)
}

pub fn remove_endpoint(s: &App, who: &Principal, id: u64) -> Result<(), AppError> {
    let found = s.alerts.endpoints()?.into_iter().find(|e| e.id == id && sees_endpoint(who, e));
    let Some(endpoint) = found else { return Err(AppError::NotFound("endpoint")) };
    if !s.alerts.delete_endpoint(id)? {
        return Err(AppError::NotFound("endpoint"));
    }
    s.audit(who, endpoint.owner, "webhook_endpoint", id, "delete", Some(&endpoint_view(&endpoint)), None)?;
    Ok(())
}

/// The notifications `who` may see (blocking): staff those of the customers they see,
/// customers their own except the staff-facing user rule.
pub fn visible_notifications(
    s: &App,
    who: &Principal,
    customer: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<(NotificationRecord, Vec<DeliveryRecord>)>, AppError> {
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

pub fn notification_view(n: &NotificationRecord, deliveries: &[DeliveryRecord], currency: &Currency) -> Value {
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
