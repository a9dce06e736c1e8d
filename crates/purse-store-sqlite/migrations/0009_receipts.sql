-- Receipt vouchers: one per payment received, numbered without gaps per issuer.
CREATE TABLE receipts (
    id          INTEGER PRIMARY KEY,
    issuer_id   INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    party_id    INTEGER NOT NULL REFERENCES parties (id),
    transfer_id INTEGER NOT NULL UNIQUE,
    amount      INTEGER NOT NULL,
    currency    TEXT NOT NULL,
    method      TEXT NOT NULL,
    paid_at     INTEGER NOT NULL,
    UNIQUE (issuer_id, number)
);
CREATE INDEX receipts_party ON receipts (party_id, id);
-- The last number each issuer (0: the operator) gave.
CREATE TABLE receipt_numbers (
    issuer_id  INTEGER PRIMARY KEY,
    last       INTEGER NOT NULL
);
