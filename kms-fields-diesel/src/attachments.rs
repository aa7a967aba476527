//! Full key rotation of a record with its encrypted attachments (feature `attachments`): see
//! [`kms_fields::attachments::record`] for the crash-safe order.

use kms_fields::attachments::AttachmentStore;
use kms_fields::attachments::object_store::path::Path;
use kms_fields::attachments::record;
use kms_fields::{KeyHandle as KmsKeyHandle, Kms, KmsModel, Result, blocking};

use crate::KmsConnection;

/// [`rotate_kms_key`](crate::rotate_kms_key) that also re-encrypts the record's attachments
/// (`(name, path)` in `store`), streaming: staging objects under the new key, the guarded
/// `UPDATE`, then the staging objects over the originals. A read-only store is refused before
/// anything changes.
pub fn rotate_kms_key_with_attachments<M, C>(
    conn: &mut C,
    kms: &Kms,
    model: &mut M,
    key: KmsKeyHandle<M>,
    store: &AttachmentStore,
    attachments: &[(&str, Path)],
) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(record::rotate_with_attachments(
        model,
        kms,
        key,
        store,
        attachments,
        async |m: &mut M| crate::update_key_columns(conn, m, key),
    ))
}
