#!/usr/bin/env python3
"""Baseline for the hook benchmarks: a small ops charm doing the Python redis-k8s charm's
sentinel-pebble-ready and update-status work.

sentinel-pebble-ready: can_connect, read the peer app databag, render sentinel.conf with
jinja2 (the Rust charm's own template), push it, add the layer, replan.
update-status: the leader asks its sentinel for the primary and refreshes `leader-host`;
every unit asks Redis for its replication role (redis-py) and sets the status.
"""

import logging
import socket

import jinja2
import ops
import redis

logger = logging.getLogger(__name__)

PEER = "redis-peers"
SENTINEL_CONF = "/etc/redis-server/sentinel.conf"
REDIS_PORT = 6379
SENTINEL_PORT = 26379


class RedisBaselineCharm(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        framework.observe(self.on.sentinel_pebble_ready, self._on_sentinel_pebble_ready)
        framework.observe(self.on.update_status, self._on_update_status)

    @property
    def _peer_data(self):
        relation = self.model.get_relation(PEER)
        return relation.data[self.app] if relation else {}

    def _fqdn(self):
        host = self.unit.name.replace("/", "-")
        domain = self.config.get("cluster-domain", "cluster.local")
        return f"{host}.{self.app.name}-endpoints.{self.model.name}.svc.{domain}"

    def _on_sentinel_pebble_ready(self, event):
        container = self.unit.get_container("sentinel")
        if not container.can_connect():
            self.unit.status = ops.WaitingStatus("Waiting for Pebble in sentinel container")
            event.defer()
            return
        data = self._peer_data
        if not data.get("sentinel-password") or not data.get("leader-host"):
            self.unit.status = ops.WaitingStatus("Databag has not been populated")
            event.defer()
            return
        fqdn = self._fqdn()
        try:
            bind = socket.gethostbyname(fqdn)
        except OSError:
            bind = "0.0.0.0"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.charm_dir / "templates")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        conf = env.get_template("sentinel.conf.j2").render(
            hostname=fqdn,
            bind=bind,
            master_name=self.app.name,
            sentinel_port=SENTINEL_PORT,
            redis_master=data["leader-host"],
            redis_port=REDIS_PORT,
            quorum=self.app.planned_units() // 2 + 1,
            down_after_ms=self.config["sentinel-down-after-milliseconds"],
            failover_timeout_ms=self.config["sentinel-failover-timeout"],
            master_password=data.get("redis-password"),
            sentinel_password=data["sentinel-password"],
            log_level=self.config["log-level"],
        )
        container.push(
            SENTINEL_CONF, conf, make_dirs=True, permissions=0o600, user="redis", group="redis"
        )
        layer = {
            "summary": "Sentinel layer",
            "description": "Sentinel layer",
            "services": {
                "sentinel": {
                    "override": "replace",
                    "summary": "Sentinel service",
                    "command": f"redis-server {SENTINEL_CONF} --sentinel",
                    "user": "redis",
                    "group": "redis",
                    "startup": "enabled",
                }
            },
        }
        container.add_layer("sentinel", layer, combine=True)
        container.replan()
        self.unit.status = ops.ActiveStatus()

    def _on_update_status(self, event):
        data = self._peer_data
        password = data.get("redis-password")
        if not password:
            self.unit.status = ops.WaitingStatus("Waiting for peer data to be updated")
            return
        address = socket.gethostbyname(self._fqdn())
        if self.unit.is_leader():
            try:
                sentinel = redis.Redis(
                    host=address, port=SENTINEL_PORT, password=data.get("sentinel-password"),
                    socket_timeout=1,
                )
                master = sentinel.sentinel_master(self.app.name)
                ip = master.get("ip")
                if ip and ip != data.get("leader-host"):
                    self.model.get_relation(PEER).data[self.app]["leader-host"] = ip
            except redis.RedisError as e:
                logger.debug("sentinel not answering: %s", e)
        try:
            client = redis.Redis(host=address, port=REDIS_PORT, password=password, socket_timeout=1)
            role = client.info("replication").get("role")
        except redis.RedisError as e:
            logger.warning("Redis not answering: %s", e)
            self.unit.status = ops.WaitingStatus("Waiting for Redis...")
            return
        self.unit.status = ops.ActiveStatus("primary" if role == "master" else "replica")


if __name__ == "__main__":
    ops.main(RedisBaselineCharm)
