"""chatcore's benchmark harness (not part of the installed package).

Run ``python -m benchmarks.run`` (or ``python benchmarks/run.py``) from the repository
root; see ``benchmarks/README.md``.
"""
