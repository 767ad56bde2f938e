//! The projection binary: its allocator's settings; everything else is in
//! `server::run` and the library.

// A batch allocates and frees hundreds of thousands of small strings and
// maps; glibc's malloc spent a large share of the projection's CPU on them
// while it caught up, mimalloc much less (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the `mi_option_e` enum of the
/// mimalloc 3 header that libmimalloc-sys builds; the crate names no
/// constant for it): how long freed memory stays mapped for reuse.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Long enough that a batch reuses the memory of the one before instead of
/// faulting fresh pages in (without a delay, page faults and `madvise` took
/// a large share of the projection's CPU while catching up); short enough
/// that the resident size falls back soon after. A longer delay saves a
/// little more CPU for a larger resident peak, not taken (BENCHMARKS.md).
const PURGE_DELAY_MS: std::ffi::c_long = 100;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // mimalloc's own variable, when set, wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one documented mimalloc option; no memory is touched.
        #[allow(unsafe_code, reason = "mimalloc's options have no safe wrapper")]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
    server::run::<projection::Application>().await
}
