-- Authorization codes of the OIDC authorization-code flow with PKCE (postgres): single use, a minute
-- long, kept as a hash.
CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at     BIGINT NOT NULL
);
