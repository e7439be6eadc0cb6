//! An explicit event type and schema version.

use outbox_core::{OutboxEvent, StaticOutboxEvent};
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize, OutboxEvent)]
#[outbox(
    topic = "batch.events",
    aggregate = "batch",
    event_type = "batch.spellcheck.initiated.v1",
    version = 2
)]
struct SpellcheckInitiated {
    #[outbox(key)]
    batch_id: Uuid,
    essays: u32,
}

/// What a transport sends as headers, read through the trait only.
fn headers(event: &impl OutboxEvent) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("event-type", event.event_type().to_owned()),
        ("aggregate-type", event.aggregate_type().to_owned()),
    ];
    if let Some(version) = event.version() {
        headers.push(("event-version", version.to_string()));
    }
    headers
}

fn main() {
    let event = SpellcheckInitiated { batch_id: Uuid::nil(), essays: 12 };
    assert_eq!(event.event_type(), "batch.spellcheck.initiated.v1");
    assert_eq!(event.version(), Some(2));
    assert_eq!(SpellcheckInitiated::EVENT_TYPE, "batch.spellcheck.initiated.v1");
    assert_eq!(SpellcheckInitiated::VERSION, Some(2));
    assert_eq!(
        headers(&event),
        [
            ("event-type", "batch.spellcheck.initiated.v1".to_owned()),
            ("aggregate-type", "batch".to_owned()),
            ("event-version", "2".to_owned()),
        ]
    );
    assert_eq!(event.essays, 12);
}
