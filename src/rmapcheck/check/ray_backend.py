"""Breadth-first search on a Ray cluster: one actor per partition of the visited set.

The same level-synchronous search as :mod:`~rmapcheck.check.parallel`, with
Ray actors for the worker processes: actor ``w`` holds a
:class:`~rmapcheck.check.parallel.Partition` (the fingerprints ``w`` owns,
its part of the frontier) and builds its own model from the design's name
or file, the bounds and the switches (a design file must be at the same
path on every node). Per level the driver asks every actor to expand its
states; each returns one object per actor, the successors that actor owns,
and the driver hands each actor the objects meant for it as references:
Ray moves them from node to node through its object store, the driver
never holds a state. The driver only counts, decides whether to go on and
rebuilds the traces, as the coordinator of the worker processes does.

Ray is an optional extra (``pip install 'rmapcheck[ray]'``), imported only
here and only when a cluster is asked for. Start a cluster with ``ray start
--head`` on one machine and ``ray start --address HEAD:6379`` on the others
(``docs/scaling.md``), then ``rmapcheck check --ray auto ...`` on a node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rmapcheck.check.checker import Checker, Result
from rmapcheck.check.model import Bounds, KernelModel
from rmapcheck.check.parallel import Coordinator, LevelReport, Partition

__all__ = ["RayUnavailable", "connect", "local_cluster", "require_ray", "run_ray_bfs"]

#: seconds the driver waits for the actors' reports before it looks at the
#: stop flag and the clock again
_POLL = 0.2
#: seconds the actors may take to start (their processes import the model)
_START = 120.0
#: seconds a cluster's address may take to accept a connection
_REACH = 5.0


class RayUnavailable(Exception):
    """Ray is not installed, or no cluster answers at the address given."""


def require_ray() -> Any:
    """The ``ray`` module.

    :raises RayUnavailable: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray, an optional extra: pip install 'rmapcheck[ray]'") from None
    return ray


def connect(address: str) -> Any:
    """The ``ray`` module, connected to the cluster at ``address`` (``auto``: the one started on this machine).

    A connection made before (by this function or by the caller) is kept.

    :raises RayUnavailable: Ray is not installed or no cluster answers.
    """
    ray = require_ray()
    if not ray.is_initialized():
        _reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RayUnavailable(f"--ray {address}: no Ray cluster there ({first})") from None
    return ray


def _reachable(address: str) -> None:
    # Ray waits long (minutes) on an address where nothing listens, and logs
    # as it waits: an address HOST:PORT (or ray://HOST:PORT) must accept a TCP
    # connection within _REACH seconds first. ``auto`` is Ray's to resolve.
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"--ray {address}: expected HOST:PORT (such as 10.0.0.1:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH).close()
    except OSError as e:
        raise RayUnavailable(f"--ray {address}: no Ray cluster there ({e.strerror or type(e).__name__})") from None


class _Actor:
    """A partition on a Ray node; methods run on a second thread while it expands (stop, progress)."""

    def __init__(self, design: str, bounds: Bounds, config: dict[str, Any], index: int, n: int, symmetry: bool,
                 first: bool) -> None:
        self.part = Partition(KernelModel(design, bounds, config), index, n, symmetry, first)
        self.halted = threading.Event()

    def start(self) -> LevelReport:
        return self.part.snapshot()

    def expand(self, level: int) -> tuple[bytes, ...]:
        msgs = self.part.expand(level, lambda path: self.halted.is_set())
        return tuple(msgs)

    def receive(self, *messages: bytes) -> LevelReport:
        return self.part.receive(list(messages))

    def progress(self) -> LevelReport:
        return self.part.snapshot()

    def halt(self) -> None:
        self.halted.set()


def _partitions(ray: Any, workers: int | None) -> tuple[int, float]:
    # One actor per CPU of the cluster unless told otherwise, and the CPUs
    # each asks for: one, or none if there are more actors than CPUs (they
    # are then spread over the nodes without a reservation).
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = workers if workers is not None else max(1, cpus)
    return n, 1.0 if n <= cpus else 0.0


def run_ray_bfs(c: Checker, address: str, workers: int | None = None) -> Result:
    """Breadth-first search of ``c.model`` on the Ray cluster at ``address``.

    :param workers: actors (partitions of the visited set); by default one
        per CPU of the cluster, spread over its nodes.
    :raises RayUnavailable: Ray is not installed or no cluster answers.
    """
    ray = connect(address)
    m = c.model
    n, cpus = _partitions(ray, workers)
    co = Coordinator(c, n)
    remote = ray.remote(num_cpus=cpus, max_concurrency=2)(_Actor)
    actors = [remote.options(scheduling_strategy="SPREAD").remote(m.design, m.bounds, m.config, i, n,
                                                                  c.use_symmetry, c.stop_on_first)
              for i in range(n)]
    latest: dict[int, LevelReport] = {}
    try:
        go = co.level_done(_gather(ray, co, actors, [a.start.remote() for a in actors], latest, _START))
        level = 0
        while go:
            if n == 1:
                out = [[a.expand.remote(level)] for a in actors]
            else:
                out = [a.expand.options(num_returns=n).remote(level) for a in actors]
            pending = [a.receive.remote(*[out[s][w] for s in range(n)]) for w, a in enumerate(actors)]
            go = co.level_done(_gather(ray, co, actors, pending, latest, None))
            level += 1
    finally:
        for a in actors:
            ray.kill(a)
    return co.result()


def _gather(ray: Any, co: Coordinator, actors: list[Any], pending: list[Any], latest: dict[int, LevelReport],
            limit: float | None) -> list[LevelReport]:
    # The reports of one level, asking for progress about once a second and
    # telling the actors to stop when the coordinator says so.
    deadline = None if limit is None else time.monotonic() + limit
    halted = False
    asked: list[Any] = []
    next_ask = time.monotonic() + 1.0
    while True:
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=_POLL)
        if len(ready) == len(pending):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"the Ray actors did not start within {limit:.0f} s")
        if co.halted() and not halted:
            halted = True
            for a in actors:
                a.halt.remote()
        if asked:
            done, asked = ray.wait(asked, num_returns=len(asked), timeout=0)
            for rep in ray.get(done):
                latest[rep.index] = rep
        if time.monotonic() >= next_ask and not asked:
            asked = [a.progress.remote() for a in actors]
            next_ask = time.monotonic() + 1.0
        co.progress(latest)
    reports: list[LevelReport] = ray.get(pending)
    for rep in reports:
        latest[rep.index] = rep
    return reports


#: set to 0, Ray gives every node of this machine the loopback address
_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, store: int = 80 * 1024 * 1024) -> Iterator[str]:
    """A Ray cluster of ``nodes`` nodes on this machine, on the loopback address, connected; yields its address.

    For the tests and ``rmapcheck bench``: ``ray.cluster_utils.Cluster``, a
    head node and ``nodes - 1`` more, each with ``cpus`` CPUs and an object
    store of ``store`` bytes. On leaving, the connection is closed and the
    cluster shut down (its processes ended).

    :raises RayUnavailable: Ray is not installed.
    """
    old = os.environ.get(_LOOPBACK)
    os.environ[_LOOPBACK] = "0"  # read by Ray as it starts, here and in the nodes' processes
    ray = require_ray()
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    was = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # if Ray was imported before
    args = {"num_cpus": cpus, "object_store_memory": store, "node_ip_address": "127.0.0.1"}
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
        for _ in range(nodes - 1):
            cluster.add_node(**args)
        cluster.wait_for_nodes(timeout=60)
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", logging_level=logging.WARNING,
                 log_to_driver=False)
        yield cluster.address
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = was
        if old is None:
            os.environ.pop(_LOOPBACK, None)
        else:
            os.environ[_LOOPBACK] = old
