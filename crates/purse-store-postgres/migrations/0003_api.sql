-- What the HTTP API needs: listing a reseller's customers and a party's accounts, and the
-- responses of idempotent requests (written in the same transaction as their batch).
CREATE INDEX parties_reseller ON parties (reseller_id) WHERE reseller_id IS NOT NULL;
CREATE INDEX accounts_party ON accounts (party_id) WHERE party_id IS NOT NULL;
CREATE TABLE idempotent_responses (
    api_key_id    BIGINT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    body          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotent_responses_created ON idempotent_responses (created_at);
