"""`python -m flyte.cli`: the same as the `flyte` console script."""

from flyte.cli import main

if __name__ == "__main__":
    main(prog_name="flyte")
