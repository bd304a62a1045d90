//! The reference kernel node (`../shared/refvm/run-single.sh`) as an
//! object: built and booted on creation, stopped on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub fn refvm_dir() -> PathBuf {
    std::env::var_os("MESHWIRE_REFVM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/refvm"))
}

pub fn rv_build_dir() -> PathBuf {
    std::env::var_os("MESHWIRE_RV_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/refvm"))
}

/// Builds the reference VM's kernel and initramfs (idempotent, ~2 s when
/// built) and returns the build dir. Fails, never skips, without them.
pub fn build() -> PathBuf {
    let dir = refvm_dir();
    let build = rv_build_dir();
    assert!(
        dir.join("run-single.sh").exists(),
        "reference VM scripts not found at {} (set MESHWIRE_REFVM): the interop test \
         cannot run without them",
        dir.display()
    );
    std::fs::create_dir_all(&build).expect("create the refvm build dir");
    let t = Instant::now();
    let out = Command::new("bash")
        .arg(dir.join("build.sh"))
        .env("RV_BUILD", &build)
        .output()
        .expect("run refvm build.sh");
    assert!(
        out.status.success(),
        "the reference VM could not be built (RV_BUILD={}): {}\n{}",
        build.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("refvm build.sh: {:.1}s", t.elapsed().as_secs_f64());
    build
}

/// One reference kernel node, stopped (qemu killed, TAP removed) on drop.
pub struct RefVm {
    /// run-single.sh's --name: at most 8 characters, distinct per test.
    name: &'static str,
    script: PathBuf,
    build: PathBuf,
    pub boot_s: f64,
}

impl RefVm {
    /// Builds the reference VM (idempotent) and boots it.
    pub fn start(name: &'static str, args: &[String]) -> RefVm {
        let dir = refvm_dir();
        let build = build();
        let mut vm = RefVm {
            name,
            script: dir.join("run-single.sh"),
            build,
            boot_s: 0.0,
        };
        // A VM of a crashed earlier run would hold the name.
        vm.stop();
        let mut cmd = Command::new("bash");
        cmd.arg(&vm.script)
            .args(["start", "--name", name, "--timeout", "150"])
            .args(args)
            .env("RV_BUILD", &vm.build);
        let out = cmd.output().expect("run run-single.sh start");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.contains("RV-SINGLE"),
            "the reference VM did not boot: {stdout}\n{}\nconsole log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.console_tail()
        );
        vm.boot_s = stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("boot_s="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        eprintln!("{}", stdout.trim());
        vm
    }

    pub fn console_tail(&self) -> String {
        let log = self
            .build
            .join(format!("run/single-{0}/{0}.log", self.name));
        let s = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs a shell command on the VM's console; its output and success.
    pub fn try_cmd(&self, c: &str) -> (bool, String) {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["cmd", "--name", self.name, "--timeout", "60", c])
            .env("RV_BUILD", &self.build)
            .output()
            .expect("run run-single.sh cmd");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn cmd(&self, c: &str) -> String {
        let (ok, out) = self.try_cmd(c);
        assert!(ok, "on the kernel node, '{c}' failed:\n{out}");
        out
    }

    /// One counter of `batctl statistics`.
    pub fn stat(&self, name: &str) -> u64 {
        let s = self.cmd("batctl statistics");
        stat_from(&s, name)
    }

    fn stop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--name", self.name])
            .env("RV_BUILD", &self.build)
            .output();
    }
}

impl Drop for RefVm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kernel node console (tail):\n{}", self.console_tail());
        }
        self.stop();
    }
}

pub fn stat_from(s: &str, name: &str) -> u64 {
    s.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in batctl statistics:\n{s}"))
}
