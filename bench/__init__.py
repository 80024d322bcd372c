"""The benchmark: the mock upstream directly versus through the gateway (``make bench``).

Not a test and not collected by pytest. See ``bench/run.py``.
"""
