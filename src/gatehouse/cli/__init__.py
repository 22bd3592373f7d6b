"""The `gatehouse` command (Typer): one verb group per area."""
