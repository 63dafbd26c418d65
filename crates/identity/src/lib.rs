//! EcoCityHub's identity layer — what Cognito, API Gateway authorizers and IAM do in AWS.
//!
//! Pure logic and cryptography, no I/O: the store keeps users, codes, refresh tokens and signing
//! keys; the API wires them to HTTP.
//! - [`account`]: e-mail addresses and user ids.
//! - [`password`]: Cognito's default password policy and argon2id hashes.
//! - [`keys`]: ES256 signing keys, their `kid`s and JWKS.
//! - [`tokens`]: ID and access tokens shaped like Cognito's, issued and verified.
//! - [`policy`]: Cedar policies deciding every action (`policies/*.cedar`).
//! - [`secrets`]: random codes and opaque tokens, kept only as hashes.
//! - [`device_keys`]: stations' API keys (prefix + hashed secret).
//! - [`federation`]: outside OIDC providers' discovery, keys and ID tokens (relying party).

pub mod account;
pub mod device_keys;
pub mod federation;
pub mod keys;
pub mod password;
pub mod policy;
pub mod secrets;
pub mod tokens;

pub use keys::{KeySet, SigningKey};
pub use policy::{Action, Authorizer, Principal, Resource, Role};
pub use tokens::{Claims, TokenConfig, TokenError, TokenUse};
