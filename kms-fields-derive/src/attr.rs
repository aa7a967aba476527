//! Parsing of `#[kms(...)]` (and the table name of `#[diesel]` / `#[sea_orm]`), keeping spans.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

pub const STRUCT_KEYS: &str =
    "model_name, table, id, lockbox, save_flow, sequence, crate, key(...), seaorm_hooks";
pub const KEY_KEYS: &str = "name, key_id, key_id_env, key_id_fn, version, previous(N = \"key id\", ...), context, spec, column, upgrade_context, attachments";
pub const FIELD_KEYS: &str = "encrypted, key, attr, binary, serde, codec, associated_data, padding, kms_rails, blind_index(...), id";
pub const BIDX_KEYS: &str =
    "column, expression, size, slow, cost(t = N, m = N), algorithm, iterations, master_key, unique";

/// One `blind_index(...)` of an encrypted field.
pub struct BidxAttr {
    pub span: Span,
    pub column: Option<LitStr>,
    pub expression: Option<Path>,
    pub size: Option<LitInt>,
    pub slow: Option<Span>,
    /// Argon2id `cost(t = 3, m = 12)`: m is log2 of KiB, as in the blind_index gem.
    pub cost: Option<(Span, Option<LitInt>, Option<LitInt>)>,
    pub algorithm: Option<LitStr>,
    pub iterations: Option<LitInt>,
    pub master_key: Option<LitStr>,
    pub unique: Option<Span>,
}

/// One `#[kms(key(...))]`.
pub struct KeyAttr {
    pub span: Span,
    pub name: Option<LitStr>,
    pub key_id: Option<LitStr>,
    pub key_id_env: Option<LitStr>,
    pub key_id_fn: Option<Path>,
    pub version: Option<LitInt>,
    pub previous: Vec<(LitInt, LitStr)>,
    pub context: Option<Path>,
    pub spec: Option<Path>,
    pub column: Option<LitStr>,
    pub upgrade_context: bool,
    /// The key also encrypts files (attachments): a plain rotation is refused.
    pub attachments: bool,
}

#[derive(Default)]
pub struct StructAttrs {
    pub model_name: Option<LitStr>,
    pub table: Option<LitStr>,
    pub id: Option<Ident>,
    pub lockbox: Option<Span>,
    pub save_flow: Option<LitStr>,
    pub sequence: Option<LitStr>,
    pub krate: Option<Path>,
    pub keys: Vec<KeyAttr>,
    /// `seaorm_hooks = path::to::fn_returning_static_kms`.
    pub seaorm_hooks: Option<Path>,
    /// From `#[diesel(table_name = x)]` or `#[sea_orm(table_name = "x")]`.
    pub orm_table: Option<String>,
    /// Whether the struct carries `#[sea_orm(...)]` (a SeaORM entity model).
    pub sea_orm: bool,
}

#[derive(Default)]
pub struct FieldAttrs {
    pub encrypted: Option<Span>,
    pub key: Option<LitStr>,
    pub attr: Option<LitStr>,
    pub binary: Option<Span>,
    pub serde: Option<Type>,
    pub codec: Option<Type>,
    pub associated_data: Option<LitStr>,
    pub padding: Option<(Span, Option<LitInt>)>,
    /// `kms_rails` or `kms_rails(context_key = "k", context_value = "v")`.
    pub kms_rails: Option<(Span, Option<(LitStr, LitStr)>)>,
    pub id: Option<Span>,
    pub blind_indexes: Vec<BidxAttr>,
    /// Span of the first `#[kms]` attribute, for errors about the field as a whole.
    pub span: Option<Span>,
}

fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>, name: &str) {
    if slot.is_some() {
        cx.error_spanned_by(&meta.path, format!("duplicate kms attribute `{name}`"));
    } else {
        *slot = Some(value);
    }
}

fn unknown(meta: &ParseNestedMeta<'_>, expected: &str, example: &str) -> syn::Error {
    let name = meta
        .path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_else(|| "?".into());
    meta.error(format!(
        "unknown kms attribute `{name}`\n  = help: expected one of: {expected}\n  = help: the correct format looks like {example}"
    ))
}

/// Consume the value of a meta we do not care about (in `#[diesel]`, `#[sea_orm]`).
fn skip_meta(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

fn parse_lit_path(lit: &LitStr) -> syn::Result<Path> {
    lit.parse::<Path>()
}

pub fn parse_struct(cx: &Ctxt, attrs: &[syn::Attribute]) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("diesel") {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    let p: Path = meta.value()?.parse()?;
                    if let Some(seg) = p.segments.last() {
                        out.orm_table = Some(seg.ident.to_string());
                    }
                    Ok(())
                } else {
                    skip_meta(&meta)
                }
            });
        } else if attr.path().is_ident("sea_orm") {
            out.sea_orm = true;
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    let s: LitStr = meta.value()?.parse()?;
                    out.orm_table = Some(s.value());
                    Ok(())
                } else {
                    skip_meta(&meta)
                }
            });
        } else if attr.path().is_ident("kms") {
            let r = attr.parse_nested_meta(|meta| {
                let p = &meta.path;
                if p.is_ident("model_name") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.model_name, v, &meta, "model_name");
                } else if p.is_ident("table") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.table, v, &meta, "table");
                } else if p.is_ident("id") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.id, v, &meta, "id");
                } else if p.is_ident("lockbox") {
                    set_once(cx, &mut out.lockbox, p.span(), &meta, "lockbox");
                } else if p.is_ident("save_flow") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.save_flow, v, &meta, "save_flow");
                } else if p.is_ident("sequence") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.sequence, v, &meta, "sequence");
                } else if p.is_ident("crate") {
                    let lit: LitStr = meta.value()?.parse()?;
                    let v = parse_lit_path(&lit)?;
                    set_once(cx, &mut out.krate, v, &meta, "crate");
                } else if p.is_ident("key") {
                    out.keys.push(parse_key(cx, &meta)?);
                } else if p.is_ident("seaorm_hooks") {
                    let v = meta.value()?.parse()?;
                    set_once(cx, &mut out.seaorm_hooks, v, &meta, "seaorm_hooks");
                } else {
                    return Err(unknown(
                        &meta,
                        STRUCT_KEYS,
                        r#"#[kms(model_name = "User", key(key_id = "insecure-test-key"))]"#,
                    ));
                }
                Ok(())
            });
            if let Err(e) = r {
                cx.syn_error(e);
            }
        }
    }
    out
}

fn parse_key(cx: &Ctxt, outer: &ParseNestedMeta<'_>) -> syn::Result<KeyAttr> {
    let mut k = KeyAttr {
        span: outer.path.span(),
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
    };
    if !outer.input.peek(syn::token::Paren) {
        return Ok(k);
    }
    outer.parse_nested_meta(|meta| {
        let p = &meta.path;
        if p.is_ident("name") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.name, v, &meta, "name");
        } else if p.is_ident("key_id") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.key_id, v, &meta, "key_id");
        } else if p.is_ident("key_id_env") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.key_id_env, v, &meta, "key_id_env");
        } else if p.is_ident("key_id_fn") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.key_id_fn, v, &meta, "key_id_fn");
        } else if p.is_ident("version") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.version, v, &meta, "version");
        } else if p.is_ident("previous") {
            let content;
            syn::parenthesized!(content in meta.input);
            let pairs = content.parse_terminated(parse_version_pair, Token![,])?;
            k.previous.extend(pairs);
        } else if p.is_ident("context") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.context, v, &meta, "context");
        } else if p.is_ident("spec") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.spec, v, &meta, "spec");
        } else if p.is_ident("column") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut k.column, v, &meta, "column");
        } else if p.is_ident("upgrade_context") {
            k.upgrade_context = true;
        } else if p.is_ident("attachments") {
            k.attachments = true;
        } else {
            return Err(unknown(&meta, KEY_KEYS, r#"#[kms(key(name = "phone", key_id = "alias/phone", version = 2, previous(1 = "alias/old")))]"#));
        }
        Ok(())
    })?;
    Ok(k)
}

fn parse_version_pair(input: ParseStream<'_>) -> syn::Result<(LitInt, LitStr)> {
    let v: LitInt = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected `VERSION = \"key id\"`, e.g. previous(1 = \"alias/old-key\")",
        )
    })?;
    input.parse::<Token![=]>()?;
    let id: LitStr = input.parse()?;
    Ok((v, id))
}

pub fn parse_field(cx: &Ctxt, attrs: &[syn::Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("kms")) {
        out.span.get_or_insert(attr.span());
        if matches!(attr.meta, syn::Meta::Path(_)) {
            cx.error_spanned_by(attr, "expected #[kms(encrypted)] or #[kms(id)] on a field");
            continue;
        }
        let r = attr.parse_nested_meta(|meta| {
            let p = &meta.path;
            if p.is_ident("encrypted") {
                set_once(cx, &mut out.encrypted, p.span(), &meta, "encrypted");
            } else if p.is_ident("key") {
                let v = meta.value()?.parse()?;
                set_once(cx, &mut out.key, v, &meta, "key");
            } else if p.is_ident("attr") {
                let v = meta.value()?.parse()?;
                set_once(cx, &mut out.attr, v, &meta, "attr");
            } else if p.is_ident("binary") {
                set_once(cx, &mut out.binary, p.span(), &meta, "binary");
            } else if p.is_ident("serde") {
                let v = meta.value()?.parse()?;
                set_once(cx, &mut out.serde, v, &meta, "serde");
            } else if p.is_ident("codec") {
                let v = meta.value()?.parse()?;
                set_once(cx, &mut out.codec, v, &meta, "codec");
            } else if p.is_ident("associated_data") {
                let v = meta.value()?.parse()?;
                set_once(cx, &mut out.associated_data, v, &meta, "associated_data");
            } else if p.is_ident("padding") {
                let size = if meta.input.peek(Token![=]) {
                    Some(meta.value()?.parse::<LitInt>()?)
                } else {
                    None
                };
                set_once(cx, &mut out.padding, (p.span(), size), &meta, "padding");
            } else if p.is_ident("kms_rails") {
                let mut key: Option<LitStr> = None;
                let mut value: Option<LitStr> = None;
                if meta.input.peek(syn::token::Paren) {
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("context_key") {
                            key = Some(inner.value()?.parse()?);
                        } else if inner.path.is_ident("context_value") {
                            value = Some(inner.value()?.parse()?);
                        } else {
                            return Err(inner
                                .error("expected context_key = \"..\" or context_value = \"..\""));
                        }
                        Ok(())
                    })?;
                }
                let ctx = match (key, value) {
                    (Some(k), Some(v)) => Some((k, v)),
                    (None, None) => None,
                    _ => {
                        return Err(meta.error(
                            "kms_rails needs both context_key and context_value, or neither",
                        ));
                    }
                };
                set_once(cx, &mut out.kms_rails, (p.span(), ctx), &meta, "kms_rails");
            } else if p.is_ident("id") {
                set_once(cx, &mut out.id, p.span(), &meta, "id");
            } else if p.is_ident("blind_index") {
                out.blind_indexes.push(parse_blind_index(cx, &meta)?);
            } else {
                return Err(unknown(
                    &meta,
                    FIELD_KEYS,
                    r#"#[kms(encrypted, key = "phone")]"#,
                ));
            }
            Ok(())
        });
        if let Err(e) = r {
            cx.syn_error(e);
        }
    }
    out
}

fn parse_blind_index(cx: &Ctxt, outer: &ParseNestedMeta<'_>) -> syn::Result<BidxAttr> {
    let mut b = BidxAttr {
        span: outer.path.span(),
        column: None,
        expression: None,
        size: None,
        slow: None,
        cost: None,
        algorithm: None,
        iterations: None,
        master_key: None,
        unique: None,
    };
    if !outer.input.peek(syn::token::Paren) {
        return Ok(b);
    }
    outer.parse_nested_meta(|meta| {
        let p = &meta.path;
        if p.is_ident("column") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.column, v, &meta, "column");
        } else if p.is_ident("expression") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.expression, v, &meta, "expression");
        } else if p.is_ident("size") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.size, v, &meta, "size");
        } else if p.is_ident("slow") {
            set_once(cx, &mut b.slow, p.span(), &meta, "slow");
        } else if p.is_ident("cost") {
            let (mut t, mut m) = (None, None);
            meta.parse_nested_meta(|inner| {
                if inner.path.is_ident("t") {
                    t = Some(inner.value()?.parse()?);
                } else if inner.path.is_ident("m") {
                    m = Some(inner.value()?.parse()?);
                } else {
                    return Err(inner.error(
                        "expected `t = N` (iterations) or `m = N` (memory, log2 of KiB as in the blind_index gem)",
                    ));
                }
                Ok(())
            })?;
            set_once(cx, &mut b.cost, (p.span(), t, m), &meta, "cost");
        } else if p.is_ident("algorithm") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.algorithm, v, &meta, "algorithm");
        } else if p.is_ident("iterations") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.iterations, v, &meta, "iterations");
        } else if p.is_ident("master_key") {
            let v = meta.value()?.parse()?;
            set_once(cx, &mut b.master_key, v, &meta, "master_key");
        } else if p.is_ident("unique") {
            set_once(cx, &mut b.unique, p.span(), &meta, "unique");
        } else {
            return Err(unknown(
                &meta,
                BIDX_KEYS,
                r#"#[kms(encrypted, blind_index(expression = kms_fields::blind_index::normalize::trim_lowercase, unique))]"#,
            ));
        }
        Ok(())
    })?;
    Ok(b)
}
