use kms_fields::{KeyColumn, KmsEncrypted};

#[derive(KmsEncrypted)]
#[kms(table = "users")]
pub struct User {
    pub id: i32,
    // Argon2id gives at least 4 bytes; iterations belong to PBKDF2
    #[kms(encrypted, blind_index(size = 2, iterations = 5))]
    pub email_enc: Option<String>,
    pub email_bidx: Option<String>,
    // a blind index hashes a string, not a MessagePack value; the column type is wrong too
    #[kms(encrypted, serde = Vec<u32>, blind_index)]
    pub scores_enc: Option<Vec<u8>>,
    #[kms(encrypted, blind_index(algorithm = "md5"))]
    pub phone_enc: Option<String>,
    #[kms(encrypted, blind_index(column = "name_bidx"))]
    pub name_enc: Option<String>,
    pub name_bidx: i64,
    pub encrypted_kms_key: KeyColumn,
}

fn main() {}
