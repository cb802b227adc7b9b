-- ES256 signing keys, shared by every instance. The newest unretired key signs; retired keys
-- stay in the JWKS until the tokens they signed have expired.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    algorithm TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- One family per grant (sign-in): every refresh token and access token it produces belongs to
-- it, and revoking it ends them all (reuse detection, RFC 9700 §4.14.2).
CREATE TABLE token_families (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX token_families_by_expiry ON token_families (expires_at);

-- Refresh tokens, by the SHA-256 digest of the token. used_at is set once, by the one
-- conditional UPDATE that rotates the token.
CREATE TABLE refresh_tokens (
    digest TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

-- Access tokens revoked one by one (RFC 7009), kept until they would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Failed sign-ins per (lower-case) username, for the lockout window.
CREATE TABLE login_failures (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_by_username ON login_failures (username, failed_at);
