//! Building the test kernel and a bootable GRUB (multiboot2) ISO around it.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Environment variables that would override `e2e-kernel/.cargo/config.toml`
/// (its linker script and code model) or move its output elsewhere.
const OVERRIDING_ENV: [&str; 6] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

/// Builds `e2e-kernel/` (release) and returns the kernel ELF's path.
///
/// # Errors
/// When cargo fails.
pub fn build_kernel(repo: &Path) -> Result<PathBuf> {
    let kernel_dir = repo.join("e2e-kernel");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(&kernel_dir)
        .args(["build", "--release"]);
    for name in OVERRIDING_ENV {
        command.env_remove(name);
    }
    let status = command.status().context("running cargo for e2e-kernel")?;
    if !status.success() {
        bail!("building e2e-kernel failed ({status})");
    }
    Ok(kernel_dir.join("target/x86_64-unknown-none/release/e2e-kernel"))
}

/// Makes `<dir>/e2e.iso`: GRUB boots `kernel` with `command_line` at once.
///
/// # Errors
/// When a file cannot be written or grub-mkrescue fails (its output is then
/// in `<dir>/grub-mkrescue.log`).
pub fn make_iso(dir: &Path, kernel: &Path, command_line: &str) -> Result<PathBuf> {
    let root = dir.join("iso");
    let grub = root.join("boot/grub");
    fs::create_dir_all(&grub).with_context(|| format!("creating {}", grub.display()))?;
    fs::copy(kernel, root.join("boot/kernel.elf"))
        .with_context(|| format!("copying {}", kernel.display()))?;
    let config = format!(
        "set timeout=0\nset default=0\nmenuentry \"e2e\" {{\n    multiboot2 /boot/kernel.elf {command_line}\n    boot\n}}\n"
    );
    fs::write(grub.join("grub.cfg"), config).context("writing grub.cfg")?;

    let iso = dir.join("e2e.iso");
    let log_path = dir.join("grub-mkrescue.log");
    let log = fs::File::create(&log_path)?;
    let status = Command::new("grub-mkrescue")
        .args([
            "--install-modules=normal multiboot2",
            "--locales=",
            "--fonts=",
            "--themes=",
            "-o",
        ])
        .arg(&iso)
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context(
            "running grub-mkrescue (apt-get install grub-pc-bin grub-common xorriso mtools)",
        )?;
    if !status.success() {
        bail!(
            "grub-mkrescue failed ({status}), see {}",
            log_path.display()
        );
    }
    Ok(iso)
}
