//! Reminder e-mails over SMTP (lettre). An e-mail names no diagnosis, doctor or
//! specialty: only the time, which the patient chose, and a link to the appointment.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

/// Time allowed for one SMTP exchange before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One reminder e-mail to send.
pub struct ReminderMail<'a> {
    pub to: &'a str,
    pub message_id: &'a str,
    pub appointment_id: Uuid,
    pub offset_minutes: i32,
    pub start: DateTime<Utc>,
    pub doctor_time_zone: &'a str,
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    frontend_base_url: String,
}

impl Mailer {
    /// Builds an SMTP client for `smtp_url` such as `smtp://127.0.0.1:1025`. Only plain
    /// SMTP is supported.
    pub fn new(smtp_url: &str, from: &str, frontend_base_url: &str) -> anyhow::Result<Self> {
        let (host, port) = parse_smtp_url(smtp_url)?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|error| anyhow::anyhow!("invalid MEDFLOW_MAIL_FROM '{from}': {error}"))?;
        Ok(Self {
            transport,
            from,
            frontend_base_url: frontend_base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one reminder. The Message-ID is the reminder's own, so a resent copy has
    /// the same one.
    pub async fn send(&self, mail: &ReminderMail<'_>) -> anyhow::Result<()> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error| anyhow::anyhow!("the patient's e-mail address is invalid: {error}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(mail.message_id.to_owned()))
            .subject(subject(mail.offset_minutes))
            .header(ContentType::TEXT_PLAIN)
            .body(self.body(mail))?;
        self.transport.send(message).await?;
        Ok(())
    }

    fn body(&self, mail: &ReminderMail<'_>) -> String {
        let utc = mail.start.format("%Y-%m-%d %H:%M UTC");
        let local = mail
            .doctor_time_zone
            .parse::<Tz>()
            .map(|zone| {
                mail.start
                    .with_timezone(&zone)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_default();
        format!(
            "Hello,\n\nthis is a reminder of your video consultation on {utc} ({local} in the doctor's time zone).\n\
             Open the appointment to join the call, up to 10 minutes before it starts:\n\
             {}/appointments/{}\n\nMedFlow\n",
            self.frontend_base_url, mail.appointment_id
        )
    }
}

/// Splits `smtp://host:port` into host and port. TLS is not built in, so `smtps://` and
/// STARTTLS are rejected rather than silently sent in clear.
fn parse_smtp_url(smtp_url: &str) -> anyhow::Result<(String, u16)> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid MEDFLOW_SMTP_URL '{smtp_url}': expected smtp://host:port, such as smtp://127.0.0.1:1025"
        )
    };
    let address = smtp_url.strip_prefix("smtp://").ok_or_else(invalid)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.trim_end_matches('/').parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

/// Subject line naming only how soon the consultation starts.
pub fn subject(offset_minutes: i32) -> String {
    let when = match offset_minutes {
        minutes if minutes % (24 * 60) == 0 => plural(minutes / (24 * 60) * 24, "hour"),
        minutes if minutes % 60 == 0 => plural(minutes / 60, "hour"),
        minutes => plural(minutes, "minute"),
    };
    format!("Reminder: your video consultation starts in {when}")
}

fn plural(count: i32, unit: &str) -> String {
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_url_parses_host_and_port() {
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:1025").unwrap(),
            ("127.0.0.1".to_owned(), 1025)
        );
        assert_eq!(
            parse_smtp_url("smtp://[::1]:25").unwrap(),
            ("::1".to_owned(), 25)
        );
        assert!(parse_smtp_url("smtps://mail.example:465").is_err());
        assert!(parse_smtp_url("smtp://no-port").is_err());
    }

    #[test]
    fn subject_names_only_the_lead_time() {
        assert_eq!(
            subject(1440),
            "Reminder: your video consultation starts in 24 hours"
        );
        assert_eq!(
            subject(120),
            "Reminder: your video consultation starts in 2 hours"
        );
        assert_eq!(
            subject(15),
            "Reminder: your video consultation starts in 15 minutes"
        );
    }
}
