//! Who may do what: the one authorization policy of Purse.
//!
//! Every route of the API and every page and form of the portal is an [`Action`]. For each,
//! [`Action::rule`] says which roles may take it and whether it needs write access; the
//! tenancy functions ([`sees_party`], [`sees_owner`]) say whose objects a caller sees (an
//! operator everyone's, a reseller its own and its customers', a customer only its own);
//! and the field and money rules ([`may_set`], [`may_change_credit`], [`may_move_from`],
//! [`may_manage`]) say what each role may set, move and manage. The edges ask; they never
//! decide, and a route or a form without an action does not compile.
//!
//! Money leaves a customer only by its own spending, a transfer it asked for, or a staff
//! member's adjustment with a reason that is audited: [`may_move_from`] is where that is said.

use purse_core::{Account, AccountKind, Party, PartyId, PartyKind, Role, Scope};

/// Which roles an action is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub operator: bool,
    pub reseller: bool,
    pub customer: bool,
}

/// The operator only.
pub const OPERATOR: Roles = Roles { operator: true, reseller: false, customer: false };
/// The operator's and resellers' staff.
pub const STAFF: Roles = Roles { operator: true, reseller: true, customer: false };
/// Everyone, each on their own objects.
pub const ANYONE: Roles = Roles { operator: true, reseller: true, customer: true };

impl Roles {
    pub fn allows(self, role: Role) -> bool {
        match role {
            Role::Operator => self.operator,
            Role::Reseller(_) => self.reseller,
            Role::Customer(_) => self.customer,
        }
    }
}

/// What access an action needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requires {
    /// Nothing: no key, no session.
    Public,
    /// A key or a signed-in user of an allowed role, read-only or not.
    Read,
    /// A read-write key or an admin user of an allowed role.
    Write,
}

/// Who may take an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub roles: Roles,
    pub requires: Requires,
}

macro_rules! actions {
    ($( $name:ident = $id:literal, $what:literal, $roles:expr, $requires:ident; )*) => {
        /// Everything a caller can ask of Purse through the API or the portal.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $( $name, )*
        }

        impl Action {
            /// Every action, in the order of the table.
            pub const ALL: &'static [Action] = &[$( Action::$name ),*];

            /// The action's stable name: the API's operation id, or the portal page's.
            pub fn name(self) -> &'static str {
                match self {
                    $( Action::$name => $id, )*
                }
            }

            /// What the action does, as a refusal states it ("only an operator may …").
            pub fn what(self) -> &'static str {
                match self {
                    $( Action::$name => $what, )*
                }
            }

            /// Who may take it: the policy's table.
            pub fn rule(self) -> Rule {
                match self {
                    $( Action::$name => Rule { roles: $roles, requires: Requires::$requires }, )*
                }
            }
        }
    };
}

actions! {
    // Public.
    Healthz = "healthz", "see whether Purse is alive", ANYONE, Public;
    Readyz = "readyz", "see whether Purse is ready", ANYONE, Public;
    Metrics = "metrics", "read the metrics", ANYONE, Public;
    OpenApi = "openapi", "read the API document", ANYONE, Public;
    PortalAssets = "portalAssets", "load the portal's stylesheet", ANYONE, Public;
    LoginPage = "loginPage", "see the login page", ANYONE, Public;
    Login = "login", "log in", ANYONE, Public;
    // Every signed-in person.
    Logout = "logout", "log out", ANYONE, Read;
    Home = "home", "see the portal's home and settings pages", ANYONE, Read;
    ChangeOwnPassword = "changeOwnPassword", "change their own password", ANYONE, Read;
    ChooseOwnLanguage = "chooseOwnLanguage", "choose the portal's language for themselves", ANYONE, Read;
    // Currencies and parties.
    CreateCurrency = "createCurrency", "configure currencies", OPERATOR, Write;
    ListCurrencies = "listCurrencies", "list currencies", ANYONE, Read;
    CreateReseller = "createReseller", "create resellers", OPERATOR, Write;
    ListResellers = "listResellers", "list resellers", ANYONE, Read;
    GetReseller = "getReseller", "see a reseller", ANYONE, Read;
    CreateCustomer = "createCustomer", "create customers", STAFF, Write;
    ListCustomers = "listCustomers", "list customers", ANYONE, Read;
    GetCustomer = "getCustomer", "see a customer", ANYONE, Read;
    // Accounts.
    OpenAccount = "openAccount", "open accounts", ANYONE, Write;
    ListAccounts = "listAccounts", "list a party's accounts", ANYONE, Read;
    GetAccount = "getAccount", "see an account", ANYONE, Read;
    UpdateAccount = "updateAccount", "change credit limits", ANYONE, Write;
    GetCreditHistory = "getCreditHistory", "see the credit limit history", ANYONE, Read;
    CloseAccount = "closeAccount", "close accounts", STAFF, Write;
    GetSpendable = "getSpendable", "ask what an account can spend", ANYONE, Read;
    GetBalanceAt = "getBalanceAt", "see a past balance", ANYONE, Read;
    GetJournal = "getJournal", "see an account's journal and Balance Details", ANYONE, Read;
    GetBalances = "getBalances", "read every balance at once", OPERATOR, Read;
    // Money.
    CreateCharge = "createCharge", "post charges", STAFF, Write;
    CreateChargeBatch = "createChargeBatch", "post charges", STAFF, Write;
    CreatePayment = "createPayment", "record payments", OPERATOR, Write;
    CreateTransfer = "createTransfer", "move money between accounts", ANYONE, Write;
    GetTransfer = "getTransfer", "see a transfer", ANYONE, Read;
    CreateReversal = "createReversal", "reverse transfers", OPERATOR, Write;
    CreateAdjustment = "createAdjustment", "adjust balances", STAFF, Write;
    ListAdjustments = "listAdjustments", "see adjustments", ANYONE, Read;
    GetMasterWallet = "getMasterWallet", "see resellers' master wallets and what they funded", STAFF, Read;
    IssueCredit = "issueCredit", "issue credit from a master wallet", STAFF, Write;
    CreateHold = "createHold", "place holds", STAFF, Write;
    GetHold = "getHold", "see a hold", ANYONE, Read;
    CaptureHold = "captureHold", "capture holds", STAFF, Write;
    ReleaseHold = "releaseHold", "release holds", STAFF, Write;
    // Notifications.
    ListLowBalanceProfiles = "listLowBalanceProfiles", "list Low Balance Profiles", STAFF, Read;
    CreateLowBalanceProfile = "createLowBalanceProfile", "manage Low Balance Profiles", STAFF, Write;
    GetLowBalanceProfile = "getLowBalanceProfile", "see a Low Balance Profile", STAFF, Read;
    ReplaceLowBalanceProfile = "replaceLowBalanceProfile", "manage Low Balance Profiles", STAFF, Write;
    DeleteLowBalanceProfile = "deleteLowBalanceProfile", "manage Low Balance Profiles", STAFF, Write;
    GetCustomerAlertSettings = "getCustomerAlertSettings", "see a customer's alert settings", ANYONE, Read;
    PutCustomerAlertSettings = "putCustomerAlertSettings", "change a customer's alert settings", ANYONE, Write;
    GetResellerAlertSettings = "getResellerAlertSettings", "see a reseller's alert e-mail", STAFF, Read;
    PutResellerAlertSettings = "putResellerAlertSettings", "set a reseller's alert e-mail", STAFF, Write;
    ListWebhookEndpoints = "listWebhookEndpoints", "list webhook endpoints", ANYONE, Read;
    CreateWebhookEndpoint = "createWebhookEndpoint", "register webhook endpoints", ANYONE, Write;
    DeleteWebhookEndpoint = "deleteWebhookEndpoint", "remove webhook endpoints", ANYONE, Write;
    ListNotifications = "listNotifications", "read the notification log", ANYONE, Read;
    // Recharges and payments.
    GetRechargeSettings = "getRechargeSettings", "see recharge settings", ANYONE, Read;
    PutRechargeSettings = "putRechargeSettings", "change recharge settings", ANYONE, Write;
    SaveCard = "saveCard", "save a card", ANYONE, Write;
    PayNow = "payNow", "pay by card", ANYONE, Write;
    ListRecharges = "listRecharges", "list recharges", ANYONE, Read;
    // Invoices and receipts.
    ListInvoices = "listInvoices", "list invoices", ANYONE, Read;
    GetInvoice = "getInvoice", "see an invoice", ANYONE, Read;
    GetInvoicePdf = "getInvoicePdf", "download an invoice", ANYONE, Read;
    VoidInvoice = "voidInvoice", "void an invoice", STAFF, Write;
    IssueInvoice = "issueInvoice", "issue an invoice", STAFF, Write;
    PayInvoice = "payInvoice", "record the payment of an invoice", STAFF, Write;
    GetBillingSettings = "getBillingSettings", "see a billing cycle", ANYONE, Read;
    PutBillingSettings = "putBillingSettings", "change a customer's billing cycle", STAFF, Write;
    ListTaxRates = "listTaxRates", "see tax rates", STAFF, Read;
    CreateTaxRate = "createTaxRate", "create tax rates", STAFF, Write;
    GetCustomerTax = "getCustomerTax", "see a customer's tax settings", ANYONE, Read;
    PutCustomerTax = "putCustomerTax", "set a customer's tax rate, tax id and billing address", STAFF, Write;
    ListDunningPolicies = "listDunningPolicies", "see dunning policies", STAFF, Read;
    PutDunningPolicy = "putDunningPolicy", "set dunning policies", STAFF, Write;
    DeleteDunningPolicy = "deleteDunningPolicy", "delete dunning policies", STAFF, Write;
    GetSuspension = "getSuspension", "see whether a customer is suspended and why", ANYONE, Read;
    PutSuspension = "putSuspension", "suspend customers or lift a suspension", STAFF, Write;
    ListReceipts = "listReceipts", "list receipt vouchers", ANYONE, Read;
    GetReceipt = "getReceipt", "see a receipt voucher", ANYONE, Read;
    GetReceiptPdf = "getReceiptPdf", "download a receipt voucher", ANYONE, Read;
    EmailReceipt = "emailReceipt", "e-mail a receipt voucher again", ANYONE, Write;
    CreateRefund = "createRefund", "refund payments", STAFF, Write;
    CreateCreditNote = "createCreditNote", "issue credit notes", STAFF, Write;
    ListCreditNotes = "listCreditNotes", "list credit notes", ANYONE, Read;
    GetCreditNote = "getCreditNote", "see a credit note", ANYONE, Read;
    GetCreditNotePdf = "getCreditNotePdf", "download a credit note", ANYONE, Read;
    ListRefunds = "listRefunds", "list refunds", ANYONE, Read;
    GetRefund = "getRefund", "see a refund", ANYONE, Read;
    GetRefundPdf = "getRefundPdf", "download a refund receipt", ANYONE, Read;
    // Credit control.
    ListCustomerClasses = "listCustomerClasses", "see customer classes", STAFF, Read;
    CreateCustomerClass = "createCustomerClass", "set customer classes", OPERATOR, Write;
    ReplaceCustomerClass = "replaceCustomerClass", "set customer classes", OPERATOR, Write;
    GetCustomerCreditSettings = "getCustomerCreditSettings", "see Balance & Credits", ANYONE, Read;
    PutCustomerCreditSettings = "putCustomerCreditSettings", "change a customer's class or transfers setting", STAFF, Write;
    GetResellerCreditSettings = "getResellerCreditSettings", "see a reseller's maximum possible increase", STAFF, Read;
    PutResellerCreditSettings = "putResellerCreditSettings", "set a reseller's maximum possible increase", OPERATOR, Write;
    ListAuditLog = "listAuditLog", "read the audit log", ANYONE, Read;
    ListSchedulerRuns = "listSchedulerRuns", "see the scheduler's runs", OPERATOR, Read;
    // Credit grants.
    CreateGrant = "createGrant", "give credit grants", OPERATOR, Write;
    ListGrants = "listGrants", "see credit grants", ANYONE, Read;
    GetGrant = "getGrant", "see a credit grant", ANYONE, Read;
    VoidGrant = "voidGrant", "void credit grants", OPERATOR, Write;
    CreateAllowance = "createAllowance", "start recurring grants", OPERATOR, Write;
    ListAllowances = "listAllowances", "see recurring grants", ANYONE, Read;
    EndAllowance = "endAllowance", "stop recurring grants", OPERATOR, Write;
    // Rating and real-time sessions.
    ListRatePlans = "listRatePlans", "list rate plans", ANYONE, Read;
    CreateRatePlan = "createRatePlan", "create rate plans", STAFF, Write;
    GetRatePlan = "getRatePlan", "see a rate plan's rates", ANYONE, Read;
    ImportRates = "importRates", "import rate decks", STAFF, Write;
    ExportRates = "exportRates", "export rate decks", ANYONE, Read;
    PutCustomerRatePlan = "putCustomerRatePlan", "give customers rate plans", STAFF, Write;
    PutResellerRatePlans = "putResellerRatePlans", "set a reseller's rate plans", STAFF, Write;
    GetResellerMargin = "getResellerMargin", "see a reseller's margin", STAFF, Read;
    CreateUsage = "createUsage", "post rated usage", STAFF, Write;
    CreateUsageBatch = "createUsageBatch", "post rated usage", STAFF, Write;
    ListUnratedUsage = "listUnratedUsage", "see usage no rate matched", ANYONE, Read;
    CreateSession = "createSession", "authorize charging sessions", STAFF, Write;
    UpdateSession = "updateSession", "update charging sessions", STAFF, Write;
    TerminateSession = "terminateSession", "end charging sessions", STAFF, Write;
    GetSession = "getSession", "see a charging session", ANYONE, Read;
    ListSessions = "listSessions", "list charging sessions", ANYONE, Read;
    // Keys and users.
    ListApiKeys = "listApiKeys", "list API keys", ANYONE, Read;
    CreateApiKey = "createApiKey", "issue API keys", ANYONE, Write;
    RevokeApiKey = "revokeApiKey", "revoke API keys", ANYONE, Write;
    ListUsers = "listUsers", "list portal users", ANYONE, Read;
    CreateUser = "createUser", "create portal users", ANYONE, Write;
    DisableUser = "disableUser", "disable portal users", ANYONE, Write;
}

/// Why the policy refuses an action (always a 403: the caller knows the action exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A read-only key or user asked for a change.
    ReadOnly,
    /// The caller's role may not take the action at all.
    Role { action: Action },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ReadOnly => f.write_str("this key or user is read-only"),
            Refusal::Role { action } => {
                let rule = action.rule();
                let who = if rule.roles == OPERATOR { "the operator" } else { "the operator's or a reseller's staff" };
                write!(f, "only {who} may {}", action.what())
            }
        }
    }
}

/// Whether a caller of `role` and `scope` may take `action` at all (on its own objects:
/// whose objects it sees is [`sees_party`]'s and [`sees_owner`]'s to say).
pub fn authorize(role: Role, scope: Scope, action: Action) -> Result<(), Refusal> {
    let rule = action.rule();
    if rule.requires == Requires::Public {
        return Ok(());
    }
    if rule.requires == Requires::Write && scope == Scope::Read {
        return Err(Refusal::ReadOnly);
    }
    if !rule.roles.allows(role) {
        return Err(Refusal::Role { action });
    }
    Ok(())
}

// ------------------------------------------------------------------ tenancy

/// Whether `role` sees `party`: an operator every party, a reseller itself and its
/// customers, a customer itself. What a caller does not see answers as if it did not exist.
pub fn sees_party(role: Role, party: &Party) -> bool {
    match role {
        Role::Operator => true,
        Role::Reseller(r) => {
            party.id == r || matches!(party.kind, PartyKind::Customer { reseller: Some(x), .. } if x == r)
        }
        Role::Customer(c) => party.id == c,
    }
}

/// Whether `role` sees an object owned by `owner` (`None`: the operator's own, such as a
/// system account), where `reseller_of` names the reseller of a customer.
pub fn sees_owner(role: Role, owner: Option<PartyId>, reseller_of: impl FnOnce(PartyId) -> Option<PartyId>) -> bool {
    match (role, owner) {
        (Role::Operator, _) => true,
        (_, None) => false,
        (Role::Customer(c), Some(p)) => p == c,
        (Role::Reseller(r), Some(p)) => p == r || reseller_of(p) == Some(r),
    }
}

/// The tenant whose namespace a caller's client ids live in.
pub fn tenant(role: Role) -> purse_core::Tenant {
    match role {
        Role::Operator => purse_core::Tenant::Operator,
        Role::Reseller(p) => purse_core::Tenant::Reseller(p),
        Role::Customer(p) => purse_core::Tenant::Customer(p),
    }
}

// ------------------------------------------------------------------ fields and money

/// A field only some roles may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Recharging a customer from its reseller's master wallet: the method, and its
    /// threshold, amount and caps. The reseller's money, so the reseller's (or the
    /// operator's) decision; a customer may choose a card or a top-up invoice.
    MasterAccountRecharge,
    /// Which reseller a new customer belongs to (a reseller's customers are its own).
    CustomerReseller,
    /// Which Low Balance Profile a customer uses.
    CustomerProfile,
    /// Opening a reseller's master wallet.
    MasterWallet,
}

/// Whether `role` may set `field`.
pub fn may_set(role: Role, field: Field) -> bool {
    match field {
        Field::MasterAccountRecharge | Field::CustomerProfile => STAFF.allows(role),
        Field::CustomerReseller | Field::MasterWallet => OPERATOR.allows(role),
    }
}

/// Whether `role` may change the credit limit (or temporary increase) of `account`, one
/// it sees: an operator any; a reseller its customers' accounts, not its own master wallet
/// (it would lend itself money); a customer only the sub-limits of its own credit
/// subscriber accounts, never its wallet's limit.
pub fn may_change_credit(role: Role, account: &Account) -> bool {
    match role {
        Role::Operator => true,
        Role::Reseller(me) => account.party != Some(me),
        Role::Customer(_) => matches!(account.kind, AccountKind::SubscriberCredit { .. }),
    }
}

/// Whether `role` may move money out of `account` (one it sees) by a transfer or an issue.
/// A customer from its own accounts: its own transfer. A reseller only from its own master
/// wallet, never from a customer's account: taking a customer's money is an adjustment with
/// a reason. The operator from any, and every such transfer is in the audit log.
pub fn may_move_from(role: Role, account: &Account) -> bool {
    match role {
        Role::Operator => true,
        Role::Reseller(me) => account.party == Some(me) && account.kind == AccountKind::MasterWallet,
        Role::Customer(me) => account.party == Some(me),
    }
}

/// Whether `role` may adjust the balance of `account` (one it sees), with a reason: the
/// operator any; a reseller its customers' accounts, never its own (it would give itself
/// money); a customer none (the route is staff's).
pub fn may_adjust(role: Role, account: &Account) -> bool {
    match role {
        Role::Operator => true,
        Role::Reseller(me) => account.party != Some(me),
        Role::Customer(_) => false,
    }
}

/// Whether a transfer by `role` from `source` to `target` touches someone else's money (the
/// operator's every transfer, a reseller's issue to its customer), and so goes to the audit
/// log with who made it. A customer moving money between its own accounts does not.
pub fn on_behalf(role: Role, source: &Account, target: &Account) -> bool {
    match role {
        Role::Operator => true,
        Role::Reseller(me) | Role::Customer(me) => source.party != Some(me) || target.party != Some(me),
    }
}

/// Whether `role` may issue, revoke, list or disable the keys and users of `target`: an
/// operator anyone's; a reseller its own and its customers' (never an operator's); a
/// customer its own party's. `reseller_of` names the reseller of a customer.
pub fn may_manage(role: Role, target: Role, reseller_of: impl FnOnce(PartyId) -> Option<PartyId>) -> bool {
    match (role, target) {
        (Role::Operator, _) => true,
        (_, Role::Operator) => false,
        (Role::Reseller(r), Role::Reseller(p)) => r == p,
        (Role::Reseller(r), Role::Customer(c)) => reseller_of(c) == Some(r),
        (Role::Customer(me), Role::Customer(c)) => me == c,
        (Role::Customer(_), Role::Reseller(_)) => false,
    }
}

// ------------------------------------------------------------------ the table, for people

/// The policy as a Markdown table, from the code itself (the README and docs carry it, and
/// a test keeps them equal to this).
pub fn markdown() -> String {
    let mut out = String::from(
        "| Action | What | Operator | Reseller | Customer | Read-only keys and users |\n|---|---|:-:|:-:|:-:|:-:|\n",
    );
    for action in Action::ALL {
        let rule = action.rule();
        let cell = |allowed: bool| if allowed { "yes" } else { "—" };
        let (operator, reseller, customer, read_only) = match rule.requires {
            Requires::Public => ("public", "public", "public", "public"),
            requires => (
                cell(rule.roles.operator),
                cell(rule.roles.reseller),
                cell(rule.roles.customer),
                cell(requires == Requires::Read),
            ),
        };
        out.push_str(&format!(
            "| `{}` | {} | {operator} | {reseller} | {customer} | {read_only} |\n",
            action.name(),
            action.what()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse_core::{AccountId, AccountStatus, Amount, CurrencyCode, Timestamp};

    fn account(party: Option<u64>, kind: AccountKind) -> Account {
        Account {
            id: AccountId(1),
            client_id: None,
            party: party.map(PartyId),
            kind,
            currency: CurrencyCode::parse("USD").unwrap(),
            status: AccountStatus::Open,
            balance: Amount::ZERO,
            reserved: Amount::ZERO,
            credit_limit: Amount::ZERO,
            temporary_increase: None,
            children_balance: Amount::ZERO,
            thresholds: Vec::new(),
            last_charge_at: None,
            uninvoiced: Amount::ZERO,
            last_transfer: None,
            created_at: Timestamp(0),
            grants: Vec::new(),
        }
    }

    #[test]
    fn names_are_unique_and_every_action_is_in_the_table() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(markdown().lines().count(), Action::ALL.len() + 2);
    }

    #[test]
    fn read_only_callers_change_nothing_and_roles_keep_to_theirs() {
        let customer = Role::Customer(PartyId(3));
        assert_eq!(authorize(Role::Operator, Scope::Read, Action::CreateCharge), Err(Refusal::ReadOnly));
        assert_eq!(
            authorize(customer, Scope::ReadWrite, Action::CreateCharge),
            Err(Refusal::Role { action: Action::CreateCharge })
        );
        assert_eq!(
            authorize(customer, Scope::ReadWrite, Action::ListCustomerClasses),
            Err(Refusal::Role { action: Action::ListCustomerClasses })
        );
        assert!(authorize(customer, Scope::Read, Action::GetJournal).is_ok());
        assert!(authorize(customer, Scope::Read, Action::Healthz).is_ok());
        let refusal = authorize(Role::Reseller(PartyId(1)), Scope::ReadWrite, Action::CreatePayment).unwrap_err();
        assert_eq!(refusal.to_string(), "only the operator may record payments");
    }

    #[test]
    fn money_leaves_a_customer_only_by_its_own_hand_or_the_operators() {
        let (reseller, customer) = (Role::Reseller(PartyId(1)), Role::Customer(PartyId(2)));
        let wallet = account(Some(2), AccountKind::Wallet);
        let master = account(Some(1), AccountKind::MasterWallet);
        assert!(may_move_from(customer, &wallet));
        assert!(!may_move_from(reseller, &wallet), "a reseller may not pull its customer's money");
        assert!(may_move_from(reseller, &master));
        assert!(!may_move_from(customer, &master));
        assert!(may_move_from(Role::Operator, &wallet) && on_behalf(Role::Operator, &wallet, &wallet));
        assert!(!on_behalf(customer, &wallet, &wallet) && on_behalf(reseller, &master, &wallet));
        assert!(!may_set(customer, Field::MasterAccountRecharge) && may_set(reseller, Field::MasterAccountRecharge));
        assert!(
            !may_change_credit(customer, &wallet)
                && may_change_credit(reseller, &wallet)
                && !may_change_credit(reseller, &master)
        );
    }

    #[test]
    fn keys_and_users_are_managed_within_the_tenant() {
        let (r, c) = (PartyId(1), PartyId(2));
        let of = |p: PartyId| (p == c).then_some(r);
        assert!(may_manage(Role::Reseller(r), Role::Customer(c), of));
        assert!(!may_manage(Role::Reseller(r), Role::Customer(PartyId(9)), of));
        assert!(!may_manage(Role::Reseller(r), Role::Operator, of));
        assert!(may_manage(Role::Customer(c), Role::Customer(c), of));
        assert!(!may_manage(Role::Customer(c), Role::Reseller(r), of));
        assert!(may_manage(Role::Operator, Role::Operator, of));
    }
}
