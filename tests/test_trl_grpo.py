"""A real TRL GRPOTrainer (trl 1.16.0) trains a policy for 2 optimizer steps with rewardsvc reward
functions (the README's TRL snippet: `math` sync, `rm` async, and the other way round), on a standard
and a conversational dataset; the rewards TRL logs are the server's scores for the same completions.
Then the server is stopped under a running step: restarted inside the connect wait, the step finishes;
left down, the reward call fails with UNAVAILABLE naming the address.

Nothing here depends on how good the policy's completions are (the served `rm` is the real trained
cache:default-rm, and its scores are checked to vary), so the policy is SmolLM2-135M-Instruct cut to
its first 2 layers (tests/causal_support.py: real weights, the same tokenizer and chat template).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import threading

import grpc
import pytest
from causal_support import smollm_layers
from readme_snippets import trainer_snippet
from support import ServerProcess

from rewardsvc.client import RewardClient, RewardServiceCallError
from rewardsvc.integrations.trl import reward_func

pytestmark = pytest.mark.slow  # loads SmolLM2 and trains

CONFIG = {"scorers": {
    "math": {"type": "math", "workers": 1, "timeout_s": 5.0},
    "rm": {"type": "classifier", "model": "cache:default-rm", "max_length": 128},
}}
QUESTIONS = [("What is 2 + 3? Put the answer in \\boxed{}.", "5"), ("What is 4 * 2? Answer with a number.", "8"),
             ("What is 9 - 7?", "2"), ("What is 10 / 5?", "2")]


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    with ServerProcess(CONFIG, preimported=True) as srv:
        yield srv


def model_path() -> str:
    """The policy: generation and GRPO steps only, so SmolLM2's first 2 layers."""
    return smollm_layers(2)


def grpo_args(tmp_path, steps: int = 2):
    from trl import GRPOConfig

    # CPU and cheap: 1 prompt x 2 generations of at most 8 tokens per step. (TRL 1.16 turns gradient
    # checkpointing on by default; transformers 5 names it activation_checkpointing and warns on the old name.)
    return GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, activation_checkpointing=False,
                      per_device_train_batch_size=2, num_generations=2, max_completion_length=8, max_steps=steps,
                      logging_steps=1, report_to="none", save_strategy="no", learning_rate=1e-5, seed=0,
                      dataloader_num_workers=0)


class Capture:
    """A reward function that keeps what TRL passes and rewards nothing (None: left out)."""

    __name__ = "capture"

    def __init__(self) -> None:
        self.calls: list[tuple[list, list, list]] = []

    def __call__(self, prompts, completions, answer, **kwargs):
        self.calls.append((list(prompts), list(completions), list(answer)))
        return [None] * len(prompts)


def readme_reward_funcs(address: str) -> list:
    """The README's TRL snippet up to the trainer, pointed at this server."""
    code = trainer_snippet("TRL", "python").split("trainer = ")[0].replace("127.0.0.1:50051", address)
    scope: dict = {}
    exec(code, scope)
    return scope["reward_funcs"]


def train_and_compare(server: ServerProcess, tmp_path, dataset, reward_funcs: list) -> None:
    from trl import GRPOTrainer

    capture = Capture()
    trainer = GRPOTrainer(model=model_path(), reward_funcs=[*reward_funcs, capture], args=grpo_args(tmp_path),
                          train_dataset=dataset)
    trainer.train()
    assert trainer.state.global_step == 2 and len(capture.calls) == 2
    with RewardClient(server.address) as client:
        for name, scorer in (("rewardsvc_math", "math"), ("rewardsvc_rm", "rm")):
            served = []
            for prompts, completions, answers in capture.calls:
                f = reward_func(scorer, client)
                served.append(f(prompts=prompts, completions=completions, answer=answers))
            # TRL's completions table keeps the last generation batch, one reward per completion.
            assert list(trainer._logs["rewards"][name]) == pytest.approx(served[-1], rel=1e-6), name
            means = [h[f"rewards/{name}/mean"] for h in trainer.state.log_history if f"rewards/{name}/mean" in h]
            assert means == pytest.approx([sum(s) / len(s) for s in served], rel=1e-6), name
            if scorer == "rm":  # real model outputs, not a constant: the comparisons above can fail
                assert len({r for step in served for r in step}) > 1
    # The cut-down policy seldom writes a checkable answer, so its math rewards are mostly 0.0: the
    # very math function TRL called tells a right answer (1.0) from a wrong one (0.0) in the format
    # TRL passed (text or chat messages), so a math function that scored nothing would fail here.
    [math_func] = [f for f in reward_funcs if f.__name__ == "rewardsvc_math"]
    prompts, completions, answers = capture.calls[-1]

    def completion(text: str) -> object:
        return [{"role": "assistant", "content": text}] if isinstance(completions[0], list) else text

    probe = [completion(f"So the answer is \\boxed{{{answers[0]}}}."), completion("So the answer is \\boxed{-1}.")]
    rewards = math_func(prompts=[prompts[0]] * 2, completions=probe, answer=[answers[0]] * 2)
    if inspect.iscoroutine(rewards):
        rewards = asyncio.run(rewards)
    assert rewards == [1.0, 0.0]


def test_grpo_standard_dataset_math_sync_rm_async(server, tmp_path) -> None:
    from datasets import Dataset

    funcs = readme_reward_funcs(server.address)
    assert [f.__name__ for f in funcs] == ["rewardsvc_math", "rewardsvc_rm"]
    dataset = Dataset.from_list([{"prompt": q, "answer": a} for q, a in QUESTIONS])
    train_and_compare(server, tmp_path, dataset, funcs)


def test_grpo_conversational_dataset_math_async_rm_sync(server, tmp_path) -> None:
    from datasets import Dataset

    from rewardsvc.integrations.trl import async_reward_func

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": q}], "answer": a} for q, a in QUESTIONS])
    train_and_compare(server, tmp_path, dataset,
                      [async_reward_func("math", server.address), reward_func("rm", server.address)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stopper:
    """First in reward_funcs (TRL calls sync functions in order): stops the server under the step.
    Step 1: SIGTERM, and a restart on the same port a moment later. Step 2: SIGTERM, no restart,
    and the client's connect wait shortened so the test does not wait out the long one."""

    __name__ = "stopper"

    def __init__(self, first: ServerProcess, port: int, client: RewardClient) -> None:
        self.servers = [first]
        self.port = port
        self.client = client
        self.step = 0

    def restart(self) -> None:
        srv = ServerProcess({"scorers": {"math": CONFIG["scorers"]["math"]}})
        srv.config["server"]["port"] = self.port  # ServerProcess defaults to port 0; the address must stay
        self.servers.append(srv.start())

    def __call__(self, prompts, completions, **kwargs):
        self.step += 1
        current = self.servers[-1]
        assert current.proc is not None
        current.proc.send_signal(signal.SIGTERM)
        assert current.proc.wait(60) == 0
        if self.step == 1:
            threading.Timer(1.0, self.restart).start()
        else:
            self.client._aio.connect_timeout_s = 3.0
        return [None] * len(prompts)


def test_stopping_the_server_under_a_step(tmp_path) -> None:
    from datasets import Dataset
    from trl import GRPOTrainer

    port = free_port()
    first = ServerProcess({"scorers": {"math": CONFIG["scorers"]["math"]}})
    first.config["server"]["port"] = port
    first.start()
    address = f"127.0.0.1:{port}"
    client = RewardClient(address, connect_timeout_s=120.0)
    stopper = Stopper(first, port, client)
    try:
        dataset = Dataset.from_list([{"prompt": q, "answer": a} for q, a in QUESTIONS])
        trainer = GRPOTrainer(model=model_path(), reward_funcs=[stopper, reward_func("math", client)],
                              args=grpo_args(tmp_path), train_dataset=dataset)
        with pytest.raises(RewardServiceCallError) as err:
            trainer.train()
        # Step 1 was scored by the restarted server (the first was gone) and trained; step 2 found none.
        assert trainer.state.global_step == 1 and len(stopper.servers) == 2
        key = "rewards/rewardsvc_math/mean"
        means = [h[key] for h in trainer.state.log_history if key in h]
        assert len(means) == 1 and means[0] is not None
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert address in err.value.details and "connect_timeout_s=3s" in err.value.details
    finally:
        client.close()
        for srv in stopper.servers:
            srv.__exit__(None, None, None)
