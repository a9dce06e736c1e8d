-- Receipt vouchers: one per payment received, numbered without gaps per issuer.
CREATE TABLE receipts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer_id   BIGINT NOT NULL,
    number      BIGINT NOT NULL,
    party_id    BIGINT NOT NULL REFERENCES parties (id),
    transfer_id BIGINT NOT NULL UNIQUE,
    amount      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    method      TEXT NOT NULL,
    paid_at     BIGINT NOT NULL,
    UNIQUE (issuer_id, number)
);
CREATE INDEX receipts_party ON receipts (party_id, id);
-- The last number each issuer (0: the operator) gave.
CREATE TABLE receipt_numbers (
    issuer_id  BIGINT PRIMARY KEY,
    last       BIGINT NOT NULL
);
