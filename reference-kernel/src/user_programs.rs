//! The user programs built from `reference-kernel/user/` and embedded in the kernel image by
//! `build.rs`: [`PROGRAMS`] lists each program's name and ELF image, sorted by name (`spawn`
//! looks names up here).

include!(concat!(env!("OUT_DIR"), "/user_programs.rs"));
