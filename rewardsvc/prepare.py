"""`python -m rewardsvc.prepare`: one-time, cached preparation that `make install` runs.

Each step is idempotent and cheap when its cache exists. The service's own step converts the bundled
GGUF models; other packages add steps through the `rewardsvc.prepare` entry-point group (the trainers
add the default reward model and PRM), so this module imports none of them.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

# "module:function" steps, run first, in order; each skips itself when its cache is present.
STEPS: list[str] = [
    # Bundled GGUF models (SmolLM2) converted to safetensors once, so causal-LM scorers load in seconds.
    "rewardsvc.backends.gguf:prepare_bundled",
]


def steps() -> list[str]:
    """The service's steps, then the plug-ins' (e.g. cache:default-rm, cache:default-prm), by name."""
    plugins = sorted(entry_points(group="rewardsvc.prepare"), key=lambda ep: ep.name)
    return STEPS + [ep.value for ep in plugins]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for step in steps():
        module_name, _, fn = step.partition(":")
        logging.info("prepare: %s", step)
        getattr(importlib.import_module(module_name), fn)()


if __name__ == "__main__":
    main()
