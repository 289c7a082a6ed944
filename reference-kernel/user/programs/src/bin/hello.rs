//! `hello`: prints `hello from user mode, pid <pid>, arg <arg>` and exits with 0. The smallest
//! program: the write, getpid and exit system calls and the entry path.

#![no_std]
#![no_main]

use veridian_user_rt::{println, sys};

fn main(arg: u64) -> i64 {
    match sys::getpid() {
        Ok(pid) => {
            println!("hello from user mode, pid {pid}, arg {arg}");
            0
        }
        Err(e) => {
            println!("hello: getpid failed: {e}");
            1
        }
    }
}

veridian_user_rt::entry!(main);
