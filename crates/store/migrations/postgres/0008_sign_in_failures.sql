-- Failed sign-ins and lock-outs, kept per e-mail address whether or not an account has it, so
-- that neither the lock-out nor the time a failure takes tells anyone which addresses exist.
CREATE TABLE sign_in_failures (
    email        TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    locked_until BIGINT
);
