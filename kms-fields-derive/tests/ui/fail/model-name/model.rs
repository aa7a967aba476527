use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
pub struct Model {
    pub id: i32,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
