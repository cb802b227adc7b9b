//! Scopes as RFC 6749 §3.3 defines them: space-delimited, order irrelevant.

use crate::clients::validate_scope_token;
use crate::tokens::error::OAuthError;

/// Parses a requested `scope`; omitted means everything `allowed`. Anything outside `allowed`
/// is `invalid_scope`.
pub fn resolve(requested: Option<&str>, allowed: &[String]) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        validate_scope_token(scope).map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
        if !allowed.iter().any(|a| a == scope) {
            return Err(OAuthError::InvalidScope(format!(
                "the scope {scope} is not allowed here"
            )));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(scopes)
}

pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub fn split(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["video:read".into(), "video:write".into()]
    }

    #[test]
    fn omitted_means_everything_allowed() {
        assert_eq!(resolve(None, &allowed()).ok(), Some(allowed()));
    }

    #[test]
    fn narrower_is_fine_wider_is_invalid_scope() {
        assert_eq!(
            resolve(Some("video:read video:read"), &allowed()).ok(),
            Some(vec!["video:read".to_owned()])
        );
        assert!(matches!(
            resolve(Some("video:read admin"), &allowed()),
            Err(OAuthError::InvalidScope(_))
        ));
        assert!(matches!(
            resolve(Some("bad\"scope"), &allowed()),
            Err(OAuthError::InvalidScope(_))
        ));
    }
}
