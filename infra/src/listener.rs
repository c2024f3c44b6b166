//! One PostgreSQL connection per API process that `LISTEN`s on the channels the
//! process cares about and hands every notification to the subscriber of its channel.
//! A lost connection is reported to the subscribers, because notifications sent while
//! no connection listened are lost, and the listener reconnects.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Receives the notifications of one channel.
pub trait Subscriber: Send + Sync + 'static {
    /// Returns the channel name, used as is in `LISTEN`.
    fn channel(&self) -> &'static str;

    /// Called with each notification's payload.
    fn notify(&self, payload: &str);

    /// Called once `LISTEN` has completed, after the first connection and every reconnect.
    fn listening(&self) {}

    /// Called when the connection is lost, so notifications may be missed until
    /// [`Subscriber::listening`] is called again.
    fn lost(&self) {}
}

/// Listens for the subscribers until `shutdown` is cancelled.
pub fn spawn(
    url: SecretString,
    subscribers: Vec<Arc<dyn Subscriber>>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let result = listen(&url, &subscribers, &shutdown).await;
            for subscriber in &subscribers {
                subscriber.lost();
            }
            if let Err(error) = result {
                tracing::warn!(error = %format!("{error:#}"), "database listener lost its connection; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    });
}

async fn listen(
    url: &SecretString,
    subscribers: &[Arc<dyn Subscriber>],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url.expose_secret())?;
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |context| connection.poll_message(context));
    let statements: String = subscribers
        .iter()
        .map(|subscriber| format!("LISTEN {};", subscriber.channel()))
        .collect();
    // The LISTEN only completes while the connection is polled, so both run together.
    let mut listen = std::pin::pin!(client.batch_execute(&statements));
    let mut listening = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                for subscriber in subscribers {
                    subscriber.listening();
                }
                tracing::info!(statements = %statements, "listening for database notifications");
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    let channel = notification.channel();
                    for subscriber in subscribers.iter().filter(|s| s.channel() == channel) {
                        subscriber.notify(notification.payload());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the listening connection closed"),
            },
        }
    }
}
