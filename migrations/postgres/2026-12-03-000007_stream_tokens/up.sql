-- Stream playback tokens (Flussonic's Auth.CreateApiToken). The token itself is a signed JWT
-- that media servers verify offline; the row is what revocation needs: which tenant issued the
-- id (so a tenant revokes only its own), until when it matters (the revocation list drops it
-- after), and which key signed it (that key stays published while the token lives).
CREATE TABLE stream_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    kid TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX stream_tokens_revoked ON stream_tokens (tenant_id, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX stream_tokens_by_key ON stream_tokens (kid, expires_at);
CREATE INDEX stream_tokens_expiry ON stream_tokens (expires_at);
