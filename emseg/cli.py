"""What the command-line tools share: checks of their flags, the dense CRF's ``--crf-*`` flags, and
how they end: a user's mistake as one line naming the flag or file, a bug with its traceback.

``python -m emseg.<tool>`` runs its ``main`` through :func:`run`. Errors a user can cause and fix
(bad data, a bad checkpoint, a setting that cannot work, a file system error, a diverging loss) are
printed as ``<tool>: error: <message>`` with exit status 1; ``EMSEG_DEBUG=1`` shows the traceback
instead, for bug reports. Flag errors stay argparse's (exit status 2). A stop signal ends the
tool with 130 (SIGINT) or 143 (SIGTERM) and a line saying what was kept.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict
from typing import Callable

import torch

from .checkpoint import CheckpointError
from .crf import CRF, CRFParams, make_crf
from .data.io import DataError
from .ops import CRF_DEFAULTS
from .stop import Stopped, raise_on_sigterm

#: Exceptions that carry a message meant for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, CheckpointError, ValueError, OSError, FloatingPointError)
_USER_ERROR_NAMES = {cls.__name__ for cls in USER_ERRORS} | {"MissingDataError", "FileNotFoundError"}
_WORKER = "in DataLoader worker process"


def user_message(err: BaseException) -> str | None:
    """The one-line message of a user error, or None for anything else (a bug).

    A DataLoader worker's error reaches the main process re-raised with the worker's traceback in
    its message (as a RuntimeError when the original type cannot be rebuilt from a string); its
    last line is the original ``Type: message``.
    """
    text = str(err).strip()
    if _WORKER in text:
        last = text.splitlines()[-1]
        name, _, message = last.partition(": ")
        return message if name.rsplit(".", 1)[-1] in _USER_ERROR_NAMES else None
    if isinstance(err, USER_ERRORS):
        return " ".join(text.split()) or type(err).__name__
    return None


def run(main: Callable[[], object], prog: str) -> None:
    """Run a CLI's ``main`` and exit: 0 on success, 1 on a user error, 130 on Ctrl-C (SIGINT),
    143 on SIGTERM (see :mod:`emseg.stop`: what was written is whole, what was not is gone)."""
    raise_on_sigterm()
    try:
        result = main()
    except Stopped as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        sys.exit(stop.exit_status)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        message = user_message(err)
        if message is None or os.environ.get("EMSEG_DEBUG"):
            raise
        print(f"{prog}: error: {message} (EMSEG_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


# ---------------------------------------------------------------------------------------------
# Checks shared by the CLIs


def bars_wanted(no_progress: bool) -> bool:
    """Progress bars on a terminal; where stderr is a file or a pipe, the tools log lines instead
    (a bar there is a flood of carriage returns)."""
    return not no_progress and sys.stderr.isatty()


def check_finite_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every float flag given must be a finite number (argparse's float() accepts nan and inf)."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and isinstance(value, float) and not math.isfinite(value):
            parser.error(f"{action.option_strings[-1]} must be a finite number, got {value}")


def resolve_device(parser: argparse.ArgumentParser, value: str | None) -> torch.device:
    """``--device``: cpu or cuda[:k] (default: cuda when available), refused when it cannot run here."""
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        parser.error(f"--device {value}: not a device (cpu, cuda or cuda:K)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {value}: emseg runs on cpu or cuda, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {value}: CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        parser.error(f"--device {value}: there are {torch.cuda.device_count()} CUDA devices")
    return device


def check_crf_params(parser: argparse.ArgumentParser, params: CRFParams) -> None:
    """The dense CRF's settings, checked before anything runs (not at the final evaluation)."""
    for name, value in asdict(params).items():
        flag = f"--crf-{name.replace('_', '-')}"
        if name == "iterations":
            if value < 0:
                parser.error(f"{flag} must be >= 0, got {value}")
        elif name.endswith("_std") and not value > 0:
            parser.error(f"{flag} must be > 0, got {value}")
        elif name.endswith("_w") and value < 0:
            parser.error(f"{flag} must be >= 0, got {value}")


# ---------------------------------------------------------------------------------------------
# Dense-CRF flags (train, evaluate, predict)
_CRF_FLAG_HELP = {
    "bi_w": "weight of the bilateral (appearance) kernel",
    "bi_xy_std": "spatial std (pixels) of the bilateral kernel",
    "bi_rgb_std": "colour std of the bilateral kernel",
    "pos_w": "weight of the Gaussian (smoothness) kernel",
    "pos_xy_std": "spatial std (pixels) of the Gaussian kernel",
    "iterations": "mean-field iterations",
}
assert set(_CRF_FLAG_HELP) == set(CRF_DEFAULTS), "a --crf-* flag per CRF parameter"


def add_crf_args(parser: argparse.ArgumentParser, default_from: str = "the preset") -> None:
    """Add a ``--crf-*`` flag for every :class:`CRFParams` field; unset flags stay None and are
    filled by :func:`crf_params_from_args` from ``default_from`` (a preset or a checkpoint)."""
    d = CRF_DEFAULTS
    g = parser.add_argument_group(
        "dense CRF (test-time refinement and Bbox-Seg labels)",
        f"unset values come from {default_from}; DeepLab-LargeFOV's VOC values are "
        f"bi_w {d['bi_w']}, bi_xy_std {d['bi_xy_std']}, bi_rgb_std {d['bi_rgb_std']}, pos_w {d['pos_w']}, "
        f"pos_xy_std {d['pos_xy_std']}, {d['iterations']} iterations",
    )
    for name, help_text in _CRF_FLAG_HELP.items():
        g.add_argument(f"--crf-{name.replace('_', '-')}", type=type(d[name]), help=help_text)


def crf_params_from_args(args: argparse.Namespace, base: CRFParams | None = None) -> CRFParams:
    """The flags given on the command line over ``base`` (default: :class:`CRFParams`)."""
    out = CRFParams(**asdict(base)) if base is not None else CRFParams()
    for name in asdict(out):
        value = getattr(args, f"crf_{name}", None)
        if value is not None:
            setattr(out, name, value)
    return out


def crf_for_checkpoint(parser: argparse.ArgumentParser, args: argparse.Namespace, train_args: dict) -> CRF | None:
    """``--crf``: the CRF of the checkpoint's run with the ``--crf-*`` flags over it (checked);
    None without ``--crf``."""
    if not args.crf:
        return None
    params = crf_params_from_args(args, CRFParams(**train_args["crf"]))
    check_crf_params(parser, params)
    return make_crf(params)


def parse_context(parser: argparse.ArgumentParser, text: str, flag: str = "--context") -> tuple[int, int]:
    """``--context D1,D2``: the small model's two context dilations."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) < 0:
        parser.error(f"{flag} {text}: expected two dilations >= 0 as D1,D2 (0: a 1x1 convolution)")
    return values
