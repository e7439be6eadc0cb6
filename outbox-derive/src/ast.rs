//! The derive input as typed data: the item, its variants and fields, each with its parsed `#[outbox]` options.

use crate::attr::{self, Attrs, Errors, Place};
use syn::{DeriveInput, Generics, Ident, Member, Type};

pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: Attrs,
    pub data: Data<'a>,
}

pub(crate) enum Data<'a> {
    Struct(Vec<Field<'a>>),
    Enum(Vec<Variant<'a>>),
    /// Rejected by validation; kept so that its `union` keyword can carry the error.
    Union(&'a syn::token::Union),
}

pub(crate) struct Variant<'a> {
    pub ident: &'a Ident,
    pub attrs: Attrs,
    pub fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub member: Member,
    pub ty: &'a Type,
    pub attrs: Attrs,
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> Self {
        // Parsed in source order, so that the errors are reported in that order too.
        let place = match node.data {
            syn::Data::Enum(_) => Place::Enum,
            syn::Data::Struct(_) | syn::Data::Union(_) => Place::Struct,
        };
        let attrs = attr::parse(&node.attrs, place, errors);
        let data = match &node.data {
            syn::Data::Struct(data) => Data::Struct(fields(&data.fields, errors)),
            syn::Data::Enum(data) => Data::Enum(
                data.variants
                    .iter()
                    .map(|variant| Variant {
                        ident: &variant.ident,
                        attrs: attr::parse(&variant.attrs, Place::Variant, errors),
                        fields: fields(&variant.fields, errors),
                    })
                    .collect(),
            ),
            syn::Data::Union(data) => Data::Union(&data.union_token),
        };
        Input {
            ident: &node.ident,
            generics: &node.generics,
            attrs,
            data,
        }
    }
}

impl Field<'_> {
    /// How the field is written in a message: its name, or its index in a tuple struct.
    pub(crate) fn describe(&self) -> String {
        match &self.member {
            Member::Named(ident) => format!("`{ident}`"),
            Member::Unnamed(index) => format!("field {}", index.index),
        }
    }
}

fn fields<'a>(fields: &'a syn::Fields, errors: &mut Errors) -> Vec<Field<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| Field {
            member: match &field.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(index.into()),
            },
            ty: &field.ty,
            attrs: attr::parse(&field.attrs, Place::Field, errors),
        })
        .collect()
}
