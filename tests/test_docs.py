"""The docs that are written from the code stay in step with it."""

from __future__ import annotations

from emseg import cli_reference, config, config_flags


def test_the_cli_reference_matches_the_parsers():
    assert cli_reference.main(["--check"]) == 0, "docs/cli.md is stale: run python -m emseg.cli_reference"


def test_the_cli_reference_check_fails_when_a_flag_is_added(monkeypatch, tmp_path, capsys):
    current = tmp_path / "cli.md"
    assert (
        cli_reference.main(["--path", str(current)]) == 0
        and cli_reference.main(["--check", "--path", str(current)]) == 0
    )
    flags = {group: list(rows) for group, rows in config_flags.FLAGS.items()}
    flags["output"].append(("--new-flag", {}, "a flag the reference does not list yet"))
    monkeypatch.setattr(config, "FLAGS", flags)  # the table build_parser reads
    assert "--new-flag" in cli_reference.reference()
    assert cli_reference.main(["--check", "--path", str(current)]) == 1
    assert "differs from the parsers" in capsys.readouterr().err


def test_the_cli_reference_lists_every_flag_of_every_cli():
    text = cli_reference.reference()
    for parser in (cli_reference.train_parser(), cli_reference.evaluate_parser(), cli_reference.predict_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in text, option
    for command in ("synthetic", "photo", "stats", "check"):
        assert f"`python -m emseg.data {command}`" in text
