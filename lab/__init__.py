"""The lab: benchmarks, the bare pipe, training, evaluations, replay, plots, the doc-region writer
and the project-owned local services. It may import every product package; none imports it.
"""
