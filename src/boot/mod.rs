//! Booting an appliance: which kernel (`kernel`), the mini initrd that mounts the ext2 root
//! (`initrd`), and `init`, the program this very binary becomes as that initrd's `/init`.

pub mod init;
pub mod initrd;
pub mod kernel;
