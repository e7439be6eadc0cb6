//! Parsing of `#[outbox(...)]` attributes. Every value keeps the span of the token the user wrote, so that later
//! errors can point at it; every mistake is pushed to [`Errors`] and parsing goes on, so that one compile reports
//! all of them.

use proc_macro2::{Span, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Lit, LitStr, Token};

/// The attribute every option lives in: `#[outbox(...)]`.
const OUTBOX: &str = "outbox";

pub(crate) const TOPIC: &str = "topic";
pub(crate) const AGGREGATE: &str = "aggregate";
pub(crate) const EVENT_TYPE: &str = "event_type";
pub(crate) const VERSION: &str = "version";
pub(crate) const CRATE: &str = "crate";
pub(crate) const KEY: &str = "key";

/// Errors collected across the whole input, reported together (like serde_derive's `Ctxt`).
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        match self.combined {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Where an attribute was written; each place accepts its own subset of the options.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Struct,
    Enum,
    Variant,
    Field,
}

impl Place {
    fn accepts(self) -> &'static [&'static str] {
        match self {
            Place::Struct | Place::Enum => &[TOPIC, AGGREGATE, EVENT_TYPE, VERSION, CRATE],
            Place::Variant => &[TOPIC, AGGREGATE, EVENT_TYPE, VERSION],
            Place::Field => &[KEY],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Place::Struct => "a struct",
            Place::Enum => "an enum",
            Place::Variant => "an enum variant",
            Place::Field => "a field",
        }
    }
}

/// The options found in the `#[outbox(...)]` attributes of one struct, enum, variant or field.
#[derive(Default)]
pub(crate) struct Attrs {
    pub topic: Option<LitStr>,
    pub aggregate: Option<LitStr>,
    pub event_type: Option<LitStr>,
    pub version: Option<u32>,
    pub krate: Option<syn::Path>,
    /// The `key` token of `#[outbox(key)]`.
    pub key: Option<Span>,
    /// Options the user tried to give here, even if misspelled, misplaced or with a bad value. A "missing topic"
    /// error after "unknown attribute `topc`, did you mean `topic`" would only repeat it.
    pub attempted: Vec<&'static str>,
}

impl Attrs {
    pub(crate) fn attempted(&self, name: &str) -> bool {
        self.attempted.contains(&name)
    }
}

/// Parses every `#[outbox(...)]` among `attrs`; other attributes are left alone.
pub(crate) fn parse(attrs: &[Attribute], place: Place, errors: &mut Errors) -> Attrs {
    let mut parsed = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(OUTBOX)) {
        let result = attr.parse_nested_meta(|meta| {
            parse_option(&meta, place, &mut parsed, errors)?;
            Ok(())
        });
        // Only malformed syntax (a missing comma, `#[outbox]` without parentheses) ends up here.
        if let Err(error) = result {
            errors.push(error);
        }
    }
    parsed
}

fn parse_option(
    meta: &ParseNestedMeta,
    place: Place,
    parsed: &mut Attrs,
    errors: &mut Errors,
) -> syn::Result<()> {
    let written = meta.path.to_token_stream().to_string().replace(' ', "");
    let span = path_span(meta);
    let Some(name) = [TOPIC, AGGREGATE, EVENT_TYPE, VERSION, CRATE, KEY]
        .into_iter()
        .find(|name| meta.path.is_ident(name))
    else {
        skip_value(meta)?;
        let suggestion = closest(&written, place.accepts());
        if let Some(suggestion) = suggestion {
            parsed.attempted.push(suggestion);
        }
        errors.at(span, unknown_message(&written, place, suggestion));
        return Ok(());
    };
    parsed.attempted.push(name);

    if !place.accepts().contains(&name) {
        skip_value(meta)?;
        errors.at(span, misplaced_message(name, place));
        return Ok(());
    }

    let already_given = match name {
        TOPIC => parsed.topic.is_some(),
        AGGREGATE => parsed.aggregate.is_some(),
        EVENT_TYPE => parsed.event_type.is_some(),
        VERSION => parsed.version.is_some(),
        CRATE => parsed.krate.is_some(),
        _ => parsed.key.is_some(),
    };
    if already_given {
        skip_value(meta)?;
        errors.at(
            span,
            format!("duplicate `{name}`: it is already given earlier; keep only one"),
        );
        return Ok(());
    }

    if name == KEY {
        if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
            skip_value(meta)?;
            errors.at(
                span,
                "`key` takes no value: write `#[outbox(key)]` on the key field",
            );
        } else {
            parsed.key = Some(span);
        }
        return Ok(());
    }

    let Some(value) = parse_value(meta, name, span, errors)? else {
        return Ok(());
    };
    match name {
        TOPIC => parsed.topic = string_value(value, name, errors),
        AGGREGATE => parsed.aggregate = string_value(value, name, errors),
        EVENT_TYPE => parsed.event_type = string_value(value, name, errors),
        VERSION => parsed.version = version_value(value, errors),
        _ => parsed.krate = crate_value(value, errors),
    }
    Ok(())
}

/// The span of the option's name, e.g. `topic` in `topic = "x"`.
fn path_span(meta: &ParseNestedMeta) -> Span {
    match meta.path.segments.first() {
        Some(first) if meta.path.segments.len() == 1 && meta.path.leading_colon.is_none() => {
            first.ident.span()
        }
        _ => syn::spanned::Spanned::span(&meta.path),
    }
}

/// Reads `= <expr>`; reports a missing value on the option's name.
fn parse_value(
    meta: &ParseNestedMeta,
    name: &str,
    span: Span,
    errors: &mut Errors,
) -> syn::Result<Option<Expr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    skip_value(meta)?;
    errors.at(span, format!("`{name}` needs a value: {}", example(name)));
    Ok(None)
}

/// Consumes whatever follows an option we do not use (`= <expr>` or `(...)`), so that parsing goes on with the
/// next option.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn string_value(value: Expr, name: &str, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!("expected a string literal for `{name}`: {}", example(name)),
            ));
            None
        }
    }
}

fn version_value(value: Expr, errors: &mut Errors) -> Option<u32> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(literal),
            ..
        }) => match literal.base10_parse::<u32>() {
            Ok(value) => Some(value),
            Err(_) => {
                errors.at(
                    literal.span(),
                    "`version` must be a whole number from 0 to 4294967295 (a u32)",
                );
                None
            }
        },
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!(
                    "expected an integer literal for `version`: {}",
                    example(VERSION)
                ),
            ));
            None
        }
    }
}

fn crate_value(value: Expr, errors: &mut Errors) -> Option<syn::Path> {
    let lit = string_value(value, CRATE, errors)?;
    match lit.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                lit.span(),
                format!(
                    "`crate` must name a path to outbox_core, like {}",
                    example(CRATE)
                ),
            );
            None
        }
    }
}

fn example(name: &str) -> &'static str {
    match name {
        TOPIC => "`topic = \"orders.events\"`",
        AGGREGATE => "`aggregate = \"order\"`",
        EVENT_TYPE => "`event_type = \"order.placed.v1\"`",
        VERSION => "`version = 2`",
        CRATE => "`crate = \"my_app::outbox_core\"`",
        _ => "`key`",
    }
}

fn unknown_message(written: &str, place: Place, suggestion: Option<&str>) -> String {
    if let Some(suggestion) = suggestion {
        return format!("unknown outbox attribute `{written}`; did you mean `{suggestion}`?");
    }
    let accepted = place.accepts();
    if let [only] = accepted {
        return format!(
            "unknown outbox attribute `{written}`; the only attribute of {} is `{only}`",
            place.describe()
        );
    }
    let (last, rest) = accepted.split_last().unwrap_or((&"", &[]));
    let rest: Vec<String> = rest.iter().map(|name| format!("`{name}`")).collect();
    format!(
        "unknown outbox attribute `{written}`; the attributes of {} are {} and `{last}`",
        place.describe(),
        rest.join(", ")
    )
}

fn misplaced_message(name: &str, place: Place) -> String {
    match name {
        KEY => format!(
            "`key` belongs on a field, not on {}: put `#[outbox(key)]` on the field that holds the event key",
            place.describe()
        ),
        CRATE => format!(
            "`crate` belongs on the struct or enum itself, not on {}",
            place.describe()
        ),
        _ => format!(
            "`{name}` is not an attribute of {}: move it onto the struct (or, in an enum, onto the enum or the variant)",
            place.describe()
        ),
    }
}

/// The accepted option closest to a misspelled one, if it is close enough to be a typo.
fn closest(written: &str, accepted: &[&'static str]) -> Option<&'static str> {
    let written = written.to_ascii_lowercase();
    accepted
        .iter()
        .map(|name| (edit_distance(&written, name), *name))
        .filter(|(distance, name)| *distance <= if name.len() > 4 { 2 } else { 1 })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance where swapping two neighbouring characters counts as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; against an empty string it is the other's length.
    let mut rows: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| {
            (0..=b.len())
                .map(|j| {
                    if i == 0 {
                        j
                    } else if j == 0 {
                        i
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_suggest_the_option_meant() {
        let container = Place::Struct.accepts();
        assert_eq!(closest("topc", container), Some(TOPIC));
        assert_eq!(closest("Topic", container), Some(TOPIC));
        assert_eq!(closest("aggregat", container), Some(AGGREGATE));
        assert_eq!(closest("eventtype", container), Some(EVENT_TYPE));
        assert_eq!(closest("verison", container), Some(VERSION));
        assert_eq!(closest("partition", container), None);
        assert_eq!(closest("kye", Place::Field.accepts()), Some(KEY));
        assert_eq!(closest("id", Place::Field.accepts()), None);
    }

    #[test]
    fn unknown_options_list_what_is_accepted() {
        assert_eq!(
            unknown_message("partition", Place::Variant, None),
            "unknown outbox attribute `partition`; the attributes of an enum variant are `topic`, `aggregate`, \
             `event_type` and `version`"
        );
        assert_eq!(
            unknown_message("id", Place::Field, None),
            "unknown outbox attribute `id`; the only attribute of a field is `key`"
        );
    }
}
