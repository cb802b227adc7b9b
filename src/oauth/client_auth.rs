//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic`, `client_secret_post` and `none` (public clients).

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::error::OAuthError;
use crate::clients::{self, Client, KnownClients};
use crate::db::Conn;
use crate::form::Form;

/// The credentials a request presented, before they are checked.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    secret: Option<String>,
}

/// Finds the client credentials; presenting them two ways at once is refused (RFC 6749 §2.3).
pub fn presented(req: &HttpRequest, form: &Form) -> Result<Option<Presented>, OAuthError> {
    let basic = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => Some(parse_basic(value.to_str().unwrap_or(""))?),
        None => None,
    };
    let in_body = form.get("client_id").is_some() || form.get("client_secret").is_some();
    match (basic, in_body) {
        (Some(_), true) => Err(OAuthError::InvalidRequest(
            "the client authenticated in more than one way (HTTP Basic and the request body)"
                .into(),
        )),
        (Some(basic), false) => Ok(Some(basic)),
        (None, true) => {
            let client_id = form.require("client_id")?.to_owned();
            Ok(Some(Presented {
                client_id,
                secret: form.get("client_secret").map(str::to_owned),
            }))
        }
        (None, false) => Ok(None),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 form-encodes both parts
/// before Basic encoding, so they are decoded after splitting.
fn parse_basic(value: &str) -> Result<Presented, OAuthError> {
    let invalid = || OAuthError::InvalidClient("malformed HTTP Basic credentials".into());
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient(format!(
            "unsupported authentication scheme {scheme}"
        )));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    let form_decode = |s: &str| -> Result<String, OAuthError> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid())
    };
    let client_id = form_decode(id)?;
    if client_id.is_empty() {
        return Err(invalid());
    }
    Ok(Presented {
        client_id,
        secret: Some(form_decode(secret)?),
    })
}

/// The client, if the credentials are right: a confidential client with its secret, a public
/// client with none.
pub async fn authenticate(
    conn: &mut Conn,
    known: &KnownClients,
    presented: Option<Presented>,
) -> Result<Client, OAuthError> {
    let presented = presented
        .ok_or_else(|| OAuthError::InvalidClient("client authentication is required".into()))?;
    clients::authenticate(
        conn,
        known,
        &presented.client_id,
        presented.secret.as_deref(),
    )
    .await?
    .ok_or_else(|| OAuthError::InvalidClient("client authentication failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20app:s%3Ac+ret"));
        let p = parse_basic(&header).expect("valid");
        assert_eq!(p.client_id, "my app");
        assert_eq!(p.secret.as_deref(), Some("s:c ret"));
        assert!(parse_basic("Bearer abc").is_err());
        assert!(parse_basic("Basic !!!").is_err());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))).is_err());
    }
}
