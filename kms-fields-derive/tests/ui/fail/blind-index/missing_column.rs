use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(table = "users")]
pub struct User {
    pub id: i32,
    #[kms(encrypted, blind_index(unique))]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
