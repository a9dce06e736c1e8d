//! Sending e-mail: over SMTP (host, port, TLS, credentials) or, with no SMTP server
//! configured, into a local maildir whose messages the portal also shows.

use std::path::PathBuf;
use std::time::Duration;

use crate::ConfigError;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host, or a test server).
    None,
    /// STARTTLS, required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    pub fn parse(text: &str) -> Result<SmtpTls, ConfigError> {
        match text {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            other => Err(ConfigError(format!("alerts.smtp_tls must be none, starttls or tls, got {other:?}"))),
        }
    }
}

#[derive(Clone, Debug)]
pub enum MailConfig {
    Smtp { host: String, port: u16, tls: SmtpTls, username: Option<String>, password: Option<String> },
    Maildir(PathBuf),
}

/// Why a message was not sent: `permanent` ones are not retried.
#[derive(Debug)]
pub struct MailError {
    pub message: String,
    pub permanent: bool,
}

pub struct Mailer {
    config: MailConfig,
    from: Mailbox,
    transport: Option<SmtpTransport>,
}

impl Mailer {
    pub fn new(config: MailConfig, from: &str) -> Result<Mailer, ConfigError> {
        let from: Mailbox =
            from.parse().map_err(|e| ConfigError(format!("alerts.from {from:?} is not an e-mail address: {e}")))?;
        let transport = match &config {
            MailConfig::Smtp { host, port, tls, username, password } => {
                let tls = match tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::StartTls => Tls::Required(
                        TlsParameters::new(host.clone()).map_err(|e| ConfigError(format!("alerts.smtp_host: {e}")))?,
                    ),
                    SmtpTls::Tls => Tls::Wrapper(
                        TlsParameters::new(host.clone()).map_err(|e| ConfigError(format!("alerts.smtp_host: {e}")))?,
                    ),
                };
                let mut builder =
                    SmtpTransport::builder_dangerous(host).port(*port).tls(tls).timeout(Some(Duration::from_secs(20)));
                if let (Some(u), Some(p)) = (username, password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Some(builder.build())
            }
            MailConfig::Maildir(dir) => {
                for sub in ["tmp", "new", "cur"] {
                    std::fs::create_dir_all(dir.join(sub))
                        .map_err(|e| ConfigError(format!("alerts.maildir {}: {e}", dir.display())))?;
                }
                None
            }
        };
        Ok(Mailer { config, from, transport })
    }

    pub fn describe(&self) -> String {
        match &self.config {
            MailConfig::Smtp { host, port, tls, .. } => format!("smtp://{host}:{port} ({tls:?})"),
            MailConfig::Maildir(dir) => format!("maildir {}", dir.display()),
        }
    }

    /// Sends one message. `message_id` is the same on every attempt, so a message sent again
    /// after a crash is recognisable as the same one.
    /// `attachment` is a file (name, content type, bytes) sent with the text.
    pub fn send(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        message_id: &str,
        attachment: Option<(&str, &str, Vec<u8>)>,
    ) -> Result<(), MailError> {
        let permanent = |message: String| MailError { message, permanent: true };
        let to: Mailbox = to.parse().map_err(|e| permanent(format!("{to:?} is not an e-mail address: {e}")))?;
        let builder =
            Message::builder().from(self.from.clone()).to(to).subject(subject).message_id(Some(message_id.to_owned()));
        let message = match attachment {
            None => builder.header(ContentType::TEXT_PLAIN).body(body.to_owned()),
            Some((name, kind, bytes)) => {
                let kind = ContentType::parse(kind).map_err(|e| permanent(e.to_string()))?;
                let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body.to_owned());
                builder.multipart(
                    MultiPart::mixed().singlepart(text).singlepart(Attachment::new(name.to_owned()).body(bytes, kind)),
                )
            }
        }
        .map_err(|e| permanent(e.to_string()))?;
        match (&self.transport, &self.config) {
            (Some(smtp), _) => smtp
                .send(&message)
                .map(drop)
                .map_err(|e| MailError { message: e.to_string(), permanent: e.is_permanent() }),
            (None, MailConfig::Maildir(dir)) => {
                let name = format!("{}.purse", message_id.trim_matches(['<', '>']));
                let tmp = dir.join("tmp").join(&name);
                std::fs::write(&tmp, message.formatted())
                    .and_then(|()| std::fs::rename(&tmp, dir.join("new").join(&name)))
                    .map_err(|e| MailError { message: format!("maildir {}: {e}", dir.display()), permanent: false })
            }
            (None, MailConfig::Smtp { .. }) => unreachable!("an SMTP mailer has a transport"),
        }
    }
}
