-- Auto-recharge and payments: each customer's recharge settings (with its saved card's
-- Stripe ids), every recharge and card payment, and top-up invoices numbered per issuer.
CREATE TABLE recharge_settings (
    party_id         BIGINT PRIMARY KEY REFERENCES parties (id),
    enabled          BOOLEAN NOT NULL,
    method           TEXT NOT NULL CHECK (method IN ('card', 'invoice', 'master_account')),
    threshold        BIGINT NOT NULL,
    amount           BIGINT,
    target           BIGINT,
    per_day_max      BIGINT NOT NULL CHECK (per_day_max >= 1),
    month_cap        BIGINT,
    emails           TEXT NOT NULL,
    stripe_customer  TEXT,
    payment_method   TEXT,
    card_brand       TEXT,
    card_last4       TEXT,
    failures         BIGINT NOT NULL,
    disabled_reason  TEXT,
    updated_at       BIGINT NOT NULL,
    CHECK ((amount IS NULL) <> (target IS NULL))
);
CREATE TABLE recharges (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    party_id     BIGINT NOT NULL REFERENCES parties (id),
    method       TEXT NOT NULL CHECK (method IN ('card', 'invoice', 'master_account')),
    reason       TEXT NOT NULL CHECK (reason IN ('auto', 'pay_now')),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'invoiced', 'succeeded', 'failed')),
    created_at   BIGINT NOT NULL,
    day          TEXT NOT NULL,
    month        TEXT NOT NULL,
    intent       TEXT,
    transfer_id  BIGINT,
    invoice_id   BIGINT,
    error        TEXT,
    finished_at  BIGINT,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    -- The Idempotency-Key of the Pay Now request that made it.
    request_key  TEXT
);
-- One automatic recharge in flight per customer, whatever the processes do.
CREATE UNIQUE INDEX recharges_in_flight ON recharges (party_id)
    WHERE reason = 'auto' AND status IN ('pending', 'processing', 'invoiced');
CREATE UNIQUE INDEX recharges_request ON recharges (party_id, request_key) WHERE request_key IS NOT NULL;
CREATE INDEX recharges_party ON recharges (party_id, day);
CREATE INDEX recharges_open ON recharges (id) WHERE status IN ('pending', 'processing');
CREATE TABLE invoices (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer_id    BIGINT NOT NULL,
    number       BIGINT NOT NULL,
    party_id     BIGINT NOT NULL REFERENCES parties (id),
    kind         TEXT NOT NULL CHECK (kind IN ('top_up')),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'paid', 'void')),
    created_at   BIGINT NOT NULL,
    paid_at      BIGINT,
    recharge_id  BIGINT,
    transfer_id  BIGINT,
    UNIQUE (issuer_id, number)
);
-- At most one open top-up invoice per customer.
CREATE UNIQUE INDEX invoices_open_top_up ON invoices (party_id) WHERE kind = 'top_up' AND status = 'open';
CREATE INDEX invoices_party ON invoices (party_id, id);
-- The last number each issuer (0: the operator) gave.
CREATE TABLE invoice_numbers (
    issuer_id  BIGINT PRIMARY KEY,
    last       BIGINT NOT NULL
);
