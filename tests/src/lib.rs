//! End-to-end tests of the outbox crates live in `tests/tests/`; this library is empty.
