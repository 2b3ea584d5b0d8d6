//! The `cachefill` command: see `cachefill --help` and docs/CLI.md.

fn main() -> std::process::ExitCode {
    cachefill_client::cli::main()
}
