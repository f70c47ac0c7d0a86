#!/usr/bin/env python3
"""A minimal ops charm on the client side of the `redis` interface.

It exists to prove that the local model (`juju-local`) runs a Python ops charm the way Juju
does, and that what redis-k8s publishes is what a Python client reads:

- on `redis-relation-joined`/`-changed` it reads the remote app's `leader-host` and the remote
  units' `hostname`/`port`, opens a plain TCP connection to `leader-host:port` and sends
  `PING`; redis-k8s requires a password, so a real Redis answers `-NOAUTH ...`;
- it writes what it saw into its own unit databag (`seen-leader-host`, `seen-port`,
  `seen-ping`, `seen-units`, `seen-primary-unit`: the unit whose `hostname` is the address
  `leader-host` resolves to) so the other side and `juju-local show-unit` can read it;
- collect-status turns that into the unit status (`redis at <host>:<port> (PING: NOAUTH)`)
  and, on the leader, an app status.
"""

import logging
import socket

import ops

logger = logging.getLogger(__name__)

RELATION = "redis"
# RESP for `PING` (an array of one bulk string).
PING = b"*1\r\n$4\r\nPING\r\n"


def ping(host: str, port: int, timeout: float = 2.0) -> str:
    """The first line of Redis's reply to PING, or `error: ...` when there is none."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(PING)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(1024)
                if not chunk:
                    break
                reply += chunk
    except OSError as e:
        return f"error: {e}"
    return reply.decode(errors="replace").strip() or "error: empty reply"


class ClientCharm(ops.CharmBase):
    """Client of redis-k8s over the `redis` interface."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on[RELATION].relation_joined, self._on_redis_changed)
        framework.observe(self.on[RELATION].relation_changed, self._on_redis_changed)
        framework.observe(self.on[RELATION].relation_departed, self._on_redis_changed)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)

    def _on_redis_changed(self, event: ops.RelationEvent):
        relation = event.relation
        app = event.app or relation.app
        leader_host = relation.data[app].get("leader-host", "") if app else ""
        units = {
            unit.name: (relation.data[unit].get("hostname", ""), relation.data[unit].get("port", ""))
            for unit in relation.units
        }
        # redis-k8s names the primary by FQDN in `leader-host` and gives each unit's IP as
        # `hostname`: resolve the one to find the other (the unit whose port to use).
        try:
            leader_ip = socket.gethostbyname(leader_host) if leader_host else ""
        except OSError:
            leader_ip = ""
        primary = [name for name, (h, p) in units.items() if h and h in (leader_host, leader_ip)]
        ports = [units[n][1] for n in primary] or [p for _, p in units.values() if p]
        port = ports[0] if ports else ""
        logger.info(
            "redis relation %s (%s): leader-host=%r, units=%r",
            relation.id,
            event.handle.kind,
            leader_host,
            sorted(units),
        )
        seen = {
            "seen-leader-host": leader_host,
            "seen-port": port,
            "seen-units": ",".join(sorted(units)),
            "seen-primary-unit": ",".join(primary),
        }
        if leader_host and port.isdigit():
            seen["seen-ping"] = ping(leader_host, int(port))
            logger.info("PING %s:%s -> %s", leader_host, port, seen["seen-ping"])
        # Only write what changed, so an unchanged view does not wake the other side.
        mine = relation.data[self.unit]
        for key, value in seen.items():
            if mine.get(key, "") != value:
                mine[key] = value

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent):
        relation = self.model.get_relation(RELATION)
        if relation is None:
            event.add_status(ops.BlockedStatus("needs a redis relation"))
            return
        mine = relation.data[self.unit]
        host, port = mine.get("seen-leader-host", ""), mine.get("seen-port", "")
        if not host or not port:
            event.add_status(ops.WaitingStatus("waiting for redis relation data"))
            return
        answer = mine.get("seen-ping", "")
        said = "NOAUTH" if answer.startswith("-NOAUTH") else answer or "not tried"
        event.add_status(ops.ActiveStatus(f"redis at {host}:{port} (PING: {said})"))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent):
        relation = self.model.get_relation(RELATION)
        n = len(relation.units) if relation else 0
        event.add_status(ops.ActiveStatus(f"related to {n} redis units"))


if __name__ == "__main__":  # pragma: nocover
    ops.main(ClientCharm)
