//! Federation with outside OpenID Connect providers (Google, Facebook, any certified provider),
//! the relying party's pure half: the provider's discovery document, its keys picked out of a
//! JWKS, PKCE S256, and the ID-token checks of OIDC Core §3.1.3.7 — an asymmetric algorithm the
//! provider announces (so `alg: none` and HS256-with-a-public-key forgeries fail before any
//! signature check), the signature, `iss`, `aud` (and `azp`), `exp`/`iat` with a small leeway,
//! and the `nonce` of this sign-in. The HTTP half (fetching, caching, the redirects) is the API's.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::account;

/// The parts of a provider's `/.well-known/openid-configuration` that a code-flow relying
/// party uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    /// Facebook's document has none (its token endpoint is the Graph API's): configure it then.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// RS256 when absent, as OIDC Discovery says.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `client_secret_basic` when absent, as OIDC Discovery says.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl ProviderMetadata {
    /// The ID-token algorithms accepted from this provider: the asymmetric ones it announces
    /// (RS256 when it announces none). HMAC and `none` are never accepted.
    pub fn id_token_algorithms(&self) -> Vec<Algorithm> {
        if self.id_token_signing_alg_values_supported.is_empty() {
            return vec![Algorithm::RS256];
        }
        self.id_token_signing_alg_values_supported
            .iter()
            .filter_map(|name| name.parse::<Algorithm>().ok())
            .filter(|alg| is_asymmetric(*alg))
            .collect()
    }

    /// Does the provider take the client secret in the token request's body rather than in
    /// HTTP Basic authentication? Basic is preferred whenever it is supported.
    pub fn wants_secret_in_body(&self) -> bool {
        match &self.token_endpoint_auth_methods_supported {
            None => false,
            Some(methods) => {
                !methods.iter().any(|m| m == "client_secret_basic")
                    && methods.iter().any(|m| m == "client_secret_post")
            }
        }
    }
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A PKCE S256 pair: the verifier (kept) and its challenge (sent with the authorization request).
pub fn pkce_pair() -> (String, String) {
    let verifier = crate::secrets::token();
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

/// BASE64URL(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A provider's verifying keys, as read from its JWKS.
pub struct ProviderKeys {
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl ProviderKeys {
    /// The keys of a JWKS that can verify signatures; others (encryption keys, unknown key
    /// types) are left out.
    pub fn from_jwks(set: &JwkSet) -> ProviderKeys {
        let keys = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        ProviderKeys { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token names by `kid`; a token without `kid` may use the set's only key of
    /// the algorithm's family.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key),
            None => {
                let mut fitting = self
                    .keys
                    .iter()
                    .filter(|(_, key)| key.family() == alg.family());
                match (fitting.next(), fitting.next()) {
                    (Some((_, key)), None) => Some(key),
                    _ => None,
                }
            }
        }
    }

    /// Does the set hold a key with this `kid`?
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid))
    }
}

/// What an ID token must be to be accepted.
#[derive(Debug, Clone)]
pub struct IdTokenCheck<'a> {
    /// The provider's issuer, exactly as configured.
    pub issuer: &'a str,
    /// Our client id at the provider.
    pub client_id: &'a str,
    /// The nonce sent with this sign-in's authorization request.
    pub nonce: &'a str,
    /// From [`ProviderMetadata::id_token_algorithms`].
    pub algorithms: &'a [Algorithm],
    /// Clock skew tolerated on `exp` and `iat` (seconds).
    pub leeway_seconds: u64,
    /// Now, in seconds since the epoch.
    pub now: i64,
}

/// Who the provider says the user is.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIdentity {
    /// The provider's `sub`: stable for the user at this provider.
    pub subject: String,
    pub email: Option<String>,
    /// `email_verified` was `true` (or `"true"`, as some providers send it).
    pub email_verified: bool,
    pub name: Option<String>,
}

impl ExternalIdentity {
    /// The e-mail address to find or create the account with: present, verified by the provider
    /// (or, for a provider that never says, trusted by configuration), and well-formed.
    pub fn verified_email(&self, assume_verified: bool) -> Result<String, FederationError> {
        let email = self.email.as_deref().ok_or(FederationError::EmailMissing)?;
        if !self.email_verified && !assume_verified {
            return Err(FederationError::EmailNotVerified);
        }
        account::normalize_email(email).map_err(|_| FederationError::EmailMissing)
    }
}

/// Why a provider's answer is refused. The messages are safe to show to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FederationError {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token's signing algorithm {0} is not one the provider announces for ID tokens (asymmetric only)")]
    Algorithm(String),
    #[error("the ID token was signed by a key the provider does not publish")]
    UnknownKey,
    #[error("the ID token's signature is not valid")]
    Signature,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future")]
    IssuedInFuture,
    #[error("the ID token was not issued by the configured provider")]
    Issuer,
    #[error("the ID token was issued for another client")]
    Audience,
    #[error("the ID token does not belong to this sign-in (nonce mismatch)")]
    Nonce,
    #[error("the ID token names no subject")]
    MissingSubject,
    #[error("the provider shared no e-mail address; allow EcoCityHub to see your e-mail address")]
    EmailMissing,
    #[error("the provider has not verified this e-mail address; verify it there first")]
    EmailNotVerified,
}

/// The claims of an ID token this relying party reads.
#[derive(Deserialize)]
struct IdTokenClaims {
    #[serde(default)]
    sub: String,
    iss: String,
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn list(&self) -> Vec<&str> {
        match self {
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(all) => all.iter().map(String::as_str).collect(),
        }
    }
}

/// Verifies a provider's ID token; `key_for` finds the verifying key by `kid` and algorithm
/// (the cached JWKS, fetched again by the caller on [`FederationError::UnknownKey`]).
pub fn verify_id_token<'k>(
    check: &IdTokenCheck<'_>,
    key_for: impl Fn(Option<&str>, Algorithm) -> Option<&'k DecodingKey>,
    token: &str,
) -> Result<ExternalIdentity, FederationError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        // An `alg` jsonwebtoken does not know (`none` among them) fails to parse here.
        match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => unverified_algorithm(token)
                .map(FederationError::Algorithm)
                .unwrap_or(FederationError::Malformed),
            _ => FederationError::Malformed,
        }
    })?;
    if !is_asymmetric(header.alg) || !check.algorithms.contains(&header.alg) {
        return Err(FederationError::Algorithm(format!("{:?}", header.alg)));
    }
    let key = key_for(header.kid.as_deref(), header.alg).ok_or(FederationError::UnknownKey)?;
    if key.family() != header.alg.family() {
        return Err(FederationError::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = check.leeway_seconds;
    validation.set_issuer(&[check.issuer]);
    validation.set_audience(&[check.client_id]);
    validation.required_spec_claims = HashSet::from(["exp", "iss", "aud", "sub"].map(String::from));
    let claims = jsonwebtoken::decode::<IdTokenClaims>(token, key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => FederationError::Expired,
                ErrorKind::InvalidIssuer => FederationError::Issuer,
                ErrorKind::InvalidAudience => FederationError::Audience,
                ErrorKind::InvalidSignature => FederationError::Signature,
                ErrorKind::InvalidAlgorithm => {
                    FederationError::Algorithm(format!("{:?}", header.alg))
                }
                _ => FederationError::Malformed,
            }
        })?
        .claims;
    // jsonwebtoken checked these already; stated again so the rules read in one place.
    if claims.iss != check.issuer {
        return Err(FederationError::Issuer);
    }
    let audiences = claims.aud.list();
    if !audiences.contains(&check.client_id) {
        return Err(FederationError::Audience);
    }
    if (audiences.len() > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(check.client_id)
    {
        return Err(FederationError::Audience);
    }
    let leeway = check.leeway_seconds as i64;
    if claims.exp + leeway < check.now {
        return Err(FederationError::Expired);
    }
    if claims.iat > check.now + leeway {
        return Err(FederationError::IssuedInFuture);
    }
    if claims.nonce.as_deref() != Some(check.nonce) {
        return Err(FederationError::Nonce);
    }
    if claims.sub.is_empty() {
        return Err(FederationError::MissingSubject);
    }
    let email_verified = matches!(claims.email_verified, Some(serde_json::Value::Bool(true)))
        || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "true");
    Ok(ExternalIdentity {
        subject: claims.sub,
        email: claims.email,
        email_verified,
        name: claims.name,
    })
}

/// The `alg` a token's header claims, read as text (for the message about an unknown one).
fn unverified_algorithm(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    Some(value.get("alg")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningKey};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};

    const ISSUER: &str = "https://accounts.example.com";
    const CLIENT: &str = "ecocityhub-at-example";
    const NONCE: &str = "n-of-this-sign-in";

    /// A provider with one ES256 key, its JWKS as the relying party reads it.
    struct TestProvider {
        kid: String,
        encoding: EncodingKey,
        keys: ProviderKeys,
        jwks: Value,
    }

    fn provider() -> TestProvider {
        let key = SigningKey::generate(chrono::Utc::now());
        let set = KeySet::new(std::slice::from_ref(&key)).unwrap();
        let jwks = set.jwks().clone();
        let parsed: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        TestProvider {
            kid: key.kid.clone(),
            encoding: EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap(),
            keys: ProviderKeys::from_jwks(&parsed),
            jwks,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": CLIENT, "sub": "10769150350006150715113082367",
               "exp": now() + 300, "iat": now(), "nonce": NONCE,
               "email": "Jane@Example.org", "email_verified": true, "name": "Jane"})
    }

    fn sign(p: &TestProvider, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(p.kid.clone());
        jsonwebtoken::encode(&header, claims, &p.encoding).unwrap()
    }

    fn verify(p: &TestProvider, token: &str) -> Result<ExternalIdentity, FederationError> {
        let algorithms = [Algorithm::RS256, Algorithm::ES256];
        let check = IdTokenCheck {
            issuer: ISSUER,
            client_id: CLIENT,
            nonce: NONCE,
            algorithms: &algorithms,
            leeway_seconds: 30,
            now: now(),
        };
        verify_id_token(&check, |kid, alg| p.keys.find(kid, alg), token)
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    #[test]
    fn a_good_id_token_gives_the_subject_and_verified_email() {
        let p = provider();
        let identity = verify(&p, &sign(&p, &claims())).unwrap();
        assert_eq!(identity.subject, "10769150350006150715113082367");
        assert!(identity.email_verified);
        assert_eq!(identity.verified_email(false).unwrap(), "jane@example.org");
        assert_eq!(identity.name.as_deref(), Some("Jane"));
        // Several audiences are fine when the authorized party is us; "true" as a string too.
        let many = with(claims(), "aud", json!([CLIENT, "another"]));
        let many = with(many, "azp", json!(CLIENT));
        let many = with(many, "email_verified", json!("true"));
        assert!(verify(&p, &sign(&p, &many)).unwrap().email_verified);
    }

    #[test]
    fn wrong_nonce_audience_issuer_and_times_are_refused() {
        let p = provider();
        let cases = [
            (
                with(claims(), "nonce", json!("another-sign-in")),
                FederationError::Nonce,
            ),
            (with(claims(), "nonce", Value::Null), FederationError::Nonce),
            (
                with(claims(), "aud", json!("someone-else")),
                FederationError::Audience,
            ),
            (
                with(
                    with(claims(), "aud", json!([CLIENT, "someone-else"])),
                    "azp",
                    json!("someone-else"),
                ),
                FederationError::Audience,
            ),
            (
                with(claims(), "aud", json!([CLIENT, "someone-else"])),
                FederationError::Audience,
            ),
            (
                with(claims(), "iss", json!("https://evil.example.com")),
                FederationError::Issuer,
            ),
            (
                with(claims(), "iss", json!(format!("{ISSUER}/"))),
                FederationError::Issuer,
            ),
            (
                with(claims(), "exp", json!(now() - 120)),
                FederationError::Expired,
            ),
            (
                with(claims(), "iat", json!(now() + 600)),
                FederationError::IssuedInFuture,
            ),
            (
                with(claims(), "sub", json!("")),
                FederationError::MissingSubject,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                verify(&p, &sign(&p, &claims)),
                Err(expected.clone()),
                "{claims}"
            );
        }
        // Within the leeway.
        let just_expired = with(claims(), "exp", json!(now() - 10));
        assert!(verify(&p, &sign(&p, &just_expired)).is_ok());
    }

    #[test]
    fn forged_tokens_are_refused() {
        let p = provider();
        let good = sign(&p, &claims());
        let parts: Vec<&str> = good.split('.').collect();

        // alg: none, no signature.
        let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": p.kid}).to_string());
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            verify(&p, &none),
            Err(FederationError::Algorithm(alg)) if alg == "none"
        ));

        // HS256 with the public JWK as the HMAC secret.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(p.kid.clone());
        let secret = p.jwks["keys"][0].to_string();
        let forged =
            jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        assert_eq!(
            verify(&p, &forged),
            Err(FederationError::Algorithm("HS256".into()))
        );

        // An algorithm the provider does not announce.
        let algorithms = [Algorithm::RS256];
        let check = IdTokenCheck {
            issuer: ISSUER,
            client_id: CLIENT,
            nonce: NONCE,
            algorithms: &algorithms,
            leeway_seconds: 30,
            now: now(),
        };
        assert!(matches!(
            verify_id_token(&check, |kid, alg| p.keys.find(kid, alg), &good),
            Err(FederationError::Algorithm(_))
        ));

        // Tampered payload: another subject.
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("admin")).to_string()),
            parts[2]
        );
        assert_eq!(verify(&p, &tampered), Err(FederationError::Signature));

        // Signed by a key the provider does not publish, under its kid.
        let stranger = provider();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(p.kid.clone());
        let foreign = jsonwebtoken::encode(&header, &claims(), &stranger.encoding).unwrap();
        assert_eq!(verify(&p, &foreign), Err(FederationError::Signature));
        // Under an unknown kid.
        assert_eq!(
            verify(&p, &sign(&stranger, &claims())),
            Err(FederationError::UnknownKey)
        );

        assert_eq!(verify(&p, "not.a.jwt"), Err(FederationError::Malformed));
    }

    #[test]
    fn the_email_must_be_present_and_verified() {
        let p = provider();
        let unverified = with(claims(), "email_verified", json!(false));
        let identity = verify(&p, &sign(&p, &unverified)).unwrap();
        assert_eq!(
            identity.verified_email(false),
            Err(FederationError::EmailNotVerified)
        );
        // A provider configured as trusted for its addresses (Facebook sends no claim).
        assert_eq!(identity.verified_email(true).unwrap(), "jane@example.org");
        let mut no_claim = claims();
        no_claim.as_object_mut().unwrap().remove("email_verified");
        assert!(!verify(&p, &sign(&p, &no_claim)).unwrap().email_verified);
        let mut no_email = claims();
        no_email.as_object_mut().unwrap().remove("email");
        assert_eq!(
            verify(&p, &sign(&p, &no_email))
                .unwrap()
                .verified_email(true),
            Err(FederationError::EmailMissing)
        );
    }

    #[test]
    fn metadata_defaults_follow_oidc_discovery() {
        let facebook: ProviderMetadata = serde_json::from_value(json!({
            "issuer": "https://www.facebook.com",
            "authorization_endpoint": "https://facebook.com/dialog/oauth/",
            "jwks_uri": "https://www.facebook.com/.well-known/oauth/openid/jwks/",
            "response_types_supported": ["id_token", "token id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .unwrap();
        assert_eq!(facebook.token_endpoint, None);
        assert_eq!(facebook.id_token_algorithms(), vec![Algorithm::RS256]);
        assert!(!facebook.wants_secret_in_body());
        let post_only = ProviderMetadata {
            token_endpoint_auth_methods_supported: Some(vec!["client_secret_post".into()]),
            id_token_signing_alg_values_supported: vec![
                "HS256".into(),
                "ES256".into(),
                "none".into(),
            ],
            ..facebook.clone()
        };
        assert!(post_only.wants_secret_in_body());
        assert_eq!(post_only.id_token_algorithms(), vec![Algorithm::ES256]);
        let (verifier, challenge) = pkce_pair();
        assert!(verifier.len() >= 43);
        assert_eq!(challenge, pkce_challenge(&verifier));
        // SHA-256, base64url without padding (checked with Python's hashlib and base64).
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        );
    }

    #[test]
    fn keys_without_kid_are_found_only_when_unambiguous() {
        let p = provider();
        assert_eq!(p.keys.len(), 1);
        assert!(p.keys.knows(&p.kid));
        assert!(p.keys.find(None, Algorithm::ES256).is_some());
        assert!(p.keys.find(None, Algorithm::RS256).is_none());
        assert!(p.keys.find(Some("other"), Algorithm::ES256).is_none());
    }
}
