"""The built-in `rewardsvc` subcommands that outgrew rewardsvc/cli.py (which parses and dispatches)."""
