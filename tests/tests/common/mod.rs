//! Helpers shared by the end-to-end tests: a pool, a fresh outbox table per test, a relay in the background.
#![allow(dead_code, missing_docs, unused_imports)]

use std::time::Duration;

use outbox_core::{Relay, RelayConfig, RelayStats};
use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
use outbox_postgres::{PgOutbox, PgOutboxConfig, PgStore, TableName};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use outbox_examples::{database_url, kafka_brokers};

pub async fn pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database_url())
        .await
        .expect("connect to PostgreSQL at DATABASE_URL")
}

/// A fresh, migrated outbox table of this test's own: no other test's relay touches it.
pub async fn fresh_outbox(pool: &PgPool, name: &str) -> PgOutboxConfig {
    let config = PgOutboxConfig {
        table: TableName::new("public", &format!("outbox_{name}")).expect("valid table name"),
        ..PgOutboxConfig::default()
    };
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", config.table.quoted()))
        .execute(pool)
        .await
        .expect("drop old test table");
    outbox_postgres::migrate_with(pool, &config)
        .await
        .expect("migrate");
    config
}

pub fn outbox(config: &PgOutboxConfig) -> PgOutbox {
    PgOutbox::new(config.clone())
}

pub struct RunningRelay {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<RelayStats>,
}

impl RunningRelay {
    pub async fn stop(self) -> RelayStats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("relay stops within 30 s")
            .expect("relay task")
    }
}

pub fn relay_config() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

pub fn spawn_relay(
    pool: &PgPool,
    outbox: &PgOutboxConfig,
    transport: KafkaTransport,
    config: RelayConfig,
) -> RunningRelay {
    let relay = Relay::new(
        PgStore::new(pool.clone(), outbox.clone()),
        transport,
        config,
    );
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        relay.run(token).await.expect("relay run");
        relay.stats()
    });
    RunningRelay { shutdown, handle }
}

pub fn kafka(brokers: &str) -> KafkaTransport {
    KafkaTransport::new(KafkaTransportConfig::new(brokers)).expect("kafka transport")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
