//! The `cachefill` command: see `cachefill --help` and docs/CLI.md.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
