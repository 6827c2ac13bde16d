//! `vmx-check`: can this machine run VT-x, and if not, why?

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(user_app::cli::run(std::env::args_os()))
}
