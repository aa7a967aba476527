//! Debug and Display of keys, boxes, contexts, stored values and errors never show a secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::cipher::{self, AttributeOptions};
use kms_fields::provider::LocalKey;
use kms_fields::{DataKey, EncryptionContext, KeySpec, Kms, KmsBox, StoredKey, encoding};

#[test]
fn nothing_secret_in_debug_or_errors() {
    let key = DataKey::from_slice(&[0xAB; 32]).unwrap();
    let secret_hex = "abababab";
    let secret_b64 = encoding::strict_encode(&[0xAB; 32]);
    let plaintext = "very-secret-plaintext";

    let b = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
    let stored = b
        .encrypt_blocking(
            key.expose_secret(),
            Some(&EncryptionContext::for_model("User", 1)),
        )
        .unwrap();
    let parsed = StoredKey::parse(&stored).unwrap();
    let local = LocalKey::new().with_key("dev", &[0xAB; 32]).unwrap();
    let kms = Kms::builder()
        .insecure_test_key()
        .local(local.clone())
        .build();

    let ct = cipher::encrypt(
        &key,
        plaintext.as_bytes(),
        AttributeOptions::native("email"),
    )
    .unwrap();
    let wrong = DataKey::from_slice(&[0xCD; 32]).unwrap();
    let err = cipher::decrypt(&wrong, &ct, AttributeOptions::native("email")).unwrap_err();
    let codec_err =
        <kms_fields::codec::Text as kms_fields::codec::Codec>::decode(&[0xff, b's', b'e', b'c'])
            .unwrap_err();
    let box_err = b
        .decrypt_blocking(&stored, Some(&EncryptionContext::for_model("User", 2)))
        .unwrap_err();

    let outputs = [
        format!("{key:?}"),
        format!("{b:?}"),
        format!("{parsed:?}"),
        format!("{local:?}"),
        format!("{kms:?}"),
        format!("{err:?} {err}"),
        format!("{codec_err:?} {codec_err}"),
        format!("{box_err:?} {box_err}"),
    ];
    for out in &outputs {
        assert!(!out.to_lowercase().contains(secret_hex), "{out}");
        assert!(!out.contains(&secret_b64), "{out}");
        assert!(!out.contains("171, 171"), "{out}");
        assert!(!out.contains(plaintext), "{out}");
        assert!(!out.contains("insecure+data"), "{out}");
    }
    assert_eq!(outputs[0], "DataKey([REDACTED])");
}

/// A value whose serialisation fails with its own content in the message.
struct Leaky(&'static str);

impl serde::Serialize for Leaky {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(format!(
            "cannot encode \"{}\"",
            self.0
        )))
    }
}

#[test]
fn seal_errors_do_not_quote_the_value() {
    let b = kms_fields::KmsBox::new(
        kms_fields::Kms::new(),
        kms_fields::KeySpec::new().key_id("insecure-test-key"),
    );
    let e = b
        .seal_blocking(&Leaky("4111 1111 1111 1111"), None)
        .unwrap_err();
    assert_eq!(e.kind(), kms_fields::ErrorKind::Codec);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("4111"), "{shown}");
    assert!(shown.contains("cannot serialise the value"), "{shown}");
}
