use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(key(kid = "insecure-test-key"))]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
