//! cpio: arbitrary archives read; arbitrary members written and read back unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin::fuzzing::cpio_round_trip(data));
