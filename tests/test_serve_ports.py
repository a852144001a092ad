"""`rewardsvc serve` takes its side ports on the command line: --metrics-port (two servers on one host
collide on the default 9464) and --http-port (the opt-in HTTP/JSON port)."""

from __future__ import annotations

import json
import re
import urllib.request

from support import ServerProcess

CONFIG = {"scorers": {"math": {"type": "math", "workers": 1}}}


def test_metrics_off_and_http_on_from_the_command_line() -> None:
    with ServerProcess(CONFIG, args=["--metrics-port", "off", "--http-port", "0"]) as srv:
        ready = next(ln for ln in srv.output if "rewardsvc ready on" in ln)
        assert "metrics: http" not in ready
        base = re.search(r"http: (http://[^\s;)]+)", ready).group(1)
        req = urllib.request.Request(base + "/v1/score", method="POST", data=json.dumps(
            {"scorer": "math", "items": [{"response": "\\boxed{2}", "reference": "2"}]}).encode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["results"][0]["score"] == 1.0
