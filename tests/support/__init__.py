"""Helpers the tests share: a running collector, a span recorder, the labelled corpora, scoring.

Test modules import from here, never from one another.
"""
