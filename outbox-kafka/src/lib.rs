//! # outbox-kafka
//!
//! The Kafka [`Transport`] for the outbox relay, on rdkafka (librdkafka).
//!
//! ## Delivery semantics
//! An event is reported published only after the broker acknowledged it with `acks=all`. The producer is
//! idempotent, so librdkafka's own retries neither duplicate nor reorder messages within a partition; settings
//! that would break that are refused when the transport is built (see [`KafkaTransportConfig::set`]). A batch
//! is handed to the producer at once and the delivery reports are collected afterwards.
//!
//! ## Messages
//! Topic and key come from the event; the payload is the event's JSON. Headers: `event-id` (stable across
//! redeliveries: drop duplicates by it), `event-type`, `aggregate-type`, `aggregate-id` (the key),
//! `event-version` (when the event has one), `content-type: application/json`, then any headers stored with
//! the event.
//!
//! ## Consuming
//! [`KafkaSource`] is the [`MessageSource`](outbox_core::inbox::MessageSource) of an idempotent
//! [`InboxConsumer`](outbox_core::inbox::InboxConsumer): a consumer-group member without automatic commits; the
//! inbox commits each message's offset after the database recorded it (at least once from Kafka, once per
//! event id in the database).
//!
//! ```no_run
//! use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
//!
//! let transport = KafkaTransport::new(
//!     KafkaTransportConfig::new("127.0.0.1:9092").set("linger.ms", "10"),
//! )?;
//! # Ok::<(), outbox_kafka::Error>(())
//! ```
#![warn(missing_docs)]

mod source;

pub use source::{KafkaSource, KafkaSourceConfig};

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use outbox_core::{ClaimedEvent, PublishError, Transport};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::{error, warn};

/// Header names set on every message.
pub mod headers {
    /// The event id (UUID v7), stable across redeliveries.
    pub const EVENT_ID: &str = outbox_core::inbox::EVENT_ID_HEADER;
    /// The event type.
    pub const EVENT_TYPE: &str = "event-type";
    /// The aggregate type.
    pub const AGGREGATE_TYPE: &str = "aggregate-type";
    /// The aggregate id (the event key).
    pub const AGGREGATE_ID: &str = "aggregate-id";
    /// The payload schema version, when the event declares one.
    pub const EVENT_VERSION: &str = "event-version";
    /// Always `application/json`.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// An error building the transport or the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A producer setting would break idempotence or per-partition order, or a consumer setting would commit
    /// offsets before messages are recorded.
    #[error("producer setting `{key}={value}` is refused: {reason}")]
    UnsafeSetting {
        /// The setting.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// librdkafka refused the configuration (or a consumer's subscription).
    #[error("could not create the Kafka client")]
    Client(#[source] KafkaError),
    /// The cluster did not answer a metadata request in time.
    #[error("the Kafka cluster did not answer")]
    Unreachable(#[source] KafkaError),
}

/// Settings of a [`KafkaTransport`].
#[derive(Debug, Clone)]
pub struct KafkaTransportConfig {
    settings: Vec<(String, String)>,
}

impl KafkaTransportConfig {
    /// Defaults for `bootstrap.servers = brokers`: idempotent producer, `acks=all`, at most 5 requests in
    /// flight, `linger.ms=5`, `message.timeout.ms=30000` (a publish that cannot be acknowledged in 30 s fails
    /// and is retried by the relay), `compression.type=lz4`, `partitioner=murmur2_random` (the Java client's
    /// partitioning; an empty key is hashed like any other, so its events stay on one partition).
    pub fn new(brokers: &str) -> Self {
        KafkaTransportConfig {
            settings: vec![
                ("bootstrap.servers".into(), brokers.into()),
                ("enable.idempotence".into(), "true".into()),
                ("acks".into(), "all".into()),
                ("max.in.flight.requests.per.connection".into(), "5".into()),
                ("linger.ms".into(), "5".into()),
                ("message.timeout.ms".into(), "30000".into()),
                ("compression.type".into(), "lz4".into()),
                // Java-compatible key hashing, and an empty key is hashed too (librdkafka's default scatters
                // empty keys at random, which would give up their order).
                ("partitioner".into(), "murmur2_random".into()),
            ],
        }
    }

    /// Sets any librdkafka producer property. Properties that would silently give up idempotence or order are
    /// refused by [`KafkaTransport::new`]: `enable.idempotence=false`, `acks` other than `all`/`-1`,
    /// `max.in.flight.requests.per.connection` (or `max.in.flight`) above 5, and `retries` (or
    /// `message.send.max.retries`) of 0.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.into(), value.into()));
        self
    }

    /// How long librdkafka may try to deliver one message (`message.timeout.ms`).
    pub fn delivery_timeout(self, timeout: Duration) -> Self {
        let ms = timeout.as_millis().max(1).to_string();
        self.set("message.timeout.ms", &ms)
    }

    fn check(&self) -> Result<(), Error> {
        for (key, value) in &self.settings {
            let v = value.trim().to_ascii_lowercase();
            let refused = match key.as_str() {
                "enable.idempotence" if v != "true" => {
                    Some("the outbox needs the idempotent producer so retries neither duplicate nor reorder")
                }
                "acks" | "request.required.acks" if v != "all" && v != "-1" => {
                    Some("only acks=all makes an acknowledged event durable")
                }
                "max.in.flight.requests.per.connection" | "max.in.flight"
                    if v.parse::<u32>().map_or(true, |n| n > 5) =>
                {
                    Some("more than 5 requests in flight gives up per-partition order")
                }
                "retries" | "message.send.max.retries" if v.parse::<u64>().map_or(true, |n| n == 0) => {
                    Some("without retries a transient broker error fails events that would have been delivered")
                }
                _ => None,
            };
            if let Some(reason) = refused {
                return Err(Error::UnsafeSetting {
                    key: key.clone(),
                    value: value.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    fn producer(&self) -> Result<FutureProducer, Error> {
        let mut config = ClientConfig::new();
        for (k, v) in &self.settings {
            config.set(k, v);
        }
        config.create().map_err(Error::Client)
    }
}

/// Publishes outbox events to Kafka. See the crate docs for the message layout.
pub struct KafkaTransport {
    config: KafkaTransportConfig,
    producer: Mutex<FutureProducer>,
}

impl KafkaTransport {
    /// Builds the producer.
    ///
    /// # Errors
    /// [`Error::UnsafeSetting`] for a setting that would break idempotence or order; [`Error::Client`] when
    /// librdkafka refuses the configuration.
    pub fn new(config: KafkaTransportConfig) -> Result<Self, Error> {
        config.check()?;
        let producer = config.producer()?;
        Ok(KafkaTransport {
            config,
            producer: Mutex::new(producer),
        })
    }

    /// Connects to the cluster and fetches the metadata of `topics`, so that the first batch does not pay for
    /// it. Use it at start-up to fail fast, or as a readiness check.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the cluster does not answer within `timeout`.
    pub async fn ready(&self, topics: &[&str], timeout: Duration) -> Result<(), Error> {
        let producer = self.current_producer();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let fetch = tokio::task::spawn_blocking(move || -> Result<(), KafkaError> {
            producer.client().fetch_metadata(None, timeout)?;
            for topic in &topics {
                producer.client().fetch_metadata(Some(topic), timeout)?;
            }
            Ok(())
        });
        match fetch.await {
            Ok(result) => result.map_err(Error::Unreachable),
            Err(_) => Err(Error::Unreachable(KafkaError::Canceled)),
        }
    }

    fn current_producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a fatal idempotence error librdkafka's producer accepts nothing more: replace it.
    fn replace_if_fatal(&self, producer: &FutureProducer) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            error!(?code, %reason, "Kafka producer hit a fatal error; creating a new one");
            match self.config.producer() {
                Ok(fresh) => *self.producer.lock().unwrap_or_else(|p| p.into_inner()) = fresh,
                Err(e) => error!(error = %e, "could not recreate the Kafka producer"),
            }
        }
    }
}

fn message_headers(event: &ClaimedEvent) -> OwnedHeaders {
    let id = event.id.hyphenated().to_string();
    let version = event.version.map(|v| v.to_string());
    let mut h = OwnedHeaders::new_with_capacity(6 + event.headers.len())
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: headers::EVENT_TYPE,
            value: Some(event.event_type.as_str()),
        })
        .insert(Header {
            key: headers::AGGREGATE_TYPE,
            value: Some(event.aggregate_type.as_str()),
        })
        .insert(Header {
            key: headers::AGGREGATE_ID,
            value: Some(event.key.as_str()),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some("application/json"),
        });
    if let Some(v) = &version {
        h = h.insert(Header {
            key: headers::EVENT_VERSION,
            value: Some(v.as_str()),
        });
    }
    for (k, v) in &event.headers {
        h = h.insert(Header {
            key: k.as_str(),
            value: Some(v.as_str()),
        });
    }
    h
}

/// Errors that say nothing about the event itself.
fn classify(error: &KafkaError) -> PublishError {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    match code {
        Some(
            C::MessageTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::NetworkException
            | C::RequestTimedOut
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError,
        ) => PublishError::Unavailable(error.to_string()),
        _ => PublishError::Rejected(error.to_string()),
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        let producer = self.current_producer();
        let mut results: Vec<Option<Result<(), PublishError>>> = vec![None; batch.len()];
        let mut in_flight: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(batch.len());
        let mut failed_keys: HashSet<(&str, &str)> = HashSet::new();
        for (i, event) in batch.iter().enumerate() {
            let key = (event.topic.as_str(), event.key.as_str());
            if failed_keys.contains(&key) {
                results[i] = Some(Err(PublishError::NotSent));
                continue;
            }
            let mut record = FutureRecord::to(&event.topic)
                .key(event.key.as_str())
                .payload(event.payload.as_str())
                .headers(message_headers(event));
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue drains as acknowledgements arrive.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        warn!(event_id = %event.id, topic = %event.topic, error = %e, "Kafka client refused the event");
                        results[i] = Some(Err(classify(&e)));
                        failed_keys.insert(key);
                        break;
                    }
                }
            }
        }
        let (indexes, deliveries): (Vec<usize>, Vec<DeliveryFuture>) =
            in_flight.into_iter().unzip();
        for (i, outcome) in indexes.into_iter().zip(join_all(deliveries).await) {
            results[i] = Some(match outcome {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(classify(&e)),
                Err(_canceled) => Err(PublishError::Unavailable(
                    "the producer was closed before the broker answered".into(),
                )),
            });
        }
        self.replace_if_fatal(&producer);
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(PublishError::NotSent)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_break_idempotence_or_order_are_refused() {
        for (k, v) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("acks", "0"),
            ("max.in.flight.requests.per.connection", "6"),
            ("max.in.flight", "100"),
            ("retries", "0"),
            ("message.send.max.retries", "0"),
        ] {
            let result = KafkaTransport::new(KafkaTransportConfig::new("127.0.0.1:1").set(k, v));
            match result {
                Err(Error::UnsafeSetting { key, .. }) => assert_eq!(key, k),
                Err(other) => panic!("{k}={v}: wrong error {other}"),
                Ok(_) => panic!("{k}={v} must be refused"),
            }
        }
    }

    #[tokio::test]
    async fn automatic_offset_commits_are_refused() {
        for k in ["enable.auto.commit", "enable.auto.offset.store"] {
            match KafkaSource::new(
                KafkaSourceConfig::new("127.0.0.1:1", "g").set(k, "true"),
                &["t"],
            ) {
                Err(Error::UnsafeSetting { key, .. }) => assert_eq!(key, k),
                Err(other) => panic!("{k}: wrong error {other}"),
                Ok(_) => panic!("{k}=true must be refused"),
            }
        }
        assert!(KafkaSource::new(KafkaSourceConfig::new("127.0.0.1:1", "g"), &["t"]).is_ok());
    }

    #[test]
    fn safe_settings_are_accepted() {
        let config = KafkaTransportConfig::new("127.0.0.1:1")
            .set("acks", "-1")
            .set("max.in.flight.requests.per.connection", "3")
            .set("linger.ms", "20")
            .delivery_timeout(Duration::from_secs(5));
        assert!(KafkaTransport::new(config).is_ok());
    }
}
