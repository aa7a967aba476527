//! The operations behind the generated methods.

use futures::future::try_join_all;

use super::{KmsModel, location};
use crate::cipher;
use crate::codec::Codec;
use crate::data_key::DataKey;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;

/// The data key of key `key`: the cached one, or unwrapped from the key column (one KMS
/// `Decrypt`, then cached in the column). `None` when the record has no key yet.
pub async fn data_key<'m, M: KmsModel + ?Sized>(
    m: &'m M,
    kms: &Kms,
    key: usize,
) -> Result<Option<&'m DataKey>> {
    crate::sql::key_def::<M>(key)?;
    let column = m.key_column(key);
    if let Some(k) = column.cached_key() {
        return Ok(Some(k));
    }
    let Some(stored) = column.stored() else {
        return Ok(None);
    };
    let spec = M::key_spec(key);
    let per_record = m.key_id_for(key);
    let ctx = |version: u32| m.encryption_context(key, version);
    let unwrapped = kms
        .unwrap_data_key(spec, per_record.as_deref(), stored, &ctx)
        .await
        .map_err(|e| e.context(location(m, M::KEYS[key].method)))?;
    Ok(Some(column.cache(unwrapped)))
}

/// An attribute's plaintext as stored.
enum Plain {
    Null,
    Empty,
    Bytes(zeroize::Zeroizing<Vec<u8>>),
    /// Decrypted from a kms_rails envelope: unauthenticated AES-CBC, so any failure decoding
    /// it is the same `DecryptionFailed` as bad padding (no padding oracle through the error).
    KmsRails(zeroize::Zeroizing<Vec<u8>>),
}

/// Whether key `key` has no data key at all (NULL column, nothing cached or pending).
fn keyless<M: KmsModel + ?Sized>(m: &M, key: usize) -> bool {
    let c = m.key_column(key);
    c.stored().is_none() && !c.is_unlocked()
}

/// Decrypt attribute `attr` to its plaintext bytes (native format, or a kms_rails envelope
/// while the record's key column is NULL).
async fn decrypt_raw<M: KmsModel + ?Sized>(m: &M, kms: &Kms, attr: usize) -> Result<Plain> {
    let def = crate::sql::attr_def::<M>(attr)?;
    let column = m.ciphertext(attr);
    if column.is_empty_value() {
        return Ok(Plain::Empty);
    }
    let Some(raw) = column.read() else {
        return Ok(Plain::Null);
    };
    let raw = raw.map_err(|e| e.context(location(m, def.column)))?;
    if let Some(rails) = def.kms_rails
        && keyless(m, def.key)
    {
        return kms_rails_plaintext(m, kms, def, rails, &raw)
            .await
            .map(Plain::KmsRails);
    }
    let key = data_key(m, kms, def.key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::BadFormat,
            format!(
                "{} has a ciphertext but {} is NULL",
                def.column,
                M::KEYS[def.key].column
            ),
        )
        .context(location(m, def.name))
    })?;
    cipher::decrypt(key, &raw, def.options())
        .map(Plain::Bytes)
        .map_err(|e| e.context(location(m, def.name)))
}

#[cfg(feature = "kms-rails")]
async fn kms_rails_plaintext<M: KmsModel + ?Sized>(
    m: &M,
    kms: &Kms,
    def: &super::AttrDef,
    rails: super::KmsRailsAttr,
    raw: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let at = || location(m, def.name);
    // only a value that is a kms_rails envelope in form takes the legacy path: a native value
    // whose key column was NULLed is refused, never fed to CBC
    let envelope = crate::kms_rails::Envelope::parse(raw).map_err(|_| {
        Error::new(
            ErrorKind::BadFormat,
            format!(
                "{} has a ciphertext but {} is NULL, and it is not a kms_rails value",
                def.column,
                M::KEYS[def.key].column
            ),
        )
        .context(at())
    })?;
    let spec = M::key_spec(def.key);
    let version = spec
        .resolve(spec.current_version(), m.key_id_for(def.key).as_deref())
        .map_err(|e| e.context(at()))?;
    envelope
        .decrypt(kms, &version, rails.context)
        .await
        .map_err(|e| e.context(at()))
}

#[cfg(not(feature = "kms-rails"))]
async fn kms_rails_plaintext<M: KmsModel + ?Sized>(
    m: &M,
    _kms: &Kms,
    def: &super::AttrDef,
    _rails: super::KmsRailsAttr,
    _raw: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    Err(Error::new(
        ErrorKind::Config,
        "reading kms_rails values needs the `kms-rails` feature of kms-fields",
    )
    .context(location(m, def.name)))
}

/// Decrypt attribute `attr` into its value. NULL reads as `None` and `""` as the codec's empty
/// value, both without a KMS call.
pub async fn read_attribute<M: KmsModel + ?Sized, C: Codec>(
    m: &M,
    kms: &Kms,
    attr: usize,
) -> Result<Option<C::Value>> {
    match decrypt_raw(m, kms, attr).await? {
        Plain::Null => Ok(None),
        Plain::Empty => C::empty(),
        Plain::Bytes(pt) => C::decode(&pt)
            .map(Some)
            .map_err(|e| e.context(location(m, M::ATTRIBUTES[attr].name))),
        Plain::KmsRails(pt) => C::decode(&pt)
            .map(Some)
            .map_err(|_| Error::decryption_failed().context(location(m, M::ATTRIBUTES[attr].name))),
    }
}

/// The data key to write with: cached, unwrapped, or a fresh one (pending until saved).
async fn key_for_write<M: KmsModel + ?Sized>(m: &mut M, kms: &Kms, key: usize) -> Result<DataKey> {
    if let Some(k) = data_key(&*m, kms, key).await? {
        return Ok(k.clone());
    }
    let fresh = DataKey::generate()?;
    m.key_column_mut(key).set_new_key(fresh.clone());
    Ok(fresh)
}

/// Encrypt `value` into attribute `attr` (`None` stores NULL). Uses the record's data key
/// (unwrapping it once if needed) or draws a new one, which the save flow wraps.
pub async fn write_attribute<M: KmsModel + ?Sized, C: Codec>(
    m: &mut M,
    kms: &Kms,
    attr: usize,
    value: Option<&C::Input>,
) -> Result<()> {
    let def = crate::sql::attr_def::<M>(attr)?;
    let Some(value) = value else {
        m.ciphertext_mut(attr).write(None);
        return Ok(());
    };
    let plaintext = C::encode(value).map_err(|e| e.context(location(&*m, def.name)))?;
    if keyless(&*m, def.key) && has_kms_rails_values(&*m, def.key) {
        // the first native write under this key: move the kms_rails values to it first
        rotate_key(m, kms, def.key).await?;
    }
    let key = key_for_write(m, kms, def.key).await?;
    let ciphertext = cipher::encrypt(&key, &plaintext, def.options())?;
    m.ciphertext_mut(attr).write(Some(ciphertext));
    Ok(())
}

/// Unwrap every key that has a stored value and an attribute to read, concurrently (one KMS
/// call per key).
pub async fn unlock<M: KmsModel + ?Sized>(m: &M, kms: &Kms) -> Result<()> {
    let needed = (0..M::KEYS.len()).filter(|&k| {
        M::ATTRIBUTES.iter().enumerate().any(|(i, a)| {
            a.key == k && m.ciphertext(i).read().is_some() && !m.ciphertext(i).is_empty_value()
        })
    });
    try_join_all(needed.map(|k| data_key(m, kms, k))).await?;
    Ok(())
}

/// kms_encrypted's `rotate_kms_key!` without the save: decrypt the key's attributes, draw a new
/// data key, encrypt them again. The key is pending until [`seal_pending_keys`] or the save
/// flow wraps it.
pub async fn rotate_key<M: KmsModel + ?Sized>(m: &mut M, kms: &Kms, key: usize) -> Result<()> {
    crate::sql::key_def::<M>(key)?;
    let attrs: Vec<usize> = (0..M::ATTRIBUTES.len())
        .filter(|&i| M::ATTRIBUTES[i].key == key)
        .collect();
    let mut plaintexts = Vec::with_capacity(attrs.len());
    for &i in &attrs {
        plaintexts.push(decrypt_raw(&*m, kms, i).await?);
    }
    let fresh = DataKey::generate()?;
    for (&i, value) in attrs.iter().zip(plaintexts) {
        let def = &M::ATTRIBUTES[i];
        match value {
            // NULL stays NULL, and "" stays "" (Lockbox leaves empty strings unencrypted)
            Plain::Null | Plain::Empty => {}
            Plain::Bytes(pt) | Plain::KmsRails(pt) => {
                let ciphertext = cipher::encrypt(&fresh, &pt, def.options())?;
                m.ciphertext_mut(i).write(Some(ciphertext));
            }
        }
    }
    m.key_column_mut(key).set_new_key(fresh);
    Ok(())
}

fn has_kms_rails_values<M: KmsModel + ?Sized>(m: &M, key: usize) -> bool {
    M::ATTRIBUTES.iter().enumerate().any(|(i, a)| {
        a.key == key
            && a.kms_rails.is_some()
            && m.ciphertext(i).read().is_some()
            && !m.ciphertext(i).is_empty_value()
    })
}

/// Wrap every pending data key (one KMS `Encrypt` each) with the record's context; needs the
/// id when the context does. Returns how many keys were wrapped.
pub async fn seal_pending_keys<M: KmsModel + ?Sized>(m: &mut M, kms: &Kms) -> Result<usize> {
    let pending: Vec<usize> = (0..M::KEYS.len())
        .filter(|&k| m.key_column(k).is_pending())
        .collect();
    let wrapped = {
        let m_ref: &M = m;
        try_join_all(pending.iter().map(|&k| async move {
            let column = m_ref.key_column(k);
            let Some(key) = column.cached_key() else {
                return Err(Error::new(
                    ErrorKind::Config,
                    "pending key without a data key",
                ));
            };
            let spec = M::key_spec(k);
            let per_record = m_ref.key_id_for(k);
            let ctx = |version: u32| m_ref.encryption_context(k, version);
            kms.wrap_data_key(spec, per_record.as_deref(), key, &ctx)
                .await
                .map_err(|e| e.context(location(m_ref, M::KEYS[k].method)))
        }))
        .await?
    };
    for (&k, stored) in pending.iter().zip(wrapped) {
        m.key_column_mut(k).set_wrapped(stored);
    }
    Ok(pending.len())
}

/// Re-wrap key `key` under the current version, key id and context, keeping the data key and
/// the ciphertexts (AWS ReEncrypt / Vault rewrap when possible, else unwrap + wrap).
/// Returns `false` when the column is NULL or already at the current version.
pub async fn rewrap_key<M: KmsModel + ?Sized>(m: &mut M, kms: &Kms, key: usize) -> Result<bool> {
    crate::sql::key_def::<M>(key)?;
    let spec = M::key_spec(key);
    let column = m.key_column(key);
    let Some(stored) = column.stored() else {
        return Ok(false);
    };
    if column.version() == Some(spec.current_version()) {
        return Ok(false);
    }
    let per_record = m.key_id_for(key);
    let new_stored = {
        let m_ref: &M = m;
        let ctx = |version: u32| m_ref.encryption_context(key, version);
        kms.rewrap(spec, per_record.as_deref(), stored, &ctx)
            .await
            .map_err(|e| e.context(location(m_ref, M::KEYS[key].method)))?
    };
    m.key_column_mut(key).set_wrapped(new_stored);
    Ok(true)
}
