//! The virtio-fs device's request framing: a guest's request bytes in, the reply out.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| supermin_fuse::fuzzing::virtio_fs(data));
