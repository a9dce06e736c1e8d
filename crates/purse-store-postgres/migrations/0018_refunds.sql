-- Refunds of payments (issue 24): what of each receipt was given back.
ALTER TABLE receipts ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0;

-- One row per refund asked for. A pending refund counts against what is left to refund, so
-- refunds never add up to more than the payment; a card refund is pending while Stripe is
-- asked (leased, so a crash is finished by the next process); succeeded ones get a number
-- without gaps per issuer (RF-{issuer}-000001) and the ledger's posting.
CREATE TABLE refunds (
    id            BIGSERIAL PRIMARY KEY,
    issuer_id     BIGINT NOT NULL,
    number        BIGINT,
    party_id      BIGINT NOT NULL,
    receipt_id    BIGINT NOT NULL REFERENCES receipts (id),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL,
    method        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    stripe_refund TEXT,
    transfer_id   BIGINT,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    failure       TEXT,
    request_key   TEXT,
    lease_until   BIGINT NOT NULL DEFAULT 0,
    UNIQUE (issuer_id, number)
);
CREATE INDEX refunds_receipt ON refunds (receipt_id);
-- A request repeated with its Idempotency-Key finds the refund it made.
CREATE UNIQUE INDEX refunds_request ON refunds (party_id, request_key) WHERE request_key IS NOT NULL;
CREATE INDEX refunds_party ON refunds (party_id, id);
CREATE INDEX refunds_pending ON refunds (lease_until) WHERE status = 'pending';
CREATE TABLE refund_numbers (
    issuer_id BIGINT PRIMARY KEY,
    last      BIGINT NOT NULL
);
