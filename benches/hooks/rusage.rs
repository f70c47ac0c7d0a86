//! A child's peak RSS and CPU time, from wait4(2)'s `struct rusage`.
//!
//! std's `Child::wait` discards the kernel's resource usage, and reading `/proc/<pid>/status`
//! (VmHWM) cannot be done at the moment the process exits, so the bench reaps its children
//! itself. `ru_maxrss` is the largest resident set of the process and of the descendants it
//! waited for (here: the hook tools the charm ran), over every image it exec'd; not a sum.
//! Caveat: a child std spawns with vfork starts from the parent's high-water mark, so the
//! bench takes the RSS from GNU time when it is installed (see `cluster.rs`) and uses this
//! only for the exit status and CPU time (which then include GNU time's own, well under 1 ms).

use std::io;
use std::os::raw::{c_int, c_long};
use std::process::Child;
use std::time::Duration;

#[repr(C)]
#[derive(Default)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

/// Linux `struct rusage` (every field after the two timevals is a `long`).
#[repr(C)]
#[derive(Default)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    ru_maxrss: c_long,
    ru_ixrss: c_long,
    ru_idrss: c_long,
    ru_isrss: c_long,
    ru_minflt: c_long,
    ru_majflt: c_long,
    ru_nswap: c_long,
    ru_inblock: c_long,
    ru_oublock: c_long,
    ru_msgsnd: c_long,
    ru_msgrcv: c_long,
    ru_nsignals: c_long,
    ru_nvcsw: c_long,
    ru_nivcsw: c_long,
}

extern "C" {
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
}

/// How a reaped child ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// Peak resident set in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// User plus system CPU time of the process and its waited-for descendants.
    pub cpu: Duration,
}

fn duration(t: &Timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Reap `child` with wait4 (the `Child` must not have been waited for).
pub fn wait(child: Child) -> io::Result<Exit> {
    let pid = c_int::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    let mut status: c_int = 0;
    let mut usage = Rusage::default();
    loop {
        // SAFETY: `status` and `usage` are valid, exclusively borrowed, correctly laid out
        // (repr(C) mirror of the Linux struct) for the duration of the call.
        let r = unsafe { wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    // Dropping a `Child` neither waits nor signals; the pid is already reaped.
    drop(child);
    let code = if status & 0x7f == 0 {
        Some((status >> 8) & 0xff)
    } else {
        None
    };
    Ok(Exit {
        code,
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu: duration(&usage.ru_utime) + duration(&usage.ru_stime),
    })
}
