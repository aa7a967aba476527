//! `KmsBox` sealed values under an attacker who can submit input (issue 19.2): sealing never
//! passes a look-alike through, and `ensure_sealed` verifies key, context and payload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::{EncryptionContext, ErrorKind, KeySpec, Kms, KmsBox, Sealed};

fn local_kms() -> Kms {
    Kms::builder()
        .local(
            kms_fields::provider::LocalKey::new()
                .with_key("jobs", &[3; 32])
                .unwrap()
                .with_key("other", &[4; 32])
                .unwrap(),
        )
        .build()
}

fn jobs(kms: &Kms) -> KmsBox {
    KmsBox::new(kms.clone(), KeySpec::new().key_id("local/jobs"))
}

/// A sealed job argument of one user, captured and submitted by another as ordinary input: the
/// job seals that input and later opens exactly the attacker's text, never the victim's value.
#[test]
fn a_captured_sealed_value_submitted_as_input_is_sealed_like_any_text() {
    let kms = local_kms();
    let b = jobs(&kms);
    let ctx = EncryptionContext::from([("purpose", "export")]);
    let victims = b.seal_blocking("victim's card 4111", Some(&ctx)).unwrap();
    let submitted: String = victims.to_string();
    let sealed = b.seal_blocking(&submitted, Some(&ctx)).unwrap();
    assert_ne!(sealed, victims, "sealed anew, not passed through");
    let opened: String = b.open_blocking(&sealed, Some(&ctx)).unwrap();
    assert_eq!(opened, submitted);
    assert!(!opened.contains("4111"));
}

#[test]
fn ensure_sealed_verifies_key_context_and_payload() {
    let kms = local_kms();
    let b = jobs(&kms);
    let ctx = EncryptionContext::from([("purpose", "export")]);
    let sealed = b.seal_blocking(&vec![1u8, 2, 3], Some(&ctx)).unwrap();
    let text = sealed.to_string();
    assert_eq!(b.ensure_sealed_blocking(&text, Some(&ctx)).unwrap(), sealed);

    // another context, no context
    let other = EncryptionContext::from([("purpose", "import")]);
    for c in [Some(&other), None] {
        let e = b.ensure_sealed_blocking(&text, c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "{e}");
    }
    // sealed by a box of another key (same Kms, same context)
    let foreign = KmsBox::new(kms.clone(), KeySpec::new().key_id("local/other"))
        .seal_blocking(&vec![1u8, 2, 3], Some(&ctx))
        .unwrap();
    let e = b.ensure_sealed_blocking(&foreign, Some(&ctx)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "{e}");
    // its key with another payload spliced in
    let (key_part, _) = text.rsplit_once('$').unwrap();
    let (_, foreign_body) = foreign.rsplit_once('$').unwrap();
    let spliced = format!("{key_part}${foreign_body}");
    let e = b.ensure_sealed_blocking(&spliced, Some(&ctx)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "{e}");
    // a version the spec does not have
    let v9 = text.replacen("$kmsf$1$v1:", "$kmsf$1$v9:", 1);
    assert!(matches!(
        b.ensure_sealed_blocking(&v9, Some(&ctx))
            .unwrap_err()
            .kind(),
        ErrorKind::VersionNotActive(9)
    ));
    // not sealed at all
    for bad in ["plain text", "$kmsf$1$", "$kmsf$1$v1:AAAA$!!!"] {
        let e = b.ensure_sealed_blocking(bad, Some(&ctx)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFormat, "{bad}: {e}");
    }
}

#[test]
fn sealed_serialises_as_its_text_and_checks_the_form_when_deserialised() {
    let kms = local_kms();
    let sealed = jobs(&kms).seal_blocking("x", None).unwrap();
    let json = serde_json::to_string(&sealed).unwrap();
    assert_eq!(json, format!("\"{sealed}\""));
    let back: Sealed = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sealed);
    assert!(serde_json::from_str::<Sealed>("\"not sealed\"").is_err());
    assert!(!format!("{sealed:?}").contains("$kmsf$"), "Debug is short");
}
