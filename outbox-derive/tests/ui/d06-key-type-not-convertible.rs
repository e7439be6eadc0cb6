use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize)]
struct CustomerRef {
    region: u8,
    number: u32,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "customers")]
struct CustomerRegistered {
    #[outbox(key)]
    customer: CustomerRef,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "blobs")]
struct BlobStored(#[outbox(key)] Vec<u8>);

fn main() {}
