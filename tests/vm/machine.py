"""A Debian 12 VM under qemu (software emulation, TCG) booting socle's rendered user data.

The VM starts the test image's kernel and initrd directly, with its user data on a NoCloud
`cidata` ISO, a data disk whose serial makes it appear as OVH block storage does
(/dev/disk/by-id/virtio-<first 20 characters of the volume id>), and a user-mode network that
reaches nothing: only forwarded ports on 127.0.0.1 (the SSH port, and 22 to prove it closed).
With `lan` (this VM's and its peer's UDP ports on 127.0.0.1), a second network card links two VMs
point to point (qemu's `dgram` netdev; the loopback has no multicast for a hub), where each takes
its public address: the servers reach one another there as they do at OVH, and nothing else. With `proxy_port` (mirror mode), the guest's
10.0.2.100:3142 leads to a package proxy on the host's 127.0.0.1. Every VM is stopped by its PID
and its files removed in `stop`.

After `multiplex()`, calls with the same key, user and port share one SSH connection (OpenSSH's
ControlMaster): under emulation every handshake costs seconds. The fixture turns it on only once
host setup has run, so no probe rides on a session whose groups or sshd settings predate it; a
different key, user or port (the refusal probes) always opens its own connection."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PROXY_GUEST_ADDRESS = "10.0.2.100:3142"
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


class VM:
    def __init__(self, name: str, image_dir: Path, work: Path, user_data: str, *, ssh_port: int,
                 forward: dict[int, int], data_serial: str | None = None, memory_mb: int = 1536,
                 lan: tuple[int, int] | None = None, proxy_port: int | None = None):
        self.name, self.image_dir, self.work = name, image_dir, work / name
        self.user_data, self.ssh_port, self.forward = user_data, ssh_port, forward
        self.data_serial, self.memory_mb, self.lan = data_serial, memory_mb, lan
        self.proxy_port = proxy_port
        self.proc: subprocess.Popen | None = None
        self.console = self.work / "console.log"
        self.started = 0.0
        self.mux_dir: Path | None = None

    def multiplex(self, key: Path) -> None:
        import tempfile

        # Short: a control socket's path must fit in sun_path (108 bytes).
        self.mux_dir = Path(tempfile.mkdtemp(prefix="socle-ssh-"))
        # The master is started on its own, its output to /dev/null: a master forked by a
        # captured call would hold that call's pipes open, and the call would never return.
        subprocess.run(["ssh", "-i", str(key), "-p", str(self.ssh_port), *SSH_OPTIONS, "-o", "ControlMaster=yes",
                        "-o", f"ControlPath={self._control_path(key)}", "-o", "ControlPersist=600", "-N", "-f",
                        "deploy@127.0.0.1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=True)

    def _control_path(self, key: Path) -> str:
        return f"{self.mux_dir}/{key.name}-%C"

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        seed = self.work / "seed"
        seed.mkdir(exist_ok=True)
        (seed / "user-data").write_text(self.user_data)
        (seed / "meta-data").write_text(f"instance-id: socle-test-{self.name}\nlocal-hostname: {self.name}\n")
        subprocess.run(["genisoimage", "-quiet", "-output", str(self.work / "seed.iso"), "-volid", "cidata",
                        "-joliet", "-rock", str(seed / "user-data"), str(seed / "meta-data")], check=True)
        subprocess.run(["cp", "--sparse=always", str(self.image_dir / "root.img"), str(self.work / "root.img")],
                       check=True)
        drives = ["-drive", f"file={self.work / 'root.img'},if=virtio,format=raw",
                  "-drive", f"file={self.work / 'seed.iso'},media=cdrom,readonly=on"]
        if self.data_serial:
            with open(self.work / "data.img", "wb") as f:
                f.truncate(2 << 30)
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in self.forward.items())
        if self.proxy_port:
            # Mirror mode: 10.0.2.100:3142 in the guest is the host's package proxy (apt-cacher-ng).
            relay = Path(__file__).with_name("relay.py")
            fwd += f",guestfwd=tcp:{PROXY_GUEST_ADDRESS}-cmd:python3 {relay} {self.proxy_port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-smp", "1", "-m", str(self.memory_mb),
             "-nographic", "-monitor", f"unix:{self.work / 'monitor.sock'},server,nowait", "-display", "none",
             "-kernel", str(self.image_dir / "vmlinuz"), "-initrd", str(self.image_dir / "initrd.img"),
             # The root disk is the only virtio disk at boot (the data disk is attached later).
             "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0",
             *drives,
             "-netdev", f"user,id=n0,restrict=on,{fwd}", "-device", "virtio-net-pci,netdev=n0",
             *(["-netdev", f"dgram,id=n1,local.type=inet,local.host=127.0.0.1,local.port={self.lan[0]},"
                           f"remote.type=inet,remote.host=127.0.0.1,remote.port={self.lan[1]}",
                "-device", f"virtio-net-pci,netdev=n1,mac={self._mac()}"] if self.lan else []),
             "-serial", f"file:{self.console}"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "qemu.log", "w"), start_new_session=True)

    def _mac(self) -> str:
        import hashlib

        digest = hashlib.sha256(self.name.encode()).digest()
        return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])

    def ssh(self, command: str, *, key: Path, user: str = "deploy", port: int | None = None,
            stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        # ControlMaster=no: a call rides on the master when its socket matches (same key, user and
        # port), and otherwise connects on its own.
        mux = ["-o", "ControlMaster=no", "-o", f"ControlPath={self._control_path(key)}"] if self.mux_dir else []
        return subprocess.run(["ssh", "-i", str(key), "-p", str(port or self.ssh_port), *SSH_OPTIONS, *mux,
                               f"{user}@127.0.0.1", command], input=stdin, capture_output=True, text=True,
                              timeout=timeout)

    def wait_ready(self, key: Path, seconds: float = 900) -> float:
        """Wait for SSH and the end of cloud-init, as the program's readiness gate does; returns the
        seconds from power-on."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if "Dropping to a shell" in self.console_tail(200) or "Kernel panic" in self.console_tail(200):
                raise RuntimeError(f"{self.name}: the VM did not boot:\n{self.console_tail()}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: qemu exited {self.proc.returncode}: "
                                   f"{(self.work / 'qemu.log').read_text()[-2000:]}")
            try:
                res = self.ssh("cloud-init status --wait >/dev/null; cloud-init status", key=key, timeout=600)
            except subprocess.TimeoutExpired:
                continue
            if res.returncode in (0, 1, 2) and "status:" in res.stdout:
                return time.monotonic() - self.started
            time.sleep(5)
        raise TimeoutError(f"{self.name}: no SSH after {seconds} s; console:\n{self.console_tail()}")

    def attach_data_disk(self, key: Path, seconds: float = 120) -> None:
        """Attach the data disk to the running VM, as OVH attaches a block volume to an instance
        after creating it."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mon:
            mon.connect(str(self.work / "monitor.sock"))
            mon.settimeout(10)
            for command in (f"drive_add 0 file={self.work / 'data.img'},if=none,id=data,format=raw",
                            f"device_add virtio-blk-pci,drive=data,serial={self.data_serial},id=datadev"):
                mon.sendall(command.encode() + b"\n")
                time.sleep(1)
            mon.recv(65536)
        link = f"/dev/disk/by-id/virtio-{self.data_serial}"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ssh(f"test -e {link}", key=key, timeout=60).returncode == 0:
                return
            time.sleep(3)
        raise TimeoutError(f"{self.name}: {link} did not appear after hot-plugging the data disk")

    def console_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no console)"

    def stop(self) -> None:
        if self.mux_dir is not None:
            for sock in self.mux_dir.iterdir():
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=20)
            shutil.rmtree(self.mux_dir, ignore_errors=True)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.work, ignore_errors=True)
