//! Real-time fan-out of in-app notifications. The database announces every new
//! notification on the `notifications` channel (a trigger on the table). The query
//! API's database listener turns those announcements into a broadcast that each
//! Server-Sent Events stream filters down to its own recipient.

use tokio::sync::broadcast;
use uuid::Uuid;

use medflow_infra::listener::Subscriber;

/// Announcements buffered per subscriber; a subscriber that falls further behind skips
/// ahead, and its stream sends the client a `resync` event to list what it missed.
const CHANNEL_CAPACITY: usize = 1024;

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
}

impl Subscriber for NotificationHub {
    fn channel(&self) -> &'static str {
        "notifications"
    }

    fn notify(&self, payload: &str) {
        if let Some(announcement) = parse(payload) {
            // A send error only means that no stream is open.
            let _ = self.sender.send(announcement);
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
