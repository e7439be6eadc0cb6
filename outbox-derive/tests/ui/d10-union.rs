use outbox_core::OutboxEvent;

#[derive(OutboxEvent)]
#[outbox(topic = "raw")]
union RawId {
    number: u64,
    bytes: [u8; 8],
}

fn main() {}
