//! Where the stand-ins live: the project venv made by `scripts/setup-venv`, and the workspace.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Result, StackError};

/// `CACHEFILL_E2E=skip` skips the end-to-end tests; anything else runs them.
pub const E2E_VAR: &str = "CACHEFILL_E2E";
/// Where `scripts/setup-venv` installed the tools (default `~/.cache/cachefill-venv`).
pub const VENV_VAR: &str = "CACHEFILL_VENV";

/// Whether the end-to-end tests are switched off; says so on stdout when they are, so a
/// skipped run is never mistaken for a passing one.
pub fn skipped(test: &str) -> bool {
    let skip = std::env::var(E2E_VAR).is_ok_and(|v| v.trim().eq_ignore_ascii_case("skip"));
    if skip {
        println!("SKIPPED {test}: {E2E_VAR}=skip (the end-to-end stack was not started)");
    }
    skip
}

/// The venv holding `moto_server`, `cargo-lambda` (with zig), `python` with pyarrow, and the
/// `aws` CLI.
#[derive(Debug, Clone)]
pub struct Tools {
    bin: PathBuf,
}

impl Tools {
    /// The venv named by `CACHEFILL_VENV`, else `~/.cache/cachefill-venv`; every tool the
    /// stack starts must be in it.
    pub fn locate() -> Result<Tools> {
        let venv = match std::env::var_os(VENV_VAR).filter(|v| !v.is_empty()) {
            Some(venv) => PathBuf::from(venv),
            None => home().join(".cache/cachefill-venv"),
        };
        Tools::locate_in(&venv)
    }

    /// The tools of the venv at `venv`.
    pub fn locate_in(venv: &Path) -> Result<Tools> {
        let tools = Tools {
            bin: venv.join("bin"),
        };
        for tool in ["moto_server", "cargo-lambda", "python", "aws"] {
            let path = tools.bin.join(tool);
            if !path.is_file() {
                return Err(StackError::ToolMissing { tool, path });
            }
        }
        Ok(tools)
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    pub fn moto_server(&self) -> PathBuf {
        self.bin.join("moto_server")
    }

    pub fn cargo_lambda(&self) -> PathBuf {
        self.bin.join("cargo-lambda")
    }

    /// The AWS CLI, for raw requests made the way a person would make them.
    pub fn aws(&self) -> PathBuf {
        self.bin.join("aws")
    }

    /// The venv's interpreter, which has pyarrow.
    pub fn python(&self) -> PathBuf {
        self.bin.join("python")
    }

    /// `PATH` with the venv first: cargo-lambda finds zig through the first `python3`.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.bin.clone()];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(paths).unwrap_or_else(|_| self.bin.clone().into_os_string())
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else the one this test binary was
/// built into (`<target>/<profile>/deps/<test>`), else `<workspace>/target`. Given to
/// cargo-lambda, which runs cargo from the workspace root, so that it never starts a second
/// target directory when a test binary runs without cargo's environment.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then_some(())?;
            Some(deps.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}
