use kms_fields::{KeyColumn, KeyHandle, KmsEncrypted, KmsModel};

#[derive(KmsEncrypted)]
pub struct User {
    pub id: i32,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

#[derive(KmsEncrypted)]
pub struct Account {
    pub id: i32,
    #[kms(encrypted)]
    pub iban_enc: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

/// What `rotate_kms_key` & co. take: a record and a key of ITS model.
fn rotate<M: KmsModel>(_record: &mut M, _key: KeyHandle<M>) {}

fn main() {
    let mut user = User {
        id: 1,
        email_enc: None,
        encrypted_kms_key: KeyColumn::default(),
    };
    rotate(&mut user, User::KMS_KEY);
    rotate(&mut user, Account::KMS_KEY);
    rotate(&mut user, User::KMS_KEY_PHONE);
}
