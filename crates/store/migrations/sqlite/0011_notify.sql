-- EcoCityHub notifications (sqlite): topics, subscriptions, the outbox of messages with their
-- deliveries (leased by the delivery worker), citizens' alert rules with their episodes and
-- digests, and settings such as the VAPID key.

CREATE TABLE notify_topics (
    id         TEXT PRIMARY KEY,
    -- station_alerts, area_alerts, account_mail, operator_alarms, report_updates.
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE notify_subscriptions (
    id                    TEXT PRIMARY KEY,
    topic_id              TEXT NOT NULL REFERENCES notify_topics (id) ON DELETE CASCADE,
    owner                 TEXT REFERENCES users (id) ON DELETE CASCADE,
    -- email, webhook, webpush, live.
    protocol              TEXT NOT NULL,
    endpoint              TEXT NOT NULL,
    -- pending until confirmed (e-mail and webhooks), then confirmed.
    status                TEXT NOT NULL,
    confirm_token_hash    TEXT,
    confirm_expires_at    INTEGER,
    -- SNS-style filter policy on message attributes (JSON), none: every message.
    filter_policy         TEXT,
    -- Webhooks: the signing secret (whsec_…) and, for a day after a rotation, the one before.
    secret                TEXT,
    previous_secret       TEXT,
    previous_secret_until INTEGER,
    -- Web Push: the browser's p256dh and auth keys (JSON).
    endpoint_keys         TEXT,
    created_at            INTEGER NOT NULL,
    confirmed_at          INTEGER
);
CREATE INDEX notify_subscriptions_topic ON notify_subscriptions (topic_id, status);
CREATE INDEX notify_subscriptions_owner ON notify_subscriptions (owner);
CREATE INDEX notify_subscriptions_token ON notify_subscriptions (confirm_token_hash);

-- The outbox (0002) becomes the message table: every message, with a stable id that stays the
-- same across retries. Rows written before this migration keep their columns and get an id.
ALTER TABLE outbox ADD COLUMN message_id TEXT;
ALTER TABLE outbox ADD COLUMN topic_id TEXT;
ALTER TABLE outbox ADD COLUMN html TEXT;
ALTER TABLE outbox ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE outbox ADD COLUMN payload TEXT NOT NULL DEFAULT '{}';
UPDATE outbox SET message_id = 'legacy-' || id WHERE message_id IS NULL;
CREATE UNIQUE INDEX outbox_message_id ON outbox (message_id);

-- One row per message and destination. The worker claims due rows by setting a lease; an
-- expired lease (a killed worker) makes the row due again.
CREATE TABLE notify_deliveries (
    id              INTEGER PRIMARY KEY,
    outbox_id       INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    subscription_id TEXT REFERENCES notify_subscriptions (id) ON DELETE CASCADE,
    protocol        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    user_id         TEXT,
    -- (rule, episode, subscription) and the like: a second delivery with the same key is dropped.
    idempotency_key TEXT UNIQUE,
    -- pending, delivered, dead (a dead letter), discarded (its destination is gone).
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    lease_token     TEXT,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (status, next_attempt_ms);
CREATE INDEX notify_deliveries_live ON notify_deliveries (user_id, protocol, id);
CREATE INDEX notify_deliveries_outbox ON notify_deliveries (outbox_id);

CREATE TABLE notify_alert_rules (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The rule (JSON, owned by the notification crate) and the subscriptions it sends to.
    spec       TEXT NOT NULL,
    channels   TEXT NOT NULL DEFAULT '[]',
    paused     INTEGER NOT NULL DEFAULT 0,
    -- The evaluation state (JSON): hysteresis timers, the open episode, the last notice.
    state      TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX notify_alert_rules_user ON notify_alert_rules (user_id);

-- Episodes of rules and operator alarms: `key` is the rule id or the alarm's key.
CREATE TABLE notify_episodes (
    id        TEXT PRIMARY KEY,
    key       TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    detail    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX notify_episodes_key ON notify_episodes (key, closed_at);

-- Alerts of rules that send a daily digest instead, until the digest goes out.
CREATE TABLE notify_digest_items (
    id         INTEGER PRIMARY KEY,
    rule_id    TEXT NOT NULL REFERENCES notify_alert_rules (id) ON DELETE CASCADE,
    line       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
);
CREATE INDEX notify_digest_items_unsent ON notify_digest_items (sent_at, rule_id);

CREATE TABLE notify_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
