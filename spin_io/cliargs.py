"""Command-line vocabulary shared by every stage's `cli` module (one option name across the commands, issue 15)."""

from __future__ import annotations

import argparse


def hidden_alias(parser: argparse.ArgumentParser, action: argparse.Action, *aliases: str) -> None:
    """Accept old option names (e.g. --out) for `action` without listing them in --help.

    One vocabulary across the commands (issue 15) without breaking scripts written for the old names;
    the alias shares the action, so `required` and error messages use the documented name.
    """
    for alias in aliases:
        parser._option_string_actions[alias] = action
