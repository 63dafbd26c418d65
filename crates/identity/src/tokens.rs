//! ID and access tokens shaped like Cognito's, and their verification — the JWT authorizer's
//! rules. Only ES256 is accepted, so `alg: none` and HS256-with-the-public-key forgeries fail
//! before any signature check (a trusted Cognito pool is configured with RS256 instead); `iss`, `token_use`, the audience (`aud` of ID tokens,
//! `client_id` of access tokens) and expiry (with a small leeway) are all checked.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, KeySet};

/// Which token a JWT is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Id,
    Access,
}

/// The claims of both token kinds, named as Cognito names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub token_use: TokenUse,
    /// The app client (ID tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The app client (access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub groups: Vec<String>,
    /// Space-separated scopes (access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    pub auth_time: i64,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The client's nonce from the authorization request (ID tokens of the code flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == scope))
    }
}

/// Who issues tokens and for whom: the built-in pool, or a Cognito user pool's issuer
/// (`https://cognito-idp.REGION.amazonaws.com/POOL_ID`) with its app client id.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub issuer: String,
    pub client_id: String,
    pub access_ttl: chrono::Duration,
    pub id_ttl: chrono::Duration,
    /// Clock skew tolerated on `exp` (seconds).
    pub leeway_seconds: u64,
    /// The one signing algorithm accepted: ES256 for the built-in pool, RS256 for Cognito.
    pub algorithm: Algorithm,
}

impl TokenConfig {
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        TokenConfig {
            issuer: issuer.into(),
            client_id: client_id.into(),
            access_ttl: chrono::Duration::minutes(15),
            id_ttl: chrono::Duration::minutes(60),
            leeway_seconds: 30,
            algorithm: Algorithm::ES256,
        }
    }
}

/// Why a token is refused. The messages are safe to show to the client.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signing algorithm is not the one accepted")]
    Algorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was not issued by this service")]
    Issuer,
    #[error("the token was issued for another client")]
    Audience,
    #[error("an {expected:?} token is required here")]
    WrongUse { expected: TokenUse },
    #[error("no signing key: {0}")]
    Key(String),
}

impl From<KeyError> for TokenError {
    fn from(e: KeyError) -> Self {
        TokenError::Key(e.to_string())
    }
}

/// What a user is, for issuing tokens.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub groups: &'a [String],
    /// Echoed in the ID token (OIDC code flow).
    pub nonce: Option<&'a str>,
    /// The access token's scopes, space-separated (see [`scopes`]).
    pub scope: &'a str,
}

/// The OAuth scopes of EcoCityHub's API (a resource server `ecocityhub`, as in Cognito). What a
/// user may do is decided by the policies; what a client may do on the user's behalf, by the
/// scopes it was granted: each protected route requires one.
pub mod scopes {
    /// Every signed-in route: the user's own account, and whatever the policies allow.
    pub const API: &str = "ecocityhub/api";
    /// Administration routes (users, models, training jobs): also needs the admin group.
    pub const ADMIN: &str = "ecocityhub/admin";
    /// The scopes a client may ask for, in the order they are granted.
    pub const SUPPORTED: [&str; 5] = ["openid", "email", "profile", API, ADMIN];
    /// What EcoCityHub's own password sign-in grants: all of them.
    pub const FIRST_PARTY: &str = "openid email profile ecocityhub/api ecocityhub/admin";

    /// The supported scopes among those requested (space-separated), in canonical order.
    pub fn grant(requested: &str) -> String {
        SUPPORTED
            .iter()
            .filter(|s| requested.split(' ').any(|r| r == **s))
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Issues an ID token and an access token for `subject`.
pub fn issue(
    config: &TokenConfig,
    keys: &KeySet,
    subject: &Subject<'_>,
    now: DateTime<Utc>,
) -> Result<(String, String), TokenError> {
    let (kid, key) = keys.signing()?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let base = Claims {
        sub: subject.id.to_string(),
        iss: config.issuer.clone(),
        token_use: TokenUse::Id,
        aud: Some(config.client_id.clone()),
        client_id: None,
        groups: subject.groups.to_vec(),
        scope: None,
        email: Some(subject.email.to_string()),
        email_verified: Some(subject.email_verified),
        auth_time: now.timestamp(),
        iat: now.timestamp(),
        exp: (now + config.id_ttl).timestamp(),
        jti: crate::secrets::token(),
        nonce: subject.nonce.map(str::to_string),
    };
    let access = Claims {
        token_use: TokenUse::Access,
        aud: None,
        client_id: Some(config.client_id.clone()),
        scope: Some(subject.scope.to_string()),
        email: None,
        email_verified: None,
        exp: (now + config.access_ttl).timestamp(),
        jti: crate::secrets::token(),
        nonce: None,
        ..base.clone()
    };
    let sign = |c: &Claims| {
        jsonwebtoken::encode(&header, c, key).map_err(|e| TokenError::Key(e.to_string()))
    };
    Ok((sign(&base)?, sign(&access)?))
}

/// Verifies a token of kind `expected` with the keys of `keys`.
pub fn verify(
    config: &TokenConfig,
    keys: &KeySet,
    token: &str,
    expected: TokenUse,
) -> Result<Claims, TokenError> {
    verify_with(config, |kid| keys.verifying(kid), token, expected)
}

/// The issuer a token claims, read without verifying it: only to choose which verifier applies.
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(value.get("iss")?.as_str()?.to_string())
}

/// Verifies a token, finding its key by `kid` through `key_for` (the built-in key set, or a
/// cached remote JWKS such as a Cognito user pool's).
pub fn verify_with<'k>(
    config: &TokenConfig,
    key_for: impl Fn(&str) -> Option<&'k DecodingKey>,
    token: &str,
    expected: TokenUse,
) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != config.algorithm {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = key_for(&kid).ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(config.algorithm);
    validation.leeway = config.leeway_seconds;
    validation.validate_aud = false; // checked below, by token kind
    validation.set_issuer(&[&config.issuer]);
    validation.required_spec_claims =
        HashSet::from(["exp".to_string(), "iss".to_string(), "sub".to_string()]);
    let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        }
    })?;
    let claims = data.claims;
    if claims.token_use != expected {
        return Err(TokenError::WrongUse { expected });
    }
    let audience = match expected {
        TokenUse::Id => claims.aud.as_deref(),
        TokenUse::Access => claims.client_id.as_deref(),
    };
    if audience != Some(config.client_id.as_str()) {
        return Err(TokenError::Audience);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use chrono::Duration;

    fn setup() -> (TokenConfig, KeySet, SigningKey) {
        let key = SigningKey::generate(Utc::now());
        (
            TokenConfig::new("http://localhost:8080", "web"),
            KeySet::new(std::slice::from_ref(&key)).unwrap(),
            key,
        )
    }

    fn subject() -> Subject<'static> {
        static GROUPS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Subject {
            id: "u1",
            email: "a@example.org",
            email_verified: true,
            groups: GROUPS.get_or_init(|| vec!["admin".into()]),
            nonce: Some("n-0S6_WzA2Mj"),
            scope: scopes::FIRST_PARTY,
        }
    }

    #[test]
    fn only_supported_scopes_are_granted_in_canonical_order() {
        assert_eq!(
            scopes::grant("ecocityhub/admin openid evil/write ecocityhub/api"),
            "openid ecocityhub/api ecocityhub/admin"
        );
        assert_eq!(scopes::grant("openid"), "openid");
        assert_eq!(scopes::grant(""), "");
        assert_eq!(scopes::grant(scopes::FIRST_PARTY), scopes::FIRST_PARTY);
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    }

    fn with_part(token: &str, i: usize, value: &serde_json::Value) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[i] = URL_SAFE_NO_PAD.encode(value.to_string());
        parts.join(".")
    }

    #[test]
    fn issued_tokens_verify_and_look_like_cognitos() {
        let (cfg, keys, key) = setup();
        let (id, access) = issue(&cfg, &keys, &subject(), Utc::now()).unwrap();
        let c = verify(&cfg, &keys, &access, TokenUse::Access).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.client_id.as_deref(), Some("web"));
        assert_eq!(c.groups, vec!["admin"]);
        assert!(c.has_scope("ecocityhub/api"));
        let i = verify(&cfg, &keys, &id, TokenUse::Id).unwrap();
        assert_eq!(i.email.as_deref(), Some("a@example.org"));
        assert_eq!(part(&id, 0)["kid"], key.kid);
        assert_eq!(part(&id, 1)["cognito:groups"][0], "admin");
        assert_eq!(part(&access, 1)["token_use"], "access");
    }

    #[test]
    fn forged_and_misused_tokens_are_refused() {
        let (cfg, keys, _) = setup();
        let (id, access) = issue(&cfg, &keys, &subject(), Utc::now()).unwrap();

        // alg: none, no signature.
        let mut header = part(&access, 0);
        header["alg"] = "none".into();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            access.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            verify(&cfg, &keys, &none, TokenUse::Access),
            Err(TokenError::Malformed | TokenError::Algorithm)
        ));

        // HS256 with the public JWK as the HMAC secret.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = part(&access, 0)["kid"].as_str().map(str::to_string);
        let secret = keys.jwks()["keys"][0].to_string();
        let claims: Claims = serde_json::from_value(part(&access, 1)).unwrap();
        let hs = jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify(&cfg, &keys, &hs, TokenUse::Access),
            Err(TokenError::Algorithm)
        );

        // Unknown kid.
        let mut header = part(&access, 0);
        header["kid"] = "0000000000000000".into();
        assert_eq!(
            verify(
                &cfg,
                &keys,
                &with_part(&access, 0, &header),
                TokenUse::Access
            ),
            Err(TokenError::UnknownKey)
        );

        // Tampered payload: more groups.
        let mut payload = part(&access, 1);
        payload["cognito:groups"] = serde_json::json!(["admin", "operator"]);
        assert_eq!(
            verify(
                &cfg,
                &keys,
                &with_part(&access, 1, &payload),
                TokenUse::Access
            ),
            Err(TokenError::Signature)
        );

        // ID token where an access token is needed, and the reverse.
        assert_eq!(
            verify(&cfg, &keys, &id, TokenUse::Access),
            Err(TokenError::WrongUse {
                expected: TokenUse::Access
            })
        );
        assert!(verify(&cfg, &keys, &access, TokenUse::Id).is_err());

        // Wrong issuer, wrong client.
        let other_iss = TokenConfig::new(
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
            "web",
        );
        assert_eq!(
            verify(&other_iss, &keys, &access, TokenUse::Access),
            Err(TokenError::Issuer)
        );
        let other_client = TokenConfig::new("http://localhost:8080", "mobile");
        assert_eq!(
            verify(&other_client, &keys, &access, TokenUse::Access),
            Err(TokenError::Audience)
        );

        // A token of another key set (another pool) with the same kid shape.
        let (_, other_keys, _) = setup();
        let (_, foreign) = issue(&cfg, &other_keys, &subject(), Utc::now()).unwrap();
        assert_eq!(
            verify(&cfg, &keys, &foreign, TokenUse::Access),
            Err(TokenError::UnknownKey)
        );

        assert_eq!(
            verify(&cfg, &keys, "garbage", TokenUse::Access),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn expiry_has_a_small_leeway() {
        let (cfg, keys, _) = setup();
        let (_, fresh_enough) = issue(
            &cfg,
            &keys,
            &subject(),
            Utc::now() - cfg.access_ttl - Duration::seconds(10),
        )
        .unwrap();
        assert!(verify(&cfg, &keys, &fresh_enough, TokenUse::Access).is_ok());
        let (_, expired) = issue(
            &cfg,
            &keys,
            &subject(),
            Utc::now() - cfg.access_ttl - Duration::seconds(120),
        )
        .unwrap();
        assert_eq!(
            verify(&cfg, &keys, &expired, TokenUse::Access),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_rotated_out_key_stops_verifying() {
        let (cfg, _, key) = setup();
        let keys = KeySet::new(std::slice::from_ref(&key)).unwrap();
        let (_, access) = issue(&cfg, &keys, &subject(), Utc::now()).unwrap();
        let newer = SigningKey::generate(Utc::now() + Duration::seconds(1));
        let both = KeySet::new(&[key.clone(), newer.clone()]).unwrap();
        assert!(
            verify(&cfg, &both, &access, TokenUse::Access).is_ok(),
            "tokens outlive a rotation"
        );
        let mut retired = key;
        retired.retired_at = Some(Utc::now());
        let after = KeySet::new(&[retired, newer]).unwrap();
        assert_eq!(
            verify(&cfg, &after, &access, TokenUse::Access),
            Err(TokenError::UnknownKey)
        );
    }
}
