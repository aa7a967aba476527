//! Attachments of model records: keyed by one of the record's data keys (`kms_key` or a named
//! key) and the attachment's logical name, so a re-wrap rotation of the record's key needs no
//! change to its files, and a full data-key rotation re-encrypts them — in three steps that a
//! crash at any point leaves readable:
//!
//! 1. every attachment is re-encrypted under the new data key to a staging object beside it
//!    (`<path>.kmsf-next`), streaming; the originals are untouched;
//! 2. the record's new key and ciphertexts are saved (one guarded `UPDATE`, by the ORM crate);
//! 3. each staging object is copied over its original and deleted.
//!
//! A crash after step 1 leaves stale staging objects (the record still has its old key: they
//! are ignored and [`finish_rotation`] deletes them). A crash after step 2 leaves originals
//! under the old key: [`open`] falls back to the staging object when the original no longer
//! decrypts, and [`finish_rotation`] completes step 3.

use object_store::path::Path;

use super::{AttachmentKey, AttachmentStore, AttachmentStream};
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;
use crate::model::{self, KeyHandle, KmsModel};

/// The staging object of `path` during a full rotation: `<path>.kmsf-next`.
pub fn staging_path(path: &Path) -> Path {
    Path::from(format!("{path}.kmsf-next"))
}

/// The key of attachment `name` of `record` under its key `key` (a position in `M::KEYS`):
/// the record's data key, unwrapped once if needed (one KMS `Decrypt`). A record without a data
/// key yet has no attachments: `NotFound`.
pub async fn key_of<M: KmsModel>(
    record: &M,
    kms: &Kms,
    handle: KeyHandle<M>,
    name: &str,
) -> Result<AttachmentKey> {
    let key = handle.index();
    match model::data_key(record, kms, key).await? {
        Some(k) => Ok(AttachmentKey::new(k, name)),
        None => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} has no {} yet, so no attachment {name:?}",
                M::MODEL_NAME,
                M::KEYS.get(key).map_or("key", |k| k.method)
            ),
        )),
    }
}

/// The key to write attachment `name` of `record` with: the record's data key, or — for a
/// record without one — a fresh data key that the save flow wraps with the record (no KMS call
/// now).
pub async fn key_for_write<M: KmsModel>(
    record: &mut M,
    kms: &Kms,
    handle: KeyHandle<M>,
    name: &str,
) -> Result<AttachmentKey> {
    let key = handle.index();
    if let Some(k) = model::data_key(&*record, kms, key).await? {
        return Ok(AttachmentKey::new(k, name));
    }
    let fresh = crate::DataKey::generate()?;
    let attachment = AttachmentKey::new(&fresh, name);
    record.key_column_mut(key).set_new_key(fresh);
    Ok(attachment)
}

/// Read attachment `name` of `record` at `path`, its first segment already verified (see the
/// module docs for the fallback to a staging object left by an interrupted rotation).
pub async fn open<M: KmsModel>(
    record: &M,
    kms: &Kms,
    handle: KeyHandle<M>,
    store: &AttachmentStore,
    name: &str,
    path: &Path,
) -> Result<AttachmentStream> {
    let k = key_of(record, kms, handle, name).await?;
    let opened = match store.get(path, &k).await {
        Ok(stream) => stream.first_segment_verified().await,
        Err(e) => Err(e),
    };
    match opened {
        Err(e)
            if e.kind() == ErrorKind::DecryptionFailed
                && store.mode() == super::Mode::Encrypted =>
        {
            match store.get(&staging_path(path), &k).await {
                Ok(staged) => staged.first_segment_verified().await.map_err(|_| e),
                Err(_) => Err(e),
            }
        }
        other => other,
    }
}

/// kms_encrypted's `rotate_kms_key!` for key `key` with the record's attachments re-encrypted:
/// a new data key, that key's attributes re-encrypted and the key wrapped, every attachment in
/// `attachments` (`(name, path)`) re-encrypted streaming, and `persist` called to save the
/// record (the ORM crates pass their guarded update) — in the crash-safe order of the module
/// docs. Refuses with a `Config` error, before changing anything, when `store` is read-only
/// (a re-wrap rotation needs no file change). On an error the stored record and files are as
/// they were (the staging objects written are deleted); reload the record before retrying.
pub async fn rotate_with_attachments<M, F>(
    record: &mut M,
    kms: &Kms,
    handle: KeyHandle<M>,
    store: &AttachmentStore,
    attachments: &[(&str, Path)],
    persist: F,
) -> Result<()>
where
    M: KmsModel,
    F: AsyncFnOnce(&mut M) -> Result<()>,
{
    let key = handle.index();
    if !attachments.is_empty() && store.is_read_only() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: a full rotation of {} re-encrypts its attachments, but the attachment store is read-only (a re-wrap rotation needs no file change)",
                M::MODEL_NAME,
                M::KEYS.get(key).map_or("the key", |k| k.method)
            ),
        ));
    }
    let mut old = Vec::with_capacity(attachments.len());
    for (name, _) in attachments {
        old.push(key_of(&*record, kms, handle, name).await?);
    }
    model::rotate_key(record, kms, key).await?;
    model::seal_pending_keys(record, kms).await?;
    let new_key = record
        .key_column(key)
        .cached_key()
        .cloned()
        .ok_or_else(|| Error::new(ErrorKind::Config, "rotation left no data key"))?;
    // 1. staging objects under the new key
    let mut staged = Vec::with_capacity(attachments.len());
    for ((name, path), old_key) in attachments.iter().zip(&old) {
        let to = staging_path(path);
        let new = AttachmentKey::new(&new_key, *name);
        if let Err(e) = store.reencrypt_to(path, old_key, store, &to, &new).await {
            discard(store, &staged).await;
            return Err(e.context(format!("{} attachment {name:?}", M::MODEL_NAME)));
        }
        staged.push(to);
    }
    // 2. the record
    if let Err(e) = persist(record).await {
        discard(store, &staged).await;
        return Err(e);
    }
    // 3. staging objects over the originals
    for ((_, path), to) in attachments.iter().zip(&staged) {
        store.copy(to, path).await?;
        store.delete(to).await?;
    }
    Ok(())
}

async fn discard(store: &AttachmentStore, staged: &[Path]) {
    for p in staged {
        // best effort: a leftover staging object is ignored and cleaned by finish_rotation
        let _ = store.delete(p).await;
    }
}

/// Finish (or clean up after) an interrupted [`rotate_with_attachments`] of `record`: a
/// staging object that decrypts under the record's current key replaces its original; one that
/// does not (the record was never saved with the new key) is deleted. Returns how many
/// originals were replaced.
pub async fn finish_rotation<M: KmsModel>(
    record: &M,
    kms: &Kms,
    handle: KeyHandle<M>,
    store: &AttachmentStore,
    attachments: &[(&str, Path)],
) -> Result<usize> {
    let mut replaced = 0;
    for (name, path) in attachments {
        let staging = staging_path(path);
        let k = key_of(record, kms, handle, name).await?;
        match store.get_range(&staging, &k, 0..1).await {
            Ok(_) => {
                store.copy(&staging, path).await?;
                store.delete(&staging).await?;
                replaced += 1;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind() == ErrorKind::DecryptionFailed => store.delete(&staging).await?,
            Err(e) if e.kind() == ErrorKind::InvalidRange => {
                // an empty attachment: a header read proves nothing, read it whole
                if store.get_bytes(&staging, &k).await.is_ok() {
                    store.copy(&staging, path).await?;
                    replaced += 1;
                }
                store.delete(&staging).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(replaced)
}
