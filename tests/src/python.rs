//! Python from the project venv, for independent readers of what the system wrote.

use std::path::Path;

use crate::error::{Result, StackError};
use crate::tools::Tools;

/// Run `script` with the venv's interpreter and `args`, returning its stdout; a non-zero exit
/// is an error carrying stderr.
pub async fn run_python(tools: &Tools, script: &str, args: &[&Path]) -> Result<String> {
    let output = tokio::process::Command::new(tools.python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PATH", tools.path_env())
        .output()
        .await
        .map_err(|source| StackError::Spawn {
            what: format!("{} -c <script>", tools.python().display()),
            source,
        })?;
    if !output.status.success() {
        return Err(StackError::service(
            "python",
            format!(
                "exited with {}:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
