"""edgebench: benchmark compressed CNNs on their real edge runtimes.

The `bench` package wires the stages together (data, models, export, runtimes, measurement,
results, CLI). Compression passes live in `compress`, explanations in `explain`; both are leaves.
"""

__version__ = "0.1.0"
