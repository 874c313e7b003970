"""The agent: one per cluster; runs the actions the gateway assigns it (see `agent._agent`)."""

from agent._agent import Agent, UnsafeDirectory

__all__ = ["Agent", "UnsafeDirectory"]
