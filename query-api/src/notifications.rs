//! Real-time fan-out of in-app notifications. The database announces every new
//! notification on the `notifications` channel (a trigger on the table). One listening
//! connection per query API process turns those announcements into a broadcast that
//! each Server-Sent Events stream filters down to its own recipient.

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Announcements buffered per subscriber; a subscriber that falls further behind skips
/// ahead, and its stream sends the client a `resync` event to list what it missed.
const CHANNEL_CAPACITY: usize = 1024;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A new notification for `recipient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub recipient: Uuid,
    pub notification_id: Uuid,
}

#[derive(Clone)]
pub struct NotificationHub {
    sender: broadcast::Sender<Announcement>,
}

impl Default for NotificationHub {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl NotificationHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.sender.subscribe()
    }

    /// Listens on the `notifications` channel until `shutdown` is cancelled, and
    /// reconnects after a lost connection.
    pub fn spawn_listener(&self, url: SecretString, shutdown: CancellationToken) {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(error) = listen(&url, &sender, &shutdown).await {
                    tracing::warn!(error = %format!("{error:#}"), "notification listener lost its connection; reconnecting");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
            }
        });
    }
}

async fn listen(
    url: &SecretString,
    sender: &broadcast::Sender<Announcement>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url.expose_secret())?;
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |context| connection.poll_message(context));
    // The LISTEN only completes while the connection is polled, so both run together.
    let mut listen = std::pin::pin!(client.batch_execute("LISTEN notifications"));
    let mut listening = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                tracing::info!("listening for new notifications");
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    if let Some(announcement) = parse(notification.payload()) {
                        // A send error only means that no stream is open.
                        let _ = sender.send(announcement);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the listening connection closed"),
            },
        }
    }
}

/// Parses `<recipient id>:<notification id>`, the payload the database trigger sends.
fn parse(payload: &str) -> Option<Announcement> {
    let (recipient, notification) = payload.split_once(':')?;
    Some(Announcement {
        recipient: Uuid::parse_str(recipient).ok()?,
        notification_id: Uuid::parse_str(notification).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_parses_both_ids() {
        let recipient = Uuid::new_v4();
        let notification = Uuid::new_v4();
        assert_eq!(
            parse(&format!("{recipient}:{notification}")),
            Some(Announcement {
                recipient,
                notification_id: notification
            })
        );
        assert_eq!(parse("garbage"), None);
    }
}
