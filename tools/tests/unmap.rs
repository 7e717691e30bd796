//! Forced unmap kills the users of that mount and no other process: not the users of the same
//! file system bind-mounted elsewhere (by cwd, open file or mapping), not a process that
//! stopped using it after the scan.
//! Needs root (mounts a tmpfs on a temporary directory); `make check` runs as root.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use core_iscsi_tools::ctl::mount::{kill_users, mounts, unmount, users, MountEntry};

struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A small tmpfs on the new directory `at`, unmounted when dropped.
fn tmpfs(at: &Path) -> Mounted<'_> {
    fs::create_dir(at).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    Mounted(at)
}

fn entry(at: &Path) -> MountEntry {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.target == at)
        .unwrap_or_else(|| panic!("{} is not mounted", at.display()))
}

fn sleeper_in(dir: &Path) -> Child {
    Command::new("sleep")
        .arg("300")
        .current_dir(dir)
        .spawn()
        .unwrap()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(c: &mut Child) -> bool {
    c.try_wait().unwrap().is_none()
}

#[test]
fn forced_unmap_kills_only_the_users_of_this_mount() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount (make check runs as root)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let _ga = tmpfs(&a);
    fs::create_dir(&b).unwrap();
    nix::mount::mount(
        Some(&a),
        &b,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _gb = Mounted(&b);
    fs::create_dir(a.join("d")).unwrap();
    fs::write(a.join("f"), b"data").unwrap();

    let mut in_a = sleeper_in(&a);
    let mut in_b = sleeper_in(&b.join("d"));
    // A process holding a file open through the bind mount only.
    let mut open_b = Command::new("sh")
        .arg("-c")
        .arg("exec 3<\"$1\"; exec sleep 300")
        .arg("sh")
        .arg(b.join("f"))
        .current_dir("/")
        .spawn()
        .unwrap();
    // Processes with a mapping of a file, through a and through b.
    let mapper = |file: &Path| {
        Command::new("python3")
            .arg("-c")
            .arg("import mmap,sys,time\nf=open(sys.argv[1],'rb')\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nf.close()\nprint(flush=True)\ntime.sleep(300)")
            .arg(file)
            .current_dir("/")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut map_a = mapper(&a.join("f"));
    let mut map_b = mapper(&b.join("f"));
    for m in [&mut map_a, &mut map_b] {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(m.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
    }
    let ea = entry(&a);
    let eb = entry(&b);
    assert_ne!(ea.id, eb.id);
    assert_eq!(
        (ea.major, ea.minor),
        (eb.major, eb.minor),
        "one file system"
    );
    until("the users to settle", || {
        users(&eb).iter().any(|u| u.pid == open_b.id() as i32)
    });
    let ua = users(&ea);
    let pids: Vec<i32> = ua.iter().map(|u| u.pid).collect();
    let mut want = vec![in_a.id() as i32, map_a.id() as i32];
    want.sort_unstable();
    assert_eq!(pids, want, "users of a: {ua:?}");
    // (Python's mmap keeps a duplicate of the descriptor: an fd and the mapping.)
    let mapper_uses = &ua.iter().find(|u| u.pid == map_a.id() as i32).unwrap().uses;
    assert!(mapper_uses.iter().any(|u| u == "mmap"), "{ua:?}");
    let ub = users(&eb);
    assert!(
        ub.iter()
            .any(|u| u.pid == in_b.id() as i32 && u.uses == ["cwd"]),
        "{ub:?}"
    );
    assert!(
        ub.iter()
            .any(|u| u.pid == open_b.id() as i32 && u.uses == ["fd 3"]),
        "{ub:?}"
    );

    unmount(&ea, true).expect("forced unmount of a");
    assert!(!mounts().iter().any(|m| m.id == ea.id), "a unmounted");
    until("the users of a to die", || {
        !alive(&mut in_a) && !alive(&mut map_a)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(&mut in_b), "the user of the bind mount b was killed");
    assert!(alive(&mut open_b), "the file user through b was killed");
    assert!(alive(&mut map_b), "the mapper through b was killed");
    for c in [&mut in_b, &mut open_b, &mut map_b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn a_process_that_left_the_mount_after_the_scan_is_not_killed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount (make check runs as root)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let _ga = tmpfs(&a);
    // In the mount until told, then out of it.
    let mut c = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && read x && cd / && exec sleep 300")
        .arg("sh")
        .arg(&a)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let ea = entry(&a);
    let pid = c.id() as i32;
    until("the shell to enter the mount", || {
        users(&ea).iter().any(|u| u.pid == pid)
    });
    let victims = users(&ea);
    writeln!(c.stdin.as_mut().unwrap()).unwrap();
    until("the shell to leave the mount", || {
        !users(&ea).iter().any(|u| u.pid == pid)
    });
    assert!(kill_users(&ea, &victims).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        alive(&mut c),
        "killed a process that no longer used the mount"
    );
    // A stale entry whose process has exited is skipped too.
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(kill_users(&ea, &victims).is_empty());
}
