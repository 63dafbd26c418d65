-- Federation with outside OpenID Connect providers (sqlite).

-- A sign-in sent to a provider and not back yet: found by the hash of its `state`, used once,
-- ten minutes long. It keeps this sign-in's nonce and PKCE verifier for the provider, and the
-- request of our own client to answer when the user comes back.
CREATE TABLE federated_logins (
    state_hash     TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    code_verifier  TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    client_state   TEXT,
    client_nonce   TEXT,
    code_challenge TEXT NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX federated_logins_expiry ON federated_logins (expires_at);

-- A user's identity at a provider: the provider's name and its `sub` for the user.
CREATE TABLE federated_identities (
    provider  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The verified address the provider gave when the link was made.
    email     TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);
