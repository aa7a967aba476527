//! The blind indexes of models: the value of an index for a plaintext, with the master key the
//! [`Kms`] handle holds for it. The generated setters call these before encrypting, and the
//! generated query helpers (`User::email_bidx(&kms, "a@b.c")`) call them for lookups.

use super::KmsModel;
use crate::blind_index::BidxValue;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;

fn def<M: KmsModel>(bidx: usize) -> Result<&'static super::BidxDef> {
    M::BLIND_INDEXES.get(bidx).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("{} has no blind index #{bidx}", M::MODEL_NAME),
        )
    })
}

/// Blind index `bidx` of `value` (normalised by the index's expression), computed on this
/// thread — Argon2id takes milliseconds: from async code use [`blind_index_value_async`].
pub fn blind_index_value<M: KmsModel>(kms: &Kms, bidx: usize, value: &str) -> Result<BidxValue> {
    let d = def::<M>(bidx)?;
    M::blind_index(bidx)?.compute(kms.blind_index_key(d.master_key)?, value)
}

/// [`blind_index_value`] on tokio's blocking pool, so the runtime keeps serving other tasks.
pub async fn blind_index_value_async<M: KmsModel>(
    kms: &Kms,
    bidx: usize,
    value: &str,
) -> Result<BidxValue> {
    let d = def::<M>(bidx)?;
    M::blind_index(bidx)?
        .compute_async(kms.blind_index_key(d.master_key)?, value)
        .await
}

/// Blind index `bidx` of each value (for `WHERE email_bidx IN (…)`), on tokio's blocking pool
/// with the index's parallelism bound; in input order.
pub async fn blind_index_values<M: KmsModel, S: AsRef<str>>(
    kms: &Kms,
    bidx: usize,
    values: &[S],
) -> Result<Vec<BidxValue>> {
    let d = def::<M>(bidx)?;
    M::blind_index(bidx)?
        .compute_many_async(
            kms.blind_index_key(d.master_key)?,
            values.iter().map(AsRef::as_ref),
        )
        .await
}

/// The text of a base64 blind index (generated code: text bidx columns).
pub fn bidx_text(value: BidxValue) -> Result<String> {
    value.into_string().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "a binary blind index cannot go into a text column",
        )
    })
}

/// The bytes of a blind index (generated code: binary bidx columns).
pub fn bidx_bytes(value: BidxValue) -> Result<Vec<u8>> {
    Ok(value.into_bytes())
}
