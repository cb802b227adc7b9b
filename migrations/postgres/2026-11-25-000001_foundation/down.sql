DROP TABLE clients;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE tenants;
