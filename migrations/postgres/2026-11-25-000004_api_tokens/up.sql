-- Long-lived API tokens. A personal token belongs to a user within a tenant and acts with the
-- user's current role there; a system token belongs to the tenant and carries its own roles.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'system')),
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    CHECK ((kind = 'personal' AND user_id IS NOT NULL) OR (kind = 'system' AND user_id IS NULL))
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, kind);
