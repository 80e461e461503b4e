"""A one-node Slurm cluster of its own, for tests: munged, slurmctld and slurmd, started
as root in a temporary folder on ports of their own, stopped by their process ids.

    with SlurmCluster(Path(tempfile.mkdtemp())) as cluster:
        subprocess.run(["sbatch", "job.sh"], env=cluster.env)

Everything (slurm.conf, the munge key, state, spool, logs, pid files, munge's socket)
lives in the folder; ``cluster.env`` points Slurm's commands at it (``SLURM_CONF``). The
node is this machine, with its real CPU count. Debian's packages: ``slurm-wlm munge``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def missing() -> str | None:
    """Why no cluster can start here (None: it can)."""
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        return (
            f"Slurm is not installed ({', '.join(absent)} missing): "
            "apt-get install -y slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "the test cluster runs slurmctld and slurmd as root; this is not root"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition, what: str, timeout: float, interval: float = 0.2) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class SlurmCluster:
    """munged + slurmctld + slurmd on this machine, configured and kept in ``root``."""

    def __init__(
        self, root: Path, *, kill_wait: int = 30, cred_expire: int = 10
    ) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.kill_wait = kill_wait
        self.cred_expire = cred_expire
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for variable in list(
            self.env
        ):  # a Slurm job's own variables would mislead sbatch
            if (
                variable.startswith(("SLURM_", "SBATCH_", "SRUN_"))
                and variable != "SLURM_CONF"
            ):
                del self.env[variable]

    def write_config(self) -> None:
        for folder in ("state", "spool", "munge", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        root = self.root
        lines = [
            "ClusterName=torchwright-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # A requeued job waits cred_expire seconds (default 120) before it may start
            # again: the credential of its previous run must have expired on slurmd.
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/builtin",
            "MpiDefault=none",
            "ReturnToService=2",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            f"KillWait={self.kill_wait}",
            "MinJobAge=600",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _start(self, name: str, command: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("wb")
        self.processes[name] = subprocess.Popen(
            command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start(self, timeout: float = 60) -> SlurmCluster:
        self.write_config()
        munge = self.root / "munge"
        self._start(
            "munged",
            [
                "munged", "--foreground", "--force",
                f"--key-file={munge / 'munge.key'}", f"--socket={self.munge_socket}",
                f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )  # fmt: skip
        wait_until(self.munge_socket.exists, "munged's socket", timeout)
        self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        wait_until(
            self._node_idle,
            f"node {self.node} to be idle (logs: {self.root / 'log'})",
            timeout,
        )
        return self

    def _node_idle(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}: {self.logs()}"
                )
        result = self.command("sinfo", "-h", "-N", "-o", "%T")
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def command(
        self, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, COMPLETED, ... ("" once Slurm has forgotten the job)."""
        result = self.command("scontrol", "show", "job", job_id, "-o")
        for field in result.stdout.split():
            if field.startswith("JobState="):
                return field.removeprefix("JobState=")
        return ""

    def job_field(self, job_id: str, name: str) -> str:
        result = self.command("scontrol", "show", "job", job_id, "-o")
        for field in result.stdout.split():
            if field.startswith(f"{name}="):
                return field.split("=", 1)[1]
        return ""

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(
                f"--- {path.name}\n"
                + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
            )
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM to each daemon (slurmd first), SIGKILL to any still there after 10 s."""
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.processes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
