"""One module per CLI command. Each exposes `register(subparsers)`; see agent/cli.py."""
