//! Wake-ups: a LISTEN connection that tells the relay when events were committed.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Starts a task that LISTENs on `channel` and bumps the returned counter on every notification, and once
/// after every reconnect (notifications sent while it was away are lost, so the relay should look). The task
/// ends when the receiver is dropped.
pub(crate) fn spawn_listener(
    pool: PgPool,
    channel: String,
    metric_labels: &[(String, String)],
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let labels: Vec<metrics::Label> = metric_labels
        .iter()
        .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
        .collect();
    // Looked up when counted, so an exporter installed after the relay started still sees it.
    let reconnects = move || {
        metrics::counter!(
            outbox_core::telemetry::names::LISTEN_RECONNECTS,
            labels.clone()
        )
    };
    reconnects().increment(0);
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let mut listener = tokio::select! {
                l = connect(&pool, &channel) => l,
                _ = tx.closed() => return,
            };
            let Some(listener) = listener.as_mut() else {
                failures += 1;
                let delay = Duration::from_millis(100 * u64::from(failures.min(50)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = tx.closed() => return,
                }
            };
            if failures > 0 {
                info!(%channel, "wake-up listener reconnected");
                reconnects().increment(1);
            }
            failures = 0;
            // Anything committed while we were not listening is only found by looking.
            tx.send_modify(|n| *n += 1);
            loop {
                tokio::select! {
                    message = listener.try_recv() => match message {
                        Ok(Some(_)) => tx.send_modify(|n| *n += 1),
                        Ok(None) => {
                            warn!(%channel, "wake-up listener lost its connection; reconnecting");
                            failures += 1;
                            break;
                        }
                        Err(e) => {
                            warn!(%channel, error = %e, "wake-up listener failed; reconnecting");
                            failures += 1;
                            break;
                        }
                    },
                    _ = tx.closed() => return,
                }
            }
        }
    });
    rx
}

async fn connect(pool: &PgPool, channel: &str) -> Option<PgListener> {
    match PgListener::connect_with(pool).await {
        Ok(mut listener) => match listener.listen(channel).await {
            Ok(()) => {
                debug!(%channel, "listening for wake-ups");
                Some(listener)
            }
            Err(e) => {
                warn!(%channel, error = %e, "LISTEN failed");
                None
            }
        },
        Err(e) => {
            warn!(%channel, error = %e, "could not open the wake-up connection");
            None
        }
    }
}
