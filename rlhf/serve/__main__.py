"""``python -m rlhf.serve``: the same program as ``rlhf serve``."""

from rlhf.serve import cli

if __name__ == "__main__":
    cli()
