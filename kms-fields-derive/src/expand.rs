//! Code generation from the typed [`Model`]. No crypto here: every method calls kms-fields.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::DeriveInput;

use crate::ctxt::Ctxt;
use crate::model::{self, Model};

pub fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let model = model::build(&cx, &input);
    cx.check()?;
    let Some(model) = model else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "invalid KmsEncrypted input",
        ));
    };
    Ok(generate(&model))
}

fn opt_str(v: &Option<String>) -> TokenStream {
    match v {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    }
}

fn generate(m: &Model) -> TokenStream {
    let krate = &m.krate;
    let ident = &m.ident;
    let (impl_g, ty_g, where_g) = m.generics.split_for_impl();
    let model_name = &m.model_name;
    let table = opt_str(&m.table);
    let sequence = opt_str(&m.sequence);
    let save_flow = &m.save_flow;
    let n_keys = m.keys.len();
    let id_column =
        m.id.as_ref()
            .map(|i| i.ident.to_string())
            .unwrap_or_else(|| "id".into());
    let id_kind = match &m.id {
        Some(i) if i.integer => quote!(#krate::model::IdKind::Integer),
        _ => quote!(#krate::model::IdKind::Other),
    };

    let key_defs = m.keys.iter().map(|k| {
        let name = opt_str(&k.name);
        let method = &k.method;
        let column = &k.column;
        let attachments = k.attachments;
        quote!(#krate::KeyDef { name: #name, method: #method, column: #column, attachments: #attachments })
    });
    let attr_defs = m.attrs.iter().map(|a| {
        let name = &a.name;
        let column = &a.column;
        let key = a.key;
        let ad = proc_macro2::Literal::byte_string(&a.associated_data);
        let padding = match a.padding {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        let binary = a.binary;
        let kms_rails = match &a.kms_rails {
            None => quote!(::core::option::Option::None),
            Some(None) => quote!(::core::option::Option::Some(#krate::model::KmsRailsAttr { context: ::core::option::Option::None })),
            Some(Some((k, v))) => quote!(::core::option::Option::Some(#krate::model::KmsRailsAttr { context: ::core::option::Option::Some((#k, #v)) })),
        };
        quote!(#krate::AttrDef { name: #name, column: #column, key: #key, associated_data: #ad, padding: #padding, binary: #binary, kms_rails: #kms_rails })
    });
    let specs = m.keys.iter().map(|k| &k.spec);

    // blind indexes
    let n_bidx = m.blind_indexes.len();
    let bidx_defs = m.blind_indexes.iter().map(|b| {
        let attr = b.attr;
        let column = &b.column;
        let binary = b.binary;
        let unique = b.unique;
        let master_key = opt_str(&b.master_key);
        quote!(#krate::BidxDef { attr: #attr, column: #column, binary: #binary, unique: #unique, master_key: #master_key })
    });
    let bidx_builders = m.blind_indexes.iter().map(|b| {
        let bi = quote!(#krate::__private::blind_index);
        let table = m.table.clone().unwrap_or_default();
        let column = &b.column;
        let algorithm = &b.algorithm;
        let size = b.size;
        let encoding = if b.binary { quote!(#bi::Encoding::Raw) } else { quote!(#bi::Encoding::Base64) };
        let expression = b.expression.as_ref().map(|e| quote!(.expression(#e)));
        quote!(#bi::BlindIndex::builder(#table, #column).algorithm(#algorithm).size(#size).encoding(#encoding)#expression.build().map_err(|e| ::std::string::ToString::to_string(&e)))
    });
    let bidx_value_arms: Vec<TokenStream> = m
        .blind_indexes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = &b.field;
            if b.binary {
                quote!(#i => #krate::model::StoredCiphertext::Bytes(self.#f.as_deref()),)
            } else {
                quote!(#i => #krate::model::StoredCiphertext::Text(self.#f.as_deref()),)
            }
        })
        .collect();
    let bidx_impl = if n_bidx == 0 {
        quote!()
    } else {
        quote!(
            const BLIND_INDEXES: &'static [#krate::BidxDef] = &[#(#bidx_defs),*];
            fn blind_index_column(&self, bidx: usize) -> #krate::model::StoredCiphertext<'_> {
                match bidx {
                    #(#bidx_value_arms)*
                    _ => #krate::model::StoredCiphertext::Text(::core::option::Option::None),
                }
            }
            fn blind_index(bidx: usize) -> #krate::Result<&'static #krate::__private::blind_index::BlindIndex> {
                let all: &'static [::core::result::Result<#krate::__private::blind_index::BlindIndex, ::std::string::String>; #n_bidx] = &__KMS_BIDX;
                match all.get(bidx) {
                    ::core::option::Option::Some(::core::result::Result::Ok(b)) => ::core::result::Result::Ok(b),
                    ::core::option::Option::Some(::core::result::Result::Err(e)) => ::core::result::Result::Err(#krate::Error::new(#krate::ErrorKind::Config, e.clone())),
                    ::core::option::Option::None => ::core::result::Result::Err(#krate::Error::new(#krate::ErrorKind::Config, concat!(#model_name, ": no such blind index"))),
                }
            }
        )
    };
    let bidx_static = if n_bidx == 0 {
        quote!()
    } else {
        quote!(
            static __KMS_BIDX: #krate::__private::LazyLock<[::core::result::Result<#krate::__private::blind_index::BlindIndex, ::std::string::String>; #n_bidx]> =
                #krate::__private::LazyLock::new(|| [#(#bidx_builders),*]);
        )
    };
    let bidx_methods = m.blind_indexes.iter().enumerate().map(|(i, b)| {
        let name = format_ident!("{}", b.column, span = b.span);
        let name_async = format_ident!("{}_async", b.column, span = b.span);
        let name_in = format_ident!("{}_in", b.column, span = b.span);
        let attr = &m.attrs[b.attr].name;
        let (ty, conv) = if b.binary {
            (quote!(::std::vec::Vec<u8>), quote!(#krate::model::bidx_bytes))
        } else {
            (quote!(::std::string::String), quote!(#krate::model::bidx_text))
        };
        let doc = format!("The blind index `{}` of an `{attr}` value: compare it with the column to find records (`WHERE {} = ?`). Computed on this thread (Argon2id takes milliseconds): from async code use [`{}_async`](Self::{}_async).", b.column, b.column, b.column, b.column);
        let doc_async = format!("[`{}`](Self::{}) on tokio's blocking pool.", b.column, b.column);
        let doc_in = format!("The blind indexes `{}` of several values, for `WHERE {} IN (…)` (on tokio's blocking pool, in input order).", b.column, b.column);
        quote!(
            #[doc = #doc]
            pub fn #name(kms: &#krate::Kms, value: &str) -> #krate::Result<#ty> {
                #conv(#krate::model::blind_index_value::<Self>(kms, #i, value)?)
            }
            #[doc = #doc_async]
            pub async fn #name_async(kms: &#krate::Kms, value: &str) -> #krate::Result<#ty> {
                #conv(#krate::model::blind_index_value_async::<Self>(kms, #i, value).await?)
            }
            #[doc = #doc_in]
            pub async fn #name_in<S: ::core::convert::AsRef<str>>(kms: &#krate::Kms, values: &[S]) -> #krate::Result<::std::vec::Vec<#ty>> {
                #krate::model::blind_index_values::<Self, S>(kms, #i, values).await?.into_iter().map(#conv).collect()
            }
        )
    });

    // record id
    let clear_record_id = match &m.id {
        Some(i) if i.optional => {
            let f = &i.ident;
            quote!(fn clear_record_id(&mut self) { self.#f = ::core::option::Option::None; })
        }
        Some(i) if i.integer => {
            let f = &i.ident;
            quote!(fn clear_record_id(&mut self) { self.#f = 0; })
        }
        _ => quote!(),
    };
    let (record_id, set_record_id) = match &m.id {
        None => (
            quote!(::core::option::Option::None),
            quote!(let _ = id; ::core::result::Result::Ok(())),
        ),
        Some(i) => {
            let f = &i.ident;
            // an integer id of 0 is "not assigned yet" (SeaORM models, plain `id: i32` structs)
            let get = if i.optional {
                quote!(self.#f.as_ref().map(::std::string::ToString::to_string))
            } else if i.integer {
                quote!(if self.#f == 0 { ::core::option::Option::None } else { ::core::option::Option::Some(::std::string::ToString::to_string(&self.#f)) })
            } else {
                quote!(::core::option::Option::Some(::std::string::ToString::to_string(&self.#f)))
            };
            let set = if !i.integer {
                quote!(
                    let _ = id;
                    ::core::result::Result::Err(#krate::Error::new(
                        #krate::ErrorKind::Config,
                        concat!(#model_name, " has a non-integer id: set it before saving (client-generated ids use the eager save flow)"),
                    ))
                )
            } else {
                let conv = quote!(::core::convert::TryFrom::try_from(id).map_err(|_| #krate::Error::new(#krate::ErrorKind::Config, "the database id does not fit the id field's type"))?);
                if i.optional {
                    quote!(self.#f = ::core::option::Option::Some(#conv); ::core::result::Result::Ok(()))
                } else {
                    quote!(self.#f = #conv; ::core::result::Result::Ok(()))
                }
            };
            (get, set)
        }
    };

    // per-index accessors: the last arm is `_` so no index can panic
    let key_arms = |mutable: bool| {
        let arms = m.keys.iter().enumerate().map(|(i, k)| {
            let f = &k.field;
            let pat = if i + 1 == m.keys.len() {
                quote!(_)
            } else {
                quote!(#i)
            };
            if mutable {
                quote!(#pat => #krate::model::AsKeyColumn::key_column_mut(&mut self.#f))
            } else {
                quote!(#pat => #krate::model::AsKeyColumn::key_column(&self.#f))
            }
        });
        quote!(match key { #(#arms,)* })
    };
    let key_col = key_arms(false);
    let key_col_mut = key_arms(true);
    let (ct, ct_mut) = {
        let arms = m.attrs.iter().enumerate().map(|(i, a)| {
            let f = &a.field;
            let pat = if i + 1 == m.attrs.len() {
                quote!(_)
            } else {
                quote!(#i)
            };
            quote!(#pat => &self.#f)
        });
        let arms_mut = m.attrs.iter().enumerate().map(|(i, a)| {
            let f = &a.field;
            let pat = if i + 1 == m.attrs.len() {
                quote!(_)
            } else {
                quote!(#i)
            };
            quote!(#pat => &mut self.#f)
        });
        if m.attrs.is_empty() {
            // a model whose keys only protect files: ATTRIBUTES is empty, so the core never
            // asks for a ciphertext column
            let msg = format!("{} has no encrypted attribute", m.model_name);
            (
                quote!(::core::unreachable!("{} #{}", #msg, attr)),
                quote!(::core::unreachable!("{} #{}", #msg, attr)),
            )
        } else {
            (
                quote!(match attr { #(#arms,)* }),
                quote!(match attr { #(#arms_mut,)* }),
            )
        }
    };

    // custom contexts and per-record key ids
    let context_arms: Vec<TokenStream> = m
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            k.context
                .as_ref()
                .map(|c| quote!(#i => #c(self, version).map(::core::option::Option::Some)))
        })
        .collect();
    let context_fn = if context_arms.is_empty() {
        quote!()
    } else {
        quote!(
            fn encryption_context(&self, key: usize, version: u32) -> #krate::Result<::core::option::Option<#krate::EncryptionContext>> {
                match key {
                    #(#context_arms,)*
                    _ => #krate::model::default_context(#model_name, #krate::KmsModel::record_id(self)),
                }
            }
        )
    };
    let needs_id_arms: Vec<TokenStream> = m
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.context.is_some())
        .map(|(i, _)| quote!(#i => false))
        .collect();
    let needs_id_fn = if needs_id_arms.is_empty() {
        quote!()
    } else {
        quote!(fn context_needs_id(key: usize) -> bool { match key { #(#needs_id_arms,)* _ => true } })
    };
    let key_id_arms: Vec<TokenStream> = m
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.key_id_fn.as_ref().map(|f| quote!(#i => ::core::option::Option::Some(::std::string::ToString::to_string(&#f(self))))))
        .collect();
    let key_id_fn = if key_id_arms.is_empty() {
        quote!()
    } else {
        quote!(fn key_id_for(&self, key: usize) -> ::core::option::Option<::std::string::String> { match key { #(#key_id_arms,)* _ => ::core::option::Option::None } })
    };

    // type assertions pointing at the offending field types
    let key_asserts = m.keys.iter().map(|k| {
        let ty = &k.field_ty;
        quote_spanned!(syn::spanned::Spanned::span(ty)=> const _: fn() = || { fn key_column<T: #krate::model::AsKeyColumn>() {} key_column::<#ty>(); };)
    });

    // typed handles: `User::KMS_KEY`, `User::EMAIL`, `User::EMAIL_BIDX`
    let key_handles = m.keys.iter().enumerate().map(|(i, k)| {
        let c = format_ident!("{}", k.method.to_ascii_uppercase());
        let doc = format!("The handle of key `{}` (column `{}`), for `rotate_kms_key`, `rewrap_kms_key`, `update_key_columns` and `TableSpec::of_model`.", k.method, k.column);
        quote!(#[doc = #doc] pub const #c: #krate::KeyHandle<Self> = #krate::KeyHandle::__new(#i);)
    });
    let attr_handles = m.attrs.iter().enumerate().map(|(i, a)| {
        let c = format_ident!("{}", a.name.to_ascii_uppercase(), span = a.span);
        let doc = format!("The handle of encrypted attribute `{}` (column `{}`).", a.name, a.column);
        quote!(#[doc = #doc] pub const #c: #krate::AttrHandle<Self> = #krate::AttrHandle::__new(#i);)
    });
    let bidx_handles = m.blind_indexes.iter().enumerate().map(|(i, b)| {
        let c = format_ident!("{}", b.column.to_ascii_uppercase(), span = b.span);
        let doc = format!("The handle of blind index `{}`, for `backfill_blind_index`.", b.column);
        quote!(#[doc = #doc] pub const #c: #krate::BidxHandle<Self> = #krate::BidxHandle::__new(#i);)
    });
    let handles: Vec<TokenStream> = key_handles
        .chain(attr_handles)
        .chain(bidx_handles)
        .collect();

    // inherent methods
    let attr_methods = m.attrs.iter().enumerate().map(|(i, a)| {
        let name = format_ident!("{}", a.name, span = a.span);
        let name_blocking = format_ident!("{}_blocking", a.name, span = a.span);
        let set = format_ident!("set_{}", a.name, span = a.span);
        let set_blocking = format_ident!("set_{}_blocking", a.name, span = a.span);
        let codec = &a.codec;
        let key = &m.keys[a.key].method;
        let column = &a.column;
        let doc_read = format!("Decrypt `{}` (column `{column}`, key `{key}`): one KMS call the first time the record's key is needed, none for NULL or `\"\"`.", a.name);
        let doc_write = format!("Encrypt a new `{}` into `{column}` (`None` stores NULL). Uses the record's `{key}`; a new record draws a fresh data key, wrapped when it is saved.", a.name);
        let doc_read_b = format!("[`{}`](Self::{}) from synchronous code.", a.name, a.name);
        let doc_write_b = format!("[`set_{}`](Self::set_{}) from synchronous code.", a.name, a.name);
        let mine: Vec<(usize, &model::Bidx)> = m.blind_indexes.iter().enumerate().filter(|(_, b)| b.attr == i).collect();
        let doc_write = if mine.is_empty() {
            doc_write
        } else {
            let cols: Vec<&str> = mine.iter().map(|(_, b)| b.column.as_str()).collect();
            format!("{doc_write} Also sets the blind index column(s) `{}` (computed on tokio's blocking pool).", cols.join("`, `"))
        };
        let bidx_compute = mine.iter().map(|(j, b)| {
            let var = format_ident!("__bidx_{}", j);
            let conv = if b.binary { quote!(#krate::model::bidx_bytes) } else { quote!(#krate::model::bidx_text) };
            quote!(
                let #var = match value {
                    ::core::option::Option::Some(v) => ::core::option::Option::Some(#conv(#krate::model::blind_index_value_async::<Self>(kms, #j, v).await?)?),
                    ::core::option::Option::None => ::core::option::Option::None,
                };
            )
        });
        let bidx_assign = mine.iter().map(|(j, b)| {
            let var = format_ident!("__bidx_{}", j);
            let f = &b.field;
            quote!(self.#f = #var;)
        });
        let bytes_methods = if a.text {
            let bytes = format_ident!("{}_bytes", a.name, span = a.span);
            let bytes_blocking = format_ident!("{}_bytes_blocking", a.name, span = a.span);
            let doc = format!("Decrypt `{}` to its plaintext bytes, whatever they are: a string Ruby wrote may hold bytes that are not UTF-8 (Lockbox encrypts a String's bytes as they are), which [`{}`](Self::{}) refuses with a `Codec` error. Read such a row here, repair the text, and write it back with [`set_{}`](Self::set_{}).", a.name, a.name, a.name, a.name, a.name);
            let doc_b = format!("[`{}_bytes`](Self::{}_bytes) from synchronous code.", a.name, a.name);
            quote!(
                #[doc = #doc]
                pub async fn #bytes(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<::std::vec::Vec<u8>>> {
                    #krate::model::read_attribute::<Self, #krate::codec::Binary>(self, kms, #i).await
                }
                #[doc = #doc_b]
                pub fn #bytes_blocking(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<::std::vec::Vec<u8>>> {
                    #krate::__private::blocking::run(self.#bytes(kms))
                }
            )
        } else {
            quote!()
        };
        quote!(
            #bytes_methods
            #[doc = #doc_read]
            pub async fn #name(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<<#codec as #krate::codec::Codec>::Value>> {
                #krate::model::read_attribute::<Self, #codec>(self, kms, #i).await
            }
            #[doc = #doc_read_b]
            pub fn #name_blocking(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<<#codec as #krate::codec::Codec>::Value>> {
                #krate::__private::blocking::run(self.#name(kms))
            }
            #[doc = #doc_write]
            pub async fn #set(&mut self, kms: &#krate::Kms, value: ::core::option::Option<&<#codec as #krate::codec::Codec>::Input>) -> #krate::Result<()> {
                #(#bidx_compute)*
                #krate::model::write_attribute::<Self, #codec>(self, kms, #i, value).await?;
                #(#bidx_assign)*
                ::core::result::Result::Ok(())
            }
            #[doc = #doc_write_b]
            pub fn #set_blocking(&mut self, kms: &#krate::Kms, value: ::core::option::Option<&<#codec as #krate::codec::Codec>::Input>) -> #krate::Result<()> {
                #krate::__private::blocking::run(self.#set(kms, value))
            }
        )
    });
    let key_methods = m.keys.iter().enumerate().map(|(i, k)| {
        let method = format_ident!("{}", k.method);
        let method_b = format_ident!("{}_blocking", k.method);
        let ctx = match &k.name {
            Some(n) => format_ident!("kms_encryption_context_{}", n),
            None => format_ident!("kms_encryption_context"),
        };
        let rotate = format_ident!("rotate_{}", k.method);
        let rotate_b = format_ident!("rotate_{}_blocking", k.method);
        let doc_key = format!("The record's data key of `{}` (unwrapped once, then cached in `{}`); `None` if the record has none yet.", k.method, k.column);
        let doc_rotate = format!(
            "kms_encrypted's `rotate_{}!` without the save: a new data key, every attribute of this key re-encrypted, the key wrapped with the current version. Persist with the ORM crate's rotate/save helper.",
            k.method
        );
        quote!(
            #[doc = #doc_key]
            pub async fn #method(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<#krate::DataKey>> {
                ::core::result::Result::Ok(#krate::model::data_key(self, kms, #i).await?.cloned())
            }
            #[doc = "From synchronous code."]
            pub fn #method_b(&self, kms: &#krate::Kms) -> #krate::Result<::core::option::Option<#krate::DataKey>> {
                #krate::__private::blocking::run(self.#method(kms))
            }
            #[doc = "The encryption context of the current key version."]
            pub fn #ctx(&self) -> #krate::Result<::core::option::Option<#krate::EncryptionContext>> {
                let version = <Self as #krate::KmsModel>::key_spec(#i).current_version();
                #krate::KmsModel::encryption_context(self, #i, version)
            }
            #[doc = #doc_rotate]
            pub async fn #rotate(&mut self, kms: &#krate::Kms) -> #krate::Result<()> {
                #krate::model::rotate_key(self, kms, #i).await?;
                #krate::model::seal_pending_keys(self, kms).await.map(|_| ())
            }
            #[doc = "From synchronous code."]
            pub fn #rotate_b(&mut self, kms: &#krate::Kms) -> #krate::Result<()> {
                #krate::__private::blocking::run(self.#rotate(kms))
            }
        )
    });

    let active_model = if m.sea_orm {
        sea_orm_active_model(m)
    } else {
        quote!()
    };

    quote!(
        #[allow(non_upper_case_globals, clippy::all, unused_qualifications)]
        const _: () = {
            #active_model

            #(#key_asserts)*

            static __KMS_SPECS: #krate::__private::LazyLock<[#krate::KeySpec; #n_keys]> =
                #krate::__private::LazyLock::new(|| [#(#specs),*]);
            #bidx_static

            #[automatically_derived]
            impl #impl_g #krate::KmsModel for #ident #ty_g #where_g {
                const MODEL_NAME: &'static str = #model_name;
                const TABLE: ::core::option::Option<&'static str> = #table;
                const ID_COLUMN: &'static str = #id_column;
                const ID_KIND: #krate::model::IdKind = #id_kind;
                const SAVE_FLOW: #krate::SaveFlow = #save_flow;
                const SEQUENCE: ::core::option::Option<&'static str> = #sequence;
                const KEYS: &'static [#krate::KeyDef] = &[#(#key_defs),*];
                const ATTRIBUTES: &'static [#krate::AttrDef] = &[#(#attr_defs),*];
                #bidx_impl

                fn key_spec(key: usize) -> &'static #krate::KeySpec {
                    let specs: &'static [#krate::KeySpec; #n_keys] = &__KMS_SPECS;
                    &specs[key.min(#n_keys - 1)]
                }
                fn record_id(&self) -> ::core::option::Option<::std::string::String> { #record_id }
                fn set_record_id(&mut self, id: i64) -> #krate::Result<()> { #set_record_id }
                #clear_record_id
                fn key_column(&self, key: usize) -> &#krate::KeyColumn { #key_col }
                fn key_column_mut(&mut self, key: usize) -> &mut #krate::KeyColumn { #key_col_mut }
                fn ciphertext(&self, attr: usize) -> &dyn #krate::model::CiphertextColumn { #ct }
                fn ciphertext_mut(&mut self, attr: usize) -> &mut dyn #krate::model::CiphertextColumn { #ct_mut }
                #context_fn
                #needs_id_fn
                #key_id_fn
            }

            #[automatically_derived]
            impl #impl_g #ident #ty_g #where_g {
                /// The model's keys (kms_encrypted's `kms_keys`).
                pub fn kms_keys() -> &'static [#krate::KeyDef] {
                    <Self as #krate::KmsModel>::KEYS
                }
                /// The model's encrypted attributes.
                pub fn kms_attributes() -> &'static [#krate::AttrDef] {
                    <Self as #krate::KmsModel>::ATTRIBUTES
                }
                /// The model's blind indexes.
                pub fn kms_blind_indexes() -> &'static [#krate::BidxDef] {
                    <Self as #krate::KmsModel>::BLIND_INDEXES
                }
                /// Unwrap every key this record needs for reading, concurrently (one KMS call per key).
                pub async fn kms_unlock(&self, kms: &#krate::Kms) -> #krate::Result<()> {
                    #krate::model::unlock(self, kms).await
                }
                /// Wrap every new data key now (the id must be known unless the contexts are custom).
                pub async fn kms_seal(&mut self, kms: &#krate::Kms) -> #krate::Result<usize> {
                    #krate::model::seal_pending_keys(self, kms).await
                }
                /// [`kms_seal`](Self::kms_seal) from synchronous code.
                pub fn kms_seal_blocking(&mut self, kms: &#krate::Kms) -> #krate::Result<usize> {
                    #krate::__private::blocking::run(self.kms_seal(kms))
                }
                #(#handles)*
                #(#attr_methods)*
                #(#key_methods)*
                #(#bidx_methods)*
            }
        };
    )
}

/// `impl KmsActiveModel for ActiveModel` — SeaORM's generated ActiveModel, by its convention
/// in the same module as `Model`.
fn sea_orm_active_model(m: &Model) -> TokenStream {
    let krate = &m.krate;
    let ident = &m.ident;
    let av = quote!(::sea_orm::ActiveValue);
    let key_arms = m.keys.iter().enumerate().map(|(i, k)| {
        let f = &k.field;
        quote!(#i => match &self.#f { #av::Set(v) | #av::Unchanged(v) => ::core::option::Option::Some(#krate::model::AsKeyColumn::key_column(v)), _ => ::core::option::Option::None })
    });
    let key_arms_mut = m.keys.iter().enumerate().map(|(i, k)| {
        let f = &k.field;
        quote!(#i => {
            self.#f = match ::core::mem::take(&mut self.#f) {
                #av::Set(v) | #av::Unchanged(v) => #av::Set(v),
                #av::NotSet => #av::NotSet,
            };
            match &mut self.#f { #av::Set(v) => ::core::option::Option::Some(#krate::model::AsKeyColumn::key_column_mut(v)), _ => ::core::option::Option::None }
        })
    });
    let unset_id = match &m.id {
        Some(i) if i.integer => {
            let f = &i.ident;
            quote!(fn kms_unset_unassigned_id(&mut self) {
                if #krate::model::KmsActiveModel::kms_record_id(self).is_none() {
                    self.#f = #av::NotSet;
                }
            })
        }
        _ => quote!(),
    };
    let (record_id, set_record_id) = match &m.id {
        None => (
            quote!(::core::option::Option::None),
            quote!(let _ = id; ::core::result::Result::Ok(())),
        ),
        Some(i) => {
            let f = &i.ident;
            let get = if i.optional {
                quote!(match &self.#f { #av::Set(::core::option::Option::Some(v)) | #av::Unchanged(::core::option::Option::Some(v)) => ::core::option::Option::Some(::std::string::ToString::to_string(v)), _ => ::core::option::Option::None })
            } else if i.integer {
                quote!(match &self.#f { #av::Set(v) | #av::Unchanged(v) if *v != 0 => ::core::option::Option::Some(::std::string::ToString::to_string(v)), _ => ::core::option::Option::None })
            } else {
                quote!(match &self.#f { #av::Set(v) | #av::Unchanged(v) => ::core::option::Option::Some(::std::string::ToString::to_string(v)), _ => ::core::option::Option::None })
            };
            let conv = quote!(::core::convert::TryFrom::try_from(id).map_err(|_| #krate::Error::new(#krate::ErrorKind::Config, "the database id does not fit the id field's type"))?);
            let set = if !i.integer {
                quote!(let _ = id; ::core::result::Result::Err(#krate::Error::new(#krate::ErrorKind::Config, "non-integer ids are set by the application")))
            } else if i.optional {
                quote!(self.#f = #av::Set(::core::option::Option::Some(#conv)); ::core::result::Result::Ok(()))
            } else {
                quote!(self.#f = #av::Set(#conv); ::core::result::Result::Ok(()))
            };
            (get, set)
        }
    };
    let n = m.keys.len();
    let hooks = match &m.seaorm_hooks {
        None => quote!(),
        Some(kms) => quote!(
            #[automatically_derived]
            #[::sea_orm::prelude::async_trait::async_trait]
            impl ::sea_orm::ActiveModelBehavior for ActiveModel {
                async fn before_save<C: ::sea_orm::ConnectionTrait>(self, db: &C, insert: bool) -> ::core::result::Result<Self, ::sea_orm::DbErr> {
                    ::kms_fields_seaorm::hooks::before_save(self, db, insert, #kms()).await
                }
            }
        ),
    };
    quote!(
        #hooks
        #[automatically_derived]
        impl #krate::model::KmsActiveModel for ActiveModel {
            type Model = #ident;
            fn kms_key_column(&self, key: usize) -> ::core::option::Option<&#krate::KeyColumn> {
                match key { #(#key_arms,)* _ => { let _ = #n; ::core::option::Option::None } }
            }
            fn kms_key_column_mut(&mut self, key: usize) -> ::core::option::Option<&mut #krate::KeyColumn> {
                match key { #(#key_arms_mut,)* _ => ::core::option::Option::None }
            }
            fn kms_record_id(&self) -> ::core::option::Option<::std::string::String> { #record_id }
            fn kms_set_record_id(&mut self, id: i64) -> #krate::Result<()> { #set_record_id }
            #unset_id
        }
    )
}
