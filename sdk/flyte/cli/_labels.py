"""`--label KEY=VALUE` as `flyte run` and `flyte agent serve` take it. A module of its own, importing only click:
`flyte agent serve` reads it before anything heavy loads (an agent given its token in the environment starts itself
again at once, see `_agent._read_token`)."""

from __future__ import annotations

from collections.abc import Sequence

import click


def parse_labels(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, has_equals, value = item.partition("=")
        if not has_equals or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        labels[key] = value
    return labels
