"""The `flyte` command line: `flyte run`, `flyte create config`, and the commands later issues add.

`main` is the console script's entry point. Importing this package stays cheap: rich and the user's code are
imported inside the commands that need them.
"""

from ._main import main

__all__ = ["main"]
