//! Account basics shared by the API and the CLI: e-mail addresses as the pool keeps them, and
//! user ids shaped like Cognito's `sub`.

/// An address that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an e-mail address")]
pub struct InvalidEmail(pub String);

/// Trims and lower-cases an e-mail address, or says why it is not one.
pub fn normalize_email(raw: &str) -> Result<String, InvalidEmail> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(InvalidEmail(echo(raw)))
    }
}

/// The longest part of a client's input that messages repeat back.
pub const MAX_ECHO_CHARS: usize = 80;

/// `input` as an error message may repeat it: at most [`MAX_ECHO_CHARS`] characters, the rest
/// replaced by a note of how long it was (a megabyte "address" is not sent back).
pub fn echo(input: &str) -> String {
    shorten(input, MAX_ECHO_CHARS)
}

/// `text` cut after `max_chars` characters, with a note of its whole length.
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// A new random user id in UUID (version 4) form, like Cognito's `sub`.
pub fn new_user_id() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(
            normalize_email("  Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        for bad in [
            "",
            "alice",
            "@example.org",
            "alice@",
            "alice@example",
            "a b@example.org",
            "a@b@example.org",
            "alice@.org",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_input_is_not_echoed_in_full() {
        let huge = format!("{}@example.org", "a".repeat(2_000_000));
        let message = normalize_email(&huge).unwrap_err().to_string();
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.contains("2000012 bytes in all"), "{message}");
        assert_eq!(echo("short"), "short");
        // Cut on a character boundary.
        assert!(echo(&"é".repeat(100)).starts_with(&"é".repeat(MAX_ECHO_CHARS)));
    }

    #[test]
    fn user_ids_look_like_uuids() {
        let id = new_user_id();
        assert_eq!(id.len(), 36);
        assert_eq!(
            id.split('-').map(str::len).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert_ne!(id, new_user_id());
    }
}
