-- EcoCityHub citizen reports (sqlite): reports with their photos, each report's history
-- (changes, public updates, internal notes) and its followers. Times are epoch milliseconds.

CREATE TABLE reports (
    id           TEXT PRIMARY KEY,
    reporter     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    category     TEXT NOT NULL,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    station_id   TEXT,
    -- submitted, confirmed, investigating, action_scheduled, fixed, closed, not_responsible,
    -- duplicate (interpreted by the reports crate).
    state        TEXT NOT NULL,
    duplicate_of TEXT,
    assignee     TEXT,
    hidden       INTEGER NOT NULL DEFAULT 0,
    -- 1 when created, one more on every update (optimistic concurrency).
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX reports_state ON reports (state, created_at);
CREATE INDEX reports_place ON reports (lat, lon);
CREATE INDEX reports_reporter ON reports (reporter, created_at);

CREATE TABLE report_photos (
    report_id     TEXT NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    key           TEXT NOT NULL,
    thumbnail_key TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    hidden        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (report_id, position)
);

-- Every change, public update and internal note (public = 0), in id order.
CREATE TABLE report_events (
    id         INTEGER PRIMARY KEY,
    report_id  TEXT NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    author     TEXT,
    kind       TEXT NOT NULL,
    public     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    -- {"field": [old, new]} (JSON)
    changes    TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE INDEX report_events_report ON report_events (report_id, id);

CREATE TABLE report_followers (
    report_id  TEXT NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (report_id, user_id)
);
