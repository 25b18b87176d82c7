"""Several hosts on one machine: network namespaces on a bridge, and the processes that run on them.

Each :class:`Network` is a Linux bridge with an address in the test's own
namespace (so the test talks to every host as a client would) and one
namespace per host, joined to the bridge by a veth pair. Names and the
subnet are random, so parallel runs never meet; ``close()`` removes them.

A partition disables the host's port on the bridge (``bridge link set
state 0``): the switch drops every frame to and from it, while both hosts'
links stay up and neither side gets an error, as when a switch or a route
between two hosts fails. This needs no netem, iptables or nft, which minimal
kernels lack.

``python -m tests.netns sender GROUP`` is a long-lived sender for the
tests: it sends to GROUP through WS_EDGES in a loop and prints each outcome.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import sys
import time

from django_ws.testing import WebSocketServer


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("bridge") is None:
        return "network namespaces need iproute2 (ip, bridge)"
    probe = f"dwprobe{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.strip()}"
    _run("ip", "netns", "del", probe)
    return None


class Host:
    """One namespace on the bridge: ``ip`` is its address, ``exec`` the prefix that runs a command there."""

    def __init__(self, network: "Network", name: str, index: int):
        tag = network.tag
        self.name = name
        self.netns = f"dw{tag}-{name}"
        self.outer, self.inner = f"dw{tag}h{index}", f"dw{tag}n{index}"  # at most 15 characters
        self.ip = f"{network.prefix}.{index}"
        self.exec = ["ip", "netns", "exec", self.netns]
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner, "netns", self.netns)
        _run("ip", "link", "set", self.outer, "master", network.bridge, "up")
        _run(*self.exec, "ip", "link", "set", "lo", "up")
        _run(*self.exec, "ip", "addr", "add", f"{self.ip}/24", "dev", self.inner)
        _run(*self.exec, "ip", "link", "set", self.inner, "up")

    def cut(self) -> None:
        """Drop every frame to and from this host in the switch until heal()."""
        _run("bridge", "link", "set", "dev", self.outer, "state", "0")  # disabled

    def heal(self) -> None:
        _run("bridge", "link", "set", "dev", self.outer, "state", "3")  # forwarding

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)  # takes its veth pair along
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)  # in case the move failed


class Network:
    """A bridge and the hosts on it, with random names and a random 10.x.y.0/24."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        taken = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        while True:
            self.prefix = f"10.{random.randint(100, 254)}.{random.randint(0, 254)}"
            if f"{self.prefix}." not in taken:
                break
        self.bridge = f"dw{self.tag}br"
        self.hosts: list[Host] = []
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.prefix}.254/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def host(self, name: str) -> Host:
        host = Host(self, name, len(self.hosts) + 1)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.remove()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class HostedServer(WebSocketServer):
    """run_wsserver on a host, listening on the host's address."""

    def __init__(self, host: Host, **kwargs):
        self.host = host
        super().__init__(**kwargs)

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index(f"127.0.0.1:{self.port}")] = f"{self.host.ip}:{self.port}"
        return [*self.host.exec, *cmd]

    def url(self, route: str = "") -> str:
        return f"ws://{self.host.ip}:{self.port}{self.prefix}/{route}"


class HostedWorker(WebSocketServer):
    """run_wsworker on a host, serving ``edges`` (HostedServers); ready once it says it is serving.

    ``edges`` None: no --edge at all, so that with WS_BROKER it follows the edges announced there.
    """

    ready_text = "serving"

    def __init__(self, host: Host, edges: list[WebSocketServer] | None, **kwargs):
        self.host, self.edges = host, edges
        super().__init__(**kwargs)

    def command(self) -> list[str]:
        return [*self.host.exec, sys.executable, "-m", "django", "run_wsworker", f"--{self.mode}",
                *(f"--edge={edge.push_socket},{edge.sub_socket}" for edge in self.edges or ())]


class HostedSender(WebSocketServer):
    """``python -m tests.netns sender GROUP`` on a host: prints "sent N" or "failed: why" for each send."""

    ready_text = "sender ready"

    def __init__(self, host: Host, group: str, **kwargs):
        self.host, self.group = host, group
        super().__init__(**kwargs)

    def command(self) -> list[str]:
        return [*self.host.exec, sys.executable, "-m", "tests.netns", "sender", self.group]


def _sender(group: str) -> None:
    import signal

    import django

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    django.setup()
    from django_ws import SendError, send_to_group

    print("sender ready", flush=True)
    while True:
        try:
            print(f"sent to {send_to_group(group, 'probe', timeout=1.0).delivered}", flush=True)
        except SendError as exc:
            print(f"failed: {exc}", flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sender"] and len(sys.argv) == 3:
        _sender(sys.argv[2])
    else:
        sys.exit("usage: python -m tests.netns sender GROUP")
