"""The command-line reference, docs/cli.md, written from the parsers themselves.

    python -m emseg.cli_reference            # rewrite docs/cli.md
    python -m emseg.cli_reference --check    # exit 1 when docs/cli.md differs from the parsers

A test runs the check, so a flag added, removed or reworded without the reference fails the suite.
The text is built from each parser's actions (flags, choices, help), not from argparse's own help
layout, so it does not change with the terminal width or the Python version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import run as run_cli
from .config import build_parser as train_parser
from .data.__main__ import build_parser as data_parser
from .evaluate import build_parser as evaluate_parser
from .predict import build_parser as predict_parser

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _flag(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        return f"{names} {{{', '.join(map(str, action.choices))}}}"
    if action.nargs == 0:
        return names
    metavar = action.metavar or (action.dest.upper() if action.option_strings else "")
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return f"{names} {metavar}".rstrip()


def _cell(text: str) -> str:
    return text.replace("|", r"\|")  # a bare bar would end the table cell


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
        text += f" (default: {action.default})"
    if action.required:
        text += " (required)"
    return text


def parser_section(parser: argparse.ArgumentParser, level: int = 2) -> list[str]:
    """Markdown for one parser: its description, then its flags group by group; sub-commands
    follow as sections of their own."""
    lines = [f"{'#' * level} `{parser.prog}`", "", parser.description or "", ""]
    subcommands = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        rows = []
        for action in actions:
            if isinstance(action, argparse._SubParsersAction):
                subcommands += list(action.choices.values())
                continue
            rows.append(f"| {_flag(action)} | {_cell(_help(action))} |")
        if rows:
            title = group.title if group.title not in ("options", "optional arguments") else "options"
            lines += [f"**{title}**" + (f": {group.description}" if group.description else ""), ""]
            lines += ["| flag | meaning |", "|---|---|", *rows, ""]
    for sub in subcommands:
        lines += parser_section(sub, level + 1)
    return lines


def reference() -> str:
    parsers = [
        train_parser(),
        evaluate_parser(),
        predict_parser(),
        data_parser(),
    ]
    head = [
        "# Command-line reference",
        "",
        "Written by `python -m emseg.cli_reference` from the parsers; `tests/test_docs.py` fails when it",
        "differs from them. `python -m emseg.pretrain` takes the trainer's flags and makes (or finds in",
        "its cache) the pretrained start the same `python -m emseg.train` command would use.",
        "",
    ]
    body = [line for p in parsers for line in parser_section(p)]
    return "\n".join(head + body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emseg.cli_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default=str(DEFAULT_PATH), help="the reference file")
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when they differ")
    args = p.parse_args(argv)
    text, path = reference(), Path(args.path)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path} differs from the parsers: run python -m emseg.cli_reference", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main, "python -m emseg.cli_reference")
