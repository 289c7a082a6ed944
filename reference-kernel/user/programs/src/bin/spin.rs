//! `spin`: runs in ring 3 forever without a system call (for the kill test: only the timer's
//! return to ring 3 can end it).

#![no_std]
#![no_main]

fn main(_arg: u64) -> i64 {
    loop {
        core::hint::spin_loop();
    }
}

veridian_user_rt::entry!(main);
