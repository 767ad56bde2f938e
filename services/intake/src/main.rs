//! The intake binary: everything is in `server::run` and the library.

// Every command allocates in tonic, the writer, sqlx and the NATS client;
// glibc's malloc took a large share of the process's CPU under load, as it
// did in the projection's (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    server::run::<intake::Application>().await
}
