"""The ``prunekit`` console script.

Every command reads its settings from flags and, optionally, a YAML file given with
``--config`` (flags override the file). Errors in the user's input are printed on one
line and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prunekit import __version__
from prunekit.cli.config import read_yaml, resolve_config
from prunekit.cli.options import add_config_options
from prunekit.errors import PrunekitError
from prunekit.utils.distributed import (
    follow_rank0,
    get_rank,
    init_from_environment,
    is_main_process,
    launch_rank,
    launched_by_torchrun,
    leave,
    lost_a_peer,
    peer_failure,
    record_for_launcher,
    report_failure,
    report_stopped,
    wait_for_peers_to_stop,
)
from prunekit.utils.lock import release_run_folders

PEER_EXIT_WAIT_S = 10.0  # after a failure, rank 0 waits this long for the others to exit


@dataclass
class Command:
    name: str
    help: str
    description: str
    config_class: type | None
    run: Callable


def _commands() -> list[Command]:
    from prunekit.pipelines import configs
    from prunekit.pipelines.train import run_eval, run_train

    commands = [
        Command(
            "train",
            "train a model (dense, or holding a saved mask)",
            "Train a model on a dataset. With --mask, the removed weights stay exactly zero "
            "through every optimizer step. Checkpoints are written atomically each epoch; "
            "--resume continues an interrupted run.",
            configs.TrainCommandConfig,
            run_train,
        ),
        Command(
            "eval",
            "evaluate saved weights on the test set",
            "Evaluate a checkpoint (prunekit, plain state_dict, WoodFisher/CBS format or a "
            "`prunekit export` safetensors file).",
            configs.EvalCommandConfig,
            run_eval,
        ),
        Command("models", "list the models", "List the registered models.", None, _list_models),
        Command(
            "datasets",
            "list the datasets",
            "List the datasets and their shapes.",
            None,
            _list_datasets,
        ),
    ]
    commands.extend(_pruning_commands())
    return commands


def _pruning_commands() -> list[Command]:
    from prunekit.cli.quickstart import COMMAND as quickstart_command
    from prunekit.pipelines.bench import COMMAND as bench_command
    from prunekit.pipelines.export import COMMAND as export_command
    from prunekit.pipelines.oneshot import COMMAND as oneshot_command
    from prunekit.pipelines.prune_init import COMMAND as init_command
    from prunekit.pipelines.report import COMMAND as report_command

    return [
        Command(**quickstart_command),
        Command(**init_command),
        Command(**oneshot_command),
        Command(**report_command),
        Command(**export_command),
        Command(**bench_command),
    ]


def _list_models(_config: object = None) -> None:
    from prunekit.models import create_model, input_shape_for, list_models

    for name in list_models():
        model = create_model(name)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:<16} input {str(input_shape_for(name)):<16} {count:>12,} parameters")


def _list_datasets(_config: object = None) -> None:
    from prunekit.data import dataset_info, list_datasets

    for name in list_datasets():
        info = dataset_info(name)
        classes = "?" if info.num_classes is None else info.num_classes  # image folders
        print(
            f"{name:<14} input {str(info.input_shape):<14} {classes:>4} classes  {info.description}"
        )


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunekit",
        description="Prune neural networks: before training (GraSP, SNIP, SynFlow, magnitude, "
        "random) and after training (CBS, WoodFisher/OBS, magnitude).",
    )
    parser.add_argument("--version", action="version", version=f"prunekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if command.config_class is not None:
            child.add_argument("--config", help="YAML file of options (flags override it)")
            add_config_options(child, command.config_class)
    return parser


@dataclass
class Outcome:
    """How a command ended: the exit ``code``, the ``message`` for stderr (a failure's one
    line, argparse's usage and error, or a bug's traceback) and its ``kind``: "error" (the
    user's input), "bug", or "peer" (a collective failed because another process stopped)."""

    code: int
    message: str | None = None
    kind: str = "error"
    prog: str = "prunekit"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status: 0, 2 after a mistake in the input (one
    line on stderr), 130 when interrupted.

    Under torchrun rank 0 speaks for the group: it prints the message the command would
    print in one process (its own, or the reason another rank gave for stopping) and exits
    with that status, after the other ranks have exited quietly with 0, so that torchrun's
    failure summary names one process and carries the message."""
    if not launched_by_torchrun():
        outcome = _run(argv, rank=0)
        if outcome.message:
            print(outcome.message, file=sys.stderr)
        return outcome.code
    return _main_under_torchrun(argv)


def _run(argv: Sequence[str] | None, rank: int) -> Outcome:
    """Parse and run one command. Outside torchrun a bug raises as usual; under it every
    failure becomes an :class:`Outcome`, for :func:`_main_under_torchrun` to report."""
    commands = _commands()
    parser = build_parser(commands)
    quiet = rank != 0  # rank 0 speaks for the group
    silent = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    usage = io.StringIO()
    args, parse_exit = None, None
    try:
        with contextlib.redirect_stderr(usage), silent:
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a mistake in the flags
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
        parse_exit = Outcome(code, usage.getvalue().rstrip() or None)
    prog = f"prunekit {args.command}" if args is not None else "prunekit"
    try:
        joined = init_from_environment()  # under torchrun: join its process group
        follow_rank0()  # ranks other than 0 stop quietly as soon as rank 0 fails
        if parse_exit is not None:
            return parse_exit
        quiet = joined and not is_main_process()
        logging.basicConfig(
            level=logging.WARNING if quiet else logging.DEBUG if args.verbose else logging.INFO,
            format=f"[rank {get_rank()}] %(message)s" if joined else "%(message)s",
        )
        command = next(c for c in commands if c.name == args.command)
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            if command.config_class is None:
                result = command.run()
            else:
                reserved = ("command", "config", "verbose")
                flags = {k: v for k, v in vars(args).items() if k not in reserved}
                file_values = read_yaml(args.config) if args.config else {}
                config = resolve_config(command.config_class, file_values, flags)
                result = command.run(config)
        if result is not None and not quiet:
            print(json.dumps(result, indent=2, default=str))
        return Outcome(0, prog=prog)
    except PrunekitError as exc:
        return Outcome(2, f"{prog}: error: {_one_line(exc)}", prog=prog)
    except OSError as exc:  # reading or writing files outside prunekit's own checks
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or _one_line(exc)
        return Outcome(2, f"{prog}: error: cannot access{where}: {reason}", prog=prog)
    except KeyboardInterrupt:
        return Outcome(130, f"{prog}: interrupted", prog=prog)
    except Exception as exc:
        if not launched_by_torchrun():
            raise
        if lost_a_peer(exc):
            return Outcome(1, _peer_stopped(prog, exc), "peer", prog)
        return Outcome(1, traceback.format_exc().rstrip(), "bug", prog)
    finally:
        release_run_folders()


def _peer_stopped(prog: str, exc: BaseException) -> str:
    return f"{prog}: error: another process of the group stopped ({_one_line(exc)[:200]})"


def _main_under_torchrun(argv: Sequence[str] | None) -> int:
    rank = launch_rank()
    outcome = _run(argv, rank)
    if outcome.code == 0:
        try:
            leave(succeeded=True)  # waits for the others: fails when one stopped after all
            return 0
        except Exception as exc:
            outcome = Outcome(1, _peer_stopped(outcome.prog, exc), "peer", outcome.prog)
    if rank != 0:
        # Say why (before leaving: rank 0 may be waiting in a collective with this
        # rank), leave, and exit at once with 0: torchrun then lists rank 0 alone.
        report_failure(outcome.message or "", outcome.code, outcome.kind)
        leave(succeeded=False)
        report_stopped()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if outcome.kind == "peer":  # this rank only saw another one stop: print its reason
        found = peer_failure(wait_s=2.0)
        if found is not None:
            outcome = Outcome(found[1]["code"], found[1]["message"], found[1]["kind"])
    report_failure(outcome.message or "", outcome.code, outcome.kind)  # the others stop
    leave(succeeded=False)
    if outcome.message:
        print(outcome.message, file=sys.stderr)
        sys.stderr.flush()
        record_for_launcher(outcome.message)
    wait_for_peers_to_stop(timeout_s=PEER_EXIT_WAIT_S)
    return outcome.code


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
