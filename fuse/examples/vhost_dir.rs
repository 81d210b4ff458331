//! Serve the demo tree (`supermin_fuse::demo::Demo::sample`) as a virtio-fs device on a
//! vhost-user socket, for one VM:
//!
//! ```text
//! cargo run --release -p supermin-fuse --example vhost_dir -- /tmp/dir/vfs.sock &
//! qemu-system-x86_64 -accel tcg -m 1G -object memory-backend-memfd,id=mem,size=1G,share=on \
//!     -numa node,memdev=mem -chardev socket,id=vfs,path=/tmp/dir/vfs.sock \
//!     -device vhost-user-fs-pci,chardev=vfs,tag=root ...
//! ```
//!
//! and in the guest: `mount -t virtiofs root /mnt`. Returns when the VM ends.

use std::os::unix::net::UnixListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: vhost_dir SOCKET");
        return ExitCode::from(2);
    };
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vhost_dir: {}: {e}", path.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    let view = supermin_fuse::demo::Demo::sample();
    match supermin_fuse::serve_vhost_user(view, listener, &supermin_fuse::Options::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhost_dir: {e}");
            ExitCode::FAILURE
        }
    }
}
