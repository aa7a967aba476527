use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(key(key_id = "insecure-test-key"), key(name = "phone"))]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
