//! A supermin.d file: gzip/xz unwrapped, sniffed, and parsed as packages, hostfiles or excludefiles.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin::fuzzing::inputs(data));
