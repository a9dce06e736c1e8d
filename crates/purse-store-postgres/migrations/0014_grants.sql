-- Credit grants: credit that is not cash (promotional, purchased, commitment, goodwill),
-- each with a priority, an effective instant, an optional expiry and scope. Their
-- remainders are part of their account's balance; grant_uses says what moved each.
CREATE TABLE grants (
    id            BIGINT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    client_tenant TEXT NOT NULL,
    account_id    BIGINT NOT NULL REFERENCES accounts (id),
    kind          TEXT NOT NULL,
    funding       TEXT NOT NULL,
    priority      BIGINT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount > 0),
    effective_at  BIGINT NOT NULL,
    expires_at    BIGINT,
    scope         TEXT NOT NULL,
    rollover_max  BIGINT,
    rollover_us   BIGINT,
    state         TEXT NOT NULL CHECK (state IN ('open', 'used_up', 'expired', 'voided')),
    used_up_at    BIGINT,
    transfer_id   BIGINT REFERENCES transfers (id),
    rolled_from   BIGINT REFERENCES grants (id),
    created_at    BIGINT NOT NULL,
    closed_at     BIGINT,
    granted_by    TEXT NOT NULL,
    reason        TEXT,
    -- When "about to expire" and "used up" were told (compare-and-set: told once).
    expiring_noticed_at  BIGINT,
    used_up_noticed_at   BIGINT
);
CREATE INDEX grants_open ON grants (account_id) WHERE state = 'open';
CREATE INDEX grants_account ON grants (account_id, id);
CREATE INDEX grants_expiring ON grants (expires_at) WHERE state = 'open';
CREATE INDEX grants_used_up ON grants (id) WHERE used_up_at IS NOT NULL AND used_up_noticed_at IS NULL;
CREATE UNIQUE INDEX grants_transfer ON grants (transfer_id);

-- The remainder of each open grant of an account, and what holds reserved of it
-- (`grant:remaining:reserved,…`; NULL or '' when none), kept with the account's balance:
-- a charge a grant pays rewrites one row, as one it does not.
ALTER TABLE balances ADD COLUMN grants TEXT;

-- What moved each grant's remainder: one row per charge a grant paid (and per return,
-- expiry, rollover, void). Written only by the ledger's batch, in its transaction, so it
-- carries no foreign keys: checking three parents per charge cost more than the row.
CREATE TABLE grant_uses (
    grant_id     BIGINT NOT NULL,
    account_id   BIGINT NOT NULL,
    transfer_id  BIGINT,
    kind         TEXT NOT NULL CHECK (kind IN ('charge', 'return', 'expiry', 'rollover', 'void')),
    amount       BIGINT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX grant_uses_grant ON grant_uses (grant_id);
CREATE INDEX grant_uses_transfer ON grant_uses (transfer_id);

-- Recurring grants (allowances): the scheduler grants `amount` at the start of every
-- monthly period (on `day`), valid until the next; `next_at` is the next period's start,
-- moved on by compare-and-set once its grant is made.
CREATE TABLE allowances (
    id              BIGSERIAL PRIMARY KEY,
    party_id        BIGINT NOT NULL REFERENCES parties (id),
    account_id      BIGINT NOT NULL REFERENCES accounts (id),
    amount          BIGINT NOT NULL CHECK (amount > 0),
    kind            TEXT NOT NULL,
    priority        BIGINT NOT NULL,
    scope           TEXT NOT NULL,
    day             BIGINT NOT NULL CHECK (day BETWEEN 1 AND 28),
    rollover_max    BIGINT,
    rollover_days   BIGINT,
    next_at         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    granted_by      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    ended_at        BIGINT
);
CREATE INDEX allowances_due ON allowances (next_at) WHERE ended_at IS NULL;
CREATE INDEX allowances_party ON allowances (party_id);

-- Of a charge: what each grant paid of it (`grant:amount,…`; NULL when none did). Kept on
-- the posting itself, so a charge costs no row and no index entry more.
ALTER TABLE transfers ADD COLUMN grant_parts TEXT;

-- What an open hold reserved on which grants: `grant:amount,…`.
ALTER TABLE holds ADD COLUMN grant_parts TEXT NOT NULL DEFAULT '';

-- Every currency gets the two new system accounts: where free credit comes from, and
-- where expired credit goes.
INSERT INTO accounts (id, client_id, party_id, kind, system_role, parent_id, currency, status, credit_limit,
                      temp_increase, temp_valid_until, thresholds, created_at, client_tenant)
SELECT (SELECT COALESCE(MAX(id), 0) FROM accounts) + ROW_NUMBER() OVER (ORDER BY c.code, r.role),
       NULL, NULL, 'system', r.role, NULL, c.code, 'open', 0, NULL, NULL, '', 0, ''
FROM currencies c CROSS JOIN (SELECT 'grants' AS role UNION ALL SELECT 'breakage') r
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.currency = c.code AND a.system_role = r.role);
INSERT INTO balances (account_id, balance, reserved, children_balance, last_charge_at, last_transfer_id, uninvoiced)
SELECT id, 0, 0, 0, NULL, NULL, 0 FROM accounts
WHERE kind = 'system' AND system_role IN ('grants', 'breakage') AND id NOT IN (SELECT account_id FROM balances);

-- What credit grants paid of a usage invoice's charges, by grant: walked from the journal
-- with its lines and kept with them.
CREATE TABLE invoice_credits (
    invoice_id  BIGINT NOT NULL REFERENCES invoices (id),
    grant_id    BIGINT NOT NULL,
    amount      BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, grant_id)
);
