//! Entry points for the fuzz targets of `fuzz/` (cargo-fuzz), and nothing else: arbitrary
//! bytes as what a guest can put in a virtqueue. Not an API: hidden from the docs.

use std::sync::OnceLock;

use crate::abi::{u32_at, u64_at, OUT_HEADER};
use crate::core::Core;
use crate::demo::Demo;
use crate::virtio::{answer, Answer, MAX_REPLY, MAX_REQUEST};

/// One virtio-fs request: the first two bytes give the room the chain's writable part has
/// (in units of 17 bytes, so that both tiny and 1 MiB replies are reached), the rest is its
/// readable part, cut as the device cuts it. The tree (and what INIT negotiated) lasts
/// across inputs. Whatever the bytes, the answer fits the room and its header is whole.
pub fn virtio_fs(data: &[u8]) {
    static CORE: OnceLock<Core<Demo>> = OnceLock::new();
    let core = CORE.get_or_init(|| Core::new(Demo::sample(), false, false));
    let room = (u16::from_le_bytes([data.first().copied().unwrap_or(0), data.get(1).copied().unwrap_or(0)]) as usize
        * 17)
        .min(MAX_REPLY);
    let request = &data[data.len().min(2)..];
    let request = &request[..request.len().min(MAX_REQUEST + 1)];
    let mut out = vec![0; room];
    match answer(core, request, &mut out) {
        Answer::None => {}
        Answer::Reply { len, tail } => {
            assert!(len >= OUT_HEADER && len + tail.len() <= room);
            assert_eq!(u32_at(&out, 0) as usize, len + tail.len());
            assert_eq!(u64_at(&out, 8), u64_at(request, 8));
            let error = u32_at(&out, 4) as i32;
            assert!(error <= 0 && (error == 0 || len + tail.len() == OUT_HEADER));
        }
    }
}
