//! E-mail through SMTP with `lettre` (rustls; `smtp://host:port`, `smtps://user:pass@host`,
//! `smtp://…?tls=required` for STARTTLS), or, with no SMTP URL, to the log: the message stays in
//! the outbox either way. Every mail has a plain and (when given) an HTML part; subscription
//! mail carries an unsubscribe link and the one-click `List-Unsubscribe` headers (RFC 8058).

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message as Email, Tokio1Executor};
use serde::Deserialize;

use super::{SendError, SendResult};

/// How mail leaves.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MailConfig {
    /// `smtp://host:port`, `smtps://user:pass@host[:port]`; none: mail goes to the log.
    pub smtp_url: Option<String>,
    /// The From address (`EcoCityHub <alerts@city.example>`); required with an SMTP URL.
    pub from: Option<String>,
}

/// A mail setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("the SMTP URL is not usable: {0}")]
    Url(String),
    #[error("--smtp-from is required with an SMTP URL")]
    NoFrom,
    #[error("the From address {0:?} is not an e-mail address")]
    From(String),
}

/// One mail to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMail {
    /// The message's stable id: the mail's `Message-ID` is built from it.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Present for subscription mail: the link and the `List-Unsubscribe` target.
    pub unsubscribe_url: Option<String>,
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// No SMTP server: each mail is written to the log.
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Log => write!(f, "Mailer::Log"),
        }
    }
}

#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

impl Mailer {
    pub fn from_config(config: &MailConfig) -> Result<Mailer, MailConfigError> {
        let Some(url) = config.smtp_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(Mailer::Log);
        };
        let from_text = config.from.as_deref().ok_or(MailConfigError::NoFrom)?;
        let from: Mailbox = from_text
            .parse()
            .map_err(|_| MailConfigError::From(from_text.to_string()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailConfigError::Url(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        Ok(Mailer::Smtp { transport, from })
    }

    pub fn is_smtp(&self) -> bool {
        matches!(self, Mailer::Smtp { .. })
    }

    /// Builds the mail as it would be sent (public for tests and previews).
    pub fn build(from: &Mailbox, mail: &OutgoingMail) -> Result<Email, SendError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| SendError::Permanent(format!("{:?} is not an e-mail address", mail.to)))?;
        let domain = from.email.domain().to_string();
        let mut builder = Email::builder()
            .from(from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", mail.message_id)));
        let mut text = mail.text.clone();
        let mut html = mail.html.clone();
        if let Some(url) = &mail.unsubscribe_url {
            builder = builder
                .header(ListUnsubscribe(url.clone()))
                .header(ListUnsubscribePost);
            text.push_str(&format!("\n\n--\nUnsubscribe: {url}\n"));
            html = html.map(|h| {
                format!(
                    "{h}\n<hr><p><a href=\"{}\">Unsubscribe</a></p>",
                    escape(url)
                )
            });
        }
        let html = html.unwrap_or_else(|| format!("<pre>{}</pre>", escape(&text)));
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(SinglePart::html(html)),
            )
            .map_err(|e| SendError::Permanent(e.to_string()))
    }

    pub async fn send(&self, mail: &OutgoingMail) -> SendResult {
        match self {
            Mailer::Log => {
                tracing::info!(
                    to = %mail.to, subject = %mail.subject, body = %mail.text,
                    message_id = %mail.message_id, "mail (no SMTP server set): to the log"
                );
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let email = Mailer::build(from, mail)?;
                match transport.send(email).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Err(e) => Err(SendError::Retry(e.to_string())),
                }
            }
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(unsubscribe: bool) -> OutgoingMail {
        OutgoingMail {
            message_id: "msg_1".into(),
            to: "citizen@example.org".into(),
            subject: "Air quality alert".into(),
            text: "PM2.5 is unhealthy".into(),
            html: Some("<p>PM2.5 is <b>unhealthy</b></p>".into()),
            unsubscribe_url: unsubscribe.then(|| "https://city.example/unsubscribe/tok".into()),
        }
    }

    #[test]
    fn subscription_mail_has_both_parts_and_one_click_unsubscribe() {
        let from: Mailbox = "EcoCityHub <alerts@city.example>".parse().unwrap();
        let raw =
            String::from_utf8(Mailer::build(&from, &mail(true)).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("List-Unsubscribe: <https://city.example/unsubscribe/tok>"),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("Message-ID: <msg_1@city.example>"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        let plain = Mailer::build(&from, &mail(false)).unwrap().formatted();
        assert!(!String::from_utf8(plain)
            .unwrap()
            .contains("List-Unsubscribe"));
    }

    /// (The SMTP pool starts a task, so building a mailer needs a runtime.)
    #[tokio::test]
    async fn configuration_is_checked() {
        assert!(matches!(
            Mailer::from_config(&MailConfig::default()),
            Ok(Mailer::Log)
        ));
        let no_from = MailConfig {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            from: None,
        };
        assert!(matches!(
            Mailer::from_config(&no_from),
            Err(MailConfigError::NoFrom)
        ));
        let bad = MailConfig {
            smtp_url: Some("gopher://x".into()),
            from: Some("a@b.org".into()),
        };
        assert!(matches!(
            Mailer::from_config(&bad),
            Err(MailConfigError::Url(_))
        ));
        let ok = MailConfig {
            smtp_url: Some("smtps://user:pass@smtp.example.org".into()),
            from: Some("EcoCityHub <a@b.org>".into()),
        };
        assert!(Mailer::from_config(&ok).unwrap().is_smtp());
        let bad_from = MailConfig {
            from: Some("not an address".into()),
            ..ok
        };
        assert!(matches!(
            Mailer::from_config(&bad_from),
            Err(MailConfigError::From(_))
        ));
    }
}
