"""``python -m nds`` runs the ``nds`` command line (same as the ``nds`` console script)."""

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
