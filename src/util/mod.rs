//! Plumbing with no knowledge of appliances: syscalls, the thread pool, path walking.

pub mod cpio;
pub mod escape;
pub mod pathwalk;
pub mod sys;
pub mod work;
