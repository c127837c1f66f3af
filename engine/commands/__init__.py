"""Typer command groups, composed in cli.py. Each command parses, calls one library function, renders."""
