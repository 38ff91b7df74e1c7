"""A run's life: its lifecycle, the pipeline and its workers, the stages, the safeguard and the report.

Nothing is imported here, so importing one module of the package costs only that module.
"""
