//! `cargo xtask bench-check [--runs N]`: the checker's performance figures
//! (a benchmark, never a test; the figures go in the README and the book).
//!
//! 1. Start-up, as a whole process: the binary the README's first command
//!    (`cargo vmx-check check`, a static `+crt-static` build) builds, the
//!    plain `cargo build --release` (dynamic) one for comparison, `kvm-ok`
//!    (Debian `cpu-checker`) and `/bin/true` (the cost of any process),
//!    run in turn round after round, so that a change of load on the
//!    machine falls on all of them alike. The target: vmx-check's time
//!    above the `/bin/true` floor is at most 1/10 of kvm-ok's.
//! 2. Replay of dumps of 1, 1024 and 8192 processors, text and JSON: time
//!    and peak memory (`/usr/bin/time`'s maximum resident set size), which
//!    should grow linearly with the processors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

const USAGE: &str = "usage: cargo xtask bench-check [--runs N]
  --runs N   start-up rounds (default 1000; each runs every command once)
needs: kvm-ok (apt-get install cpu-checker) and /usr/bin/time (apt-get install time)";

/// Where `cargo build --release -p user-app` puts the binary (dynamic).
const DEFAULT_BIN: &str = "target/release/vmx-check";
/// Where the README's first command, `cargo vmx-check check` (the alias in
/// `.cargo/config.toml`), puts the binary (static).
const STATIC_BIN: &str = "target/x86_64-unknown-linux-gnu/release/vmx-check";

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 1000usize;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--runs" => {
                runs = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .context(USAGE)?;
            }
            _ => bail!("{USAGE}"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository root")?
        .to_path_buf();
    let kvm_ok = which("kvm-ok").context("kvm-ok is missing: apt-get install cpu-checker")?;
    ensure!(
        Path::new("/usr/bin/time").exists(),
        "/usr/bin/time is missing: apt-get install time"
    );
    build(&root)?;
    startup(&root, &kvm_ok, runs)?;
    replay(&root)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn build(root: &Path) -> Result<()> {
    eprintln!("+ cargo build --release -p user-app");
    let status = cargo()
        .args(["build", "--quiet", "--release", "-p", "user-app"])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "the release build failed");
    // Exactly what the README's first command builds: the alias itself.
    eprintln!("+ cargo vmx-check --version");
    let status = cargo()
        .args(["vmx-check", "--version"])
        .stdout(Stdio::null())
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "`cargo vmx-check` failed");
    Ok(())
}

/// One process run, its output discarded: the wall time from spawn to
/// exit.
fn time_once(program: &Path, args: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    Ok(start.elapsed())
}

struct Stats {
    median: f64,
    mean: f64,
    sd: f64,
}

fn stats(samples: &mut [f64]) -> Stats {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Stats {
        median: samples[samples.len() / 2],
        mean,
        sd: var.sqrt(),
    }
}

fn startup(root: &Path, kvm_ok: &Path, runs: usize) -> Result<()> {
    let commands: [(&str, PathBuf, &[&str]); 4] = [
        ("`/bin/true`", "/bin/true".into(), &[]),
        (
            "`vmx-check check`, `cargo build --release` (dynamic)",
            root.join(DEFAULT_BIN),
            &["check"],
        ),
        (
            "`vmx-check check`, `cargo vmx-check` (static, the README's first command)",
            root.join(STATIC_BIN),
            &["check"],
        ),
        ("`kvm-ok`", kvm_ok.to_path_buf(), &[]),
    ];
    let warmup = (runs / 20).max(10);
    eprintln!(
        "start-up: {runs} rounds after {warmup} of warm-up, each command once per round, in a \
         rotating order"
    );
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); commands.len()];
    for round in 0..warmup + runs {
        for k in 0..commands.len() {
            let i = (round + k) % commands.len();
            let (_, program, args) = &commands[i];
            let took = time_once(program, args)?;
            if round >= warmup {
                samples[i].push(took.as_secs_f64() * 1e3);
            }
        }
    }
    let results: Vec<Stats> = samples.iter_mut().map(|s| stats(s)).collect();
    let floor = results[0].median;
    let kvm = results[3].median;
    println!("\n| command | median | mean ± σ | above `/bin/true` | that ÷ kvm-ok's time |");
    println!("|---|---|---|---|---|");
    for ((name, _, _), r) in commands.iter().zip(&results) {
        let above = r.median - floor;
        println!(
            "| {name} | {:.2} ms | {:.2} ± {:.2} ms | {above:.2} ms | {:.3} |",
            r.median,
            r.mean,
            r.sd,
            above / kvm
        );
    }
    for (name, i) in [
        ("dynamic (`cargo build --release`)", 1),
        ("static (`cargo vmx-check`, the README's first command)", 2),
    ] {
        let ratio = (results[i].median - floor) / kvm;
        println!(
            "{name} build: {ratio:.3} of kvm-ok's time above the floor ({}: target 0.1)",
            if ratio <= 0.1 { "met" } else { "not met" }
        );
    }
    Ok(())
}

/// A dump of `n` processors: the ready fixture's processor 0, with the
/// `/proc/cpuinfo` lines of the Linux fixture, numbered 0..n.
fn dump_of(root: &Path, n: usize) -> Result<String> {
    let fixtures = root.join("user-app/tests/fixtures");
    let read = |name: &str| -> Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            fixtures.join(name),
        )?)?)
    };
    let mut dump = read("skylake-x-ready.json")?;
    let linux = read("linux-kernel-enabled-vmx.json")?;
    let mut one = dump["cpus"][0].clone();
    one["linux"] = linux["cpus"][0]["linux"].clone();
    dump["linux"] = linux["linux"].clone();
    dump["cpus"] = (0..n)
        .map(|cpu| {
            let mut c = one.clone();
            c["cpu"] = cpu.into();
            c
        })
        .collect();
    Ok(serde_json::to_string_pretty(&dump)? + "\n")
}

fn replay(root: &Path) -> Result<()> {
    let dir = root.join("target/bench-check");
    std::fs::create_dir_all(&dir)?;
    let bin = root.join(STATIC_BIN);
    println!("\n| processors | dump | report | median time | per processor | peak memory |");
    println!("|---|---|---|---|---|---|");
    for n in [1usize, 1024, 8192] {
        let file = dir.join(format!("dump-{n}.json"));
        let text = dump_of(root, n)?;
        std::fs::write(&file, &text)?;
        for json in [false, true] {
            let mut args = vec!["--replay", file.to_str().context("a UTF-8 path")?];
            if json {
                args.push("--json");
            }
            let rounds = if n >= 8192 { 7 } else { 21 };
            let mut times = Vec::new();
            let mut peak_kib = 0u64;
            for _ in 0..rounds {
                let start = Instant::now();
                let output = Command::new("/usr/bin/time")
                    .args(["-f", "%M"])
                    .arg(&bin)
                    .args(&args)
                    .stdout(Stdio::null())
                    .output()?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
                ensure!(
                    output.status.code() == Some(0),
                    "the replay of {n} processors exited {:?}",
                    output.status.code()
                );
                let stderr = String::from_utf8_lossy(&output.stderr);
                let kib: u64 = stderr
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok())
                    .context("/usr/bin/time printed no maximum resident set size")?;
                peak_kib = peak_kib.max(kib);
            }
            let s = stats(&mut times);
            println!(
                "| {n} | {:.1} MiB | {} | {:.2} ms | {:.1} µs | {:.1} MiB |",
                text.len() as f64 / f64::from(1 << 20),
                if json { "JSON" } else { "text" },
                s.median,
                s.median * 1e3 / n as f64,
                peak_kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}
