-- Readings the anomaly checks found suspect, and why. The reading itself stays, flagged suspect.
CREATE TABLE anomalies (
    station_id  TEXT NOT NULL,
    parameter   TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    value       REAL NOT NULL,
    score       REAL NOT NULL,
    detail      TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (station_id, parameter, ts, kind)
);
CREATE INDEX anomalies_station_time ON anomalies (station_id, ts);
