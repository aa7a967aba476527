#![no_main]
//! `kms_fields::fuzzing::blind_index_key` (the properties are documented there).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_fields::fuzzing::blind_index_key(data));
