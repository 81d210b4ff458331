//! The answers to FUSE requests that arrive as bytes (`uring`, `virtio`): one request's
//! opcode, node, fixed argument and name in, the reply's body written out with `abi`'s
//! encoders, for the operations both transports answer alike. Opening a file (passthrough
//! over io_uring, never over virtio-fs) and the connection's own messages are theirs.

use fuser::Errno;

use crate::abi::{op, OpIn, Out, FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE};
use crate::core::{xattr_reply, Core, ReadOut, XattrReply};
use crate::View;

/// What a transport parsed of one request.
pub(crate) struct Request<'a> {
    pub opcode: u32,
    pub nodeid: u64,
    /// The operation's fixed argument (`fuse_read_in`, `fuse_getxattr_in`, ...).
    pub op_in: OpIn<'a>,
    /// The name that follows it (LOOKUP, GETXATTR), without its NUL.
    pub name: &'a [u8],
}

/// The reply body to `req`, written at the start of `out`: its length. `None` for an opcode
/// this does not answer (the transport's own, or ENOSYS). A body larger than `out` is ERANGE.
pub(crate) fn answer<V: View>(core: &Core<V>, req: &Request, out: &mut [u8]) -> Option<Result<usize, Errno>> {
    let node = req.nodeid;
    match req.opcode {
        op::READ => return Some(read(core, node, &req.op_in, out)),
        op::READDIR | op::READDIRPLUS => return Some(readdir(core, req, out)),
        _ => {}
    }
    let mut w = Out::new(out);
    let r = match req.opcode {
        op::LOOKUP => core.lookup(node, req.name).map(|f| w.entry(f.as_ref().map(|(ino, a)| (*ino, a))).len),
        op::GETATTR => core.getattr(node).map(|(ino, a)| w.attr_out(ino, &a).len),
        op::READLINK => core.readlink(node).map(|target| w.bytes(target).len),
        op::STATFS => Ok(w.statfs(core.view.usage()).len),
        op::RELEASE => {
            core.files.release(req.op_in.fh());
            Ok(0)
        }
        op::RELEASEDIR | op::DESTROY => Ok(0),
        op::GETXATTR => xattr(core.xattr(node, req.name), req.op_in.first_u32(), &mut w),
        op::LISTXATTR => xattr(core.xattr_list(node), req.op_in.first_u32(), &mut w),
        op::OPENDIR => core.opendir(node).map(|()| w.open(FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE).len),
        op::ACCESS => core.access(node, req.op_in.first_u32() & libc::W_OK as u32 != 0).map(|()| 0),
        _ => return None,
    };
    Some(if w.overflowed() { Err(Errno::ERANGE) } else { r })
}

/// A READ's bytes copied to the start of `out` (at most its length).
fn read<V: View>(core: &Core<V>, node: u64, op_in: &OpIn, out: &mut [u8]) -> Result<usize, Errno> {
    let (offset, size) = op_in.read();
    let size = size.min(out.len());
    match core.read(node, offset, size, out)? {
        ReadOut::InBuf(n) => Ok(n),
        ReadOut::Bytes(bytes) => {
            out[..bytes.len()].copy_from_slice(bytes);
            Ok(bytes.len())
        }
    }
}

fn xattr(r: Result<Vec<u8>, Errno>, size: u32, w: &mut Out) -> Result<usize, Errno> {
    Ok(match xattr_reply(r?, size)? {
        XattrReply::Size(n) => w.xattr_size(n).len,
        XattrReply::Data(v) => w.bytes(&v).len,
    })
}

/// As many entries as fit in the request's size (and `out`).
fn readdir<V: View>(core: &Core<V>, req: &Request, out: &mut [u8]) -> Result<usize, Errno> {
    let (offset, size) = req.op_in.read();
    let plus = req.opcode == op::READDIRPLUS;
    let limit = size.min(out.len());
    let mut w = Out::new(&mut out[..limit]);
    core.entries(req.nodeid, offset, &mut |cookie, name, ino, a| !w.dirent(plus, cookie, name, ino, a))?;
    Ok(w.len)
}
