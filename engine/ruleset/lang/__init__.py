"""The expression language of rule conditions: grammar and parser, types and units, compilation to polars."""
