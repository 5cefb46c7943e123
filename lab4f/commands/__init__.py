"""CLI subcommands: one module each, discovered by :mod:`lab4f.cli`.

A module defines ``register(subparsers, common)`` which adds its parser with
``parents=[common]`` (gives ``--json``) and ``set_defaults(func=...)``; ``func(args)`` returns
the dict printed by ``--json``.
"""
