#![no_main]
//! `kms_fields::fuzzing::kms_rails` (the properties are documented there).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_fields::fuzzing::kms_rails(data));
