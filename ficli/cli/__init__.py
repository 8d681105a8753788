"""The `ficli` command line: commands, their options and help, nothing else.

Each subcommand parses its options, calls one library function and reports, turning a `FicliError`
into one line on stderr and exit code 1 (no traceback for a user mistake). What they show
(consoles, progress bars, tables, error lines) is `ficli.console`'s. `app` holds the Typer app and
the shared options; each sibling module registers its commands on it.
"""

from ficli.cli.app import app
# Imported in the order `ficli --help` lists the commands.
from ficli.cli.images import compare, degrade, enhance, evaluate, profile
from ficli.cli.training import train
from ficli.cli.video import video
from ficli.cli.tools import bench, export, info  # noqa: E402 (the order above is the help's)

__all__ = ["app", "main", "degrade", "evaluate", "enhance", "profile", "compare", "train", "bench", "video", "export", "info"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
