//! OAuth 2.0 errors (RFC 6749 §5.2, RFC 7009, RFC 7662, RFC 8693): the variants are the
//! protocol's codes. The domain returns them; `oauth::error` writes them as HTTP answers.

use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed (401 with `WWW-Authenticate`).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// Too many failed sign-ins for this username: `invalid_grant` on the OAuth surface.
    #[error("invalid_grant: the account is temporarily locked")]
    Locked { retry_after: i64 },
    /// The user may not use the tenant asked for: `invalid_request` on the OAuth surface.
    #[error("invalid_request: {0}")]
    ForeignTenant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// RFC 8693 §2.2.2: an `audience` or `resource` the server cannot issue a token for.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// RFC 7009 §2.2.1: a token of a kind this endpoint does not revoke.
    #[error("unsupported_token_type: {0}")]
    UnsupportedTokenType(String),
    /// The body is over the configured limit.
    #[error("invalid_request: {0}")]
    TooLarge(String),
    /// The database cannot be reached: 503, so clients retry.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
    /// Anything else: logged with its context, answered as `server_error` without details.
    #[error("server_error: {0}")]
    Server(Error),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_)
            | OAuthError::TooLarge(_)
            | OAuthError::ForeignTenant(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) | OAuthError::Locked { .. } => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::UnsupportedTokenType(_) => "unsupported_token_type",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
            OAuthError::Server(_) => "server_error",
        }
    }

    /// The `error_description`, in the characters RFC 6749 §5.2 allows (printable ASCII
    /// without `"` and `\`): descriptions quote client input, which may hold anything.
    pub fn description(&self) -> String {
        self.text()
            .chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                ' '..='~' => c,
                _ => '?',
            })
            .collect()
    }

    fn text(&self) -> String {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d)
            | OAuthError::UnsupportedTokenType(d)
            | OAuthError::TooLarge(d)
            | OAuthError::ForeignTenant(d)
            | OAuthError::Unavailable(d) => d.clone(),
            OAuthError::Locked { .. } => {
                "the account is temporarily locked after too many failed sign-ins; try again later"
                    .into()
            }
            OAuthError::Server(_) => "the server could not handle the request".into(),
        }
    }
}

impl From<Error> for OAuthError {
    fn from(error: Error) -> Self {
        match error {
            Error::Unavailable(_) => {
                OAuthError::Unavailable("the service is temporarily unavailable".into())
            }
            other => OAuthError::Server(other),
        }
    }
}

impl From<diesel::result::Error> for OAuthError {
    fn from(error: diesel::result::Error) -> Self {
        OAuthError::Server(error.into())
    }
}

impl From<crate::users::SignInError> for OAuthError {
    fn from(error: crate::users::SignInError) -> Self {
        match error {
            crate::users::SignInError::Invalid => {
                OAuthError::InvalidGrant("invalid username or password".into())
            }
            crate::users::SignInError::Locked { retry_after } => OAuthError::Locked { retry_after },
            crate::users::SignInError::Failed(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_characters_rfc_6749_allows() {
        let error =
            OAuthError::UnsupportedGrantType("the grant type \"a\\b\u{e9}\n\" is unknown".into());
        let description = error.description();
        assert_eq!(description, "the grant type 'a/b??' is unknown");
        assert!(description
            .chars()
            .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')));
    }
}
