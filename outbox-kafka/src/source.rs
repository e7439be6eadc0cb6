//! The consuming side: a Kafka consumer-group member as a [`MessageSource`] for the inbox consumer.

use std::sync::Arc;

use async_trait::async_trait;
use outbox_core::inbox::{InboxMessage, MessageSource, SourceError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::Error;

/// Settings of a [`KafkaSource`].
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    settings: Vec<(String, String)>,
}

impl KafkaSourceConfig {
    /// Defaults for `bootstrap.servers = brokers` in consumer group `group_id`: offsets committed only by the
    /// inbox consumer (`enable.auto.commit=false`, `enable.auto.offset.store=false`), a new group starts at the
    /// earliest offset (`auto.offset.reset=earliest`), `fetch.wait.max.ms=100`.
    pub fn new(brokers: &str, group_id: &str) -> Self {
        KafkaSourceConfig {
            settings: vec![
                ("bootstrap.servers".into(), brokers.into()),
                ("group.id".into(), group_id.into()),
                ("enable.auto.commit".into(), "false".into()),
                ("enable.auto.offset.store".into(), "false".into()),
                ("auto.offset.reset".into(), "earliest".into()),
                ("enable.partition.eof".into(), "false".into()),
                ("fetch.wait.max.ms".into(), "100".into()),
            ],
        }
    }

    /// Sets any librdkafka consumer property. `enable.auto.commit=true` and `enable.auto.offset.store=true`
    /// are refused by [`KafkaSource::new`]: they would confirm messages before they are recorded.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.into(), value.into()));
        self
    }

    fn check(&self) -> Result<(), Error> {
        for (key, value) in &self.settings {
            let v = value.trim().to_ascii_lowercase();
            if matches!(
                key.as_str(),
                "enable.auto.commit" | "enable.auto.offset.store"
            ) && v != "false"
            {
                return Err(Error::UnsafeSetting {
                    key: key.clone(),
                    value: value.clone(),
                    reason:
                        "the inbox consumer commits an offset only after the message is recorded",
                });
            }
        }
        Ok(())
    }
}

/// Reads topics as a member of a Kafka consumer group, for an
/// [`InboxConsumer`](outbox_core::inbox::InboxConsumer).
///
/// Partitions are shared among the group's members by Kafka. Each message is committed synchronously (the
/// offset after it) once the inbox recorded it; a restarted member resumes at the committed offset, and whatever
/// it reads again is skipped by the inbox as a duplicate. Messages of one partition arrive in order and the
/// consumer handles them one at a time, so their order is kept.
///
/// ```no_run
/// use outbox_kafka::{KafkaSource, KafkaSourceConfig};
///
/// let source = KafkaSource::new(KafkaSourceConfig::new("127.0.0.1:9092", "billing"), &["orders"])?;
/// # Ok::<(), outbox_kafka::Error>(())
/// ```
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes to `topics`. Call it inside a Tokio runtime (rdkafka's stream
    /// consumer spawns its wake-up task there).
    ///
    /// # Errors
    /// [`Error::UnsafeSetting`] for automatic offset commits; [`Error::Client`] when librdkafka refuses the
    /// configuration or the subscription.
    pub fn new(config: KafkaSourceConfig, topics: &[&str]) -> Result<Self, Error> {
        config.check()?;
        let mut client = ClientConfig::new();
        for (k, v) in &config.settings {
            client.set(k, v);
        }
        let consumer: StreamConsumer = client.create().map_err(Error::Client)?;
        consumer.subscribe(topics).map_err(Error::Client)?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
        })
    }

    fn inbox_message(m: &BorrowedMessage<'_>) -> InboxMessage {
        let mut headers = Vec::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.push((
                    header.key.to_owned(),
                    header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                ));
            }
        }
        InboxMessage::new(
            m.topic(),
            m.partition(),
            m.offset(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        )
    }
}

#[async_trait]
impl MessageSource for KafkaSource {
    async fn next(&self) -> Result<InboxMessage, SourceError> {
        // `recv` is cancel-safe: a message is taken off the queue only when the future completes.
        match self.consumer.recv().await {
            Ok(m) => Ok(Self::inbox_message(&m)),
            Err(e) => Err(SourceError::Broker(Box::new(e))),
        }
    }

    async fn commit(&self, message: &InboxMessage) -> Result<(), SourceError> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &message.topic,
                message.partition,
                Offset::Offset(message.offset + 1),
            )
            .map_err(|e| SourceError::Broker(Box::new(e)))?;
        let consumer = self.consumer.clone();
        // A synchronous commit blocks its thread until the broker answers: keep it off the async workers.
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await;
        match committed {
            Ok(result) => result.map_err(|e| SourceError::Broker(Box::new(e))),
            Err(join) => Err(SourceError::Broker(Box::new(join))),
        }
    }
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}
