//! Full key rotation of a record with its encrypted attachments (feature `attachments`): see
//! [`kms_fields::attachments::record`] for the crash-safe order.

use kms_fields::attachments::AttachmentStore;
use kms_fields::attachments::object_store::path::Path;
use kms_fields::attachments::record;
use kms_fields::{KeyHandle as KmsKeyHandle, Kms, KmsModel, Result};
use sea_orm::{ConnectionTrait, TransactionTrait};

/// [`rotate_kms_key`](crate::rotate_kms_key) that also re-encrypts the record's attachments
/// (`(name, path)` in `store`), streaming: staging objects under the new key, the guarded
/// `UPDATE`, then the staging objects over the originals. A read-only store is refused before
/// anything changes.
pub async fn rotate_kms_key_with_attachments<
    M: KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
>(
    db: &C,
    kms: &Kms,
    model: &mut M,
    key: KmsKeyHandle<M>,
    store: &AttachmentStore,
    attachments: &[(&str, Path)],
) -> Result<()> {
    record::rotate_with_attachments(model, kms, key, store, attachments, async |m: &mut M| {
        crate::save::guarded_update(db, m, key).await
    })
    .await
}
