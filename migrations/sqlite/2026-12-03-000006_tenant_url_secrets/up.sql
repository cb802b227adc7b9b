-- Each tenant's key for OvenMediaEngine's SignedPolicy URLs. Keyframe must read it back to
-- sign, so it is stored reversibly: `v1:` + AES-256-GCM under KEYFRAME_SECRET_KEY, or `plain:`
-- when no key is configured. NULL: the tenant has none yet.
ALTER TABLE tenants ADD COLUMN url_secret TEXT;
ALTER TABLE tenants ADD COLUMN url_secret_set_at BIGINT;
