"""The serving benchmark's parts (`benchmarks/serving.py` runs them): the requests and the check
of every answer (`bodies`), timing under a load generator (`measure`), the peers (`servers`) and
the report (`report`)."""
