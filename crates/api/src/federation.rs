//! Federation with outside OpenID Connect providers, the relying party's HTTP half: each
//! configured provider's discovery document (fetched on first use, kept for an hour), its JWKS
//! (fetched on first use and again when an ID token names an unknown `kid`, at most every few
//! seconds), the authorization URL, the code exchange at its token endpoint, and the ID-token
//! check of [`ecocityhub_identity::federation`]. The routes are in `routes::federation`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ecocityhub_identity::federation::{
    self, ExternalIdentity, FederationError, IdTokenCheck, ProviderKeys, ProviderMetadata,
};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use tokio::sync::RwLock;

/// The scopes asked for when a provider's configuration names none.
pub const DEFAULT_SCOPES: &str = "openid email profile";

/// One outside OIDC provider, as configured.
#[derive(Clone)]
pub struct OidcProviderConfig {
    /// Chosen by us: what clients pass as `identity_provider` (`google`, `facebook`, …).
    pub name: String,
    /// The provider's issuer; its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Our client's id and secret at the provider.
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated; must include `openid` (and `email` for the address).
    pub scopes: String,
    /// The token endpoint, for a provider whose discovery document lacks one (Facebook).
    pub token_endpoint: Option<String>,
    /// `client_secret_basic` or `client_secret_post`, for a provider whose discovery document
    /// does not say which it takes; otherwise Basic is used when announced.
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    /// Take the provider's `email` as verified when its ID tokens carry no `email_verified`
    /// (Facebook's do not). Off by default: such sign-ins are refused.
    pub assume_email_verified: bool,
}

impl OidcProviderConfig {
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        OidcProviderConfig {
            name: name.into(),
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: DEFAULT_SCOPES.into(),
            token_endpoint: None,
            token_endpoint_auth_method: None,
            assume_email_verified: false,
        }
    }

    fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// Never shows the client secret.
impl fmt::Debug for OidcProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("scopes", &self.scopes)
            .field("token_endpoint", &self.token_endpoint)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("assume_email_verified", &self.assume_email_verified)
            .finish()
    }
}

/// How the client secret reaches a provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// HTTP Basic authentication.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
}

impl TokenAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

impl std::str::FromStr for TokenAuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client_secret_basic" => Ok(TokenAuthMethod::ClientSecretBasic),
            "client_secret_post" => Ok(TokenAuthMethod::ClientSecretPost),
            other => Err(format!(
                "{other:?} is not client_secret_basic or client_secret_post"
            )),
        }
    }
}

/// Why a federated sign-in could not go on. The messages are safe to show to the user.
#[derive(Debug, thiserror::Error)]
pub enum FederationFailure {
    /// The provider could not be reached or answered nonsense; worth another try later.
    #[error("the identity provider {provider} cannot be reached: {reason}")]
    Unreachable { provider: String, reason: String },
    /// The provider's token endpoint refused the code.
    #[error("the identity provider {provider} refused the sign-in: {reason}")]
    Refused { provider: String, reason: String },
    /// The provider's answer does not pass our checks.
    #[error("the identity provider {provider}'s answer was not accepted: {source}")]
    Rejected {
        provider: String,
        #[source]
        source: FederationError,
    },
}

impl FederationFailure {
    /// The OAuth 2.0 error code to send our client (RFC 6749 §4.1.2.1).
    pub fn oauth_error(&self) -> &'static str {
        match self {
            FederationFailure::Unreachable { .. } => "temporarily_unavailable",
            FederationFailure::Refused { .. } | FederationFailure::Rejected { .. } => {
                "access_denied"
            }
        }
    }
}

/// A provider with what was learnt of it.
pub struct Provider {
    pub config: OidcProviderConfig,
    metadata: RwLock<Option<(Arc<ProviderMetadata>, Instant)>>,
    keys: RwLock<Option<Arc<ProviderKeys>>>,
    last_key_fetch: Mutex<Option<Instant>>,
}

/// The tokens a provider's token endpoint answers with (only what is used).
#[derive(Deserialize)]
struct ProviderTokens {
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ProviderTokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The configured providers.
pub struct Federation {
    providers: Vec<Provider>,
    http: reqwest::Client,
    /// How long a discovery document is used before it is fetched again.
    pub metadata_ttl: Duration,
    /// The least time between two fetches of a provider's JWKS.
    pub key_refetch_after: Duration,
    /// Clock skew tolerated on ID tokens' `exp` and `iat`.
    pub leeway_seconds: u64,
}

impl Federation {
    pub fn new(configs: &[OidcProviderConfig]) -> Result<Federation, reqwest::Error> {
        Ok(Federation {
            providers: configs
                .iter()
                .map(|config| Provider {
                    config: config.clone(),
                    metadata: RwLock::new(None),
                    keys: RwLock::new(None),
                    last_key_fetch: Mutex::new(None),
                })
                .collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            metadata_ttl: Duration::from_secs(3600),
            key_refetch_after: Duration::from_secs(5),
            leeway_seconds: 60,
        })
    }

    /// The providers' names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.config.name.as_str())
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    fn unreachable(provider: &Provider, reason: impl fmt::Display) -> FederationFailure {
        FederationFailure::Unreachable {
            provider: provider.config.name.clone(),
            reason: reason.to_string(),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        provider: &Provider,
        url: &str,
    ) -> Result<T, FederationFailure> {
        self.http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Self::unreachable(provider, e.without_url()))?
            .json()
            .await
            .map_err(|e| Self::unreachable(provider, format!("{url}: {}", e.without_url())))
    }

    /// The provider's discovery document, fetched when not known or older than `metadata_ttl`.
    /// Its `issuer` must be the configured one (OIDC Discovery §4.3).
    pub async fn metadata(
        &self,
        provider: &Provider,
    ) -> Result<Arc<ProviderMetadata>, FederationFailure> {
        if let Some((metadata, fetched)) = provider.metadata.read().await.as_ref() {
            if fetched.elapsed() < self.metadata_ttl {
                return Ok(metadata.clone());
            }
        }
        let url = provider.config.discovery_url();
        let mut metadata: ProviderMetadata = self.get_json(provider, &url).await?;
        if metadata.issuer.trim_end_matches('/') != provider.config.issuer.trim_end_matches('/') {
            return Err(Self::unreachable(
                provider,
                format!(
                    "its discovery document names the issuer {:?}, not the configured {:?}",
                    metadata.issuer, provider.config.issuer
                ),
            ));
        }
        if let Some(endpoint) = &provider.config.token_endpoint {
            metadata.token_endpoint = Some(endpoint.clone());
        }
        if let Some(method) = provider.config.token_endpoint_auth_method {
            metadata.token_endpoint_auth_methods_supported = Some(vec![method.as_str().into()]);
        }
        if metadata.token_endpoint.is_none() {
            return Err(Self::unreachable(
                provider,
                "its discovery document has no token_endpoint; configure one",
            ));
        }
        tracing::info!(provider = %provider.config.name, "identity provider discovered");
        let metadata = Arc::new(metadata);
        *provider.metadata.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// Where to send the browser: the provider's authorization endpoint with the code flow's
    /// parameters, PKCE S256, `state` and `nonce`.
    pub fn authorization_url(
        provider: &Provider,
        metadata: &ProviderMetadata,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, FederationFailure> {
        let mut url = reqwest::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| Self::unreachable(provider, format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &provider.config.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the provider's code (with our PKCE verifier) for its ID token.
    pub async fn exchange_code(
        &self,
        provider: &Provider,
        metadata: &ProviderMetadata,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, FederationFailure> {
        let endpoint = metadata
            .token_endpoint
            .as_deref()
            .ok_or_else(|| Self::unreachable(provider, "no token endpoint"))?;
        let config = &provider.config;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut request = self.http.post(endpoint);
        if metadata.wants_secret_in_body() {
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", &config.client_secret));
        } else {
            // RFC 6749 §2.3.1: both form-encoded before they are joined.
            let credentials = format!(
                "{}:{}",
                form_encode(&config.client_id),
                form_encode(&config.client_secret)
            );
            request = request.header(
                reqwest::header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| Self::unreachable(provider, e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Self::unreachable(provider, e.without_url()))?;
        if !status.is_success() {
            let reason = match serde_json::from_slice::<ProviderTokenError>(&body) {
                Ok(e) => match e.error_description {
                    Some(d) => format!("{} ({d})", e.error),
                    None => e.error,
                },
                Err(_) if status.is_server_error() => {
                    return Err(Self::unreachable(
                        provider,
                        format!("its token endpoint answered {status}"),
                    ))
                }
                Err(_) => format!("its token endpoint answered {status}"),
            };
            return Err(FederationFailure::Refused {
                provider: config.name.clone(),
                reason,
            });
        }
        let tokens: ProviderTokens = serde_json::from_slice(&body).map_err(|e| {
            Self::unreachable(provider, format!("its token response is not JSON: {e}"))
        })?;
        tokens.id_token.ok_or_else(|| FederationFailure::Refused {
            provider: config.name.clone(),
            reason: "it sent no ID token (is `openid` among the scopes?)".into(),
        })
    }

    /// The provider's keys, fetched when not known yet, or when `refetch` and the last fetch
    /// is older than `key_refetch_after`.
    async fn keys(
        &self,
        provider: &Provider,
        metadata: &ProviderMetadata,
        refetch: bool,
    ) -> Result<Arc<ProviderKeys>, FederationFailure> {
        let known = provider.keys.read().await.clone();
        if let Some(keys) = &known {
            if !refetch {
                return Ok(keys.clone());
            }
            let due = provider
                .last_key_fetch
                .lock()
                .expect("not poisoned")
                .is_none_or(|t| t.elapsed() >= self.key_refetch_after);
            if !due {
                return Ok(keys.clone());
            }
        }
        *provider.last_key_fetch.lock().expect("not poisoned") = Some(Instant::now());
        let set: JwkSet = self.get_json(provider, &metadata.jwks_uri).await?;
        let keys = Arc::new(ProviderKeys::from_jwks(&set));
        tracing::info!(provider = %provider.config.name, keys = keys.len(), "identity provider's keys fetched");
        *provider.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    /// Checks the provider's ID token for this sign-in's `nonce`; an unknown `kid` fetches the
    /// provider's keys again (the provider may have rotated them).
    pub async fn verify_id_token(
        &self,
        provider: &Provider,
        metadata: &ProviderMetadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<ExternalIdentity, FederationFailure> {
        let algorithms = metadata.id_token_algorithms();
        let check = IdTokenCheck {
            issuer: &metadata.issuer,
            client_id: &provider.config.client_id,
            nonce,
            algorithms: &algorithms,
            leeway_seconds: self.leeway_seconds,
            now: chrono::Utc::now().timestamp(),
        };
        let rejected = |source| FederationFailure::Rejected {
            provider: provider.config.name.clone(),
            source,
        };
        let keys = self.keys(provider, metadata, false).await?;
        match federation::verify_id_token(&check, |kid, alg| keys.find(kid, alg), id_token) {
            Err(FederationError::UnknownKey) => {
                let keys = self.keys(provider, metadata, true).await?;
                federation::verify_id_token(&check, |kid, alg| keys.find(kid, alg), id_token)
                    .map_err(rejected)
            }
            other => other.map_err(rejected),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    reqwest::Url::parse_with_params("x:", [("v", s)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output_and_basic_credentials_are_encoded() {
        let config = OidcProviderConfig::new(
            "google",
            "https://accounts.google.com",
            "id",
            "s3cr3t-value",
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value") && shown.contains("***"));
        assert_eq!(config.scopes, "openid email profile");
        assert_eq!(
            config.discovery_url(),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        assert_eq!(form_encode("a b:c/d+é"), "a+b%3Ac%2Fd%2B%C3%A9");
    }
}
