"""`pcc`: the command line. Commands live in inspection (check, show, emit, eval), train (train, demo)
and query (sample, mpe); importing them registers them on the shared Typer app."""

from . import inspection, query, train  # noqa: F401  (registers the commands)
from .common import app


def main():
    app()


if __name__ == "__main__":
    main()
