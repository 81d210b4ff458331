//! Where FUSE over io_uring puts the messages (`linux/fuse.h`): a request in a ring entry's
//! header buffer (`struct fuse_uring_req_header`: the `fuse_in_header`, the operation's fixed
//! argument, the entry's commit id and payload size) and its payload buffer (names), and the
//! reply written back into the same two buffers. The messages themselves are `crate::abi`'s.

use crate::abi::{u32_at, u64_at, OpIn};

/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then `fuse_uring_ent_in_out`.
pub(crate) const HEADER_SIZE: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;

/// What the kernel asks (`fuse_in_header`, and the entry's own fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    /// The id to commit the reply with.
    pub commit_id: u64,
    /// Bytes of the request's payload (names).
    pub payload: usize,
}

impl Request {
    pub(crate) fn parse(header: &[u8]) -> Request {
        Request {
            opcode: u32_at(header, 4),
            unique: u64_at(header, 8),
            nodeid: u64_at(header, 16),
            commit_id: u64_at(header, ENT_IN_OUT + 8),
            payload: u32_at(header, ENT_IN_OUT + 16) as usize,
        }
    }
}

/// The operation's fixed argument in the header buffer.
pub(crate) fn op_in(header: &[u8]) -> OpIn<'_> {
    OpIn(&header[OP_IN..ENT_IN_OUT])
}

/// Write the reply's `fuse_out_header` and payload size into the header buffer.
pub(crate) fn set_reply(header: &mut [u8], unique: u64, error: i32, payload: usize) {
    header[0..4].copy_from_slice(&(16 + payload as u32).to_le_bytes());
    header[4..8].copy_from_slice(&error.to_le_bytes());
    header[8..16].copy_from_slice(&unique.to_le_bytes());
    header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(payload as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::op;

    #[test]
    fn a_request_header_is_read_at_the_kernels_offsets() {
        let mut h = [0u8; HEADER_SIZE];
        h[4..8].copy_from_slice(&15u32.to_le_bytes());
        h[8..16].copy_from_slice(&77u64.to_le_bytes());
        h[16..24].copy_from_slice(&3u64.to_le_bytes());
        h[OP_IN + 8..OP_IN + 16].copy_from_slice(&4096u64.to_le_bytes());
        h[OP_IN + 16..OP_IN + 20].copy_from_slice(&65536u32.to_le_bytes());
        h[ENT_IN_OUT + 8..ENT_IN_OUT + 16].copy_from_slice(&77u64.to_le_bytes());
        h[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&6u32.to_le_bytes());
        let r = Request::parse(&h);
        assert_eq!(r, Request { opcode: op::READ, unique: 77, nodeid: 3, commit_id: 77, payload: 6 });
        assert_eq!(op_in(&h).read(), (4096, 65536));
        set_reply(&mut h, 77, -2, 10);
        assert_eq!((u32_at(&h, 0), u32_at(&h, 4) as i32, u64_at(&h, 8)), (26, -2, 77));
        assert_eq!(Request::parse(&h).payload, 10);
    }
}
