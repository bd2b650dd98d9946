"""Compression passes: functions that turn a model (or an exported artifact) into a smaller one.

A leaf package: it never imports `bench` or `explain`. Data reaches it as iterables of tensors.
The pass table in `compress.registry` drives config validation, `edgebench list` and the tests.
"""
