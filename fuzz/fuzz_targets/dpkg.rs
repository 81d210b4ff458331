//! dpkg's status, diversions, info/*.list and *.md5sums parsers, and the closure over the result.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin::fuzzing::dpkg(data));
