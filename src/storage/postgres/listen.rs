//! Wake-ups between routers: one connection outside the pool `LISTEN`s on
//! the work channel and turns each notification into a wake-up of this
//! router's dispatcher. A lost connection is opened again; after each
//! (re)connect the dispatcher is woken once, for what it may have missed.

use super::commit::CHANNEL;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

/// Time between attempts to reconnect.
const RETRY: Duration = Duration::from_secs(1);

/// Runs for the life of the log.
pub async fn run(config: tokio_postgres::Config, work: Arc<Notify>) {
    let faults = crate::telemetry::fault::Fault::default();
    loop {
        match listen(&config, &work).await {
            Ok(()) => _ = faults.ok(),
            Err(e) => {
                if let Some(times) = faults.failed() {
                    tracing::warn!(error = %e, times, "Lost the PostgreSQL connection that wakes this router; retrying.");
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Listens until the connection ends.
async fn listen(config: &tokio_postgres::Config, work: &Arc<Notify>) -> Result<(), String> {
    let (client, mut connection) = config.connect(crate::pg::tls()).await.map_err(|e| crate::pg::describe(&e))?;
    let woken = work.clone();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => woken.notify_one(),
                Ok(_) => {}
                Err(e) => return Err(crate::pg::describe(&e)),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(|e| crate::pg::describe(&e))?;
    work.notify_one();
    driver.await.map_err(|e| e.to_string())?
}
