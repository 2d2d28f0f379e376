//! The binary's allocator: mimalloc, tuned to give freed memory back at once.
//!
//! An export frees a 12 MB page body and its batch many times a second. glibc's per-thread
//! arenas keep such memory, and so does mimalloc for its purge delay (10 ms in v2, which dvsql
//! links; a second in v3, arenas ten): with v3's defaults a 1,000,000-row export peaked at
//! 382 MiB, with v2 and no delay at 241 MiB (BENCHMARKS.md, memory). The delay made the
//! difference (222–230 MiB against 251–275 MiB at 200,000 rows with v2's 10 ms).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's number for the purge delay (`mi_option_purge_delay` in mimalloc.h, which
/// libmimalloc-sys does not name). The test checks it against the documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Purge freed memory at once, unless the user chose a delay in the environment.
pub fn tune() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        // SAFETY: sets a process-wide integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is the one meant: mimalloc v2's documented purge delay is 10 ms.
    #[test]
    fn tuning_sets_mimallocs_purge_delay_to_zero() {
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            return;
        }
        let delay = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay(), 10);
        tune();
        assert_eq!(delay(), 0);
    }
}
