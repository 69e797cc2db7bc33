"""Python API mirroring the CLI."""

__all__: list[str] = []
