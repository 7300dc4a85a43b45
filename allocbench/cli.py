"""The allocbench command line's entry point; the verbs live in commands/."""
from .commands import build_parser, main

__all__ = ["build_parser", "main"]
