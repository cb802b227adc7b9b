//! Authorization codes (RFC 6749 §4.1): issued after consent, single use, bound to client,
//! redirect URI, PKCE challenge (RFC 7636), scope, tenant and user.

use super::{scope, TokenResponse, TokenService};
use crate::clients::Client;
use crate::db::codes::CodeRow;
use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::secrets::{self, PlainSecret};
use crate::tenants::TenantId;
use crate::tokens::error::OAuthError;
use crate::users::User;

const CODE_PREFIX: &str = "kf_ac_";

impl TokenService {
    /// Issues a single-use authorization code (RFC 6749 §4.1.2: short-lived; 60 s by default), bound
    /// to the client, redirect URI, PKCE challenge, scope, tenant and user.
    pub async fn issue_code(
        &self,
        conn: &mut Conn,
        request: &crate::authorization::AuthorizationRequest,
        user: &User,
        tenant: &TenantId,
        now: i64,
    ) -> Result<PlainSecret, Error> {
        let code = PlainSecret::generate(CODE_PREFIX);
        db::codes::insert(
            conn,
            &CodeRow {
                digest: code.digest(),
                client_id: request.client.client_id.clone(),
                user_id: user.id.clone(),
                tenant_id: tenant.as_str().to_owned(),
                redirect_uri: request.redirect_uri.clone(),
                redirect_uri_given: request.redirect_uri_given,
                scope: scope::join(&request.scopes),
                code_challenge: request.code_challenge.clone(),
                created_at: now,
                expires_at: now + self.settings.authorization_code_ttl,
                used_at: None,
                family_id: None,
            },
        )
        .await?;
        Ok(code)
    }

    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6). A second use fails and revokes what the
    /// first one produced (RFC 6749 §4.1.2).
    pub(super) async fn code_grant(
        &self,
        conn: &mut Conn,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid = || {
            OAuthError::InvalidGrant(
                "the authorization code is invalid, expired or already used".into(),
            )
        };
        let digest = secrets::digest(code);
        let Some(row) = db::codes::find(conn, &digest).await? else {
            return Err(invalid());
        };
        if row.client_id != client.client_id {
            return Err(invalid());
        }
        if row.used_at.is_some() {
            return Err(self.code_reused(conn, &row, now).await);
        }
        if row.expires_at <= now {
            return Err(invalid());
        }
        let redirect_ok = match redirect_uri {
            Some(given) => given == row.redirect_uri,
            None => !row.redirect_uri_given,
        };
        if !redirect_ok {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri does not match the authorization request".into(),
            ));
        }
        match (&row.code_challenge, verifier) {
            (Some(challenge), Some(verifier))
                if crate::authorization::pkce_matches(verifier, challenge) => {}
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidGrant(
                    "the code_verifier does not match the code_challenge".into(),
                ))
            }
            (Some(_), None) => {
                return Err(OAuthError::InvalidGrant("code_verifier is missing".into()))
            }
            // A verifier for a code issued without a challenge is a downgrade attempt (RFC 9700 §2.1.1).
            (None, Some(_)) => {
                return Err(OAuthError::InvalidGrant(
                    "this code was issued without a code_challenge".into(),
                ))
            }
            (None, None) => {}
        }
        let user = db::users::find_by_id(conn, &row.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid)?;
        let tenant = TenantId::from_db(row.tenant_id.clone());
        if user.membership(&tenant).is_none() {
            return Err(OAuthError::InvalidGrant(format!(
                "the user is no longer a member of tenant {tenant}"
            )));
        }
        let (family, refresh) = self.new_grant(client, &user, row.scope.clone(), now);
        let consumed = write_transaction(conn, async |conn| {
            // The family first: the code row points at it.
            db::tokens::insert_family(conn, &family).await?;
            if !db::codes::consume(conn, &digest, &family.id, now).await? {
                return Err(Error::AlreadyUsed);
            }
            if let Some(refresh) = &refresh {
                db::tokens::insert_refresh(
                    conn,
                    &self.refresh_row(refresh, &family, &tenant, &family.scope, now),
                )
                .await?;
            }
            Ok(())
        })
        .await;
        match consumed {
            Ok(()) => {}
            Err(Error::AlreadyUsed) => {
                let row = db::codes::find(conn, &digest).await?.ok_or_else(invalid)?;
                return Err(self.code_reused(conn, &row, now).await);
            }
            Err(e) => return Err(e.into()),
        }
        self.respond(
            conn,
            client,
            &user,
            &family.id,
            tenant,
            scope::split(&row.scope),
            refresh,
            now,
        )
        .await
    }

    async fn code_reused(&self, conn: &mut Conn, row: &CodeRow, now: i64) -> OAuthError {
        if let Some(family) = &row.family_id {
            if let Err(error) = db::tokens::revoke_family(conn, family, now).await {
                return error.into();
            }
            tracing::warn!(family = %family, client_id = %row.client_id, "authorization code reuse: tokens revoked");
        }
        OAuthError::InvalidGrant(
            "the authorization code was already used; the tokens it produced are revoked".into(),
        )
    }
}
