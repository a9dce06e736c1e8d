-- Low-balance notifications: profiles and their rules, parties' alert settings, the counters
-- of each rule, the outbox cursor, the notification log and its deliveries, webhook
-- endpoints, and the scheduler's job runs. The outbox learns refills (their amount).
ALTER TABLE outbox ADD COLUMN amount BIGINT;
CREATE TABLE profiles (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL,
    reseller_id   BIGINT REFERENCES parties (id),
    currency      TEXT NOT NULL REFERENCES currencies (code),
    sort_order    BIGINT NOT NULL,
    max_quantity  BIGINT NOT NULL CHECK (max_quantity >= 0),
    period_s      BIGINT NOT NULL CHECK (period_s >= 0),
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE profile_rules (
    profile_id    BIGINT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'client', 'inactivity')),
    threshold     BIGINT NOT NULL,
    notify        BOOLEAN NOT NULL,
    users         TEXT NOT NULL,
    emails        TEXT NOT NULL,
    inactivity_s  BIGINT NOT NULL,
    PRIMARY KEY (profile_id, kind)
);
CREATE TABLE alert_settings (
    party_id      BIGINT PRIMARY KEY REFERENCES parties (id),
    profile_id    BIGINT,
    email         TEXT,
    alert_emails  TEXT NOT NULL,
    warning       TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE alert_counters (
    party_id  BIGINT NOT NULL,
    rule      TEXT NOT NULL,
    count     BIGINT NOT NULL,
    last_at   BIGINT,
    PRIMARY KEY (party_id, rule)
);
CREATE TABLE alert_cursor (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO alert_cursor (name, value) SELECT 'outbox', COALESCE(MAX(id), 0) FROM outbox;
CREATE TABLE notifications (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    party_id   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    threshold  BIGINT NOT NULL,
    available  BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX notifications_party ON notifications (party_id, id);
CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  BIGINT NOT NULL REFERENCES notifications (id),
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target           TEXT NOT NULL,
    endpoint_id      BIGINT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL,
    next_at          BIGINT NOT NULL,
    lease_until      BIGINT NOT NULL,
    last_error       TEXT,
    sent_at          BIGINT
);
CREATE INDEX deliveries_notification ON deliveries (notification_id);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE TABLE webhook_endpoints (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id         BIGINT REFERENCES parties (id),
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    disabled_reason  TEXT,
    failures         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE TABLE job_runs (
    job          TEXT NOT NULL,
    key          TEXT NOT NULL,
    claimed_by   TEXT NOT NULL,
    lease_until  BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    summary      TEXT NOT NULL,
    PRIMARY KEY (job, key)
);
