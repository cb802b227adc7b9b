//! The resource owner password grant (RFC 6749 §4.3; for legacy integrations, RFC 9700 §2.4),
//! with the sign-in lockout of `users::sign_in`.

use super::{choose_tenant, parse_tenant, scope, TokenResponse, TokenService};
use crate::clients::Client;
use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::tokens::error::OAuthError;
use crate::users;

impl TokenService {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn password_grant(
        &self,
        conn: &mut Conn,
        client: &Client,
        username: &str,
        password: &str,
        source: &str,
        scope: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let scopes = scope::resolve(scope, &client.scopes)?;
        let requested_tenant = tenant.map(parse_tenant).transpose()?;
        let user = users::sign_in(conn, &self.settings, username, password, source, now).await?;
        let tenant = choose_tenant(&user, requested_tenant)?;

        let (family, refresh) = self.new_grant(client, &user, scope::join(&scopes), now);
        write_transaction(conn, async |conn| {
            db::tokens::insert_family(conn, &family).await?;
            if let Some(refresh) = &refresh {
                db::tokens::insert_refresh(
                    conn,
                    &self.refresh_row(refresh, &family, &tenant, &family.scope, now),
                )
                .await?;
            }
            Ok::<_, Error>(())
        })
        .await?;
        self.respond(
            conn, client, &user, &family.id, tenant, scopes, refresh, now,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::config::TokenSettings;
    use crate::tokens::error::OAuthError;

    #[test]
    fn lockout_holds_for_the_window_and_a_success_clears_it() {
        let f = fixture(TokenSettings {
            lockout_threshold: 3,
            lockout_window: 100,
            ..TokenSettings::default()
        });
        for _ in 0..2 {
            assert!(f.password("wrong", T0).is_err());
        }
        f.password("pw", T0)
            .expect("two failures do not lock; the success clears them");
        for _ in 0..3 {
            assert!(
                matches!(f.password("wrong", T0), Err(OAuthError::InvalidGrant(d)) if d.contains("invalid username"))
            );
        }
        assert!(matches!(
            f.password("pw", T0 + 99),
            Err(OAuthError::Locked { retry_after: 1 })
        ));
        f.password("pw", T0 + 100).expect("the window has passed");
    }

    #[test]
    fn one_source_locks_only_itself_until_the_user_ceiling() {
        let f = fixture(TokenSettings {
            lockout_threshold: 3,
            lockout_user_ceiling: 7,
            lockout_window: 100,
            ..TokenSettings::default()
        });
        for i in 0..3 {
            assert!(f.password_from("198.51.100.1", "wrong", T0 + i).is_err());
        }
        assert!(matches!(
            f.password_from("198.51.100.1", "pw", T0 + 10),
            Err(OAuthError::Locked { retry_after: 90 })
        ));
        f.password_from("192.0.2.1", "pw", T0 + 10)
            .expect("another source is not locked");
        // Four more failures from two other sources reach the ceiling of seven.
        for source in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"] {
            assert!(matches!(
                f.password_from(source, "wrong", T0 + 20),
                Err(OAuthError::InvalidGrant(_))
            ));
        }
        assert!(
            matches!(
                f.password_from("192.0.2.1", "pw", T0 + 30),
                Err(OAuthError::Locked { retry_after: 70 })
            ),
            "the ceiling locks every source; it lifts when the oldest failure leaves the window"
        );
        f.password_from("192.0.2.1", "pw", T0 + 100)
            .expect("the first failure left the window: six are under the ceiling");
        f.password_from("198.51.100.1", "pw", T0 + 100)
            .expect("the first source's own lock lifted at the same moment");
    }
}
