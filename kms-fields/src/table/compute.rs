//! What each row becomes: the KMS calls and attribute re-encryption of one row, and running
//! them for a batch with bounded concurrency.

use futures::StreamExt;

use super::{AttrSpec, RotationMode, Row, TableSpec};
use crate::cipher;
use crate::data_key::DataKey;
use crate::encoding;
use crate::envelope::StoredKey;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;

/// The new key column value of a row and, when the data key changed, its new ciphertexts.
pub(crate) struct NewValues {
    pub(crate) key: String,
    pub(crate) cols: Option<Vec<Option<Vec<u8>>>>,
}

/// Where a row's KMS error happened: model, id, key column, stored version and its key id.
pub(super) fn row_location(t: &TableSpec, row: &Row) -> String {
    let version = row.key.as_deref().and_then(StoredKey::version_of);
    let key_id = version
        .and_then(|v| t.spec.resolve(v, None).ok())
        .map(|k| k.key_id);
    match (version, key_id) {
        (Some(v), Some(k)) => format!(
            "{}#{} {} (v{v}, key {k})",
            t.model_name, row.id, t.key_column
        ),
        (Some(v), None) => format!("{}#{} {} (v{v})", t.model_name, row.id, t.key_column),
        _ => format!("{}#{} {}", t.model_name, row.id, t.key_column),
    }
}

/// A ciphertext column's raw bytes (base64-decoded for text columns).
pub(crate) fn raw_ciphertext(a: &AttrSpec, stored: &[u8]) -> Result<Vec<u8>> {
    if a.binary {
        return Ok(stored.to_vec());
    }
    let s = std::str::from_utf8(stored)
        .map_err(|_| Error::new(ErrorKind::BadFormat, "ciphertext column is not text"))?;
    encoding::strict_decode(s)
}

/// Encrypt `plaintext` for column `a` (base64 for text columns).
pub(super) fn stored_ciphertext(a: &AttrSpec, key: &DataKey, plaintext: &[u8]) -> Result<Vec<u8>> {
    let ct = cipher::encrypt(key, plaintext, a.options())?;
    Ok(if a.binary {
        ct
    } else {
        encoding::strict_encode(&ct).into_bytes()
    })
}

pub(crate) async fn rotate_row(
    kms: &Kms,
    t: &TableSpec,
    mode: RotationMode,
    row: &Row,
) -> Result<NewValues> {
    rotate_row_inner(kms, t, mode, row)
        .await
        .map_err(|e| e.context(row_location(t, row)))
}

async fn rotate_row_inner(
    kms: &Kms,
    t: &TableSpec,
    mode: RotationMode,
    row: &Row,
) -> Result<NewValues> {
    let stored = row
        .key
        .as_deref()
        .ok_or_else(|| Error::new(ErrorKind::BadFormat, "NULL key column"))?;
    let ctx = t.context(&row.id);
    let ctx_fn = move |_: u32| Ok(Some(ctx.clone()));
    match mode {
        RotationMode::Rewrap => Ok(NewValues {
            key: kms.rewrap(&t.spec, None, stored, &ctx_fn).await?,
            cols: None,
        }),
        RotationMode::NewDataKey => {
            let old = kms.unwrap_data_key(&t.spec, None, stored, &ctx_fn).await?;
            let fresh = DataKey::generate()?;
            let mut cols = Vec::with_capacity(t.attributes.len());
            for (a, value) in t.attributes.iter().zip(&row.cols) {
                cols.push(match value {
                    None => None,
                    // Lockbox stores "" unencrypted
                    Some(v) if v.is_empty() => Some(Vec::new()),
                    Some(v) => {
                        let pt = cipher::decrypt(&old, &raw_ciphertext(a, v)?, a.options())?;
                        Some(stored_ciphertext(a, &fresh, &pt)?)
                    }
                });
            }
            let key = kms.wrap_data_key(&t.spec, None, &fresh, &ctx_fn).await?;
            Ok(NewValues {
                key,
                cols: Some(cols),
            })
        }
    }
}

/// A row to backfill: a new data key, its plaintext columns encrypted, the key wrapped.
pub(crate) async fn backfill_row(kms: &Kms, t: &TableSpec, row: &Row) -> Result<NewValues> {
    let fresh = DataKey::generate()?;
    let mut cols = Vec::with_capacity(t.attributes.len());
    for (a, plain) in t.attributes.iter().zip(&row.cols) {
        cols.push(match plain {
            None => None,
            Some(p) => Some(stored_ciphertext(a, &fresh, p)?),
        });
    }
    let ctx = t.context(&row.id);
    let key = kms
        .wrap_data_key(&t.spec, None, &fresh, &move |_| Ok(Some(ctx.clone())))
        .await
        .map_err(|e| e.context(row_location(t, row)))?;
    Ok(NewValues {
        key,
        cols: Some(cols),
    })
}

/// Run `f` over `rows` with at most `concurrency` in flight; results in input order.
pub(crate) async fn for_each_row<'r, F, Fut, T>(
    rows: &'r [Row],
    concurrency: usize,
    f: F,
) -> Vec<Result<T>>
where
    F: Fn(&'r Row) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut out: Vec<(usize, Result<T>)> = futures::stream::iter(rows.iter().enumerate())
        .map(|(i, row)| {
            let fut = f(row);
            async move { (i, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
