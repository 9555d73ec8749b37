"""The ``zhichao`` command line.

Each stage contributes its own subcommands from a ``cli`` module of its own that
defines ``register(subparsers)``; this module only assembles them, so a stage
never has to know about the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zhichao import __version__

# Stage modules that contribute subcommands, in the order they appear in --help.
_STAGE_CLI_MODULES: tuple[str, ...] = (
    "zhichao.weighing.cli",
    "zhichao.devices.cli",
    "zhichao.calibration.cli",
    "zhichao.vision.cli",
    "zhichao.evidence.cli",
    "zhichao.evidence.evaluate_cli",
    "zhichao.service.service_cli",
    "zhichao.service.center_cli",
    "zhichao.station.sync_cli",
    "zhichao.station.run_cli",
    "zhichao.station.reweigh_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhichao",
        description="非现场治超 — weigh-in-motion overload enforcement",
    )
    parser.add_argument("--version", action="version", version=f"zhichao {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _STAGE_CLI_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A stage not built yet, or one whose optional dependency is absent.
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call the chosen command's handler (its exit code); 2 with the
    help when no command was chosen. Also used by the stages' light entry points."""
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        result: int = args.handler(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
