"""Helpers the tests share: a running collector, a span recorder, the labelled corpora, scoring,
and emulators of the coding agents (Claude Code, Codex CLI, Gemini CLI) with their ground truth.

Test modules import from here, never from one another.
"""
