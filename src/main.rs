#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = certkeeper::cli::parse();
    match certkeeper::cli::dispatch(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("certkeeper: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
