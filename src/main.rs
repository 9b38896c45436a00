/// jemalloc, not glibc's malloc, returning freed pages at once (`dirty_decay_ms:0`): glibc
/// kept what a start's burst of reconciles freed, scattered between what stays, and with it
/// 12 MiB more resident (10,000 Certificates, settled: 70.6 MiB with glibc, 58.3 with this;
/// `cargo bench --bench controller_memory`, README "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (its `malloc_conf`, under the prefix the crate
/// builds it with). `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    let cli = certkeeper::cli::parse();
    // One thread unless asked for more (`controller --worker-threads`).
    let mut builder = match cli.worker_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("certkeeper: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(certkeeper::cli::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("certkeeper: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
