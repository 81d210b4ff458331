//! Booting an appliance: which kernel (`kernel`), the mini initrd that mounts the ext2 root
//! (`initrd`), and `init`, the program this very binary becomes as that initrd's `/init`;
//! which kernel modules an appliance carries (`modules`), and kmod's indexes of them
//! (`kmod_index`).

pub mod init;
pub mod initrd;
pub mod kernel;
pub mod kmod_index;
pub mod modules;
