use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(save_flow = "sometimes", key(version = 2, previous(one = "x")))]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub email: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
