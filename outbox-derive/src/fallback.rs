//! The stub impl emitted next to the `compile_error!`s when the input has mistakes. Without it every use of the
//! type as an event would add a "trait `OutboxEvent` is not implemented" error to the real ones.

use crate::ast::{Data, Input};
use crate::expand::where_clause;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn expand(input: &Input, krate: &syn::Path) -> TokenStream {
    let ident = input.ident;
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    // Carries the `Self: Serialize` bound too, so that a type that is also not `Serialize` gets no extra error.
    let where_clause = where_clause(input, krate);

    let static_impl = match input.data {
        Data::Struct(_) => quote! {
            #[automatically_derived]
            impl #impl_generics #krate::StaticOutboxEvent for #ident #ty_generics #where_clause {
                const EVENT_TYPE: &'static ::core::primitive::str = "";
                const TOPIC: &'static ::core::primitive::str = "";
                const AGGREGATE_TYPE: &'static ::core::primitive::str = "";
                const VERSION: ::core::option::Option<::core::primitive::u32> = ::core::option::Option::None;
            }
        },
        Data::Enum(_) | Data::Union(_) => TokenStream::new(),
    };

    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::OutboxEvent for #ident #ty_generics #where_clause {
                fn event_type(&self) -> &::core::primitive::str {
                    ::core::unimplemented!()
                }
                fn topic(&self) -> &::core::primitive::str {
                    ::core::unimplemented!()
                }
                fn aggregate_type(&self) -> &::core::primitive::str {
                    ::core::unimplemented!()
                }
                fn key(&self) -> #krate::__private::Cow<'_, ::core::primitive::str> {
                    ::core::unimplemented!()
                }
                fn version(&self) -> ::core::option::Option<::core::primitive::u32> {
                    ::core::unimplemented!()
                }
            }
            #static_impl
        };
    }
}
