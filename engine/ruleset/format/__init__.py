"""The rule-file format: YAML with positions, its schema, parsing and the house style of every mistake."""
