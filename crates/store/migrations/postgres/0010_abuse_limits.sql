-- Limits against guessing and floods (see the README's security section).
--
-- Failed sign-ins are now counted per (address, client address): a guesser locks out only its
-- own client, never the real user elsewhere. `client` is the client's IP address as text, or
-- '' when it is unknown (under Lambda). The lock state of the old per-address table is dropped.
DROP TABLE sign_in_failures;
CREATE TABLE sign_in_failures (
    email        TEXT NOT NULL,
    client       TEXT NOT NULL,
    failures     BIGINT NOT NULL,
    locked_until BIGINT,
    PRIMARY KEY (email, client)
);

-- Client addresses that signed in to an address successfully, so a flood of failures from
-- elsewhere cannot lock the address's owner out of the clients they use.
CREATE TABLE known_sign_in_clients (
    email        TEXT NOT NULL,
    client       TEXT NOT NULL,
    last_success BIGINT NOT NULL,
    PRIMARY KEY (email, client)
);

-- Counters of attempts in fixed windows, keyed by what is limited and for whom
-- (`code-guess:ADDRESS`, `code-send:ADDRESS`, `sign-in-address:ADDRESS`…).
CREATE TABLE attempt_counters (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL
);
CREATE INDEX attempt_counters_window ON attempt_counters (window_start);
