-- EcoCityHub core schema (SQLite). Times are UTC epoch seconds; values are in the parameter's
-- canonical unit (see ecocityhub_domain::parameter).

CREATE TABLE stations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    lat         REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    area        TEXT,
    timezone    TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);

-- One row per (station, parameter): the readings table refers to it by a small integer,
-- which keeps the hot table compact.
CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    station_id  TEXT NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    parameter   TEXT NOT NULL,
    first_ts    INTEGER,
    last_ts     INTEGER,
    -- Averaging period of each value in seconds (3600 hourly, 86400 daily means); NULL: unknown.
    period_s    INTEGER,
    UNIQUE (station_id, parameter)
);

CREATE TABLE readings (
    series_id   INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    value       REAL NOT NULL,
    flag        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

-- Device API keys: the public prefix finds the row, the secret is kept only as a SHA-256 hash.
CREATE TABLE device_keys (
    prefix       TEXT PRIMARY KEY,
    station_id   TEXT NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    secret_hash  TEXT NOT NULL,
    label        TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX device_keys_station ON device_keys (station_id);
