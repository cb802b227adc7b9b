DROP TABLE login_failures;
DROP TABLE revoked_access_tokens;
DROP TABLE refresh_tokens;
DROP TABLE token_families;
DROP TABLE signing_keys;
