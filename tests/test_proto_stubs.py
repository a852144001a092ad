"""The committed Python stubs are exactly what protoc generates from proto/ (fails when stale)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'proto'}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(REPO / "proto/rewardsvc/v1/reward.proto")],
        check=True,
    )
    for name in ("reward_pb2.py", "reward_pb2_grpc.py", "reward_pb2.pyi"):
        fresh = (tmp_path / "rewardsvc" / "v1" / name).read_text()
        committed = (REPO / "rewardsvc" / "v1" / name).read_text()
        assert fresh == committed, f"rewardsvc/v1/{name} is stale: run `make proto` and commit"
