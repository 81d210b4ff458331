//! `run --vm` and `serve --vhost-user` (issue 21), under TCG (KVM is not usable on the
//! development machine), against oracles: the host's own bash running the same script with
//! the same input, the host's `lvm`, files on the host side of a `--bind`, and the process
//! table and temporary directory after a SIGTERM or SIGKILL. Each boots a VM (about 10 s).
//! qemu must be installed (scripts/install-deps.sh): a test fails, never skips, without it.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/supermin.d")
}

/// `supermin run --vm --accel tcg`, its temporary files in `tmp`.
fn vm(tmp: &Path) -> Command {
    need("qemu-system-x86_64");
    fs::create_dir_all(tmp).unwrap();
    let mut c = ours();
    c.env("TMPDIR", tmp).args(["run", "--vm", "--accel", "tcg"]);
    c
}

/// `cmd` run with `input` on its standard input.
fn with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The command's stdout, stderr, stdin and exit status are its own: the same as the host's
/// bash running the same script on the same input.
#[test]
fn the_commands_streams_and_status_are_its_own() {
    let s = Scratch::new("vm-streams");
    let script = "read a; echo \"out: $a\"; echo 'to stderr' >&2; cat; printf 'no newline'; exit 7";
    let input = b"first line\nthe rest\nof it\n";
    let host = with_input(Command::new("/bin/bash").args(["-c", script]), input);
    let guest = with_input(vm(&s.path("tmp")).arg(example()).args(["--", "/bin/bash", "-c", script]), input);
    assert_eq!(stdout(&guest), stdout(&host));
    assert_eq!(stderr(&guest), stderr(&host));
    assert_eq!(guest.status.code(), Some(7), "{}", stderr(&guest));
    assert_eq!(fs::read_dir(s.path("tmp")).unwrap().count(), 0, "run --vm left files in TMPDIR");
}

/// Read-only by default; `--writable` lets the command change the appliance (in memory);
/// `--bind` shares a host directory both ways.
#[test]
fn writable_and_bind() {
    let s = Scratch::new("vm-writable");
    let write = "echo changed > /etc/motd.vm && cat /etc/motd.vm";
    let r = run(vm(&s.path("tmp")).arg(example()).args(["--", "/bin/bash", "-c", write]));
    assert_ne!(r.status.code(), Some(0));
    assert!(stderr(&r).contains("Read-only file system"), "{}", stderr(&r));
    let shared = s.path("shared");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("in"), "from the host\n").unwrap();
    let script = format!("{write}; cat /mnt/in; echo from the guest > /mnt/out");
    let r = ok(vm(&s.path("tmp"))
        .arg("--writable")
        .arg("--bind")
        .arg(format!("{}:/mnt", shared.display()))
        .arg(example())
        .args(["--", "/bin/bash", "-c", &script]));
    assert_eq!(stdout(&r), "changed\nfrom the host\n");
    assert_eq!(fs::read_to_string(shared.join("out")).unwrap(), "from the guest\n");
}

/// Processes whose command line names `needle` (qemu's names the private directory).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(e.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && e.file_name() != std::process::id().to_string().as_str() {
                found.push(cmdline);
            }
        }
    }
    found
}

/// A running VM stopped by SIGTERM returns 128+15; one whose supermin gets SIGKILL takes
/// qemu with it; neither leaves a process, a socket or a temporary file.
#[test]
fn term_and_kill_leave_nothing() {
    let s = Scratch::new("vm-signals");
    for (sig, code) in [(libc::SIGTERM, Some(128 + libc::SIGTERM)), (libc::SIGKILL, None)] {
        let tmp = s.path(&format!("tmp{sig}"));
        let mut child = vm(&tmp)
            .arg(example())
            .args(["--", "/bin/bash", "-c", "echo up; exec sleep 1000"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "up\n");
        let needle = tmp.to_string_lossy().into_owned();
        assert!(!processes_naming(&needle).is_empty(), "no qemu naming {needle}");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), code, "{status}");
        let started = Instant::now();
        while !processes_naming(&needle).is_empty() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(processes_naming(&needle).is_empty(), "left running: {:?}", processes_naming(&needle));
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "left in TMPDIR after signal {sig}");
    }
}

/// libguestfs's appliance runs `lvm version` from the view, as the host's lvm says it.
#[test]
fn libguestfs_appliance_runs_lvm() {
    need("lvm");
    let s = Scratch::new("vm-lvm");
    let host = ok(Command::new("lvm").arg("version"));
    let guest = ok(vm(&s.path("tmp")).arg(LIBGUESTFS_APPLIANCE).args(["--", "lvm", "version"]));
    let first = |o: &Output| stdout(o).lines().next().unwrap_or_default().to_string();
    assert!(first(&host).contains("LVM version"), "{}", stdout(&host));
    assert_eq!(first(&guest), first(&host));
}

/// A VM workload traced with `run --vm --trace`, then slimmed: the slim appliance runs the
/// same workload with the same output, and no longer has what the workload did not use.
#[test]
fn a_traced_vm_workload_slims() {
    let s = Scratch::new("vm-trace");
    let work = "cat /etc/debian_version; sort --version | head -1; echo done";
    let trace = s.path("w.trace");
    let traced = ok(vm(&s.path("tmp")).arg("--trace").arg(&trace).arg(example()).args(["--", "/bin/bash", "-c", work]));
    let text = fs::read_to_string(&trace).unwrap();
    assert!(text.lines().any(|l| l == "read /usr/bin/sort"), "{text}");
    let slim = s.path("slim.d");
    ok(ours().arg("slim").arg(example()).arg("--trace").arg(&trace).arg("-o").arg(&slim));
    let excludes = fs::read_to_string(slim.join("zz-slim-excludefiles")).unwrap();
    assert!(excludes.lines().any(|l| l.ends_with("/bin/ls")), "ls was not used and is kept");
    let again = ok(vm(&s.path("tmp")).arg(&slim).args(["--", "/bin/bash", "-c", work]));
    assert_eq!(stdout(&again), stdout(&traced));
}

/// `serve --vhost-user` for a qemu started by someone else: the guest boots on the view (our
/// initrd, the command given on the kernel command line, its output on the console).
#[test]
fn serve_to_a_qemu_started_by_someone_else() {
    let s = Scratch::new("vm-serve");
    // A first run leaves the initrd in the cache; -v names it.
    let r = ok(vm(&s.path("tmp")).arg("-v").arg(example()).args(["--", "/bin/true"]));
    let said = stderr(&r);
    let (kernel, initrd) = (named(&said, "/vmlinu"), named(&said, ".initrd"));
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else { panic!("-v named no kernel and initrd: {said}") };
    let sock = s.path("app.sock");
    let mut server = ours().args(["serve", "--vhost-user"]).arg(&sock).arg(example()).spawn().unwrap();
    assert!(within_10s(|| sock.exists()), "serve did not listen");
    let hex: String = b"/bin/bash\0-c\0echo served by supermin".iter().map(|b| format!("{b:02x}")).collect();
    let append = format!("console=ttyS0 quiet panic=-1 supermin.vm supermin.cmd={hex}");
    let out = ok(Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-m", "512M", "-serial", "stdio"])
        .args(["-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa", "node,memdev=mem"])
        .arg("-chardev")
        .arg(format!("socket,id=vfs,path={}", sock.display()))
        .args(["-device", "vhost-user-fs-pci,chardev=vfs,tag=root"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append]));
    assert!(stdout(&out).contains("served by supermin"), "{}", stdout(&out));
    assert!(server.wait().unwrap().success(), "serve did not end cleanly when the VM went away");
    assert!(!sock.exists(), "serve left its socket");
}

/// The first path in `said` (what `-v` printed) that contains `part`.
fn named(said: &str, part: &str) -> Option<PathBuf> {
    said.split_whitespace().find(|w| w.contains(part) && w.starts_with('/')).map(PathBuf::from)
}

/// Without qemu, one line that says what to install; a missing `--kernel`, one line too.
#[test]
fn missing_qemu_or_kernel_is_one_line() {
    let s = Scratch::new("vm-missing");
    let mut cmd = vm(&s.path("tmp"));
    cmd.env("PATH", s.path("empty")).arg(example()).args(["--", "/bin/true"]);
    assert_one_line_error(&run(&mut cmd), &["qemu-system-x86_64 not found", "apt-get install qemu-system-x86"]);
    let mut cmd = vm(&s.path("tmp"));
    cmd.args(["--kernel", "/nonexistent/vmlinuz"]).arg(example()).args(["--", "/bin/true"]);
    assert_one_line_error(&run(&mut cmd), &["/nonexistent/vmlinuz"]);
    // A command the appliance does not have: 127 and one line, as a shell says it.
    let r = run(vm(&s.path("tmp")).arg(example()).args(["--", "/usr/bin/no-such-command"]));
    let said = stderr(&r);
    assert_eq!(r.status.code(), Some(127), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("/usr/bin/no-such-command: cannot run in the appliance"), "{said}");
}

/// `--accel auto` never hangs: KVM only if a probe guest runs on it, else TCG with one line
/// (this machine's nested /dev/kvm aborts or hangs every guest).
#[test]
fn accel_auto_never_hangs() {
    need("qemu-system-x86_64");
    let s = Scratch::new("vm-auto");
    let started = Instant::now();
    let r = ok(ours().env("TMPDIR", s.path("")).args(["run", "--vm", "--accel", "auto"]).arg(example()).args([
        "--",
        "/bin/bash",
        "-c",
        "echo booted",
    ]));
    assert_eq!(stdout(&r), "booted\n");
    let said = stderr(&r);
    assert!(said.is_empty() || (said.lines().count() == 1 && said.contains("using TCG")), "{said}");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}

/// With no command and no appliance `/init`, a terminal gets the appliance's shell on the
/// console, and `run --vm` exits with the shell's status (a pseudo-terminal made by `script`).
#[test]
fn a_terminal_gets_an_interactive_shell() {
    need("script");
    let s = Scratch::new("vm-tty");
    let run_vm = format!("TMPDIR={} {OURS} run --vm --accel tcg {}", s.path("").display(), example().display());
    let mut child = Command::new("script")
        .args(["-qec", &run_vm, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut out, &mut buf) {
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    // Typed once the shell prompts (what is typed before the guest's console is set up is lost).
    let mut seen = String::new();
    while !seen.contains("/# ") {
        seen.push_str(&rx.recv_timeout(Duration::from_secs(120)).expect("no prompt within 120 s"));
    }
    stdin.write_all(b"echo INTERACTIVE $((6*7)); exit 5\n").unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push_str(&chunk);
    }
    assert!(seen.contains("INTERACTIVE 42"), "{seen}");
    assert_eq!(status.code(), Some(5), "{seen}");
}

/// No root needed: a user with no privilege boots the view (the guest's command runs as the
/// appliance's root, inside the VM only).
#[test]
fn a_user_without_privileges_runs_a_vm() {
    let s = Scratch::new("vm-user");
    let tmp = hostile_dir(&s.0, "tmp");
    let mut cmd = ours();
    cmd.env("TMPDIR", &tmp).args(["run", "--vm", "--accel", "tcg"]).arg(example());
    cmd.args(["--", "/bin/bash", "-c", "echo uid $(id -u) in the guest"]);
    let r = ok(&mut as_hostile(cmd));
    assert_eq!(stdout(&r), "uid 0 in the guest\n");
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}
