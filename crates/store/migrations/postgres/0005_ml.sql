-- The ML layer: model registry, promotion history, training jobs. Artifacts live in blobs.

CREATE TABLE ml_models (
    id               BIGSERIAL PRIMARY KEY,
    station_id       TEXT NOT NULL,
    parameter        TEXT NOT NULL,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    artifact_key     TEXT NOT NULL,
    checksum         TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    training_from    BIGINT NOT NULL,
    training_to      BIGINT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    code_version     TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    job_id           BIGINT,
    -- candidate | serving | retired
    status           TEXT NOT NULL DEFAULT 'candidate',
    promoted_at      BIGINT,
    UNIQUE (station_id, parameter, version)
);
CREATE INDEX ml_models_serving ON ml_models (status);

-- Every promotion; a rollback marks the latest one reverted and serves the one before.
CREATE TABLE ml_promotions (
    id          BIGSERIAL PRIMARY KEY,
    station_id  TEXT NOT NULL,
    parameter   TEXT NOT NULL,
    model_id    BIGINT NOT NULL REFERENCES ml_models (id) ON DELETE CASCADE,
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    reverted_at BIGINT
);
CREATE INDEX ml_promotions_series ON ml_promotions (station_id, parameter, id);

CREATE TABLE ml_jobs (
    id               BIGSERIAL PRIMARY KEY,
    -- queued | running | succeeded | failed | cancelled
    status           TEXT NOT NULL,
    request          TEXT NOT NULL,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    message          TEXT,
    log              TEXT NOT NULL DEFAULT '',
    created_by       TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ml_jobs_status ON ml_jobs (status, id);
