//! Tax rates and customers' tax settings. A usage invoice takes its customer's rate when it
//! is issued (the store reads it in the issuing transaction); an exclusive rate's tax is
//! added to what the invoice asks and booked as owed (`invoices::post_tax`).

use purse_core::{PartyId, Role};
use purse_store::{CustomerTax, TaxRate};
use serde_json::json;

use crate::{App, AppError, AppResult, Code, Principal, Problems};

pub use purse_store::taxes::percent_text;

pub fn rate_json(r: &TaxRate) -> serde_json::Value {
    json!({
        "id": r.id,
        "owner": r.owner.map(|p| p.0),
        "name": r.name,
        "percent": percent_text(r.rate),
        "inclusive": r.inclusive,
        "created_at": purse_core::time::format(r.created_at),
    })
}

/// The rates the caller may see and use: the operator's, and a reseller's own.
pub fn visible_rates(s: &App, who: &Principal) -> AppResult<Vec<TaxRate>> {
    let all = s.payments.tax_rates()?;
    Ok(match who.role {
        Role::Operator => all,
        Role::Reseller(me) => all.into_iter().filter(|r| r.owner.is_none_or(|o| o == me)).collect(),
        Role::Customer(_) => Vec::new(),
    })
}

/// Creates a rate, checked whole: a name, a percentage above 0 and at most 100 with at most
/// four decimals. The operator's (or a reseller's, named by the operator); a reseller's own.
pub fn create_rate(
    s: &App,
    who: &Principal,
    name: &str,
    percent: &str,
    inclusive: bool,
    owner: Option<u64>,
) -> AppResult<TaxRate> {
    let mut problems = Problems::default();
    let name = problems.check(crate::parse::name("name", name));
    let rate = match purse_core::money::parse_units(percent.trim(), 4) {
        Ok(r) if r > 0 && r <= purse_core::invoice::TAX_WHOLE => Some(r),
        _ => {
            problems.note(AppError::invalid(
                "percent",
                Code::OutOfRange,
                "a percentage above 0 and at most 100, with at most 4 decimals",
            ));
            None
        }
    };
    let owner = match (who.role, owner) {
        (Role::Operator, None) => None,
        (Role::Operator, Some(r)) => problems.check(s.party_of_kind(who, r, true)).map(|p| p.id),
        (Role::Reseller(me), None) => Some(me),
        (Role::Reseller(me), Some(r)) if r == me.0 => Some(me),
        _ => {
            problems
                .note(AppError::ForbiddenField { field: "owner", message: "a reseller makes its own rates".into() });
            None
        }
    };
    problems.finish()?;
    let made = TaxRate {
        id: 0,
        owner,
        name: name.unwrap_or_default(),
        rate: rate.unwrap_or_default(),
        inclusive,
        created_at: s.now(),
    };
    let audit = s.audit_entry(who, owner, "tax_rate", 0, "create", None, Some(&rate_json(&made)))?;
    Ok(s.payments.create_tax_rate(&made, &audit)?)
}

/// A customer's tax settings (empty ones when none were set).
pub fn customer_tax(s: &App, who: &Principal, customer: u64) -> AppResult<CustomerTax> {
    let party = s.party_of_kind(who, customer, false)?;
    Ok(s.payments.customer_tax(party.id)?.unwrap_or(CustomerTax {
        party: party.id,
        rate: None,
        taxed_at: purse_store::TaxedAt::Invoice,
        tax_id: String::new(),
        address: String::new(),
        updated_at: purse_core::Timestamp(0),
    }))
}

pub fn customer_tax_json(s: &App, t: &CustomerTax) -> AppResult<serde_json::Value> {
    let rate = match t.rate {
        Some(id) => s.payments.tax_rates()?.into_iter().find(|r| r.id == id).map(|r| rate_json(&r)),
        None => None,
    };
    Ok(json!({
        "customer": t.party.0,
        "tax_rate": rate,
        "taxed_at": t.taxed_at.as_str(),
        "tax_id": t.tax_id,
        "address": t.address,
    }))
}

/// A customer's tax settings as asked for.
#[derive(serde::Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TaxSettingsBody {
    pub tax_rate: Option<u64>,
    /// `invoice` (the default): usage invoices carry the tax; `top_up`: money coming in does.
    #[serde(default)]
    pub taxed_at: Option<String>,
    #[serde(default)]
    pub tax_id: String,
    #[serde(default)]
    pub address: String,
}

/// Sets a customer's rate (one the caller may use, or none), when it is taxed, tax id and
/// billing address, checked whole; audited.
pub fn put_customer_tax(s: &App, who: &Principal, customer: u64, body: &TaxSettingsBody) -> AppResult<CustomerTax> {
    let (rate, tax_id, address) = (body.tax_rate, body.tax_id.as_str(), body.address.as_str());
    let before = customer_tax(s, who, customer)?;
    let mut problems = Problems::default();
    if let Some(id) = rate {
        if !visible_rates(s, who)?.iter().any(|r| r.id == id) {
            problems.note(AppError::invalid("tax_rate", Code::NotFound, "no such tax rate"));
        }
    }
    let text = |field: &'static str, v: &str, max: usize| -> AppResult<String> {
        let v = v.trim();
        if v.len() > max {
            return Err(AppError::invalid(field, Code::TextTooLong, format!("{field} is at most {max} bytes")));
        }
        // Line breaks belong in an address; other control characters nowhere.
        if v.chars().any(|c| purse_core::text::is_control(c) && !(field == "address" && c == '\n')) {
            return Err(AppError::invalid(field, Code::TextNotPrintable, format!("{field} has a control character")));
        }
        Ok(v.to_owned())
    };
    let taxed_at = match body.taxed_at.as_deref().map(str::trim) {
        None | Some("") => Some(purse_store::TaxedAt::Invoice),
        Some(t) => purse_store::TaxedAt::parse(t).or_else(|| {
            problems.note(AppError::invalid("taxed_at", Code::InvalidTarget, "taxed_at is invoice or top_up"));
            None
        }),
    };
    let tax_id = problems.check(text("tax_id", tax_id, 64));
    let address = problems.check(text("address", &address.replace("\r\n", "\n"), 500));
    problems.finish()?;
    let after = CustomerTax {
        party: PartyId(customer),
        rate,
        taxed_at: taxed_at.unwrap_or_default(),
        tax_id: tax_id.unwrap_or_default(),
        address: address.unwrap_or_default(),
        updated_at: s.now(),
    };
    let audit = s.audit_entry(
        who,
        Some(after.party),
        "tax_settings",
        customer,
        "update",
        Some(&customer_tax_json(s, &before)?),
        Some(&customer_tax_json(s, &after)?),
    )?;
    s.payments.put_customer_tax(&after, &audit)?;
    Ok(after)
}
