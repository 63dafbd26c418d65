//! Passwords: Cognito's default policy (at least 8 characters with a lower-case letter, an
//! upper-case letter, a digit and a symbol) and argon2id hashes in PHC format.

use argon2::password_hash::{
    rand_core::OsRng, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier,
    SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the password must {0}")]
pub struct PolicyViolation(pub String);

/// The longest password accepted (argon2 does not care, but a megabyte body should not be hashed).
pub const MAX_LEN: usize = 256;

/// Checks a new password against the policy; the message lists everything that is missing.
pub fn check_policy(password: &str) -> Result<(), PolicyViolation> {
    let mut missing = Vec::new();
    if password.chars().count() < 8 {
        missing.push("have at least 8 characters");
    }
    if password.len() > MAX_LEN {
        missing.push("have at most 256 bytes");
    }
    if !password.chars().any(|c| c.is_lowercase()) {
        missing.push("contain a lower-case letter");
    }
    if !password.chars().any(|c| c.is_uppercase()) {
        missing.push("contain an upper-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("contain a digit");
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        missing.push("contain a symbol");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PolicyViolation(missing.join(", ")))
    }
}

/// The argon2id cost: 19 MiB, 6 passes, 1 lane (above OWASP's minimum of 2 passes): ~55 ms
/// per hash on an idle core of this 2-core machine (36 ms at 4 passes was below the 50 ms floor
/// set for sign-in), so a sign-in takes 50–250 ms (see `ecocityhub bench`). Hashes keep their
/// own parameters, so older ones still verify.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(MEMORY_KIB, 6, 1, None).expect("valid argon2 parameters"),
    )
}

/// The memory one hash at today's cost works in, in KiB (one argon2 block each).
pub const MEMORY_KIB: u32 = 19 * 1024;

/// Working memory for argon2, allocated once and reused: a server that hashes through a few of
/// these (one per core) never allocates and frees 19 MiB per request, so a flood of sign-ups
/// cannot leave the allocator holding gigabytes it will not give back.
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    /// Memory for one hash at today's cost ([`MEMORY_KIB`]).
    pub fn new() -> HashMemory {
        HashMemory(vec![Block::default(); MEMORY_KIB as usize])
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        HashMemory::new()
    }
}

/// [`hash`] in reusable memory.
pub fn hash_in(password: &str, memory: &mut HashMemory) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let argon = argon2();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory.0)
        .expect("argon2 hashing cannot fail with valid parameters");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).expect("valid parameters"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

/// [`verify`] in reusable memory (a hash made at a higher memory cost than [`HashMemory`]
/// holds gets memory of its own for the check).
pub fn verify_in(password: &str, stored: &str, memory: &mut HashMemory) -> bool {
    let Some(checked) = recompute(password, stored, memory) else {
        verify_dummy_in(password, memory);
        return false;
    };
    checked
}

/// Recomputes a stored PHC argon2 hash; `None` when `stored` is not one.
fn recompute(password: &str, stored: &str, memory: &mut HashMemory) -> Option<bool> {
    let parsed = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .ok()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let salt = parsed.salt?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).ok()?;
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let done = if argon.params().block_count() <= memory.0.len() {
        argon.hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            &mut memory.0,
        )
    } else {
        argon.hash_password_into(password.as_bytes(), salt_bytes, &mut out)
    };
    done.ok()?;
    Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

/// [`verify_dummy`] in reusable memory.
pub fn verify_dummy_in(password: &str, memory: &mut HashMemory) {
    let _ = recompute(password, dummy_hash(), memory);
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("Dummy-passw0rd!"))
}

/// Hashes a password (random salt, PHC string).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid parameters")
        .to_string()
}

/// What an account without a password (one made by a sign-in through an outside provider)
/// stores as its hash: no password matches it; a password reset sets a real one.
pub const NO_PASSWORD: &str = "!no-password";

/// Does the password match the stored hash? A malformed hash (and [`NO_PASSWORD`]) never
/// matches, after the time a real check takes, so timing does not tell such accounts apart.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => {
            verify_dummy(password);
            false
        }
    }
}

/// Spends the time of one verification without an account, so that signing in as an unknown
/// e-mail takes as long as a wrong password (no user enumeration by timing).
pub fn verify_dummy(password: &str) {
    let _ = verify(password, dummy_hash());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_cognitos_default() {
        assert!(check_policy("Corr3ct-Horse").is_ok());
        let e = check_policy("short").unwrap_err().0;
        assert!(
            e.contains("8 characters")
                && e.contains("upper-case")
                && e.contains("digit")
                && e.contains("symbol"),
            "{e}"
        );
        assert!(check_policy("alllowercase1!")
            .unwrap_err()
            .0
            .contains("upper-case"));
        assert!(check_policy("NoSymbols123")
            .unwrap_err()
            .0
            .contains("symbol"));
        assert!(check_policy(&format!("Aa1!{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let h = hash("Corr3ct-Horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Corr3ct-Horse", &h));
        assert!(!verify("corr3ct-Horse", &h));
        assert_ne!(h, hash("Corr3ct-Horse"));
        assert!(!verify("x", "not a hash"));
        assert!(!verify("", NO_PASSWORD));
    }

    #[test]
    fn hashes_in_reused_memory_match_the_plain_ones() {
        let mut memory = HashMemory::new();
        let h = hash_in("Corr3ct-Horse", &mut memory);
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=6,p=1$"), "{h}");
        // Both ways read each other's hashes.
        assert!(verify("Corr3ct-Horse", &h));
        assert!(verify_in("Corr3ct-Horse", &h, &mut memory));
        assert!(!verify_in("corr3ct-Horse", &h, &mut memory));
        let plain = hash("Corr3ct-Horse");
        assert!(verify_in("Corr3ct-Horse", &plain, &mut memory));
        assert!(!verify_in("x", "not a hash", &mut memory));
        assert!(!verify_in("", NO_PASSWORD, &mut memory));
        // A hash made at a higher cost than the reusable memory still verifies.
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(MEMORY_KIB * 2, 1, 1, None).unwrap(),
        )
        .hash_password(b"Corr3ct-Horse", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(verify_in("Corr3ct-Horse", &bigger, &mut memory));
    }
}
