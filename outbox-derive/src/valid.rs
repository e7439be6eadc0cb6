//! Checks of the parsed input that need more than one attribute: a topic is given and valid, exactly one key
//! field per event, no unions. Errors go to [`Errors`]; nothing here stops at the first one.

use crate::ast::{Data, Field, Input};
use crate::attr::{Attrs, Errors, KEY, TOPIC};
use proc_macro2::Span;
use syn::LitStr;

/// Kafka's limit on the length of a topic name.
const MAX_TOPIC_LEN: usize = 249;

pub(crate) fn check(input: &Input, errors: &mut Errors) {
    check_values(&input.attrs, errors);
    match &input.data {
        Data::Union(union_token) => errors.at(
            union_token.span,
            "unions are not supported by `#[derive(OutboxEvent)]`: use a struct, or an enum with one variant per event",
        ),
        Data::Struct(fields) => {
            let attempted_topic = input.attrs.attempted(TOPIC) || fields.iter().any(|f| f.attrs.attempted(TOPIC));
            if input.attrs.topic.is_none() && !attempted_topic {
                errors.at(
                    input.ident.span(),
                    format!(
                        "`{}` has no topic: name the Kafka topic it is published to with `#[outbox(topic = \"...\")]` \
                         on the struct",
                        input.ident
                    ),
                );
            }
            let owner = format!("`{}`", input.ident);
            check_key(fields, &owner, input.ident.span(), input.attrs.attempted(KEY), errors);
        }
        Data::Enum(variants) => {
            if variants.is_empty() {
                errors.at(
                    input.ident.span(),
                    format!("`{}` has no variants, so it has no events to publish", input.ident),
                );
            }
            let shared_topic = input.attrs.topic.is_some() || input.attrs.attempted(TOPIC);
            let any_variant_topic = variants.iter().any(|v| v.attrs.topic.is_some() || v.attrs.attempted(TOPIC));
            if !shared_topic && !any_variant_topic && !variants.is_empty() {
                errors.at(
                    input.ident.span(),
                    format!(
                        "`{}` has no topic: give the enum `#[outbox(topic = \"...\")]` (shared by every variant), or \
                         give each variant its own",
                        input.ident
                    ),
                );
            }
            for variant in variants {
                check_values(&variant.attrs, errors);
                if !shared_topic && any_variant_topic && variant.attrs.topic.is_none() && !variant.attrs.attempted(TOPIC)
                {
                    errors.at(
                        variant.ident.span(),
                        format!(
                            "variant `{}` has no topic: give it `#[outbox(topic = \"...\")]`, or give the enum a \
                             shared one",
                            variant.ident
                        ),
                    );
                }
                let owner = format!("variant `{}`", variant.ident);
                let attempted_key = variant.attrs.attempted(KEY) || input.attrs.attempted(KEY);
                check_key(&variant.fields, &owner, variant.ident.span(), attempted_key, errors);
            }
        }
    }
}

/// Each event (the struct, or each enum variant) has exactly one `#[outbox(key)]` field.
fn check_key(
    fields: &[Field],
    owner: &str,
    owner_span: Span,
    attempted: bool,
    errors: &mut Errors,
) {
    let mut keys = fields.iter().filter(|field| field.attrs.key.is_some());
    match keys.next() {
        Some(first) => {
            for extra in keys {
                errors.at(
                    extra.attrs.key.unwrap_or(owner_span),
                    format!(
                        "only one field can be the event key, and {} already is: remove this `#[outbox(key)]`",
                        first.describe()
                    ),
                );
            }
        }
        None if attempted || fields.iter().any(|field| field.attrs.attempted(KEY)) => {}
        None if fields.is_empty() => errors.at(
            owner_span,
            format!(
                "{owner} has no fields, but an event needs a key: add the field that holds the aggregate id and mark \
                 it with `#[outbox(key)]`"
            ),
        ),
        None => errors.at(
            owner_span,
            format!(
                "no field of {owner} is marked as the event key: put `#[outbox(key)]` on the field that holds the \
                 aggregate id (it becomes the Kafka message key)"
            ),
        ),
    }
}

fn check_values(attrs: &Attrs, errors: &mut Errors) {
    if let Some(topic) = &attrs.topic {
        check_topic(topic, errors);
    }
    for (name, value) in [
        ("aggregate", &attrs.aggregate),
        ("event_type", &attrs.event_type),
    ] {
        if let Some(value) = value {
            if value.value().is_empty() {
                errors.at(value.span(), format!("`{name}` must not be empty"));
            }
        }
    }
}

/// Kafka's rules for topic names (`org.apache.kafka.common.internals.Topic#validate`).
fn check_topic(topic: &LitStr, errors: &mut Errors) {
    if let Err(problem) = topic_problem(&topic.value()) {
        errors.at(topic.span(), problem);
    }
}

fn topic_problem(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "the topic name is empty: a Kafka topic name has 1 to {MAX_TOPIC_LEN} characters"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a valid Kafka topic name: Kafka does not allow `.` or `..` as a name"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let bad = match bad {
            ' ' => "a space".to_owned(),
            c if c.is_control() || c.is_whitespace() => format!("the character {c:?}"),
            c => format!("`{c}`"),
        };
        return Err(format!(
            "`{name}` is not a valid Kafka topic name: it contains {bad}, and Kafka allows only ASCII letters, \
             digits, `.`, `_` and `-`"
        ));
    }
    let len = name.len();
    if len > MAX_TOPIC_LEN {
        return Err(format!(
            "the topic name is {len} characters long: Kafka allows at most {MAX_TOPIC_LEN}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::topic_problem;

    #[test]
    fn kafka_topic_rules() {
        for good in [
            "orders",
            "orders.events",
            "batch_events-v1",
            "A.b-C_9",
            &"x".repeat(249),
        ] {
            assert_eq!(topic_problem(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "orders events",
            "orders/events",
            "ordérs",
            "tab\there",
            &"x".repeat(250),
        ] {
            assert!(topic_problem(bad).is_err(), "{bad}");
        }
        assert_eq!(
            topic_problem("orders/events").unwrap_err(),
            "`orders/events` is not a valid Kafka topic name: it contains `/`, and Kafka allows only ASCII \
             letters, digits, `.`, `_` and `-`"
        );
    }
}
