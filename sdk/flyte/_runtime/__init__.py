"""The worker runtime: what runs inside a process or pod started by an agent (or a warm pool worker).

`python -m flyte._runtime --assignment FILE --bundle DIR` runs one attempt of one action and reports its result to
the gateway; `--pool SOCKET` serves many assignments for one environment version without a process start each.
"""
