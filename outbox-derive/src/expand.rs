//! Code generation: `impl OutboxEvent` (and `impl StaticOutboxEvent` for structs), or, when the input has
//! mistakes, the errors next to a stub impl from [`crate::fallback`].

use crate::ast::{Data, Field, Input, Variant};
use crate::attr::Errors;
use crate::{fallback, valid};
use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{DeriveInput, Ident, LitStr};

pub(crate) fn derive(node: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let input = Input::from_syn(node, &mut errors);
    valid::check(&input, &mut errors);
    let krate = input.attrs.krate.clone().unwrap_or_else(default_crate_path);
    if let Err(error) = errors.into_result() {
        let errors = error.into_compile_error();
        let stub = fallback::expand(&input, &krate);
        return quote!(#errors #stub);
    }
    match &input.data {
        Data::Struct(fields) => impl_struct(&input, fields, &krate),
        Data::Enum(variants) => impl_enum(&input, variants, &krate),
        // Rejected by validation, so never reached; the stub keeps this total without a panic.
        Data::Union(_) => fallback::expand(&input, &krate),
    }
}

fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::outbox_core)
}

/// The impl's `where` clause: the user's predicates, plus `Self: AssertSerialize` (whose supertrait is `Serialize`)
/// for `OutboxEvent`'s supertrait.
///
/// That bound is what keeps a type that is not `Serialize` down to the one readable error of the
/// assertion in [`assert_serialize`]: an impl whose supertrait bound fails is itself an error, with serde's list of
/// every type that does implement `Serialize`. Written as a bound, it is checked where the impl is used instead;
/// `for<'__outbox>` makes it higher-ranked, because a bound without generics that does not hold ("trivial
/// bound") would be an error of its own on stable Rust.
pub(crate) fn where_clause(input: &Input, krate: &syn::Path) -> TokenStream {
    let predicates = input
        .generics
        .where_clause
        .iter()
        .flat_map(|clause| clause.predicates.iter());
    quote! {
        where #(#predicates,)* for<'__outbox> Self: #krate::__private::AssertSerialize
    }
}

/// `Self: Serialize`, asserted on the type's name with a message that says why. It is a function of its own, with
/// the type's generics and bounds only: inside the impls, the `Self: Serialize` bound of [`where_clause`] would
/// make it hold.
fn assert_serialize(input: &Input, krate: &syn::Path) -> TokenStream {
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let assert = quote_spanned! {ident.span()=>
        __assert_serialize::<#ident #ty_generics>();
    };
    quote! {
        fn __outbox_assert_serialize #impl_generics () #where_clause {
            fn __assert_serialize<__T: ?::core::marker::Sized + #krate::__private::AssertSerialize>() {}
            #assert
        }
    }
}

/// `<FieldType as EventKey>::event_key(value)`. Naming the field's own type tokens puts an "is not a key" error
/// on that type, with `EventKey`'s `on_unimplemented` message.
fn key_call(field: &Field, value: TokenStream, krate: &syn::Path) -> TokenStream {
    let ty = field.ty;
    quote!(<#ty as #krate::EventKey>::event_key(#value))
}

/// What one event (the struct, or an enum variant) reports.
struct Metadata {
    event_type: LitStr,
    topic: LitStr,
    aggregate: LitStr,
    version: Option<u32>,
}

impl Metadata {
    fn version_tokens(&self) -> TokenStream {
        match self.version {
            Some(version) => {
                let version = Literal::u32_unsuffixed(version);
                quote!(::core::option::Option::Some(#version))
            }
            None => quote!(::core::option::Option::None),
        }
    }
}

/// An explicit `event_type`, or the type's (or variant's) name.
fn name_literal(ident: &Ident) -> LitStr {
    LitStr::new(&ident.unraw().to_string(), ident.span())
}

fn impl_struct(input: &Input, fields: &[Field], krate: &syn::Path) -> TokenStream {
    let Some(key_field) = fields.iter().find(|field| field.attrs.key.is_some()) else {
        return fallback::expand(input, krate);
    };
    let attrs = &input.attrs;
    let Some(topic) = attrs.topic.clone() else {
        return fallback::expand(input, krate);
    };
    let metadata = Metadata {
        event_type: attrs
            .event_type
            .clone()
            .unwrap_or_else(|| name_literal(input.ident)),
        aggregate: attrs.aggregate.clone().unwrap_or_else(|| topic.clone()),
        topic,
        version: attrs.version,
    };
    let Metadata {
        event_type,
        topic,
        aggregate,
        ..
    } = &metadata;
    let version = metadata.version_tokens();

    let member = &key_field.member;
    let key = key_call(key_field, quote!(&self.#member), krate);
    let (impl_generics, ty_generics, where_clause) = impl_parts(input, krate);
    let ident = input.ident;
    let static_impl = quote! {
        #[automatically_derived]
        impl #impl_generics #krate::StaticOutboxEvent for #ident #ty_generics #where_clause {
            const EVENT_TYPE: &'static ::core::primitive::str = #event_type;
            const TOPIC: &'static ::core::primitive::str = #topic;
            const AGGREGATE_TYPE: &'static ::core::primitive::str = #aggregate;
            const VERSION: ::core::option::Option<::core::primitive::u32> = #version;
        }
    };
    let bodies = MethodBodies {
        event_type: event_type.to_token_stream(),
        topic: topic.to_token_stream(),
        aggregate: aggregate.to_token_stream(),
        key,
        version,
    };
    outbox_event_impl(input, krate, bodies, static_impl)
}

fn impl_enum(input: &Input, variants: &[Variant], krate: &syn::Path) -> TokenStream {
    let shared = &input.attrs;
    let mut events = Vec::with_capacity(variants.len());
    for variant in variants {
        let own = &variant.attrs;
        let (Some(topic), Some(key_field)) = (
            own.topic.clone().or_else(|| shared.topic.clone()),
            variant
                .fields
                .iter()
                .find(|field| field.attrs.key.is_some()),
        ) else {
            return fallback::expand(input, krate);
        };
        let metadata = Metadata {
            event_type: own
                .event_type
                .clone()
                .or_else(|| shared.event_type.clone())
                .unwrap_or_else(|| name_literal(variant.ident)),
            aggregate: own
                .aggregate
                .clone()
                .or_else(|| shared.aggregate.clone())
                .unwrap_or_else(|| topic.clone()),
            topic,
            version: own.version.or(shared.version),
        };
        events.push((variant, key_field, metadata));
    }

    let event_type = per_variant(&events, |metadata| metadata.event_type.to_token_stream());
    let topic = per_variant(&events, |metadata| metadata.topic.to_token_stream());
    let aggregate = per_variant(&events, |metadata| metadata.aggregate.to_token_stream());
    let version = per_variant(&events, Metadata::version_tokens);

    let binding = Ident::new("__outbox_key", Span::mixed_site());
    let key_arms = events.iter().map(|(variant, key_field, _)| {
        let variant = variant.ident;
        let member = &key_field.member;
        let key = key_call(key_field, binding.to_token_stream(), krate);
        quote!(Self::#variant { #member: #binding, .. } => #key,)
    });

    let bodies = MethodBodies {
        event_type,
        topic,
        aggregate,
        key: quote!(match self { #(#key_arms)* }),
        version,
    };
    outbox_event_impl(input, krate, bodies, TokenStream::new())
}

/// The bodies of the generated `OutboxEvent` methods.
struct MethodBodies {
    event_type: TokenStream,
    topic: TokenStream,
    aggregate: TokenStream,
    key: TokenStream,
    version: TokenStream,
}

fn impl_parts<'a>(
    input: &'a Input,
    krate: &syn::Path,
) -> (syn::ImplGenerics<'a>, syn::TypeGenerics<'a>, TokenStream) {
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    (impl_generics, ty_generics, where_clause(input, krate))
}

/// The `OutboxEvent` impl (and any `extra` items), wrapped so that nothing is added to the user's scope.
fn outbox_event_impl(
    input: &Input,
    krate: &syn::Path,
    bodies: MethodBodies,
    extra: TokenStream,
) -> TokenStream {
    let MethodBodies {
        event_type,
        topic,
        aggregate,
        key,
        version,
    } = bodies;
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = impl_parts(input, krate);
    let assert_serialize = assert_serialize(input, krate);
    quote! {
        const _: () = {
            #assert_serialize

            #[automatically_derived]
            impl #impl_generics #krate::OutboxEvent for #ident #ty_generics #where_clause {
                fn event_type(&self) -> &::core::primitive::str {
                    #event_type
                }
                fn topic(&self) -> &::core::primitive::str {
                    #topic
                }
                fn aggregate_type(&self) -> &::core::primitive::str {
                    #aggregate
                }
                fn key(&self) -> #krate::__private::Cow<'_, ::core::primitive::str> {
                    #key
                }
                fn version(&self) -> ::core::option::Option<::core::primitive::u32> {
                    #version
                }
            }

            #extra
        };
    }
}

/// One value for every variant: the value itself when all variants agree, else a `match self`.
fn per_variant(
    events: &[(&Variant, &Field, Metadata)],
    value: impl Fn(&Metadata) -> TokenStream,
) -> TokenStream {
    let values: Vec<TokenStream> = events
        .iter()
        .map(|(_, _, metadata)| value(metadata))
        .collect();
    let shared = values.first().filter(|first| {
        values
            .iter()
            .all(|value| value.to_string() == first.to_string())
    });
    if let Some(shared) = shared {
        return shared.clone();
    }
    let arms = events.iter().zip(&values).map(|((variant, _, _), value)| {
        let variant = variant.ident;
        quote!(Self::#variant { .. } => #value,)
    });
    quote!(match self { #(#arms)* })
}
