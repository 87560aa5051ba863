"""Data files of the demo (JSON); no code."""

__all__: list[str] = []
