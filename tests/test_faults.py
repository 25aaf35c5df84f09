"""Fault injection: SIGTERM, SIGINT and kill -9 at random points of data writing, pretraining and
training, each followed by a rerun or ``--resume`` that must give the uninterrupted result bit for
bit; two writers at once; a full disk.

Every run is a CLI's ``main`` under :func:`emseg.cli.run` (its signal handling and exit status) in a
child forked from this process, one thread each, so it starts at once and computes exactly what
the uninterrupted reference child computes. The points are drawn from ``EMSEG_FAULT_SEED``
(default 0): each failure message names the seed and the point.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from emseg.checkpoint import load_checkpoint, save_checkpoint
from emseg.data import make_synthetic_voc

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


SEED = int(os.environ.get("EMSEG_FAULT_SEED", "0"))
PROGS = {
    "emseg.train": "python -m emseg.train",
    "emseg.pretrain": "python -m emseg.pretrain",
    "emseg.data.__main__": "python -m emseg.data",
}
TIMEOUT_S = 120


class Pause:
    """Where a child stops to be signalled: inside the ``n``-th call of ``module.name`` (1-based),
    until the test has sent its signal. The signal then lands at that point whatever the speed of
    the machine (a timer would land anywhere, or after the end)."""

    def __init__(self, module: str, name: str, n: int, folder: Path) -> None:
        self.module, self.name, self.n = module, name, n
        self.ready, self.go = folder / "paused", folder / "go"

    def install(self) -> None:
        mod = importlib.import_module(self.module)
        real, calls = getattr(mod, self.name), []

        def paused(*args, **kwargs):
            calls.append(1)
            if len(calls) == self.n:
                self.ready.touch()
                while not self.go.exists():  # a stop signal raises here, or (training) is noted and waits
                    time.sleep(0.002)
            return real(*args, **kwargs)

        setattr(mod, self.name, paused)

    def reached(self, child: "Child") -> None:
        assert child.poll_until(self.ready.exists, f"call {self.n} of {self.name}"), child.output()[-2000:]

    def signal(self, child: "Child", sig: int) -> None:
        """Wait for the child to reach the point, send ``sig``, let it go on."""
        self.reached(child)
        os.kill(child.pid, sig)
        self.go.touch()


_children: list["Child"] = []


@pytest.fixture(autouse=True)
def no_child_left():
    """A failed test leaves no child behind (one paused at its point would wait for ever)."""
    yield
    while _children:
        child = _children.pop()
        if child.status is None:
            try:
                os.kill(child.pid, signal.SIGKILL)
                os.waitpid(child.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


class Child:
    """A CLI run in a forked child; its output goes to ``log``."""

    def __init__(
        self, module: str, argv: list, log: Path, fsize_limit: int | None = None, pause: Pause | None = None
    ) -> None:
        self.log = log
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            self._run(module, [str(a) for a in argv], fsize_limit, pause)
        _children.append(self)

    def _run(self, module: str, argv: list[str], fsize_limit: int | None, pause: Pause | None) -> None:
        status = 99
        try:
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
            for name in ("", "emseg"):  # the test process's handlers (pytest's capture) are not this run's
                logger = logging.getLogger(name)
                for h in list(logger.handlers):
                    logger.removeHandler(h)
            logging.getLogger("emseg").propagate = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            torch.set_num_threads(1)
            if fsize_limit is not None:  # a full disk: writes past the limit fail with EFBIG
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
            if pause is not None:
                pause.install()
            import emseg.train

            # curves.png is drawn by matplotlib (a second a run) and enters no comparison here
            emseg.train.plot_curves = lambda metrics_csv, out: False
            from emseg.cli import run

            main = importlib.import_module(module).main
            run(lambda: main(argv), PROGS[module])
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # a bug in the test itself
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(status)

    status: int | None = None

    def wait(self) -> int:
        """The exit status (negative: killed by that signal)."""
        if self.status is None:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                pid, raw = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.status = os.waitstatus_to_exitcode(raw)
                    break
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    pytest.fail(f"{self.log}: still running after {TIMEOUT_S} s")
                time.sleep(0.005)
        return self.status

    def poll_until(self, ready, what: str) -> bool:
        """Wait until ``ready()``; False when the child ended first."""
        deadline = time.monotonic() + TIMEOUT_S
        while not ready():
            pid, raw = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(raw)
                return False
            if time.monotonic() > deadline:
                pytest.fail(f"{self.log}: {what} never happened")
            time.sleep(0.002)
        return True

    def output(self) -> str:
        return self.log.read_text()


def finished(child: Child) -> str:
    status = child.wait()
    assert status == 0, f"exit {status}:\n{child.output()[-3000:]}"
    return child.output()


def stopped(child: Child, sig: int, point: str) -> str:
    """The child was signalled; it must have exited as that signal says."""
    status = child.wait()
    want = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    assert status == want, f"seed {SEED}, {point}: exit {status}, not {want}:\n{child.output()[-3000:]}"
    return child.output()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name)


SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]
SIG_IDS = [s.name for s in SIGNALS]


# ---- data writing ------------------------------------------------------------------------------

DATA = ["--train", 96, "--val", 8, "--test", 0, "--pretrain", 0, "--size", 32, "--seed", 4]


@pytest.fixture(scope="module")
def data_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataref") / "syn"
    make_synthetic_voc(root, 96, 8, 32, seed=4, progress=False)
    return tree(root)


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_data_writing_interrupted_then_rerun(tmp_path, data_reference, sig):
    at = random.Random(f"{SEED}-data-{sig}").randrange(1, 104)
    root = tmp_path / "syn"
    pause = Pause("emseg.data.synthetic", "render_synthetic_image", at, tmp_path)
    child = Child("emseg.data.__main__", ["synthetic", root, *DATA], tmp_path / "child.log", pause=pause)
    pause.signal(child, sig)
    out = stopped(child, sig, f"data image {at}")
    assert not root.exists()  # no half set where the set belongs
    if sig != signal.SIGKILL:
        assert f"stopped by {sig.name}" in out or "interrupted" in out
        assert temporaries(tmp_path) == []
    make_synthetic_voc(root, 96, 8, 32, seed=4, progress=False)  # the rerun (what the demo's data step does)
    assert tree(root) == data_reference and temporaries(tmp_path) == []


def test_two_data_writers_at_once(tmp_path, data_reference):
    root = tmp_path / "syn"
    children = [Child("emseg.data.__main__", ["synthetic", root, *DATA], tmp_path / f"c{k}.log") for k in range(2)]
    for c in children:
        assert "synthetic set ready" in finished(c)
    assert tree(root) == data_reference and temporaries(tmp_path) == []


# ---- pretraining -------------------------------------------------------------------------------

PRETRAIN_ITERATIONS = 20


def pretrain_args(base: Path, cache: Path) -> list:
    return [
        "--no-progress",
        "--synthetic-dir",
        base / "syn",
        "--synthetic-train",
        16,
        "--synthetic-val",
        4,
        "--synthetic-test",
        0,
        "--synthetic-size",
        32,
        "--synthetic-pretrain",
        16,
        "--pretrain-iterations",
        PRETRAIN_ITERATIONS,
        "--crop-size",
        32,
        "--width",
        4,
        "--workers",
        0,
        "--pretrain-cache",
        cache,
    ]


def cache_entry(cache: Path) -> dict:
    entries = list(cache.glob("pretrain-*.pth"))
    assert len(entries) == 1, entries
    entry = load_checkpoint(entries[0])
    return {"model": entry["model"], "loss": entry["loss"], "config": entry["config"]}


def assert_same_entry(a: dict, b: dict) -> None:
    assert a["config"] == b["config"] and a["loss"] == b["loss"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


@pytest.fixture(scope="module")
def pretrain_reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("preref")
    make_synthetic_voc(base / "syn", 16, 4, 32, seed=0, progress=False, num_pretrain=16)
    out = finished(Child("emseg.pretrain", pretrain_args(base, base / "cache"), base / "ref.log"))
    assert "pretraining took" in out
    return base, cache_entry(base / "cache")


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_pretraining_interrupted_then_rerun(tmp_path, pretrain_reference, sig):
    base, reference = pretrain_reference
    at = random.Random(f"{SEED}-pretrain-{sig}").randrange(1, PRETRAIN_ITERATIONS + 1)
    cache = tmp_path / "cache"
    pause = Pause("emseg.pretrain", "_batch", at, tmp_path)
    child = Child("emseg.pretrain", pretrain_args(base, cache), tmp_path / "child.log", pause=pause)
    pause.signal(child, sig)
    out = stopped(child, sig, f"pretraining iteration {at}")
    assert not list(cache.glob("pretrain-*.pth"))  # nothing cached, nothing half-written
    if sig != signal.SIGKILL:
        assert out.strip().splitlines()[-1] in (
            f"python -m emseg.pretrain: stopped by {sig.name}",
            "python -m emseg.pretrain: interrupted",
        )
        assert temporaries(cache) == []
    rerun = finished(Child("emseg.pretrain", pretrain_args(base, cache), tmp_path / "rerun.log"))
    assert "pretraining took" in rerun
    assert_same_entry(cache_entry(cache), reference)
    assert temporaries(cache) == []


def test_two_pretrainings_of_one_entry_at_once(tmp_path, pretrain_reference):
    base, reference = pretrain_reference
    cache = tmp_path / "cache"
    children = [Child("emseg.pretrain", pretrain_args(base, cache), tmp_path / f"c{k}.log") for k in range(2)]
    outs = [finished(c) for c in children]
    assert sorted("pretraining took" in o for o in outs) == [False, True]  # one made it, the other waited for it
    assert sum("cached (it took" in o for o in outs) == 1
    assert_same_entry(cache_entry(cache), reference)


# ---- training ----------------------------------------------------------------------------------

ITERATIONS = 12


def train_args(base: Path, out: Path, *extra) -> list:
    return [
        "--no-progress",
        "--synthetic-dir",
        base / "syn",
        "--synthetic-train",
        16,
        "--synthetic-val",
        4,
        "--synthetic-test",
        0,
        "--synthetic-size",
        32,
        "--synthetic-pretrain",
        0,
        "--crop-size",
        32,
        "--batch-size",
        4,
        "--width",
        4,
        "--workers",
        0,
        "--iterations",
        ITERATIONS,
        "--log-interval",
        1,
        "--checkpoint-interval",
        5,
        "--num-pictures",
        0,
        "--init",
        "scratch",
        "--mode",
        "bbox-rect",
        "--label-cache",
        base / "labels",
        "--output-dir",
        out,
        *extra,
    ]


def final_state(out: Path) -> dict:
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["iteration"] == ITERATIONS
    rows = [r.split(",")[:3] for r in (out / "metrics.csv").read_text().splitlines()]  # iteration, loss, lr
    return {"model": ckpt["model"], "optimizer": ckpt["optimizer"]["state"], "sampler": ckpt["sampler"], "rows": rows}


def assert_same_run(a: dict, b: dict, point: str) -> None:
    assert a["rows"] == b["rows"] and a["sampler"] == b["sampler"], point
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{point}: {k}"
    for k in a["optimizer"]:
        assert torch.equal(a["optimizer"][k]["momentum_buffer"], b["optimizer"][k]["momentum_buffer"]), point


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("trainref")
    make_synthetic_voc(base / "syn", 16, 4, 32, seed=0, progress=False)
    finished(Child("emseg.train", train_args(base, base / "ref"), base / "ref.log"))
    return base, final_state(base / "ref")


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_training_interrupted_then_resumed(tmp_path, train_reference, sig):
    base, reference = train_reference
    at = random.Random(f"{SEED}-train-{sig}").randrange(1, ITERATIONS)
    out = tmp_path / "run"
    pause = Pause("emseg.train", "train_step", at, tmp_path)
    child = Child("emseg.train", train_args(base, out), tmp_path / "child.log", pause=pause)
    pause.signal(child, sig)
    text = stopped(child, sig, f"training iteration {at}")
    point = f"seed {SEED}, {sig.name} after iteration {at}"
    ckpt = out / "checkpoint.pth"
    if sig == signal.SIGKILL:
        resumable = ckpt.exists()  # the last periodic checkpoint, if there was one
    else:  # the iteration it was in is finished and checkpointed, and it says how to go on
        assert load_checkpoint(ckpt)["iteration"] == at, point  # the iteration it was in, finished
        line = f"stopped by {sig.name} at iteration {at} of {ITERATIONS}; checkpoint: {ckpt}; continue with: "
        assert line in text and f"--resume {ckpt}" in text, text[-2000:]
        assert text.strip().splitlines()[-1].startswith(f"python -m emseg.train: stopped by {sig.name} at iteration")
        resumable = True
    assert temporaries(out) == [] or sig == signal.SIGKILL
    again = train_args(base, out, *(["--resume", ckpt] if resumable else []))
    finished(Child("emseg.train", again, tmp_path / "again.log"))
    assert_same_run(final_state(out), reference, point)
    assert temporaries(out) == []


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, train_reference):
    base, reference = train_reference
    out = tmp_path / "run"
    pause = Pause("emseg.train", "train_step", 3, tmp_path)
    first = Child("emseg.train", train_args(base, out), tmp_path / "first.log", pause=pause)
    pause.reached(first)
    second = Child("emseg.train", train_args(base, out), tmp_path / "second.log")
    assert second.wait() == 1, second.output()
    assert f"--output-dir {out}: another run (pid {first.pid}) is writing there" in second.output()
    pause.go.touch()
    finished(first)
    assert_same_run(final_state(out), reference, "the first run, beside a refused second")


def test_two_writers_of_one_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth"
    script = tmp_path / "writer.log"

    def writer(k: int) -> int:
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                for i in range(40):
                    save_checkpoint({"writer": k, "i": i, "w": torch.full((2000,), float(i))}, path)
            except BaseException as err:  # noqa: BLE001 (reported through the status)
                script.write_text(repr(err))
                status = 1
            os._exit(status)
        return pid

    pids = [writer(k) for k in range(2)]
    assert [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids] == [0, 0], script.read_text()
    last = load_checkpoint(path)
    assert last["i"] == 39 and torch.equal(last["w"], torch.full((2000,), 39.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


# ---- a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_then_a_rerun(tmp_path, train_reference):
    base, reference = train_reference
    out = tmp_path / "run"
    # room for the logs, not for a checkpoint (about 30 KB)
    child = Child("emseg.train", train_args(base, out), tmp_path / "child.log", fsize_limit=12_000)
    assert child.wait() == 1, child.output()[-2000:]
    last = child.output().strip().splitlines()[-1]
    assert last.startswith(f"python -m emseg.train: error: cannot write {out / 'checkpoint.pth'}: File too large")
    assert "size limit is reached" in last and "Traceback" not in child.output()
    assert not (out / "checkpoint.pth").exists() and temporaries(out) == []
    finished(Child("emseg.train", train_args(base, out), tmp_path / "again.log"))  # space freed: the same command
    assert_same_run(final_state(out), reference, "after a full disk")
