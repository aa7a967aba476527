//! The key of one attachment: the record's data key and the attachment's logical name.

use std::fmt;

use crate::data_key::DataKey;

/// What an attachment is encrypted under: a record's [`DataKey`] (a copy, zeroized on drop)
/// and the attachment's **logical name** (for example `"contract"` or `"avatar"`).
///
/// The per-object key is derived from both and from the random salt in the object's header
/// (HKDF-SHA256), never from the object's path: a server-side [`copy`] stays readable, and two
/// attachments of one record under different names cannot be swapped. The name is not secret;
/// `Debug` shows it and redacts the key.
///
/// ```
/// # use kms_fields::{DataKey, attachments::AttachmentKey};
/// let key = AttachmentKey::new(&DataKey::generate()?, "contract");
/// assert_eq!(format!("{key:?}"), r#"AttachmentKey { name: "contract", data_key: [REDACTED] }"#);
/// # Ok::<(), kms_fields::Error>(())
/// ```
///
/// [`copy`]: super::AttachmentStore::copy
#[derive(Clone)]
pub struct AttachmentKey {
    data_key: DataKey,
    name: String,
}

impl AttachmentKey {
    /// The key of attachment `name` of the record whose data key is `data_key`.
    pub fn new(data_key: &DataKey, name: impl Into<String>) -> Self {
        Self {
            data_key: data_key.clone(),
            name: name.into(),
        }
    }

    /// The attachment's logical name (bound into the key derivation).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn data_key(&self) -> &DataKey {
        &self.data_key
    }
}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentKey")
            .field("name", &self.name)
            .field("data_key", &format_args!("[REDACTED]"))
            .finish()
    }
}
