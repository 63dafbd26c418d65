-- The OAuth scopes granted to a client travel with its authorization code, its refresh-token
-- family and a pending federated sign-in, so a refresh never widens them. Rows from before
-- scopes existed keep what they could do then: everything.
ALTER TABLE oauth_codes ADD COLUMN scope TEXT NOT NULL DEFAULT 'openid email profile ecocityhub/api ecocityhub/admin';
ALTER TABLE refresh_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'openid email profile ecocityhub/api ecocityhub/admin';
ALTER TABLE federated_logins ADD COLUMN client_scope TEXT NOT NULL DEFAULT 'openid email profile ecocityhub/api ecocityhub/admin';
