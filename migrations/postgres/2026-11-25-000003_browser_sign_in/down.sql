DROP TABLE authorization_codes;
DROP TABLE consents;
DROP TABLE sessions;
