use kms_fields::{EncryptionContext, KeyColumn, Kms, KmsEncrypted};

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Address {
    city: String,
}

fn tenant_key(_doc: &Doc) -> String {
    "insecure-test-key".to_owned()
}

#[derive(Default, KmsEncrypted)]
#[kms(table = "users", key(key_id = "insecure-test-key"))]
#[kms(key(name = "phone", key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
pub struct User {
    pub id: Option<i64>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone", padding = 32)]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    #[kms(encrypted, binary, attr = "scan")]
    pub scan_data: Option<Vec<u8>>,
    pub encrypted_kms_key: KeyColumn,
    pub encrypted_kms_key_phone: KeyColumn,
}

#[derive(Default, KmsEncrypted)]
#[kms(lockbox, key(key_id_fn = tenant_key, context = Doc::context))]
pub struct Doc {
    pub id: String,
    #[kms(encrypted)]
    pub body_ciphertext: Option<String>,
    pub encrypted_kms_key: KeyColumn,
}

impl Doc {
    fn context(&self, version: u32) -> kms_fields::Result<EncryptionContext> {
        Ok(EncryptionContext::new().with("doc", self.id.clone()).with_int("v", version))
    }
}

fn main() -> kms_fields::Result<()> {
    let kms = Kms::new();
    let mut u = User { id: Some(7), ..Default::default() };
    u.set_email_blocking(&kms, Some("a@b.c"))?;
    u.set_phone_blocking(&kms, Some("123"))?;
    u.set_address_blocking(&kms, Some(&Address { city: "Oslo".into() }))?;
    u.set_scan_blocking(&kms, Some(&[1, 2, 3]))?;
    assert_eq!(u.kms_seal_blocking(&kms)?, 2);
    assert!(u.encrypted_kms_key_phone.stored().unwrap().starts_with("v2:"));
    assert_eq!(u.email_blocking(&kms)?.as_deref(), Some("a@b.c"));
    assert_eq!(u.scan_blocking(&kms)?, Some(vec![1, 2, 3]));
    u.rotate_kms_key_phone_blocking(&kms)?;
    assert_eq!(u.phone_blocking(&kms)?.as_deref(), Some("123"));
    assert_eq!(User::kms_keys().len(), 2);
    assert_eq!(u.kms_encryption_context()?.unwrap().canonical_json(), r#"{"model_id":"7","model_name":"User"}"#);

    let mut d = Doc { id: "d-1".into(), ..Default::default() };
    d.set_body_blocking(&kms, Some("text"))?;
    d.kms_seal_blocking(&kms)?;
    assert_eq!(d.body_blocking(&kms)?.as_deref(), Some("text"));
    Ok(())
}
