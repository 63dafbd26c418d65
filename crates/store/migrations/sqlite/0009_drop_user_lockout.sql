-- Sign-in failures and lock-outs moved to sign_in_failures (per address, account or not).
ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN locked_until;
