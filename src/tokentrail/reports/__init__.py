"""Reports over a tracker: `tables` (rich, for people) and `export` (JSON/CSV, round-trip exact).

Import the submodule you need; rich is only imported by `tables`.
"""
