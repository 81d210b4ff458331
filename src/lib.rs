//! supermin-rs: a supermin-5-compatible appliance builder.
//!
//! See ARCHITECTURE.md for the map. In one line: [`inputs`] reads a supermin appliance,
//! [`packager`] (with [`dpkg`]) answers package questions, [`resolve`] turns both into one
//! [`manifest::Manifest`], and the writers ([`chroot`]) turn the manifest into output.

pub mod build;
pub mod chroot;
pub mod cli;
pub mod cpio;
pub mod dpkg;
pub mod error;
pub mod ext2;
pub mod freshness;
pub mod host;
pub mod init;
pub mod initramfs;
pub mod initrd;
pub mod inputs;
pub mod kernel;
pub mod logger;
pub mod manifest;
pub mod mount;
pub mod outdir;
pub mod packager;
pub mod pacman;
pub mod prepare;
pub mod resolve;
pub mod rpm;
pub mod rpmheader;
pub mod sys;
pub mod view;
pub mod work;
