// One schema for both backends: only types SQLite and PostgreSQL share (Text, BigInt, Bool).

diesel::table! {
    tenants (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
        url_secret -> Nullable<Text>,
        url_secret_set_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        disabled -> Bool,
        default_tenant_id -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    memberships (user_id, tenant_id) {
        user_id -> Text,
        tenant_id -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        public -> Bool,
        secret_hash -> Nullable<Text>,
        redirect_uris -> Text,
        grant_types -> Text,
        scopes -> Text,
        pkce_required -> Bool,
        created_at -> BigInt,
    }
}

diesel::joinable!(memberships -> tenants (tenant_id));
diesel::joinable!(memberships -> users (user_id));

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        private_key -> Text,
        public_jwk -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    token_families (id) {
        id -> Text,
        client_id -> Text,
        user_id -> Text,
        scope -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_tokens (digest) {
        digest -> Text,
        family_id -> Text,
        tenant_id -> Text,
        scope -> Text,
        created_at -> BigInt,
        idle_expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    revoked_access_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Text,
        username -> Text,
        failed_at -> BigInt,
        source -> Text,
    }
}

diesel::table! {
    sessions (digest) {
        digest -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    consents (user_id, client_id, tenant_id, scope) {
        user_id -> Text,
        client_id -> Text,
        tenant_id -> Text,
        scope -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    authorization_codes (digest) {
        digest -> Text,
        client_id -> Text,
        user_id -> Text,
        tenant_id -> Text,
        redirect_uri -> Text,
        redirect_uri_given -> Bool,
        scope -> Text,
        code_challenge -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        family_id -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        tenant_id -> Text,
        kind -> Text,
        user_id -> Nullable<Text>,
        created_by -> Text,
        name -> Text,
        roles -> Text,
        digest -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    stream_tokens (jti) {
        jti -> Text,
        tenant_id -> Text,
        stream -> Text,
        kid -> Text,
        issued_by -> Text,
        issued_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(refresh_tokens -> token_families (family_id));
diesel::joinable!(token_families -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    memberships,
    clients,
    signing_keys,
    token_families,
    refresh_tokens,
    revoked_access_tokens,
    login_failures,
    sessions,
    consents,
    authorization_codes,
    api_tokens,
    stream_tokens
);
