"""The provider's benchmark suite: ``make bench`` (or ``python -m benchmarks.run``).

Every figure is measured in one run against the vendor simulator, which runs in a process of its own
(so that it and the client each have a core), and is written to ``benchmarks/results.json`` with its
unit, target and context. Ratios measured in the same run are what to compare; absolute times are
context only. ``python -m benchmarks.readme_table`` prints the README's table from the results.
"""
