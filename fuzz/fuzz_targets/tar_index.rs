//! A base image unpacked into the manifest.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin::fuzzing::tar_index(data));
