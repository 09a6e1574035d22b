"""The command line as a newcomer reads it: every option explained, with its default."""

from __future__ import annotations

import argparse

import pytest

from service.cli import build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    """`--help` of each command explains every option and says what happens by default."""
    command = _subcommands()[name]
    text = " ".join(command.format_help().split())  # undo line wrapping
    for action in command._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings} has no help"
        assert "(default: " in action.help, (name, action.option_strings)
        if action.default not in (None, False):
            assert f"(default: {action.default})" in text, (name, action.option_strings)
