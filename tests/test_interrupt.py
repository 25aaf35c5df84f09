"""Ctrl-C stops the long native loops: a child process runs an op that would take far longer than
the bound, gets SIGINT once it is inside the op, and must end with KeyboardInterrupt within the
bound (a hang guard, not a speed claim)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import CUDA_SKIP_REASON

import emseg

# Seconds from SIGINT to the child's exit before the test calls it a hang.
pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


BOUND_S = 5.0
# Seconds the child spends inside the op before the signal (well past the op's start).
INSIDE_S = 1.0

SETUP = {
    "dense_crf": """
        unary = torch.rand(1, 3, 24, 24)
        image = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8)
        run = lambda: ops.dense_crf(unary.to(DEVICE), image.to(DEVICE), iterations=10**9)
    """,
    # Each image takes about 0.1 s on a thread, the batch about 20 s on two: stopping needs a check
    # between images.
    "em_adapt": """
        torch.manual_seed(0)
        scores = torch.randn(400, 21, 65, 65)
        present = torch.rand(400, 21) < 0.3
        run = lambda: ops.em_adapt(scores, present)
    """,
}

CHILD = """
import signal, sys, time, torch
# Python leaves Ctrl-C ignored when it starts with SIGINT ignored, as it is under a CI runner that
# starts jobs in the background (a non-interactive shell's "&"): Ctrl-C must reach the op here
signal.signal(signal.SIGINT, signal.default_int_handler)
from emseg import ops
DEVICE = sys.argv[1]
{setup}
print("ready", flush=True)
try:
    run()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
print("finished", flush=True)
"""


def interrupt_child(op: str, device: str) -> tuple[int, str, float]:
    code = CHILD.format(setup=textwrap.dedent(SETUP[op]))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    child = subprocess.Popen(
        [sys.executable, "-c", code, device],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(INSIDE_S)
        assert child.poll() is None, "the op finished before the signal: make it longer"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        try:
            out, err = child.communicate(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail(f"{op} on {device} still running {BOUND_S} s after SIGINT")
        return child.returncode, out + err, time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


DEVICE_PARAMS = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON)),
]


@pytest.mark.parametrize(
    "op, device",
    [("dense_crf", "cpu"), ("em_adapt", "cpu")]
    + [pytest.param("dense_crf", d, marks=d.marks) for d in DEVICE_PARAMS[1:]],
)
def test_ctrl_c_stops_the_op_with_keyboard_interrupt(op, device):
    rc, output, took = interrupt_child(op, device)
    assert "interrupted" in output and "KeyboardInterrupt" in output, output
    assert "finished" not in output
    assert rc != 0, output
    assert took < BOUND_S
