//! pacman's desc/files sections and mtree digests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin::fuzzing::pacman(data));
