-- The observe layer (CloudWatch and CloudTrail): metric rollups, alarms, the audit trail.

-- Per-period rollups of every metric series, one row per (series, resolution, period start,
-- writing process). Each process writes only its own rows, so two processes (or one restarted)
-- never overwrite each other; queries add the sources up.
CREATE TABLE metric_rollups (
    metric     TEXT NOT NULL,
    -- the series' labels as canonical JSON (sorted keys), '{}' for none
    labels     TEXT NOT NULL,
    resolution BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    source     TEXT NOT NULL,
    count      BIGINT NOT NULL,
    sum        REAL NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    -- the distribution of the samples (a log-bucket sketch), for percentiles
    sketch     TEXT NOT NULL,
    PRIMARY KEY (metric, resolution, ts, labels, source)
);
CREATE INDEX metric_rollups_age ON metric_rollups (resolution, ts);

-- Alarms: their definitions (JSON), current state and every change of state.
CREATE TABLE alarm_definitions (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    -- builtin | config | admin
    origin     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE alarm_states (
    name              TEXT PRIMARY KEY,
    -- OK | ALARM | INSUFFICIENT_DATA
    state             TEXT NOT NULL,
    reason            TEXT NOT NULL,
    reason_data       TEXT NOT NULL,
    updated_at        BIGINT NOT NULL,
    evaluated_through BIGINT
);
CREATE TABLE alarm_history (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    old_state   TEXT NOT NULL,
    new_state   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    reason_data TEXT NOT NULL,
    notified_at BIGINT
);
CREATE INDEX alarm_history_name ON alarm_history (name, id);
CREATE INDEX alarm_history_unnotified ON alarm_history (notified_at, id);

-- The audit trail: append-only records, each hashed over its content and the previous hash.
-- The head row is where appenders take turns (its row lock serialises them across processes);
-- verification never trusts it.
CREATE TABLE audit_head (
    id            BIGINT PRIMARY KEY,
    last_seq      BIGINT NOT NULL,
    last_hash     TEXT NOT NULL,
    digest_number BIGINT NOT NULL
);
INSERT INTO audit_head (id, last_seq, last_hash, digest_number)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_records (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    -- epoch milliseconds
    event_time   BIGINT NOT NULL,
    event_source TEXT NOT NULL,
    event_name   TEXT NOT NULL,
    user_type    TEXT NOT NULL,
    user_id      TEXT,
    error_code   TEXT,
    read_only    BIGINT NOT NULL,
    request_id   TEXT,
    -- the canonical JSON the hash covers
    record       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_records_user ON audit_records (user_id, seq);
CREATE INDEX audit_records_event ON audit_records (event_name, seq);
CREATE INDEX audit_records_time ON audit_records (event_time);

-- Signed digests (also written to the blob store, which is the copy verification trusts).
CREATE TABLE audit_digests (
    number     BIGINT PRIMARY KEY,
    blob_key   TEXT NOT NULL,
    body       TEXT NOT NULL,
    signature  TEXT NOT NULL,
    last_seq   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    written_at BIGINT
);

-- What retention expired: records up to through_seq, signed.
CREATE TABLE audit_checkpoint (
    id          BIGINT PRIMARY KEY,
    through_seq BIGINT NOT NULL,
    body        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Small values of the observe layer (the digest signing key when no file is given).
CREATE TABLE observe_values (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
