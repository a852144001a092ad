"""`python -m rewardsvc.prepare`: one-time, cached preparation that `make install` runs.

Each step is idempotent and cheap when its cache exists. Model-backed steps register here as they
land (GGUF -> safetensors conversion, the default reward model's short training run).
"""

from __future__ import annotations

import importlib
import logging

# "module:function" steps, run in order; each skips itself when its cache is present.
STEPS: list[str] = [
    # Bundled GGUF models (SmolLM2) converted to safetensors once, so causal-LM scorers load in seconds.
    "rewardsvc.backends.gguf:prepare_bundled",
    # The default reward model and PRM (cache:default-rm, cache:default-prm): short CPU training runs.
    "trainers.prepare:prepare_default_models",
]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for step in STEPS:
        module_name, _, fn = step.partition(":")
        logging.info("prepare: %s", step)
        getattr(importlib.import_module(module_name), fn)()


if __name__ == "__main__":
    main()
