ALTER TABLE tenants DROP COLUMN url_secret_set_at;
ALTER TABLE tenants DROP COLUMN url_secret;
