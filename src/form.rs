//! The `application/x-www-form-urlencoded` bodies of the OAuth endpoints, read strictly:
//! the right content type, a bounded size, valid UTF-8, and no parameter twice (RFC 6749 §3.2).

use crate::tokens::error::OAuthError;

#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::InvalidRequest(format!(
                    "the parameter {name} is repeated"
                )));
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// A parameter's value; an empty value counts as omitted (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("the parameter {name} is missing")))
    }
}

fn decode(raw: &[u8]) -> Result<String, OAuthError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes)
        .map_err(|_| OAuthError::InvalidRequest("the request body is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent_and_treats_empty_as_omitted() {
        let form = Form::parse(b"a=x+y%2Bz&b=&c=%C3%A9").expect("valid");
        assert_eq!(form.get("a"), Some("x y+z"));
        assert_eq!(form.get("b"), None);
        assert_eq!(form.get("c"), Some("é"));
        assert!(matches!(
            form.require("b"),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn refuses_repeats_and_invalid_utf8() {
        assert!(
            matches!(Form::parse(b"scope=a&scope=b"), Err(OAuthError::InvalidRequest(d)) if d.contains("repeated"))
        );
        assert!(
            matches!(Form::parse(b"a=%FF"), Err(OAuthError::InvalidRequest(d)) if d.contains("UTF-8"))
        );
        assert!(matches!(
            Form::parse(b"a=\xff"),
            Err(OAuthError::InvalidRequest(_))
        ));
    }
}
