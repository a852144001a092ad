"""The `code` scorer: run the response's program against the item's tests in an OS sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Hashable, Mapping, Sequence

from rewardsvc import caller
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.code_verdict import make_result
from rewardsvc.scorers.offload import off_loop
from rewardsvc.types import ErrorCode, Item, Result, Text
from rewardsvc.verifiers.code.cgroups import SlotCgroup, cgroups_available, remove_stale_cgroups
from rewardsvc.verifiers.code.extract import ItemTests, extract_program, parse_reference
from rewardsvc.verifiers.code.harness_install import install_harness, python_binds
from rewardsvc.verifiers.code.report import RunOutcome
from rewardsvc.verifiers.code.settings import RunLimits, SandboxSettings, log_unsafe
from rewardsvc.verifiers.code.slots import Slot
from rewardsvc.verifiers.code.uids import UidLease, lease_uids
from rewardsvc.verifiers.code.zygote_client import Zygote
from rewardsvc.verifiers.fairgate import FairGate

log = logging.getLogger(__name__)

BWRAP_MISSING = (
    "bubblewrap (bwrap) is not installed, and the code scorer never runs untrusted code without "
    "isolation: install it with `apt-get install bubblewrap` (`make install` does), or, for trusted "
    "code on a local machine only, set `unsafe_no_isolation: true` in this scorer's config"
)


@dataclasses.dataclass
class CodeConfig:
    workers: int = option(0, "sandboxes running at once; 0 = one per CPU core")
    queue_limit: int = option(4096, "items waiting for a sandbox beyond this get RESOURCE_EXHAUSTED")
    timeout_s: float = option(10.0, "default wall-clock limit per item (all of its tests)")
    max_timeout_s: float = option(60.0, "cap on an item's or a request's timeout_s")
    memory_mb: int = option(512, "default address-space limit of the program's process (MiB)")
    max_memory_mb: int = option(4096, "cap on an item's memory_mb")
    max_output_bytes: int = option(1 << 20, "stdout+stderr past this ends the run: verdict output_limit")
    tail_bytes: int = option(2048, "bytes of the end of stdout and of stderr kept in details")
    max_source_bytes: int = option(1 << 20, "a longer program gets INVALID_ITEM")
    max_tests_bytes: int = option(16 << 20, "reference tests longer than this get INVALID_ITEM")
    tmp_mb: int = option(64, "size of the fresh /tmp each run gets (MiB)")
    max_processes: int = option(32, "processes + threads the program may have (RLIMIT_NPROC, pids cgroup)")
    max_open_files: int = option(64, "open file descriptors per process (RLIMIT_NOFILE)")
    max_file_mb: int = option(16, "largest file the program may write (RLIMIT_FSIZE, MiB)")
    python: str = option("", "interpreter inside the sandbox; empty = the service's own when the sandbox "
                             "uid can read it, else /usr/bin/python3")
    sandbox_uid: int = option(0, "host uid of slot 0 (slot i runs as sandbox_uid + i; unused by anything "
                                 "else); 0 = lease a free block from 200000")
    cgroups: bool = option(True, "also cap each sandbox's total memory and process count with cgroup v1 "
                                 "when /sys/fs/cgroup is writable")
    unsafe_no_isolation: bool = option(False, "run programs WITHOUT the sandbox (trusted code only); "
                                              "logs a warning at every start")


@dataclasses.dataclass
class CodeOptions:
    all_or_nothing: bool = option(False, "score 1 when every test passes, else 0 (default: fraction passed)")
    timeout_s: float = option(0.0, "wall-clock limit per item for this request; 0 = config's (an item's "
                                   "own timeout_s wins); capped by max_timeout_s")


class PoolFullError(RuntimeError):
    """More items wait for a sandbox than queue_limit allows."""


class SandboxPool:
    """`workers` sandbox slots, one run at a time each; items beyond `queue_limit` waiting get
    PoolFullError at once. A slot whose sandbox died is restarted before its next run."""

    def __init__(self, settings: SandboxSettings, slots: list[Slot], queue_limit: int, tail_bytes: int,
                 max_processes: int, memory_bytes: int) -> None:
        self.settings = settings
        self.slots = slots
        self.queue_limit = queue_limit
        self.tail_bytes = tail_bytes
        self.max_processes = max_processes
        self.memory_bytes = memory_bytes
        self._gate = FairGate(len(slots))
        self._free: asyncio.Queue[Slot] = asyncio.Queue()
        self._zygotes: dict[int, Zygote] = {}

    async def start(self) -> None:
        await asyncio.gather(*(self._ensure(slot) for slot in self.slots))
        for slot in self.slots:
            self._free.put_nowait(slot)

    async def _ensure(self, slot: Slot) -> Zygote:
        zygote = self._zygotes.get(slot.index)
        if zygote is not None and zygote.alive:
            return zygote
        if zygote is not None:
            await zygote.close()
        if slot.cgroup is not None:
            slot.cgroup.prepare(self.memory_bytes, self.max_processes + 8)
        zygote = Zygote(self.settings, slot, self.tail_bytes)
        await zygote.start()
        self._zygotes[slot.index] = zygote
        return zygote

    @property
    def waiting(self) -> int:
        return self._gate.waiting

    async def run(self, payload: dict, limits: RunLimits, caller: Hashable = None) -> RunOutcome:
        """Run one item in the next free sandbox; waiting items get sandboxes round-robin across
        callers (`caller`: whose item it is), so one caller's queue can't hold back another's."""
        if self._gate.waiting >= self.queue_limit:
            raise PoolFullError(f"{self.waiting} items already wait for one of {len(self.slots)} sandboxes "
                                f"(queue_limit={self.queue_limit}); retry later")
        await self._gate.acquire(caller)
        slot = self._free.get_nowait()  # a gate slot always has a sandbox slot to go with it
        try:
            zygote = await self._ensure(slot)
            return await zygote.run(payload, limits)
        finally:
            self._free.put_nowait(slot)
            self._gate.release()

    async def close(self) -> None:
        zygotes, self._zygotes = list(self._zygotes.values()), {}
        await asyncio.gather(*(z.close() for z in zygotes), return_exceptions=True)
        for slot in self.slots:
            if slot.cgroup is not None:
                slot.cgroup.kill_leftovers()
                slot.cgroup.remove()


class CodeScorer(Scorer):
    kind = "code"
    description = ("Runs the response's Python program against the item's tests (HumanEval/MBPP check, "
                   "asserts, or stdin/stdout cases) in a bubblewrap + seccomp sandbox; score = fraction "
                   "of tests passed")
    Config = CodeConfig
    Options = CodeOptions
    item_format = (
        '`response`: a Python program (the last fenced code block, or the whole text). `reference` '
        '(required): the tests as a JSON object (or a JSON string of one), exactly one of `{"test": "def '
        'check(candidate): ...", "entry_point": "f"}` (HumanEval), `{"asserts": ["assert f(1) == 2", ...]}` '
        '(MBPP), `{"cases": [{"input": "...", "output": "..."}, ...]}` (stdin/stdout), or APPS `{"inputs": '
        '[...], "outputs": [...], "fn_name"?: "f"}`; optional `timeout_s`, `memory_mb`, and for test/asserts '
        "`prompt` (the problem's Python, whose helpers the tests use). `score` = fraction of tests passed."
    )

    def __init__(self, name: str, config: CodeConfig) -> None:
        super().__init__(name, config)
        if config.sandbox_uid < 0 or 0 < config.sandbox_uid < 1000:
            raise ValueError(f"code scorer {name!r}: sandbox_uid must be 0 (pick a free block) or an unused "
                             f"uid >= 1000 (not a system account, never root), got {config.sandbox_uid}")
        self.settings: SandboxSettings | None = None
        self.pool: SandboxPool | None = None
        self.uids: UidLease | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg = self.config
        workers = cfg.workers or os.cpu_count() or 1
        n_slots = workers
        if cfg.unsafe_no_isolation:
            log_unsafe(self.name)
            python = cfg.python or os.path.realpath(sys.executable)
            self.settings = SandboxSettings(python=python, harness_dir=install_harness(python), isolated=False)
            slots = [Slot(i, None) for i in range(n_slots)]
        else:
            self.settings = await asyncio.to_thread(self._isolated_settings)
            if self.settings.drop_uid:
                self.uids = lease_uids(n_slots, cfg.sandbox_uid)
            slots = [Slot(i, self.uids.first + i if self.uids else None) for i in range(n_slots)]
            if cfg.cgroups and os.geteuid() == 0 and cgroups_available():
                remove_stale_cgroups()
                tag = f"{os.getpid()}-{self.name}-{secrets.token_hex(4)}"  # unique per scorer instance
                for slot in slots:
                    slot.cgroup = SlotCgroup.create(f"{tag}-{slot.index}", slot.uid)
            elif cfg.cgroups:
                log.info("code scorer %r: cgroup v1 not writable here; per-process rlimits only", self.name)
        self.pool = SandboxPool(self.settings, slots, cfg.queue_limit, cfg.tail_bytes, cfg.max_processes,
                                (cfg.memory_mb + cfg.tmp_mb + 256) << 20)
        await self.pool.start()
        await self._probe()
        log.info("code scorer %r: %d sandbox slots, python %s%s", self.name, n_slots,
                 self.settings.python, "" if self.settings.isolated else " (NO ISOLATION)")

    def _isolated_settings(self) -> SandboxSettings:
        from rewardsvc.verifiers.code.seccomp import build_filter_bpf

        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError(BWRAP_MISSING)
        drop_uid = os.geteuid() == 0
        if not drop_uid:
            log.warning("code scorer %r: the service is not root, so sandboxes run as its uid and "
                        "RLIMIT_NPROC counts the service's own processes too", self.name)
        bpf, bpf_zygote = build_filter_bpf(), build_filter_bpf(for_zygote=True)
        candidates = [self.config.python] if self.config.python else _default_pythons()
        problems = []
        for python in candidates:
            try:
                binds = python_binds(python)
            except (OSError, RuntimeError) as exc:
                problems.append(f"{python}: {exc}")
                continue
            settings = SandboxSettings(python=python, harness_dir=install_harness(python), bwrap=bwrap,
                                       drop_uid=drop_uid, python_binds=binds, bpf=bpf, bpf_zygote=bpf_zygote)
            if not binds or _readable_by_others([*binds, python]):
                if problems:
                    log.info("code scorer %r: sandbox interpreter %s (%s)", self.name, python, "; ".join(problems))
                return settings
            problems.append(f"{python}: its directories {binds} are not readable by the sandbox's unprivileged uid")
            shutil.rmtree(settings.harness_dir, ignore_errors=True)
        raise RuntimeError("no Python interpreter the sandbox can run: " + "; ".join(problems)
                           + " (set `python:` in the code scorer's config to one under /usr, e.g. /usr/bin/python3)")

    async def _probe(self) -> None:
        """One trivial run through the real sandbox, so a broken setup fails at start, not per item."""
        assert self.pool is not None
        outcome = await self.pool.run(
            {"style": "asserts", "code": "def f():\n    return 41 + 1\n", "asserts": ["assert f() == 42"]},
            self._limits(None, 10.0, None))
        report = outcome.report or {}
        if [t.get("passed") for t in report.get("tests", [])] != [True]:
            raise RuntimeError(
                f"the code sandbox does not work on this machine: {outcome.problem or report.get('error', report)}; "
                f"exit status {outcome.exit_code}, stderr: {outcome.stderr_tail.decode('utf-8', 'replace')[-800:]}")

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.settings is not None:
            shutil.rmtree(self.settings.harness_dir, ignore_errors=True)
        if self.uids is not None:
            self.uids.release()
            self.uids = None

    # -- scoring --------------------------------------------------------------------------------
    def check_item(self, item: Item) -> str | None:
        try:
            tests = parse_reference(item.reference)
        except ValueError as exc:
            return str(exc)
        if tests.size > self.config.max_tests_bytes:
            return (f"the reference's tests are {tests.size} characters; "
                    f"the limit (max_tests_bytes) is {self.config.max_tests_bytes}")
        size = len(item.response_text.encode("utf-8", "surrogatepass"))
        if size > self.config.max_source_bytes:
            return (f"the response is {size} bytes; the code scorer's limit (max_source_bytes) is "
                    f"{self.config.max_source_bytes}")
        return None

    def dedupe_key(self, item: Item, options: CodeOptions) -> Hashable | None:
        # A run sees only the extracted program, the tests and (for `check` tests) the prompt.
        return (extract_program(item.response_text), item.reference, item.prompt_text)

    def cacheable(self, result: Result) -> bool:
        # A timed-out or killed run may pass on a quieter machine.
        return result.error is None and result.details.get("verdict") not in ("timeout", "sandbox_error")

    async def score(self, items: Sequence[Item], options: CodeOptions) -> list[Result]:
        return list(await asyncio.gather(*(self._one(item, options) for item in items)))

    def _limits(self, tests: ItemTests | None, request_timeout_s: float, memory_mb: int | None) -> RunLimits:
        cfg = self.config
        timeout = cfg.timeout_s
        if request_timeout_s > 0:
            timeout = request_timeout_s
        if tests is not None and tests.timeout_s:
            timeout = tests.timeout_s
        memory = memory_mb or cfg.memory_mb
        return RunLimits(timeout_s=min(timeout, cfg.max_timeout_s), memory_mb=min(memory, cfg.max_memory_mb),
                         max_output_bytes=cfg.max_output_bytes, tail_bytes=cfg.tail_bytes, tmp_mb=cfg.tmp_mb,
                         max_processes=cfg.max_processes, max_open_files=cfg.max_open_files,
                         max_file_bytes=cfg.max_file_mb << 20)

    async def _one(self, item: Item, options: CodeOptions) -> Result:
        assert self.pool is not None and self.settings is not None
        try:
            tests, payload = await off_loop(_payload, item)  # parsing and extraction read the whole text
        except ValueError as exc:
            return Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
        limits = self._limits(tests, options.timeout_s, tests.memory_mb)
        try:
            outcome = await self.pool.run(payload, limits, caller.current())
        except PoolFullError as exc:
            return Result.failed(item.id, ErrorCode.RESOURCE_EXHAUSTED, str(exc))
        except (OSError, RuntimeError) as exc:  # a slot's sandbox could not be (re)started
            log.error("code scorer %r: %s", self.name, exc)
            return Result.failed(item.id, ErrorCode.INTERNAL, f"the sandbox could not run this item: {exc}",
                                 verdict="sandbox_error")
        note = (f"timeout_s={limits.timeout_s:g}, memory_mb={limits.memory_mb}, "
                f"max_output_bytes={limits.max_output_bytes}")
        return make_result(item.id, outcome, options.all_or_nothing, note)


def _payload(item: Item) -> tuple[ItemTests, dict]:
    """The item's tests and what the sandbox runs for it."""
    tests = parse_reference(item.reference)
    return tests, {**tests.payload(), "code": tests.program(extract_program(item.response_text)),
                   "prompt": problem_text(item.prompt) if tests.style == "check" else ""}


def problem_text(prompt: Text) -> str:
    """The problem statement as text: a chat prompt's turns but the assistant's, which a model wrote
    and which must not be able to supply the statement's helpers."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m.content for m in prompt if m.role != "assistant")


def _default_pythons() -> list[str]:
    """The service's own interpreter first (same version as the service), then the system one."""
    out = [os.path.realpath(sys.executable)]
    for system in ("/usr/bin/python3",):
        if os.path.exists(system) and os.path.realpath(system) not in out:
            out.append(system)
    return out


def _readable_by_others(paths: list[str]) -> bool:
    """Whether an unprivileged uid can reach every path (o+x on each directory on the way)."""
    for path in paths:
        current = "/"
        for part in os.path.realpath(path).strip("/").split("/"):
            current = os.path.join(current, part)
            try:
                mode = os.stat(current).st_mode
            except OSError:
                return False
            if not mode & 0o001 and not (os.path.isfile(current) and mode & 0o004):
                return False
    return True
