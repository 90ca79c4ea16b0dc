"""Shared helpers of the kernel-lab tests: a command that must succeed, and a
tcpdump capture on a lab host around an action, read back by BPF filter."""


def run_ok(host, command):
    result = host.run(command)
    assert result.rc == 0, f"{command}: rc={result.rc} {result.stderr}"
    return result.stdout


def capture(host, name, bpf, action, iface="eth0"):
    """Run action() while tcpdump records bpf on iface (the underlay by default); the pcap path."""
    pcap, log, pid = f"/tmp/sf-kl-{name}.pcap", f"/tmp/sf-kl-{name}.log", f"/tmp/sf-kl-{name}.pid"
    run_ok(host, f"nohup tcpdump -i {iface} -nn -U -w {pcap} '{bpf}' >{log} 2>&1 & echo $! >{pid}")
    run_ok(host, f"for i in $(seq 50); do grep -q listening {log} && exit 0; sleep 0.2; done; exit 1")
    try:
        action()
    finally:
        # Under TCG tcpdump lags behind the wire: stop it only once the file
        # has stopped growing, or packets still queued for it are lost.
        run_ok(host, f"s=-1; for i in $(seq 20); do sleep 0.5; n=$(stat -c %s {pcap});"
                     f" [ $n = $s ] && break; s=$n; done; kill -INT $(cat {pid});"
                     f" for i in $(seq 25); do kill -0 $(cat {pid}) 2>/dev/null || break; sleep 0.2; done")
    return pcap


def count(host, pcap, bpf):
    """Packets in the capture that match bpf."""
    return int(run_ok(host, f"tcpdump -nn -r {pcap} '{bpf}' 2>/dev/null | wc -l").strip())
