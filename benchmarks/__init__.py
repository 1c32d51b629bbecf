"""The benchmark scripts, by purpose (README "Benchmarks"). Each runs as a file, ``python
benchmarks/<name>.py``, or as a module, ``python -m benchmarks.<name>``; they import each other as
``benchmarks.<name>`` (a script run as a file first puts the repository root on ``sys.path``, the two
lines after its imports of the standard library), and the tests import them the same way (setup.cfg's
``pythonpath``)."""
