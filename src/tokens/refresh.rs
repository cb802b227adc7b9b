//! The refresh grant (RFC 6749 §6): rotation on every use, reuse detection that revokes the
//! family (RFC 9700 §4.14.2), tenant switching; and refresh tokens' introspection and
//! revocation.

use serde_json::{json, Value};

use super::{
    choose_tenant, parse_tenant, scope, TokenResponse, TokenService, REFRESH_TOKEN_PREFIX,
};
use crate::clients::Client;
use crate::db::tokens::Family;
use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets::{self, PlainSecret};
use crate::tenants::TenantId;
use crate::tokens::error::OAuthError;

fn invalid_refresh() -> OAuthError {
    OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into())
}

impl TokenService {
    pub(super) async fn refresh_grant(
        &self,
        conn: &mut Conn,
        client: &Client,
        presented: &str,
        scope: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !presented.starts_with(REFRESH_TOKEN_PREFIX) {
            return Err(invalid_refresh());
        }
        let digest = secrets::digest(presented);
        let Some((token, family, user)) = db::tokens::find_refresh_with_user(conn, &digest).await?
        else {
            return Err(invalid_refresh());
        };
        // RFC 6749 §6: bound to its client. Another client learns nothing and changes nothing.
        if family.client_id != client.client_id {
            return Err(invalid_refresh());
        }
        if family.revoked_at.is_some() {
            return Err(invalid_refresh());
        }
        if let Some(used_at) = token.used_at {
            return Err(self.reused(conn, &family, used_at, now).await);
        }
        if family.expires_at <= now || token.idle_expires_at <= now {
            return Err(invalid_refresh());
        }
        if user.disabled {
            return Err(invalid_refresh());
        }
        let current = TenantId::from_db(token.tenant_id.clone());
        if user.membership(&current).is_none() {
            return Err(OAuthError::InvalidGrant(format!(
                "the user is no longer a member of tenant {current}"
            )));
        }
        // RFC 6749 §6: never more than the grant originally had; omitted means all of it.
        let scopes = scope::resolve(scope, &scope::split(&family.scope))?;
        let tenant = match tenant {
            Some(requested) => choose_tenant(&user, Some(parse_tenant(requested)?))?,
            None => current,
        };

        // Everything above only read: a refused refresh leaves the token usable.
        let next = PlainSecret::generate(REFRESH_TOKEN_PREFIX);
        let next_row = self.refresh_row(&next, &family, &tenant, &scope::join(&scopes), now);
        let consumed = db::tokens::rotate_refresh(conn, &digest, now, &next_row).await?;
        if !consumed {
            // Someone consumed it between our read and our write: a concurrent reuse.
            let used_at = db::tokens::used_at(conn, &digest).await?.unwrap_or(now);
            return Err(self.reused(conn, &family, used_at, now).await);
        }
        self.respond(
            conn,
            client,
            &user,
            &family.id,
            tenant,
            scopes,
            Some(next),
            now,
        )
        .await
    }

    /// A rotated refresh token came back. Within the grace period (opt-in, for clients that
    /// race by design) it is only refused; otherwise it is treated as stolen and the whole
    /// family is revoked (RFC 9700 §4.14.2).
    async fn reused(&self, conn: &mut Conn, family: &Family, used_at: i64, now: i64) -> OAuthError {
        let grace = self.settings.refresh_reuse_grace;
        if grace > 0 && now - used_at <= grace {
            return OAuthError::InvalidGrant(
                "the refresh token was just rotated: use the new one".into(),
            );
        }
        if let Err(error) = db::tokens::revoke_family(conn, &family.id, now).await {
            return error.into();
        }
        tracing::warn!(family = %family.id, client_id = %family.client_id, "refresh token reuse: family revoked");
        OAuthError::InvalidGrant(
            "the refresh token was already used; every token of this grant is now revoked".into(),
        )
    }

    /// Active only for its own client, while its family, its user and the membership hold.
    pub(super) async fn introspect_refresh(
        &self,
        conn: &mut Conn,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<Option<Value>, Error> {
        let Some((row, family, user)) =
            db::tokens::find_refresh_with_user(conn, &secrets::digest(token)).await?
        else {
            return Ok(None);
        };
        let live = family.client_id == client.client_id
            && family.revoked_at.is_none()
            && row.used_at.is_none()
            && family.expires_at > now
            && row.idle_expires_at > now
            && !user.disabled
            && user
                .membership(&TenantId::from_db(row.tenant_id.clone()))
                .is_some();
        if !live {
            return Ok(None);
        }
        Ok(Some(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": family.client_id,
            "sub": user.id,
            "username": user.username,
            "tenant": row.tenant_id,
            "exp": row.idle_expires_at.min(family.expires_at),
            "iat": row.created_at,
            "iss": self.issuer,
            "aud": self.audience,
        })))
    }

    /// Ends the whole family, when the token is the calling client's.
    pub(super) async fn revoke_refresh(
        &self,
        conn: &mut Conn,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<(), Error> {
        if let Some((_, family)) = db::tokens::find_refresh(conn, &secrets::digest(token)).await? {
            if family.client_id == client.client_id {
                db::tokens::revoke_family(conn, &family.id, now).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::config::TokenSettings;
    use crate::tokens::error::OAuthError;

    #[test]
    fn refresh_tokens_die_when_idle_and_at_the_absolute_limit() {
        let settings = TokenSettings {
            refresh_token_ttl: 1000,
            refresh_token_idle_ttl: 300,
            ..TokenSettings::default()
        };
        let f = fixture(settings);
        let idle = refresh_token(&f.password("pw", T0).expect("grant"));
        assert!(
            matches!(f.refresh(&idle, T0 + 300), Err(OAuthError::InvalidGrant(_))),
            "idle for 300 s"
        );

        // Used every 250 s it lives until the absolute limit, whatever the idle rule says.
        let mut token = refresh_token(&f.password("pw", T0).expect("grant"));
        for step in 1..4 {
            token = refresh_token(
                &f.refresh(&token, T0 + 250 * step)
                    .expect("within both limits"),
            );
        }
        assert!(
            matches!(
                f.refresh(&token, T0 + 1000),
                Err(OAuthError::InvalidGrant(_))
            ),
            "absolute limit"
        );
    }

    #[test]
    fn reuse_within_the_grace_period_is_refused_without_revoking() {
        let f = fixture(TokenSettings {
            refresh_reuse_grace: 10,
            ..TokenSettings::default()
        });
        let first = refresh_token(&f.password("pw", T0).expect("grant"));
        let second = f.refresh(&first, T0 + 1).expect("rotate");
        assert!(
            matches!(f.refresh(&first, T0 + 11), Err(OAuthError::InvalidGrant(d)) if d.contains("just rotated"))
        );
        assert!(
            f.active(&second.access_token, T0 + 11),
            "the family survives a reuse within the grace"
        );
        // After the grace, the same reuse revokes the family.
        assert!(
            matches!(f.refresh(&first, T0 + 12), Err(OAuthError::InvalidGrant(d)) if d.contains("revoked"))
        );
        assert!(!f.active(&second.access_token, T0 + 12));
        assert!(f.refresh(&refresh_token(&second), T0 + 12).is_err());
    }
}
