//! With the `opentelemetry` feature, an event carries the trace context active when it was enqueued, as a W3C
//! `traceparent` header that a consumer parses back into the same trace. (scripts/test.sh runs every test
//! with all features.)
#![cfg(feature = "opentelemetry")]

use opentelemetry::trace::{TraceContextExt, TracerProvider};
use outbox_core::telemetry::{parse_traceparent, TRACEPARENT};
use outbox_core::{NewMessage, OutboxEvent};
use serde::Serialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", event_type = "order.placed.v1")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

fn header<'a>(message: &'a NewMessage, name: &str) -> Option<&'a str> {
    message
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_enqueuing_span_travels_as_a_w3c_traceparent() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, || {
        let outside = NewMessage::from_event(&OrderPlaced { order_id: 1 }).unwrap();
        assert_eq!(header(&outside, TRACEPARENT), None, "no span, no header");

        let span = tracing::info_span!("checkout");
        let _entered = span.enter();
        let message = NewMessage::from_event(&OrderPlaced { order_id: 1 })
            .unwrap()
            .with_correlation_id("req-42")
            .unwrap();
        let producer = span.context().span().span_context().clone();
        assert!(producer.is_valid());
        let traceparent = header(&message, TRACEPARENT).expect("traceparent header");
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", producer.trace_id(), producer.span_id()),
            "version 00, the span's trace and span ids, sampled"
        );
        assert_eq!(header(&message, "correlation-id"), Some("req-42"));

        let consumer = parse_traceparent(traceparent, None).expect("parses");
        let parent = consumer.span().span_context().clone();
        assert_eq!(parent.trace_id(), producer.trace_id());
        assert_eq!(parent.span_id(), producer.span_id());
        assert!(parent.is_remote() && parent.is_sampled());
    });
}

#[test]
fn malformed_traceparents_are_refused() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ] {
        assert!(
            parse_traceparent(bad, None).is_none(),
            "{bad:?} must be refused"
        );
    }
    // A later version may append fields.
    assert!(parse_traceparent(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
        None
    )
    .is_some());
}
