//! OvenMediaEngine's SignedPolicy: URLs that carry their own access policy and an HMAC-SHA1
//! signature over it, so that a streaming server holding the same key can admit a player without
//! asking us.
//!
//! A signed URL looks like
//! `ws://host:3333/app/stream?policy=<Base64URL(JSON)>&signature=<Base64URL(HMAC-SHA1)>`, where
//! the HMAC covers every byte before `&signature=`. Because the MAC is over the exact string, the
//! URL is parsed here only to validate it and read parameters; it is never re-serialised.

use std::net::{IpAddr, Ipv4Addr};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::Ipv4Net;
use serde::Deserialize;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use url::Url;

use crate::params::{invalid, ParamError, Params};

/// Encodes without padding, as OvenMediaEngine's signers do; decoding tolerates padding so that
/// policies from other signers still parse (the signature, not the encoding, is what we trust).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const POLICY_PARAM: &str = "policy";
const SIGNATURE_PARAM: &str = "signature";

/// The conditions a signed URL grants access under. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The URL is refused from this instant on.
    pub url_expire: i64,
    /// The URL is refused before this instant.
    pub url_activate: Option<i64>,
    /// The stream may not be played from this instant on.
    pub stream_expire: Option<i64>,
    /// Only clients inside this range are admitted; a single address is a /32.
    pub allow_ip: Option<Ipv4Net>,
}

impl Policy {
    /// Compact JSON with only the fields that are set, in OvenMediaEngine's documented order:
    /// signers elsewhere produce exactly this, so the same policy gives the same signed URL.
    fn to_json(&self) -> String {
        let mut json = format!("{{\"url_expire\":{}", self.url_expire);
        if let Some(at) = self.url_activate {
            json.push_str(&format!(",\"url_activate\":{at}"));
        }
        if let Some(at) = self.stream_expire {
            json.push_str(&format!(",\"stream_expire\":{at}"));
        }
        // An Ipv4Net displays as digits, dots and a slash: nothing JSON would need to escape.
        if let Some(net) = self.allow_ip {
            json.push_str(&format!(",\"allow_ip\":\"{net}\""));
        }
        json.push('}');
        json
    }
}

/// The policy as it travels. Unknown fields are refused: a restriction we cannot enforce (such
/// as OvenMediaEngine's `real_ip`) must not silently become no restriction.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePolicy {
    url_expire: i64,
    url_activate: Option<i64>,
    stream_expire: Option<i64>,
    allow_ip: Option<String>,
}

impl WirePolicy {
    fn into_policy(self) -> Option<Policy> {
        // OvenMediaEngine reads the times as unsigned; a negative one is not a policy it issued.
        let times = [Some(self.url_expire), self.url_activate, self.stream_expire];
        if times.iter().flatten().any(|t| *t < 0) {
            return None;
        }
        let allow_ip = match self.allow_ip {
            None => None,
            Some(text) => Some(parse_ipv4_range(&text)?),
        };
        Some(Policy {
            url_expire: self.url_expire,
            url_activate: self.url_activate,
            stream_expire: self.stream_expire,
            allow_ip,
        })
    }
}

fn parse_ipv4_range(text: &str) -> Option<Ipv4Net> {
    if text.contains('/') {
        text.parse().ok()
    } else {
        text.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
    }
}

/// Unix milliseconds of 9999-12-31T23:59:59.999Z: later times are typos, not plans.
const MAX_UNIX_MS: i64 = 253_402_300_799_999;

/// A validated `Auth.SignUrl`: the URL to sign and the policy to put in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    pub url: String,
    pub policy: Policy,
}

impl SignRequest {
    /// The params of `Auth.SignUrl`: `url` and `url_expire` (unix ms) required; `url_activate`,
    /// `stream_expire` (unix ms) and `allow_ip` (an IPv4 address or CIDR range) optional. The
    /// URL itself is judged when it is signed.
    pub fn from_params(
        params: Option<&serde_json::Value>,
        method: &str,
    ) -> Result<Self, ParamError> {
        let mut p = Params::new(params, method)?;
        let url = p.string("url")?.ok_or_else(|| invalid("url is required"))?;
        let url_expire = p
            .unsigned("url_expire", "unix milliseconds", MAX_UNIX_MS)?
            .ok_or_else(|| invalid("url_expire is required (unix milliseconds)"))?;
        let url_activate = p.unsigned("url_activate", "unix milliseconds", MAX_UNIX_MS)?;
        let stream_expire = p.unsigned("stream_expire", "unix milliseconds", MAX_UNIX_MS)?;
        let allow_ip = p
            .string("allow_ip")?
            .map(|text| {
                parse_ipv4_range(&text).ok_or_else(|| {
                    invalid("allow_ip must be an IPv4 address or range such as 192.168.0.0/24")
                })
            })
            .transpose()?;
        p.finish()?;
        Ok(Self {
            url,
            policy: Policy {
                url_expire,
                url_activate,
                stream_expire,
                allow_ip,
            },
        })
    }
}

/// Why a URL could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("not a valid URL")]
    InvalidUrl,
    #[error("the URL has no explicit port")]
    MissingPort,
    /// The parameters would land in the fragment, which players never send.
    #[error("the URL has a fragment")]
    Fragment,
    /// A second `policy` or `signature` would make the URL mean different things to different
    /// parsers.
    #[error("the URL already carries a policy or signature")]
    AlreadySigned,
    /// Anyone could forge a signature made with an empty key.
    #[error("the signing key is empty")]
    EmptyKey,
}

/// Why a presented URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a valid URL")]
    InvalidUrl,
    #[error("the URL has no explicit port")]
    MissingPort,
    #[error("no policy in the URL")]
    MissingPolicy,
    #[error("no signature in the URL")]
    MissingSignature,
    #[error("the signature is not the last parameter")]
    SignatureNotLast,
    #[error("policy or signature given more than once")]
    DuplicateParameter,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the policy is malformed")]
    BadPolicy,
    #[error("the URL has not been activated yet")]
    NotYetActive,
    #[error("the URL has expired")]
    Expired,
    #[error("the stream has expired")]
    StreamExpired,
    #[error("the client address is not allowed")]
    IpNotAllowed,
}

/// Appends `policy` and `signature` to `url`. The times are not judged: an expired policy is
/// signed as asked.
pub fn sign(url: &str, policy: &Policy, key: &[u8]) -> Result<String, SignError> {
    let parsed = Url::parse(url).map_err(|_| SignError::InvalidUrl)?;
    if !has_explicit_port(url) {
        return Err(SignError::MissingPort);
    }
    if parsed.fragment().is_some() {
        return Err(SignError::Fragment);
    }
    if parsed
        .query_pairs()
        .any(|(name, _)| name == POLICY_PARAM || name == SIGNATURE_PARAM)
    {
        return Err(SignError::AlreadySigned);
    }
    let separator = match parsed.query() {
        None => "?",
        // `host/path?` or `?a=b&` already end where a parameter can start.
        Some(_) if url.ends_with('?') || url.ends_with('&') => "",
        Some(_) => "&",
    };
    let encoded = BASE64URL.encode(policy.to_json());
    let with_policy = format!("{url}{separator}{POLICY_PARAM}={encoded}");
    let signature = signature_of(&with_policy, key).ok_or(SignError::EmptyKey)?;
    Ok(format!("{with_policy}&{SIGNATURE_PARAM}={signature}"))
}

/// Checks a presented URL for `client_ip` at `now_ms` and returns its policy.
///
/// `client_ip` is compared as given: an IPv6 address, including an IPv4-mapped one, is outside
/// every `allow_ip` range, so callers on dual-stack sockets should pass
/// [`IpAddr::to_canonical`]. `None` (address unknown) passes only a policy without `allow_ip`.
pub fn verify(
    url: &str,
    key: &[u8],
    client_ip: Option<IpAddr>,
    now_ms: i64,
) -> Result<Policy, Refusal> {
    let parsed = Url::parse(url).map_err(|_| Refusal::InvalidUrl)?;
    // A fragment after the signature would hide it from the "last parameter" rule below.
    if parsed.fragment().is_some() {
        return Err(Refusal::InvalidUrl);
    }
    if !has_explicit_port(url) {
        return Err(Refusal::MissingPort);
    }

    let mut policies = 0;
    let mut signatures = 0;
    let mut encoded_policy = None;
    for (name, value) in parsed.query_pairs() {
        if name == POLICY_PARAM {
            policies += 1;
            encoded_policy = Some(value.into_owned());
        } else if name == SIGNATURE_PARAM {
            signatures += 1;
        }
    }
    if signatures == 0 {
        return Err(Refusal::MissingSignature);
    }
    let Some(encoded_policy) = encoded_policy else {
        return Err(Refusal::MissingPolicy);
    };
    // Only one of each can be the one that was signed, and parsers disagree on which.
    if policies > 1 || signatures > 1 {
        return Err(Refusal::DuplicateParameter);
    }

    // Everything before the last separator is what the signer's MAC covered.
    let Some((signed_part, last)) = url.rsplit_once(['&', '?']) else {
        return Err(Refusal::MissingSignature);
    };
    let Some(presented) = last.strip_prefix("signature=") else {
        return Err(Refusal::SignatureNotLast);
    };
    if presented.is_empty() {
        return Err(Refusal::MissingSignature);
    }
    // The policy must sit inside the signed part, or it would be unauthenticated; with the
    // signature last and each parameter once, it always does.
    let expected = signature_of(signed_part, key).ok_or(Refusal::BadSignature)?;
    if !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(Refusal::BadSignature);
    }

    // Parsed only once authenticated, so untrusted JSON never reaches serde.
    let json = BASE64URL
        .decode(encoded_policy)
        .map_err(|_| Refusal::BadPolicy)?;
    let policy = serde_json::from_slice::<WirePolicy>(&json)
        .ok()
        .and_then(WirePolicy::into_policy)
        .ok_or(Refusal::BadPolicy)?;

    if let Some(activate) = policy.url_activate {
        if now_ms < activate {
            return Err(Refusal::NotYetActive);
        }
    }
    // As OvenMediaEngine: valid through the instant itself, refused after it.
    if now_ms > policy.url_expire {
        return Err(Refusal::Expired);
    }
    if let Some(expire) = policy.stream_expire {
        if now_ms > expire {
            return Err(Refusal::StreamExpired);
        }
    }
    if let Some(range) = policy.allow_ip {
        let inside = match client_ip {
            Some(IpAddr::V4(address)) => range.contains(&address),
            Some(IpAddr::V6(_)) | None => false,
        };
        if !inside {
            return Err(Refusal::IpNotAllowed);
        }
    }
    Ok(policy)
}

/// `None` for an empty key, under which anyone could sign.
fn signature_of(message: &str, key: &[u8]) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(key).ok()?;
    mac.update(message.as_bytes());
    Some(BASE64URL.encode(mac.finalize().into_bytes()))
}

/// OvenMediaEngine needs the port written out, and the `url` crate hides a scheme's default
/// port (`ws://h:80/` parses with no port), so the authority is read from the string itself.
fn has_explicit_port(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let port = match host_port.rsplit_once(']') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"1kU^b6";
    const BASE: &str = "ws://192.168.0.100:3333/app/stream";
    const NOW: i64 = 1_700_000_000_000;

    fn full_policy() -> Policy {
        Policy {
            url_expire: NOW + 60_000,
            url_activate: Some(NOW - 60_000),
            stream_expire: Some(NOW + 3_600_000),
            allow_ip: Some("192.168.0.0/24".parse().expect("range")),
        }
    }

    fn signed(policy: &Policy) -> String {
        sign(BASE, policy, KEY).expect("sign")
    }

    fn client() -> Option<IpAddr> {
        Some("192.168.0.42".parse().expect("address"))
    }

    /// OvenMediaEngine's check written from its documentation, sharing nothing with the module:
    /// HMAC-SHA1 over the URL up to `&signature=`, then the times and the IPv4 range.
    fn oracle(url: &str, key: &[u8], client_ip: Option<IpAddr>, now: i64) -> bool {
        let authority = url.split("://").nth(1).and_then(|r| r.split('/').next());
        let port_ok = authority
            .and_then(|a| a.rsplit_once(':'))
            .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        let Some((base, signature)) = url.rsplit_once("&signature=") else {
            return false;
        };
        if !port_ok || key.is_empty() || signature.is_empty() {
            return false;
        }
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("key");
        mac.update(base.as_bytes());
        let expected =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        if expected != signature {
            return false;
        }
        let Some(encoded) = base
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("policy="))
        else {
            return false;
        };
        let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
            return false;
        };
        let Ok(policy) = serde_json::from_slice::<serde_json::Value>(&json) else {
            return false;
        };
        let Some(url_expire) = policy["url_expire"].as_i64() else {
            return false;
        };
        if now > url_expire {
            return false;
        }
        if policy["url_activate"].as_i64().is_some_and(|t| now < t) {
            return false;
        }
        if policy["stream_expire"].as_i64().is_some_and(|t| now > t) {
            return false;
        }
        if let Some(range) = policy["allow_ip"].as_str() {
            let (net, bits) = range.split_once('/').unwrap_or((range, "32"));
            let net: Ipv4Addr = net.parse().expect("range address");
            let bits: u32 = bits.parse().expect("prefix");
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            match client_ip {
                Some(IpAddr::V4(c)) if u32::from(c) & mask == u32::from(net) & mask => {}
                _ => return false,
            }
        }
        true
    }

    /// Asserts the refusal (or acceptance) and that the oracle agrees.
    fn check(url: &str, client_ip: Option<IpAddr>, now: i64, expected: Result<(), Refusal>) {
        let got = verify(url, KEY, client_ip, now).map(|_| ());
        assert_eq!(got, expected, "verify({url})");
        assert_eq!(
            oracle(url, KEY, client_ip, now),
            expected.is_ok(),
            "oracle disagrees on {url}"
        );
    }

    /// The HMAC a key holder would produce, for URLs that `sign` refuses to make.
    fn sign_raw(base: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(KEY).expect("key");
        mac.update(base.as_bytes());
        let signature =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{base}&signature={signature}")
    }

    #[test]
    fn known_answer_signs_exactly() {
        let policy = Policy {
            url_expire: 1_399_721_581,
            url_activate: None,
            stream_expire: None,
            allow_ip: None,
        };
        assert_eq!(
            sign(BASE, &policy, KEY).expect("sign"),
            "ws://192.168.0.100:3333/app/stream\
             ?policy=eyJ1cmxfZXhwaXJlIjoxMzk5NzIxNTgxfQ\
             &signature=dvVdBpoxAeCPl94Kt5RoiqLI0YE"
        );
    }

    #[test]
    fn known_answer_verifies_through_its_expiry_instant() {
        let url = "ws://192.168.0.100:3333/app/stream\
                   ?policy=eyJ1cmxfZXhwaXJlIjoxMzk5NzIxNTgxfQ\
                   &signature=dvVdBpoxAeCPl94Kt5RoiqLI0YE";
        let policy = verify(url, KEY, None, 1_399_721_581).expect("valid");
        assert_eq!(policy.url_expire, 1_399_721_581);
        check(url, None, 1_399_721_581, Ok(()));
        check(url, None, 1_399_721_582, Err(Refusal::Expired));
    }

    #[test]
    fn round_trip_with_every_field() {
        let policy = full_policy();
        let url = signed(&policy);
        assert_eq!(verify(&url, KEY, client(), NOW), Ok(policy));
        check(&url, client(), NOW, Ok(()));
    }

    #[test]
    fn policy_json_is_compact_and_ordered() {
        let url = signed(&full_policy());
        let encoded = url
            .split("policy=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .expect("policy parameter");
        let json = BASE64URL.decode(encoded).expect("base64");
        assert_eq!(
            String::from_utf8(json).expect("utf-8"),
            format!(
                "{{\"url_expire\":{},\"url_activate\":{},\"stream_expire\":{},\
                 \"allow_ip\":\"192.168.0.0/24\"}}",
                NOW + 60_000,
                NOW - 60_000,
                NOW + 3_600_000
            )
        );
    }

    #[test]
    fn round_trip_with_existing_query_and_single_address() {
        let policy = Policy {
            allow_ip: Some(Ipv4Net::from(Ipv4Addr::new(192, 168, 0, 42))),
            ..full_policy()
        };
        let url = sign(&format!("{BASE}?transport=tcp"), &policy, KEY).expect("sign");
        assert!(url.starts_with(&format!("{BASE}?transport=tcp&policy=")));
        assert_eq!(verify(&url, KEY, client(), NOW), Ok(policy));
        check(&url, client(), NOW, Ok(()));
        check(
            &url,
            Some("192.168.0.43".parse().expect("address")),
            NOW,
            Err(Refusal::IpNotAllowed),
        );
    }

    #[test]
    fn bare_address_in_policy_is_a_single_host() {
        let json = format!(
            "{{\"url_expire\":{},\"allow_ip\":\"192.168.0.42\"}}",
            NOW + 1
        );
        let url = sign_raw(&format!("{BASE}?policy={}", BASE64URL.encode(json)));
        let policy = verify(&url, KEY, client(), NOW).expect("valid");
        assert_eq!(policy.allow_ip.map(|n| n.prefix_len()), Some(32));
        check(&url, client(), NOW, Ok(()));
    }

    #[test]
    fn expired_policy_is_still_signed() {
        let policy = Policy {
            url_expire: 1,
            url_activate: None,
            stream_expire: None,
            allow_ip: None,
        };
        let url = signed(&policy);
        check(&url, None, NOW, Err(Refusal::Expired));
    }

    #[test]
    fn tampered_path_is_refused() {
        let url = signed(&full_policy()).replace("/app/stream", "/app/other");
        check(&url, client(), NOW, Err(Refusal::BadSignature));
    }

    #[test]
    fn tampered_policy_is_refused() {
        let good = signed(&full_policy());
        let longer = Policy {
            url_expire: NOW + 86_400_000,
            ..full_policy()
        };
        let longer_url = signed(&longer);
        let encoded = |u: &str| {
            u.split("policy=")
                .nth(1)
                .and_then(|r| r.split('&').next())
                .expect("policy")
                .to_owned()
        };
        let url = good.replace(&encoded(&good), &encoded(&longer_url));
        check(&url, client(), NOW, Err(Refusal::BadSignature));
    }

    #[test]
    fn tampered_signature_is_refused() {
        let good = signed(&full_policy());
        let (base, signature) = good.rsplit_once('=').expect("signature");
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let url = format!("{base}={flipped}{}", &signature[1..]);
        check(&url, client(), NOW, Err(Refusal::BadSignature));
        check(
            &format!("{base}=x"),
            client(),
            NOW,
            Err(Refusal::BadSignature),
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        let url = sign(BASE, &full_policy(), b"another key").expect("sign");
        check(&url, client(), NOW, Err(Refusal::BadSignature));
    }

    #[test]
    fn expired_after_the_instant_of_url_expire() {
        let url = signed(&full_policy());
        check(&url, client(), NOW + 60_000, Ok(()));
        check(&url, client(), NOW + 60_001, Err(Refusal::Expired));
    }

    #[test]
    fn not_yet_active_is_refused() {
        let url = signed(&full_policy());
        check(&url, client(), NOW - 60_001, Err(Refusal::NotYetActive));
        check(&url, client(), NOW - 60_000, Ok(()));
    }

    #[test]
    fn stream_expired_is_refused() {
        let policy = Policy {
            url_expire: NOW + 60_000,
            stream_expire: Some(NOW),
            ..full_policy()
        };
        check(&signed(&policy), client(), NOW, Ok(()));
        check(
            &signed(&policy),
            client(),
            NOW + 1,
            Err(Refusal::StreamExpired),
        );
    }

    #[test]
    fn wrong_ip_is_refused() {
        let outside = Some("192.168.1.42".parse().expect("address"));
        check(
            &signed(&full_policy()),
            outside,
            NOW,
            Err(Refusal::IpNotAllowed),
        );
    }

    #[test]
    fn ipv6_client_is_outside_an_ipv4_range() {
        let url = signed(&full_policy());
        for v6 in ["2001:db8::1", "::ffff:192.168.0.42"] {
            let ip = Some(v6.parse().expect("address"));
            check(&url, ip, NOW, Err(Refusal::IpNotAllowed));
        }
    }

    #[test]
    fn unknown_client_is_outside_a_range_but_fine_without_one() {
        check(
            &signed(&full_policy()),
            None,
            NOW,
            Err(Refusal::IpNotAllowed),
        );
        let open = Policy {
            allow_ip: None,
            ..full_policy()
        };
        check(&signed(&open), None, NOW, Ok(()));
    }

    #[test]
    fn missing_port_is_refused_at_signing() {
        let policy = full_policy();
        for url in ["ws://192.168.0.100/app/stream", "ws://host:/app/stream"] {
            assert_eq!(sign(url, &policy, KEY), Err(SignError::MissingPort));
        }
        // The `url` crate would report no port for these; the written one counts.
        for url in [
            "ws://host:80/app/stream",
            "http://[::1]:80/app",
            "ws://u:p@h:1/a",
        ] {
            assert!(sign(url, &policy, KEY).is_ok(), "{url}");
        }
    }

    #[test]
    fn missing_port_is_refused_at_verification() {
        let json = format!("{{\"url_expire\":{}}}", NOW + 1);
        let url = sign_raw(&format!(
            "ws://192.168.0.100/app/stream?policy={}",
            BASE64URL.encode(json)
        ));
        check(&url, None, NOW, Err(Refusal::MissingPort));
    }

    #[test]
    fn signature_not_last_is_refused() {
        let url = format!("{}&extra=1", signed(&full_policy()));
        check(&url, client(), NOW, Err(Refusal::SignatureNotLast));
    }

    #[test]
    fn garbage_base64_is_refused() {
        let url = sign_raw(&format!("{BASE}?policy=***not-base64***"));
        check(&url, None, NOW, Err(Refusal::BadPolicy));
        // Unsigned garbage never gets as far as decoding.
        let forged = format!("{BASE}?policy=***not-base64***&signature=AAAA");
        check(&forged, None, NOW, Err(Refusal::BadSignature));
    }

    #[test]
    fn bad_json_and_bad_fields_are_refused() {
        for json in [
            "not json".to_owned(),
            "{}".to_owned(),
            format!("{{\"url_expire\":\"{}\"}}", NOW + 1),
            format!(
                "{{\"url_expire\":{},\"allow_ip\":\"10.0.0.0/33\"}}",
                NOW + 1
            ),
            format!("{{\"url_expire\":{},\"real_ip\":\"10.0.0.0/8\"}}", NOW + 1),
            "{\"url_expire\":-1}".to_owned(),
        ] {
            let url = sign_raw(&format!("{BASE}?policy={}", BASE64URL.encode(&json)));
            assert_eq!(
                verify(&url, KEY, client(), NOW),
                Err(Refusal::BadPolicy),
                "{json}"
            );
        }
    }

    #[test]
    fn missing_parameters_are_refused() {
        check(BASE, None, NOW, Err(Refusal::MissingSignature));
        let no_policy = sign_raw(&format!("{BASE}?a=b"));
        check(&no_policy, None, NOW, Err(Refusal::MissingPolicy));
        let good = signed(&full_policy());
        let (base, _) = good.rsplit_once('=').expect("signature");
        check(
            &format!("{base}="),
            client(),
            NOW,
            Err(Refusal::MissingSignature),
        );
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let good = signed(&full_policy());
        let (prefix, rest) = good.split_once("?policy=").expect("policy");
        let twice = sign_raw(&format!(
            "{prefix}?policy=e30&policy={}",
            rest.split('&').next().expect("value")
        ));
        check(&twice, client(), NOW, Err(Refusal::DuplicateParameter));
    }

    #[test]
    fn sign_refuses_what_could_not_verify() {
        let policy = full_policy();
        assert_eq!(sign("not a url", &policy, KEY), Err(SignError::InvalidUrl));
        assert_eq!(
            sign(&format!("{BASE}#f"), &policy, KEY),
            Err(SignError::Fragment)
        );
        assert_eq!(
            sign(&signed(&policy), &policy, KEY),
            Err(SignError::AlreadySigned)
        );
        assert_eq!(sign(BASE, &policy, b""), Err(SignError::EmptyKey));
        assert_eq!(
            verify(&signed(&policy), b"", client(), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn trailing_separator_is_not_doubled() {
        let policy = full_policy();
        let url = sign(&format!("{BASE}?"), &policy, KEY).expect("sign");
        assert!(url.starts_with(&format!("{BASE}?policy=")));
        check(&url, client(), NOW, Ok(()));
    }

    #[test]
    fn reasons_read_as_short_phrases() {
        assert_eq!(Refusal::Expired.to_string(), "the URL has expired");
        assert_eq!(
            Refusal::IpNotAllowed.to_string(),
            "the client address is not allowed"
        );
        assert_eq!(
            SignError::MissingPort.to_string(),
            "the URL has no explicit port"
        );
    }
}
