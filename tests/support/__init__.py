"""Helpers the tests and the benchmarks share: ports and server processes (`processes`), archives
built in memory (`archives`), reference answers from in-process TensorFlow (`models`), CPU
accounting (`cpu`) and load-generator output (`loadgen`). Not test modules: nothing here is
collected by pytest."""
