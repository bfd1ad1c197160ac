"""Sub-commands of ``dvpt``: one module each, with ``register(subparsers)``."""
