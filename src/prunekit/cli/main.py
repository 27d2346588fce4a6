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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prunekit import __version__
from prunekit.cli.config import read_yaml, resolve_config
from prunekit.cli.options import add_config_options
from prunekit.errors import PrunekitError
from prunekit.utils.distributed import get_rank, init_from_environment, is_main_process, leave
from prunekit.utils.lock import release_run_folders


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
    from prunekit.pipelines.bench import COMMAND as bench_command
    from prunekit.pipelines.export import COMMAND as export_command
    from prunekit.pipelines.oneshot import COMMAND as oneshot_command
    from prunekit.pipelines.prune_init import COMMAND as init_command
    from prunekit.pipelines.report import COMMAND as report_command

    return [
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


def main(argv: Sequence[str] | None = None) -> int:
    commands = _commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    command = next(c for c in commands if c.name == args.command)
    succeeded = False
    try:
        joined = init_from_environment()  # under torchrun: join its process group
        quiet = joined and not is_main_process()  # rank 0 speaks for the group
        logging.basicConfig(
            level=logging.WARNING if quiet else logging.DEBUG if args.verbose else logging.INFO,
            format=f"[rank {get_rank()}] %(message)s" if joined else "%(message)s",
        )
        if command.config_class is None:
            command.run()
            succeeded = True
            return 0
        flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "verbose")}
        file_values = read_yaml(args.config) if args.config else {}
        config = resolve_config(command.config_class, file_values, flags)
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            result = command.run(config)
        if result is not None and not quiet:
            print(json.dumps(result, indent=2, default=str))
        succeeded = True
        return 0
    except PrunekitError as exc:
        print(f"prunekit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # reading or writing files outside prunekit's own checks
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or _one_line(exc)
        print(f"prunekit {args.command}: error: cannot access{where}: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prunekit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        release_run_folders()
        leave(succeeded=succeeded)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
