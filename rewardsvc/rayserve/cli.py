"""`rewardsvc serve --ray`: deploy on a local or existing Ray cluster, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import threading
import time

from rewardsvc.config import Config
from rewardsvc.errors import ConfigError


def serve_on_ray(config: Config, address: str | None = None) -> int:
    """Deploy, print the ready line, and on SIGTERM/SIGINT delete the application (calls drain)."""
    try:
        import ray
        from ray import serve  # noqa: F401 - the [ray] extra brings Serve too; say so now if it is missing
    except ImportError:
        raise ConfigError("--ray needs Ray Serve: pip install 'rewardsvc[ray]'") from None
    from rewardsvc.rayserve.app import start
    from rewardsvc.rayserve.options import RayConfig

    t0 = time.perf_counter()
    rc: RayConfig = config.ray or RayConfig()
    # Only a Ray this process starts is shut down with it; a cluster it joined keeps running.
    starts_ray = not ray.is_initialized() and not (address or rc.address or os.environ.get("RAY_ADDRESS"))
    try:
        where = start(config, address)
    except BaseException:  # start-up failed, timed out or was interrupted: leave no half-deployed app behind
        _clean_up(rc.app_name, starts_ray)
        raise
    names = ", ".join(s.name for s in config.scorers) or "none"
    print(f"rewardsvc ready on {where} in {time.perf_counter() - t0:.1f}s (Ray Serve application "
          f"{rc.app_name!r}; config: {config.source}; scorers: {names})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("rewardsvc: deleting the Ray Serve application (in-flight calls drain)", flush=True)
    _clean_up(rc.app_name, starts_ray)
    print("rewardsvc: stopped", flush=True)
    return 0


def _clean_up(app_name: str, starts_ray: bool) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        serve.delete(app_name)
    except Exception as exc:  # Serve never came up: nothing to delete
        print(f"rewardsvc: could not delete the Ray Serve application: {exc}", flush=True)
    if starts_ray:
        serve.shutdown()
        ray.shutdown()
