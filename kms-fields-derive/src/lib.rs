//! `#[derive(KmsEncrypted)]` for [kms-fields](https://docs.rs/kms-fields): the attribute
//! parsing and code generation only — every generated method calls the `kms-fields` library.
//!
//! See the `kms_fields` crate documentation for the attribute reference.

mod attr;
mod ctxt;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Derive per-record envelope encryption for a model struct. See the kms-fields docs.
#[proc_macro_derive(KmsEncrypted, attributes(kms))]
pub fn derive_kms_encrypted(input: TokenStream) -> TokenStream {
    derive_kms_encrypted_inner(input.into()).into()
}

/// The derive over proc_macro2 tokens, so unit tests can expand it without a compiler.
fn derive_kms_encrypted_inner(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    syn::parse2(input)
        .and_then(expand::derive)
        .unwrap_or_else(syn::Error::into_compile_error)
}

#[cfg(test)]
mod tests;
