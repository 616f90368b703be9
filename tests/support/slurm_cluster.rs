//! A real SLURM controller and node on loopback for tests (munge with a private key and
//! socket, slurmctld + slurmd with state in a temp folder): the recipe of
//! ../shared/notes/slurm-local.md, as tests/bench.rs starts it. Daemons stop when the guard
//! is dropped.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Daemons {
    pub pid_files: Vec<PathBuf>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for p in self.pid_files.iter().rev() {
            if let Ok(pid) = std::fs::read_to_string(p) {
                let pid = pid.trim().to_string();
                let _ = std::process::Command::new("kill").arg(&pid).status();
                let t0 = Instant::now();
                while Path::new(&format!("/proc/{pid}")).exists()
                    && t0.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn sh(cmd: &str) -> String {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Starts munged, slurmctld and slurmd under `t`; returns the guard and the slurm.conf to
/// point clients at (SLURM_CONF), or None (with a SKIPPED note) when the tools are missing.
pub fn start(t: &Path) -> Option<(Daemons, PathBuf)> {
    let tools = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"];
    let found: Vec<Option<PathBuf>> = tools.iter().map(|t| which(t)).collect();
    if let Some(i) = found.iter().position(Option::is_none) {
        eprintln!(
            "SKIPPED: {} not found; install slurmctld slurmd slurm-client munge (scripts/install-deps.sh) to run the SLURM test",
            tools[i]
        );
        return None;
    }
    let exe = |i: usize| found[i].clone().unwrap();
    let mut daemons = Daemons {
        pid_files: Vec::new(),
    };

    // munge with a private key and socket (nothing under /etc or /run is touched).
    let m = t.join("munge");
    std::fs::create_dir(&m).unwrap();
    let key: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(m.join("munge.key"), key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(m.join("munge.key"), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o700)).unwrap();
    let st = std::process::Command::new(exe(0))
        .arg("--force")
        .arg(format!("--key-file={}", m.join("munge.key").display()))
        .arg(format!("--socket={}", m.join("munge.sock").display()))
        .arg(format!("--pid-file={}", m.join("munged.pid").display()))
        .arg(format!("--log-file={}", m.join("munged.log").display()))
        .arg(format!("--seed-file={}", m.join("munged.seed").display()))
        .status()
        .unwrap();
    daemons.pid_files.push(m.join("munged.pid"));
    assert!(
        st.success(),
        "munged failed to start: {}",
        std::fs::read_to_string(m.join("munged.log")).unwrap_or_default()
    );

    let host = sh("hostname -s");
    let user = sh("id -un");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let port = 20000 + (std::process::id() % 5000) * 2;
    for sub in ["state", "spool", "log"] {
        std::fs::create_dir(t.join(sub)).unwrap();
    }
    let conf = t.join("slurm.conf");
    let p = |s: &str| t.join(s).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "ClusterName=bstest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={port}\nSlurmdPort={}\n\
             AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nSlurmUser={user}\nSlurmdUser={user}\n\
             ReturnToService=2\nMpiDefault=none\nStateSaveLocation={}\nSlurmdSpoolDir={}\n\
             SlurmctldPidFile={}\nSlurmdPidFile={}\nSlurmctldLogFile={}\nSlurmdLogFile={}\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            port + 1,
            m.join("munge.sock").display(),
            p("state"),
            p("spool"),
            p("slurmctld.pid"),
            p("slurmd.pid"),
            p("log/slurmctld.log"),
            p("log/slurmd.log"),
        ),
    )
    .unwrap();
    let logs = || {
        format!(
            "slurmctld.log:\n{}\nslurmd.log:\n{}",
            std::fs::read_to_string(t.join("log/slurmctld.log")).unwrap_or_default(),
            std::fs::read_to_string(t.join("log/slurmd.log")).unwrap_or_default()
        )
    };
    daemons.pid_files.push(t.join("slurmctld.pid"));
    let st = std::process::Command::new(exe(1))
        .arg("-c")
        .env("SLURM_CONF", &conf)
        .status()
        .unwrap();
    assert!(st.success(), "slurmctld failed\n{}", logs());
    daemons.pid_files.push(t.join("slurmd.pid"));
    let st = std::process::Command::new(exe(2))
        .env("SLURM_CONF", &conf)
        .status()
        .unwrap();
    assert!(st.success(), "slurmd failed\n{}", logs());
    let t0 = Instant::now();
    loop {
        let o = std::process::Command::new(exe(5))
            .args(["-h", "-o", "%T"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the node never became idle\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    Some((daemons, conf))
}
