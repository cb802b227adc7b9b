-- Browser sessions, by the SHA-256 digest of the cookie value, so any instance serves them.
CREATE TABLE sessions (
    digest TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Consent given, per user, client, tenant and (sorted, space-separated) scope set.
CREATE TABLE consents (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, tenant_id, scope)
);

-- Authorization codes, by digest; single use through one conditional UPDATE of used_at.
-- family_id records the grant the first use produced, so a second use can revoke it.
CREATE TABLE authorization_codes (
    digest TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_given BOOLEAN NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    family_id TEXT
);
CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);
