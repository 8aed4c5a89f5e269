"""``python -m obsflow``: the same as the ``obsflow`` command."""

from obsflow.cli import main

if __name__ == "__main__":
    main(prog_name="obsflow")
