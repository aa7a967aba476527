//! The typed model of a `#[derive(KmsEncrypted)]` input, parsed once; code generation reads only this.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, Path, PathArguments, Type};

use crate::attr::{self, BidxAttr, FieldAttrs, KeyAttr};
use crate::ctxt::Ctxt;

pub struct Model {
    pub ident: Ident,
    /// A SeaORM entity model (`#[sea_orm(...)]`): its `ActiveModel` gets the hook accessors.
    pub sea_orm: bool,
    /// Generate `ActiveModelBehavior` calling the kms-fields-seaorm hooks with this `&'static Kms`.
    pub seaorm_hooks: Option<Path>,
    pub generics: syn::Generics,
    pub krate: Path,
    pub model_name: String,
    pub table: Option<String>,
    pub id: Option<IdField>,
    pub save_flow: TokenStream,
    pub sequence: Option<String>,
    pub keys: Vec<Key>,
    pub attrs: Vec<Attr>,
    pub blind_indexes: Vec<Bidx>,
}

/// A blind index of an encrypted attribute.
pub struct Bidx {
    /// Index into `Model::attrs`.
    pub attr: usize,
    pub column: String,
    pub field: Ident,
    pub binary: bool,
    pub unique: bool,
    pub master_key: Option<String>,
    /// `Algorithm` expression.
    pub algorithm: TokenStream,
    pub size: usize,
    pub expression: Option<Path>,
    pub span: Span,
}

pub struct IdField {
    pub ident: Ident,
    pub optional: bool,
    pub integer: bool,
}

pub struct Key {
    pub name: Option<String>,
    pub method: String,
    pub column: String,
    pub field: Ident,
    pub field_ty: Type,
    pub spec: TokenStream,
    pub context: Option<Path>,
    pub key_id_fn: Option<Path>,
    pub attachments: bool,
}

pub struct Attr {
    pub name: String,
    pub field: Ident,
    pub column: String,
    pub key: usize,
    pub associated_data: Vec<u8>,
    pub padding: Option<usize>,
    pub binary: bool,
    pub kms_rails: Option<Option<(String, String)>>,
    pub codec: TokenStream,
    /// The default codec (`String`): gets `<name>_bytes` accessors too.
    pub text: bool,
    pub span: Span,
}

/// `Option<Inner>` → `Inner`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(tp) = ty else { return None };
    let seg = tp.path.segments.last()?;
    if seg.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(tp) => tp.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// `Some(binary?)` for a ciphertext-capable type: `Option<String>` or `Option<Vec<u8>>`.
fn ciphertext_kind(ty: &Type) -> Option<bool> {
    let inner = option_inner(ty)?;
    match last_ident(inner)?.as_str() {
        "String" => Some(false),
        "Vec" => {
            let Type::Path(tp) = inner else { return None };
            let PathArguments::AngleBracketed(args) = &tp.path.segments.last()?.arguments else {
                return None;
            };
            match args.args.first()? {
                GenericArgument::Type(t) if last_ident(t).as_deref() == Some("u8") => Some(true),
                _ => None,
            }
        }
        _ => None,
    }
}

const INTEGERS: &[&str] = &[
    "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
];

pub fn build(cx: &Ctxt, input: &DeriveInput) -> Option<Model> {
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => &named.named,
            // a unit struct has no field tokens to point at: point at its name
            Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    "#[derive(KmsEncrypted)] needs a struct with named fields (the model's columns), not a tuple or unit struct",
                );
                return None;
            }
            other => {
                cx.error_spanned_by(
                    other,
                    "#[derive(KmsEncrypted)] needs a struct with named fields (the model's columns), not a tuple or unit struct",
                );
                return None;
            }
        },
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "#[derive(KmsEncrypted)] works on structs with named fields, not enums",
            );
            return None;
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[derive(KmsEncrypted)] works on structs with named fields, not unions",
            );
            return None;
        }
    };

    let sa = attr::parse_struct(cx, &input.attrs);
    if let (Some(p), false) = (&sa.seaorm_hooks, sa.sea_orm) {
        cx.error_spanned_by(p, "seaorm_hooks needs a SeaORM entity model (#[derive(DeriveEntityModel)] with #[sea_orm(table_name = ...)])");
    }
    let lockbox = sa.lockbox.is_some();
    let krate: Path = sa
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kms_fields));

    let ident_name = input.ident.to_string();
    let model_name = match &sa.model_name {
        Some(n) => n.value(),
        None => {
            if ident_name == "Model" {
                cx.error_spanned_by(
                    &input.ident,
                    "a struct named `Model` (SeaORM) needs an explicit model name, or every record's encryption context would say \"Model\"\n  = help: the correct format looks like #[kms(model_name = \"User\")]",
                );
            }
            ident_name.clone()
        }
    };

    let save_flow = match sa.save_flow.as_ref().map(|s| (s, s.value())) {
        None => quote!(#krate::SaveFlow::Auto),
        Some((_, v)) if v == "auto" => quote!(#krate::SaveFlow::Auto),
        Some((_, v)) if v == "prefetch" => quote!(#krate::SaveFlow::Prefetch),
        Some((_, v)) if v == "eager" => quote!(#krate::SaveFlow::Eager),
        Some((_, v)) if v == "after_insert" => quote!(#krate::SaveFlow::AfterInsert),
        Some((lit, _)) => {
            cx.error_spanned_by(lit, "unknown save_flow\n  = help: expected one of \"auto\", \"prefetch\", \"eager\", \"after_insert\"");
            quote!(#krate::SaveFlow::Auto)
        }
    };

    // fields
    let parsed: Vec<(&syn::Field, FieldAttrs)> = fields
        .iter()
        .map(|f| (f, attr::parse_field(cx, &f.attrs)))
        .collect();

    // id
    let id_ident = sa
        .id
        .clone()
        .or_else(|| {
            parsed
                .iter()
                .find(|(_, a)| a.id.is_some())
                .and_then(|(f, _)| f.ident.clone())
        })
        .or_else(|| {
            fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| i == "id"))
                .and_then(|f| f.ident.clone())
        });
    let id = id_ident.and_then(|ident| {
        let Some(field) = fields.iter().find(|f| f.ident.as_ref() == Some(&ident)) else {
            cx.error_spanned_by(
                &ident,
                format!("no field `{ident}` for #[kms(id = {ident})]"),
            );
            return None;
        };
        let (optional, base) = match option_inner(&field.ty) {
            Some(inner) => (true, inner),
            None => (false, &field.ty),
        };
        let integer = last_ident(base).is_some_and(|n| INTEGERS.contains(&n.as_str()));
        Some(IdField {
            ident,
            optional,
            integer,
        })
    });

    // keys
    let mut key_attrs: Vec<KeyAttr> = sa.keys;
    let implicit_default = key_attrs.is_empty();
    if implicit_default {
        key_attrs.push(KeyAttr {
            span: input.ident.span(),
            name: None,
            key_id: None,
            key_id_env: None,
            key_id_fn: None,
            version: None,
            previous: Vec::new(),
            context: None,
            spec: None,
            column: None,
            upgrade_context: false,
            attachments: false,
        });
    }
    let declared: Vec<String> = key_attrs
        .iter()
        .map(|k| match &k.name {
            Some(n) => format!("kms_key_{}", n.value()),
            None => "kms_key".to_owned(),
        })
        .collect();
    let mut keys = Vec::new();
    for k in &key_attrs {
        if let Some(key) = build_key(cx, &krate, k, fields) {
            if keys.iter().any(|o: &Key| o.method == key.method) {
                cx.syn_error(syn::Error::new(
                    k.span,
                    format!("key `{}` is declared twice", key.method),
                ));
                continue;
            }
            keys.push(key);
        }
    }

    // attributes
    let mut attrs = Vec::new();
    let mut blind_indexes: Vec<Bidx> = Vec::new();
    for (field, fa) in &parsed {
        let Some(field_ident) = field.ident.clone() else {
            continue;
        };
        if fa.encrypted.is_none() {
            let extra = fa.key.is_some()
                || fa.attr.is_some()
                || fa.binary.is_some()
                || fa.serde.is_some()
                || fa.codec.is_some()
                || fa.associated_data.is_some()
                || fa.padding.is_some()
                || fa.kms_rails.is_some()
                || !fa.blind_indexes.is_empty();
            if extra {
                cx.syn_error(syn::Error::new(
                    fa.span.unwrap_or_else(|| field.span()),
                    "these options describe an encrypted attribute: add `encrypted`\n  = help: the correct format looks like #[kms(encrypted, key = \"phone\")]",
                ));
            }
            continue;
        }
        let column = field_ident.to_string();
        let Some(binary) = ciphertext_kind(&field.ty) else {
            cx.error_spanned_by(
                &field.ty,
                "a field marked #[kms(encrypted)] holds the ciphertext: its type must be `Option<String>` (text column, base64) or `Option<Vec<u8>>` (binary column)",
            );
            continue;
        };
        let suffix = if lockbox { "_ciphertext" } else { "_enc" };
        let name = match &fa.attr {
            Some(lit) => lit.value(),
            None => match column.strip_suffix(suffix) {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => {
                    cx.error_spanned_by(
                        &field_ident,
                        format!(
                            "cannot tell the attribute name of `{column}`: ciphertext columns are named `<attribute>{suffix}`\n  = help: rename the field or write #[kms(encrypted, attr = \"email\")]"
                        ),
                    );
                    continue;
                }
            },
        };
        if syn::parse_str::<Ident>(&name).is_err() {
            match &fa.attr {
                Some(lit) => cx.error_spanned_by(
                    lit,
                    format!("attribute name `{name}` is not a valid Rust identifier"),
                ),
                None => cx.error_spanned_by(
                    &field_ident,
                    format!("attribute name `{name}` is not a valid Rust identifier"),
                ),
            }
            continue;
        }
        let key_method = match &fa.key {
            Some(k) if k.value() == "kms_key" || k.value().is_empty() => "kms_key".to_owned(),
            Some(k) => format!("kms_key_{}", k.value().trim_start_matches("kms_key_")),
            None => "kms_key".to_owned(),
        };
        let Some(key_index) = keys.iter().position(|k| k.method == key_method) else {
            if declared.contains(&key_method) {
                // declared, but the key itself has an error already reported
                continue;
            }
            let span_tokens = fa
                .key
                .as_ref()
                .map(|k| quote_spanned!(k.span()=> #k))
                .unwrap_or_else(|| quote_spanned!(field_ident.span()=> #field_ident));
            let shown = fa
                .key
                .as_ref()
                .map(|k| k.value())
                .unwrap_or_else(|| "kms_key".into());
            let example = if key_method == "kms_key" {
                "#[kms(key(key_id = \"...\"))]".to_owned()
            } else {
                format!(
                    "#[kms(key(name = \"{}\", key_id = \"...\"))]",
                    key_method.trim_start_matches("kms_key_")
                )
            };
            cx.error_spanned_by(
                span_tokens,
                format!("attribute `{name}` uses key `{shown}`, which this model does not declare\n  = help: declare it on the struct, e.g. {example}"),
            );
            continue;
        };
        let codecs = [fa.binary.is_some(), fa.serde.is_some(), fa.codec.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if codecs > 1 {
            cx.syn_error(syn::Error::new(
                fa.span.unwrap_or_else(|| field.span()),
                "choose one of `binary`, `serde = Type`, `codec = Type`",
            ));
        }
        let codec = if fa.binary.is_some() {
            quote!(#krate::codec::Binary)
        } else if let Some(t) = &fa.serde {
            quote!(#krate::codec::MessagePack<#t>)
        } else if let Some(t) = &fa.codec {
            quote!(#t)
        } else {
            quote!(#krate::codec::Text)
        };
        let padding = match &fa.padding {
            None => None,
            Some((_, None)) => Some(16),
            Some((span, Some(lit))) => match lit.base10_parse::<usize>() {
                Ok(n) if (1..=1 << 20).contains(&n) => Some(n),
                _ => {
                    cx.syn_error(syn::Error::new(
                        *span,
                        "padding must be a block size from 1 to 1048576",
                    ));
                    None
                }
            },
        };
        let associated_data = match &fa.associated_data {
            Some(lit) => lit.value().into_bytes(),
            None if lockbox => Vec::new(),
            None => name.clone().into_bytes(),
        };
        if attrs.iter().any(|a: &Attr| a.name == name) {
            cx.error_spanned_by(
                &field_ident,
                format!("attribute `{name}` is declared twice"),
            );
            continue;
        }
        let plain_string = codecs == 0;
        for b in &fa.blind_indexes {
            if let Some(bidx) = build_bidx(cx, &krate, b, &name, attrs.len(), plain_string, fields)
            {
                if blind_indexes.iter().any(|o: &Bidx| o.column == bidx.column) {
                    cx.syn_error(syn::Error::new(
                        b.span,
                        format!("blind index column `{}` is used twice", bidx.column),
                    ));
                    continue;
                }
                blind_indexes.push(bidx);
            }
        }
        attrs.push(Attr {
            name,
            field: field_ident,
            column,
            key: key_index,
            associated_data,
            padding,
            binary,
            kms_rails: fa
                .kms_rails
                .as_ref()
                .map(|(_, ctx)| ctx.as_ref().map(|(k, v)| (k.value(), v.value()))),
            codec,
            text: plain_string,
            span: fa.encrypted.unwrap_or_else(|| field.span()),
        });
    }

    let table = sa.table.map(|t| t.value()).or(sa.orm_table);
    if table.is_none()
        && let Some(b) = blind_indexes.first()
    {
        cx.syn_error(syn::Error::new(
                b.span,
                "a blind index's key is derived from the table name: give it with #[diesel(table_name = ...)], #[sea_orm(table_name = \"...\")] or #[kms(table = \"...\")]",
            ));
    }
    if parsed.iter().all(|(_, a)| a.encrypted.is_none()) && !keys.iter().any(|k| k.attachments) {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(KmsEncrypted)] found no encrypted attribute: mark the ciphertext columns with #[kms(encrypted)] (a key that only encrypts files says so: key(..., attachments))\n  = help: the correct format looks like #[kms(encrypted)] pub email_enc: Option<String>",
        );
    }
    if id.is_none() && keys.iter().any(|k| k.context.is_none()) {
        cx.error_spanned_by(
            &input.ident,
            "the default encryption context {model_name, model_id} needs the record's id: add an `id` field, mark one with #[kms(id)], or give every key a custom `context`",
        );
    }

    Some(Model {
        ident: input.ident.clone(),
        sea_orm: sa.sea_orm,
        seaorm_hooks: sa.seaorm_hooks.clone(),
        generics: input.generics.clone(),
        krate,
        model_name,
        table,
        id,
        save_flow,
        sequence: sa.sequence.map(|s| s.value()),
        keys,
        attrs,
        blind_indexes,
    })
}

fn int_in(
    cx: &Ctxt,
    lit: &syn::LitInt,
    range: std::ops::RangeInclusive<u32>,
    what: &str,
) -> Option<u32> {
    match lit.base10_parse::<u32>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            cx.error_spanned_by(
                lit,
                format!("{what} must be from {} to {}", range.start(), range.end()),
            );
            None
        }
    }
}

/// A `blind_index(...)` of attribute `attr_name` (position `attr`), checked.
fn build_bidx(
    cx: &Ctxt,
    krate: &Path,
    b: &BidxAttr,
    attr_name: &str,
    attr: usize,
    plain_string: bool,
    fields: &syn::punctuated::Punctuated<syn::Field, syn::Token![,]>,
) -> Option<Bidx> {
    if !plain_string {
        cx.syn_error(syn::Error::new(
            b.span,
            "blind indexes are computed from a string: they work on attributes with the default (String) codec",
        ));
        return None;
    }
    let algorithm_name = b
        .algorithm
        .as_ref()
        .map(|a| a.value())
        .unwrap_or_else(|| "argon2id".into());
    let slow = b.slow.is_some();
    let alg = quote!(#krate::__private::blind_index::Algorithm);
    let algorithm = match algorithm_name.as_str() {
        "argon2id" => {
            if let Some(i) = &b.iterations {
                cx.error_spanned_by(
                    i,
                    "`iterations` is a pbkdf2_sha256 option: Argon2id takes cost(t = N, m = N)",
                );
            }
            match &b.cost {
                None if slow => quote!(#alg::ARGON2ID_SLOW),
                None => quote!(#alg::ARGON2ID),
                Some((_, t, m)) => {
                    let t = t.as_ref().map_or(Some(if slow { 4 } else { 3 }), |t| {
                        int_in(cx, t, 3..=10, "argon2id t")
                    });
                    let m = m.as_ref().map_or(Some(if slow { 15 } else { 12 }), |m| {
                        int_in(cx, m, 3..=22, "argon2id m (log2 of KiB)")
                    });
                    match (t, m) {
                        (Some(t), Some(m)) => {
                            let kib = 1u32 << m;
                            quote!(#alg::argon2id(#t, #kib))
                        }
                        _ => quote!(),
                    }
                }
            }
        }
        "pbkdf2_sha256" | "pbkdf2_hmac" => {
            if let Some((span, _, _)) = &b.cost {
                cx.syn_error(syn::Error::new(
                    *span,
                    "`cost(t, m)` is an argon2id option: PBKDF2 takes `iterations = N`",
                ));
            }
            let n = match &b.iterations {
                Some(i) => int_in(cx, i, 1..=100_000_000, "iterations"),
                None if slow => Some(100_000),
                None => Some(10_000),
            };
            match n {
                Some(n) => quote!(#alg::pbkdf2_sha256(#n)),
                None => quote!(),
            }
        }
        _ => {
            if let Some(a) = &b.algorithm {
                cx.error_spanned_by(a, "unknown blind index algorithm\n  = help: expected \"argon2id\" (the default) or \"pbkdf2_sha256\"");
            }
            quote!()
        }
    };
    let min = if algorithm_name == "argon2id" { 4 } else { 1 };
    let size = match &b.size {
        Some(s) => int_in(cx, s, min..=32, "blind index size (bytes)").map(|n| n as usize),
        None => Some(32),
    };
    let column = b
        .column
        .as_ref()
        .map(|c| c.value())
        .unwrap_or_else(|| format!("{attr_name}_bidx"));
    let Some(field) = fields
        .iter()
        .find(|f| f.ident.as_ref().is_some_and(|i| *i == column))
    else {
        cx.syn_error(syn::Error::new(
            b.span,
            format!(
                "missing blind index column: the index of `{attr_name}` is stored in a field `{column}`, which this struct does not have\n  = help: add `pub {column}: Option<String>` (or `Option<Vec<u8>>` for a binary column), or name it with blind_index(column = \"...\")"
            ),
        ));
        return None;
    };
    let Some(binary) = ciphertext_kind(&field.ty) else {
        cx.error_spanned_by(
            &field.ty,
            format!("the blind index column `{column}` must be `Option<String>` (base64) or `Option<Vec<u8>>` (raw bytes)"),
        );
        return None;
    };
    if algorithm.is_empty() {
        return None;
    }
    let size = size?;
    Some(Bidx {
        attr,
        column,
        field: field.ident.clone()?,
        binary,
        unique: b.unique.is_some(),
        master_key: b.master_key.as_ref().map(|k| k.value()),
        algorithm,
        size,
        expression: b.expression.clone(),
        span: b.span,
    })
}

fn build_key(
    cx: &Ctxt,
    krate: &Path,
    k: &KeyAttr,
    fields: &syn::punctuated::Punctuated<syn::Field, syn::Token![,]>,
) -> Option<Key> {
    let name = k.name.as_ref().map(|n| n.value());
    if let Some(n) = &k.name
        && (n.value().is_empty()
            || n.value() == "kms_key"
            || syn::parse_str::<Ident>(&n.value()).is_err())
    {
        cx.error_spanned_by(
            n,
            "a key name is a Rust identifier such as \"phone\" (the default key has no name)",
        );
        return None;
    }
    let method = match &name {
        Some(n) => format!("kms_key_{n}"),
        None => "kms_key".to_owned(),
    };
    let column = k
        .column
        .as_ref()
        .map(|c| c.value())
        .unwrap_or_else(|| format!("encrypted_{method}"));
    let Some(field) = fields
        .iter()
        .find(|f| f.ident.as_ref().is_some_and(|i| *i == column))
    else {
        cx.syn_error(syn::Error::new(
            k.span,
            format!(
                "missing key column: key `{method}` is stored in a field `{column}`, which this struct does not have\n  = help: add `pub {column}: kms_fields_diesel::KmsKey` (or the SeaORM KmsKey), or name the column with #[kms(key(column = \"...\"))]"
            ),
        ));
        return None;
    };
    let sources = [
        k.key_id.is_some(),
        k.key_id_env.is_some(),
        k.key_id_fn.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources > 1 {
        cx.syn_error(syn::Error::new(
            k.span,
            "choose one of `key_id`, `key_id_env`, `key_id_fn`",
        ));
    }
    let spec = if let Some(spec_fn) = &k.spec {
        if sources > 0 || k.version.is_some() || !k.previous.is_empty() || k.upgrade_context {
            cx.error_spanned_by(spec_fn, "`spec = ...` gives the whole KeySpec: drop key_id/version/previous/upgrade_context here");
        }
        quote!(#spec_fn())
    } else {
        let mut s = match &name {
            Some(n) => quote!(#krate::KeySpec::named(#n)),
            None => quote!(#krate::KeySpec::new()),
        };
        if let Some(id) = &k.key_id {
            s = quote!(#s.key_id(#id));
        }
        if let Some(env) = &k.key_id_env {
            s = quote!(#s.key_id_from_env(#env));
        }
        if k.key_id_fn.is_some() {
            s = quote!(#s.key_id_per_record());
        }
        if let Some(v) = &k.version {
            match v.base10_parse::<u32>() {
                Ok(n) => s = quote!(#s.version(#n)),
                Err(_) => cx.error_spanned_by(v, "version must be a positive integer"),
            }
        }
        for (v, id) in &k.previous {
            match v.base10_parse::<u32>() {
                Ok(n) => s = quote!(#s.previous_version(#n, #id)),
                Err(_) => cx.error_spanned_by(v, "version must be a positive integer"),
            }
        }
        if k.upgrade_context {
            s = quote!(#s.upgrade_context(true));
        }
        s
    };
    Some(Key {
        name,
        method,
        column,
        field: field.ident.clone()?,
        field_ty: field.ty.clone(),
        spec,
        context: k.context.clone(),
        key_id_fn: k.key_id_fn.clone(),
        attachments: k.attachments,
    })
}
