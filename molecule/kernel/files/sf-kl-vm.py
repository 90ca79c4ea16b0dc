#!/usr/bin/env python3
"""Start and stop the kernel-lab VM (qemu under TCG).

``up`` picks free loopback ports, boots the cached kernel, initramfs and root
image with the run's seed directory shared read-only over 9p, waits until
every lab host's sshd sends its banner, and prints JSON with the ports.
While it waits it writes ``@progress`` lines to stderr when the boot moves
on (what the console shows, how many hosts answer on ssh), for the
swarmfabric_progress action to show live.
``down`` stops the VM recorded in the run directory. Controller side only.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_ports(count):
    """Ports the kernel gives us for 127.0.0.1, released just before use."""
    socks, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return ports


def qemu_argv(cache, rundir, ports, memory, smp):
    """The qemu command line: TCG, no display, root image as a throw-away snapshot."""
    fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{port}-:{2201 + i}" for i, port in enumerate(ports))
    return [
        "qemu-system-x86_64", "-name", "sf-kl-lab", "-machine", "pc,accel=tcg",
        "-smp", str(smp), "-m", str(memory), "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot",
        "-serial", f"file:{rundir}/console.log",
        "-kernel", f"{cache}/vmlinuz", "-initrd", f"{cache}/initrd.gz",
        "-append", "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off",
        "-drive", f"file={cache}/root.img,format=raw,if=virtio,snapshot=on,cache=unsafe",
        "-virtfs", f"local,path={rundir}/seed,mount_tag=sfseed,security_model=none,readonly=on",
        "-netdev", f"user,id=n0,net=10.0.2.0/24,{fwd}",
        "-device", "virtio-net-pci,netdev=n0",
        "-daemonize", "-pidfile", f"{rundir}/qemu.pid",
    ]


def ssh_banner(port, timeout=2.0):
    """True once an sshd answers on the forwarded port (qemu accepts earlier)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def read_pid(rundir):
    try:
        with open(os.path.join(rundir, "qemu.pid"), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def boot_phase(rundir):
    """What the VM is doing, from its serial console (the kernel is quiet; sf-kl-init says when it is done)."""
    try:
        with open(os.path.join(rundir, "console.log"), "rb") as handle:
            console = handle.read()
    except OSError:
        console = b""
    if b"sf-kl: lab up" in console:
        return "lab hosts started"
    if console.strip():
        return "kernel and init running"
    return "qemu started, kernel loading"


def progress(message):
    print(f"@progress {message}", file=sys.stderr, flush=True)


def up(args):
    started = time.monotonic()
    ports = free_ports(args.hosts)
    argv = qemu_argv(args.cache, args.rundir, ports, args.memory, args.smp)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"Cannot start the lab VM: {result.stderr.strip()}")
    pid = read_pid(args.rundir)
    waiting = set(ports)
    said = None
    while waiting:
        if pid is None or not alive(pid):
            sys.exit(f"Cannot start the lab VM: qemu exited, see {args.rundir}/console.log")
        if time.monotonic() - started > args.timeout:
            down(args)
            sys.exit(f"Cannot start the lab VM: no sshd on ports {sorted(waiting)} after {args.timeout}s")
        waiting = {port for port in waiting if not ssh_banner(port)}
        message = f"booting, {boot_phase(args.rundir)}, {len(ports) - len(waiting)}/{len(ports)} hosts answer on ssh"
        if message != said:
            progress(message)
            said = message
        if waiting:
            time.sleep(0.5)
    json.dump({"pid": pid, "ports": ports, "boot_seconds": round(time.monotonic() - started, 1)}, sys.stdout)


def down(args):
    pid = read_pid(args.rundir)
    if pid is None or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--cache", default="/var/cache/swarmfabric/kernel-lab")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=240)
    args = parser.parse_args()
    up(args) if args.action == "up" else down(args)


if __name__ == "__main__":
    main()
